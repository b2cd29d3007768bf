"""``emergence report``: tidy tables or run directories in; one self-contained HTML file (figures
inlined, no network resources), a short Markdown summary and the figures as PNG (and SVG where
small) out.

Re-uses the CSVs ``emergence analyze`` wrote (an ``analysis/`` folder next to the table or inside
the run directory) when its manifest says they are a finished analysis of this very table (its
content hash); runs the analysis otherwise. Every file is written atomically.
The context (``report.context``) picks the tasks and figures (``report.figures``), ``report.render``
draws them and renders the Jinja2 templates. Only the ``max_tasks`` most informative tasks get full
figures, so that a 100k-row table renders in seconds; every curve is in the verdict table.
"""

import math
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from emergence import schema as S
from emergence.analysis.analyze import (ANALYSIS_DIR, UnusableAnalysis, analyze, find_analysis, load_tables,
                                        read_analysis, table_hash, write_analysis)
from emergence.files import write_atomic
from emergence.report.config import ReportConfig
from emergence.report.context import provenance, report_context
from emergence.report.render import render

__all__ = ["Report", "ReportConfig", "build_report", "read_predictions", "reproduce_command"]

PREDICTION_COLUMNS = ("task", "actual", "predicted")


@dataclass(frozen=True)
class Report:
    out_dir: Path
    html: Path
    summary: Path
    figures: tuple = ()
    analysis_source: str = ""
    seconds: dict = field(default_factory=dict)

def build_report(sources, out_dir, *, predictions=None, analysis_dir=None, reanalyze: bool = False,
                 config: ReportConfig = ReportConfig(), command: str | None = None) -> Report:
    """Write ``out_dir``/report.html, summary.md and figures/ for tidy files or run directories.
    ``predictions``: a DataFrame or CSV with columns task, actual, predicted[, lo, hi] (backtests).
    ``analysis_dir``: analysis CSVs to use (default: an ``analysis/`` folder beside the first
    source, when it matches the table); ``reanalyze`` ignores any and runs the analysis here."""
    clock = {"start": time.perf_counter()}
    sources = [Path(s) for s in ([sources] if isinstance(sources, (str, Path)) else sources)]
    out_dir = Path(out_dir)
    df = load_tables(sources)
    clock["load"] = time.perf_counter()
    analysis, origin = _analysis(df, sources, analysis_dir, reanalyze, config, out_dir)
    clock["analysis"] = time.perf_counter()
    pred = read_predictions(predictions) if predictions is not None else None
    command = command or reproduce_command(sources, out_dir, predictions=predictions, config=config,
                                           analysis_dir=analysis_dir, reanalyze=reanalyze)
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    earlier = set(fig_dir.glob("*.png")) | set(fig_dir.glob("*.svg"))
    context = report_context(df, analysis, fig_dir=fig_dir, predictions=pred, config=config,
                             provenance=provenance(sources, df, origin, command, config))
    clock["figures"] = time.perf_counter()
    html, summary_md = out_dir / "report.html", out_dir / "summary.md"
    write_atomic(html, render("report.html", context))
    write_atomic(summary_md, render("summary.md", context))
    made = {out_dir / f[k] for f in context["figure_files"] for k in ("png", "svg") if f.get(k)}
    for old in earlier - made:  # an earlier build's figures that this one did not make, kept until now
        old.unlink()
    clock["render"] = time.perf_counter()
    steps = ["load", "analysis", "figures", "render"]
    prev = ["start"] + steps[:-1]
    seconds = {s: round(clock[s] - clock[p], 2) for s, p in zip(steps, prev)}
    seconds["total"] = round(clock["render"] - clock["start"], 2)
    files = tuple(sorted(fig_dir.iterdir()))
    return Report(out_dir, html, summary_md, files, origin, seconds)

def reproduce_command(sources, out_dir, *, predictions=None, config=ReportConfig(), analysis_dir=None,
                      reanalyze=False) -> str:
    """The ``emergence report`` command line that rebuilds this report."""
    args = ["emergence", "report", *map(str, sources), "-o", str(out_dir)]
    if isinstance(predictions, (str, Path)):
        args += ["--predictions", str(predictions)]
    if analysis_dir is not None:
        args += ["--analysis", str(analysis_dir)]
    if reanalyze:
        args.append("--reanalyze")
    defaults = ReportConfig()
    for name, flag in (("max_tasks", "--max-tasks"), ("title", "--title"), ("n_boot", "--n-boot"), ("seed", "--seed"),
                       ("cutoff", "--cutoff")):
        if getattr(config, name) != getattr(defaults, name):
            args += [flag, str(getattr(config, name))]
    return shlex.join(args)

def read_predictions(predictions) -> pd.DataFrame:
    """A backtest table as (task, actual, predicted[, lo, hi][, reference]): plain tables with
    those columns, or the outputs of ``emergence.analysis.predict``: ``backtest_loss`` (one row per held-out
    checkpoint, labelled by it), ``two_step_predict`` (task and target) and
    ``olmo_ladder_validation`` (``our_pred``, and the paper's ``paper_pred`` as the reference);
    ``pred_low``/``pred_high`` are the interval. Rows without a prediction (a fit that failed)
    are dropped and counted in ``attrs["dropped"]``."""
    p = predictions if isinstance(predictions, pd.DataFrame) else pd.read_csv(predictions)
    p = p.rename(columns={k: v for k, v in (("pred_low", "lo"), ("pred_high", "hi"), ("our_pred", "predicted"),
                                            ("paper_pred", "reference")) if k in p.columns and v not in p.columns})
    if "task" not in p.columns:
        label = next((c for c in (S.CHECKPOINT, S.MODEL) if c in p.columns), None)
        if label is not None:
            p = p.assign(task=p[label].astype(str) + (" (" + p[S.FAMILY].astype(str) + ")"
                                                      if S.FAMILY in p.columns and p[S.FAMILY].nunique() > 1 else ""))
    missing = [c for c in PREDICTION_COLUMNS if c not in p.columns]
    if missing:
        raise ValueError(f"predictions need columns {list(PREDICTION_COLUMNS)} (and optionally lo, hi); "
                         f"missing {missing}, found {list(p.columns)}")
    if "target" in p.columns and p["target"].nunique() > 1:
        p = p.assign(task=p["task"].astype(str) + " (" + p["target"].astype(str) + ")")
    cols = list(PREDICTION_COLUMNS) + [c for c in ("lo", "hi", "reference") if c in p.columns]
    out = p[cols].copy()
    out["task"] = out["task"].astype(str)
    for c in cols[1:]:
        out[c] = pd.to_numeric(out[c], errors="raise")
    ok = out["actual"].notna() & out["predicted"].notna()
    out = out[ok].reset_index(drop=True)
    out.attrs["dropped"] = int((~ok).sum())
    return out

def _analysis(df, sources, analysis_dir, reanalyze, config, out_dir):
    if analysis_dir is not None and reanalyze:
        raise ValueError("give either an analysis folder or --reanalyze, not both")
    folder = Path(analysis_dir) if analysis_dir is not None else None if reanalyze else find_analysis(sources)
    if analysis_dir is not None and not (folder / "verdicts.csv").exists():
        raise FileNotFoundError(f"{folder} has no verdicts.csv (write one with `emergence analyze`)")
    if folder is not None:
        try:
            result, problem = read_analysis(folder, table_hash(df)), ""
        except UnusableAnalysis as e:
            problem = str(e)
        if not problem and analysis_dir is None and config.cutoff is not None:
            done = result.settings.get("cutoff")
            if done is None or not math.isclose(done, config.cutoff):
                problem = ("it was analysed without --cutoff" if done is None
                           else f"it was analysed with --cutoff {done:g}, not {config.cutoff:g}")
        if not problem:
            return result, f"re-used from {folder} (written by `emergence analyze`)"
        if analysis_dir is not None:
            raise ValueError(f"{folder} cannot be used for this table: {problem}")
        note = f"{folder} not used ({problem}): analysis run here"
    else:
        note = "run here" + (" (--reanalyze)" if reanalyze else ": no analysis/ folder beside the input")
    result = analyze(df, n_boot=config.n_boot, seed=config.seed, workers=config.workers, cutoff=config.cutoff)
    write_analysis(result, out_dir / ANALYSIS_DIR)  # the full tables, beside the report
    return result, (f"{note}, n_boot={config.n_boot}, seed={config.seed}; its CSV files are in "
                    f"{out_dir / ANALYSIS_DIR}")
