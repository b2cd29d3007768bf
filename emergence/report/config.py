"""What a report shows and how it is drawn: one dataclass of documented defaults."""

from dataclasses import dataclass


@dataclass(frozen=True)
class ReportConfig:
    max_tasks: int = 6            # tasks with full figures (the rest are in the tables): keeps 100k rows < 30 s
    dpi: int = 100                # PNG pixels per inch, shown at natural size: 9 pt text is 12.5 px
    svg_max_kb: int = 250         # an SVG larger than this is not kept (its PNG is)
    max_table_rows: int = 2000    # verdict rows listed in the HTML; every row is in the analysis CSVs
    max_glance_rows: int = 300    # (family, task, sub-task) rows of the at-a-glance grid, best-ranked tasks first
    n_boot: int = 100             # bootstrap draws when the analysis runs here (as `emergence analyze`)
    cutoff: float | None = None   # backtest below this many parameters when the analysis runs here
    workers: int = 0              # processes drawing figures and fitting curves; 0: one per CPU (figures: <= 4), 1: none
    seed: int = 0
    trimming: bool = True         # judge the checkpoint axes again without each run's first 1-3 judged checkpoints
    title: str | None = None
