"""``emergence demo``: the whole pipeline, offline, on the emergence lab (docs/lab.md).

Trains the lab family (or reuses it from the cache), evaluates the probes it was trained on and
the held-out loss on every checkpoint, exports the tidy table, analyses it, checks the verdicts
against the lab's designed ground truth, and writes the HTML report. Each phase is timed (wall
and CPU seconds, worker processes included).
"""

import dataclasses
import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from emergence.lab.training import LabConfig, family_dir, train_family

LOSS_TASK = "heldout_loss"


@dataclass(frozen=True)
class Expected:
    """One designed verdict: ``label`` for (task, subtask, metric) on ``axis``."""
    task: str
    subtask: str
    metric: str
    axis: str
    label: str
    why: str = ""


# The lab's designed ground truth on the size axis (final checkpoint of each size); docs/lab.md
# explains why each holds.
GROUND_TRUTH = (
    # walk: six independent steps, each a fact learned gradually with size. Each step and every
    # continuous metric improves smoothly; exact match, the product of six step accuracies,
    # stays near 0 and then rises steeply: a threshold made by the metric.
    Expected("walk", "", "exact_match", "params", "emergent", "all 6 steps right: ~ p^6"),
    Expected("walk", "", "step_acc", "params", "smooth", "the per-step skill p itself"),
    Expected("walk", "step_3", "acc", "params", "smooth", "one step, scored from the model's own previous node"),
    Expected("walk", "", "gold_token_prob", "params", "smooth", "per-token probability, exp(-CE)"),
    # add_1d: 100 facts learned one by one, faster by larger models: smooth in every view.
    Expected("add_1d", "", "exact_match", "params", "smooth", "memorised facts: share learned grows with size"),
    Expected("add_1d", "digit_1", "acc", "params", "smooth", "the ones digit is the fact itself"),
    Expected("add_1d", "", "gold_logprob", "params", "smooth", "log-probability of the answer"),
    Expected("add_1d", "", "gold_token_prob", "params", "smooth", "per-token probability, exp(-CE)"),
    Expected("heldout_loss", "", "nats_per_token", "params", "smooth", "the loss falls as a power law"),
)
# (task, axis, label) of the metric audit: walk's threshold is metric-induced.
AUDIT_TRUTH = (("walk", "params", "metric-induced"),)


@dataclass
class DemoResult:
    out: Path
    table: Path
    checks: pd.DataFrame
    seconds: dict
    report: Path | None = None
    failed: list = dataclasses.field(default_factory=list)

    @property
    def matched(self) -> bool:
        return bool(len(self.checks)) and bool(self.checks["ok"].all())


def demo(out="runs/demo", limit: int = 200, lab: LabConfig | None = None, *, cache=None,
         tasks=None, workers: int = 0, report: bool = True, progress: bool = True, log=print) -> DemoResult:
    """Run the demo into ``out`` with ``lab`` (default: ``LabConfig()``); ``tasks`` defaults to
    the lab's skills plus the held-out loss."""
    lab = lab or LabConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    clock = _Clock()
    family = train_family(lab, family_dir(lab, cache), progress=progress, log=log)
    clock.lap("train")
    tasks = tuple(tasks or [s for s, _ in lab.mix if s != "filler"] + [LOSS_TASK])
    workers = workers or min(os.cpu_count() or 1, len(lab.sizes))
    log(f"Evaluating {', '.join(tasks)} on every checkpoint (limit {limit}, {workers} worker(s)) ...")
    table, failed = evaluate_family(family, tasks, out, limit=limit, workers=workers, progress=progress)
    clock.lap("evaluate")
    from emergence.analysis.analyze import analyze, summary, write_analysis
    from emergence.tidy import read_tidy

    analysis = analyze(read_tidy([table]))
    write_analysis(analysis, out / "analysis")
    clock.lap("analyze")
    checks = check_ground_truth(analysis)
    log(summary(analysis))
    log("\nDesigned ground truth (docs/lab.md):")
    log(checks.to_string(index=False))
    html = None
    if report:
        html = _report(table, out, log)
        clock.lap("report")
    log("\nTime per phase (wall / CPU seconds, workers included): " + ", ".join(
        f"{k} {w:.0f} / {c:.0f}" for k, (w, c) in clock.laps.items()))
    result = DemoResult(out, table, checks, clock.laps, html, failed)
    log("Ground truth " + ("matched." if result.matched else "NOT matched: see the rows with ok = False."))
    return result


def evaluate_family(family, tasks, out, *, limit, workers=1, progress=True):
    """Every checkpoint of ``family`` on ``tasks`` into one run directory ``<out>/run``, through
    the pool executor with ``workers`` processes (the local one for 1). Returns (tidy table
    path, failures)."""
    from emergence.export import tidy_table, write_table
    from emergence.run.config import ExecutorOptions, RunConfig
    from emergence.run.runner import run

    executor = ExecutorOptions(kind="pool", workers=workers) if workers > 1 else ExecutorOptions()
    # Zero-shot: the lab's corpus teaches each probe's format. The demo's run directory shows the
    # family just trained: checkpoints retrained under the same names (another lab config) are
    # evaluated again rather than refused.
    config = RunConfig(family=str(family), tasks=tuple(tasks), out=str(Path(out) / "run"), limit=limit,
                       num_fewshot=0, executor=executor, reevaluate_changed=True)
    summary = run(config, progress=progress)
    return write_table(tidy_table(config.out), Path(out) / "results.csv"), list(summary.failed)


def check_ground_truth(analysis) -> pd.DataFrame:
    """One row per designed verdict: expected vs obtained label."""
    v = analysis.verdicts
    rows = []
    for e in GROUND_TRUTH:
        hit = v[(v["task"] == e.task) & (v["subtask"].fillna("") == e.subtask) & (v["metric"] == e.metric)
                & (v["axis"] == e.axis)] if not v.empty else v
        got = ",".join(sorted(set(hit["label"]))) if len(hit) else "missing"
        rows.append({"task": e.task, "subtask": e.subtask or "-", "metric": e.metric, "axis": e.axis,
                     "expected": e.label, "got": got, "ok": got == e.label})
    a = analysis.audit
    for task, axis, label in AUDIT_TRUTH:
        hit = a[(a["task"] == task) & (a["axis"] == axis)] if not a.empty else a
        got = ",".join(sorted(set(hit["label"]))) if len(hit) else "missing"
        rows.append({"task": task, "subtask": "-", "metric": "(metric audit)", "axis": axis,
                     "expected": label, "got": got, "ok": got == label})
    return pd.DataFrame(rows)


def _report(table, out, log):
    from emergence.report.build import build_report

    built = build_report([table], out / "report", analysis_dir=out / "analysis")
    log(f"Report: {built.html}")
    return built.html


class _Clock:
    """Wall and CPU seconds per phase; CPU includes finished child processes."""

    def __init__(self):
        self.laps, self._last = {}, self._now()

    def lap(self, name):
        now = self._now()
        self.laps[name] = (now[0] - self._last[0], now[1] - self._last[1])
        self._last = now

    @staticmethod
    def _now():
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.perf_counter(), me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
