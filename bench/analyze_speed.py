"""How long `emergence analyze` takes on every tidy table of the reference data (bootstrap on),
and whether its time grows linearly with the number of curves.

    python bench/analyze_speed.py [--reference DIR] [--fractions 0.125,0.25,0.5,1] [--workers 0]
                                  [--report] [--validate] [--out FILE]

1. The CLI, timed end to end (imports, reading ~450k rows, analysis with n_boot=100, CSVs):
   `emergence analyze tidy/* --duplicates first --setting-is-note` (ukp_on_emergence repeats 12 keys;
   the tables' setting column describes the runs).
2. Linearity: the analysis (in this process, tables read once) of a random share of the curves
   (whole (family, task, subtask, metric) groups, seed 0) at each fraction, with the time of the
   run-level resampling of the emergent curves (``significance``) beside the verdicts'; a least-squares
   slope of log time on log curves says how time grows (1 = linearly). Reported for the whole
   analysis and for the verdicts alone (scaling-law fits depend on the families, not the curves).
3. With --report / --validate: `emergence report --reanalyze` on the ~100k-row OLMo-ladder table of
   bench/report_speed.py, and `emergence validate` (into a temporary file).

Every timing gives wall clock, CPU time (this process and its workers) and the load average: on
a shared machine wall clock is only comparable at equal load. The Markdown goes to --out, else
into BENCHMARKS.md between this script's markers (appended at the end the first time; other
sections are never touched) when that file exists, else to bench/ANALYSIS_SPEED.md.
"""

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- analysis-speed: start (bench/analyze_speed.py) -->", "<!-- analysis-speed: end -->"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference", default=str(ROOT.parent / "shared" / "reference-data"))
    p.add_argument("--fractions", default="0.125,0.25,0.5,1")
    p.add_argument("--workers", type=int, default=0, help="processes (0: one per CPU)")
    p.add_argument("--report", action="store_true", help="also time `emergence report --reanalyze` on ~100k rows")
    p.add_argument("--validate", action="store_true", help="also time `emergence validate`")
    p.add_argument("--out", help="write the Markdown here instead of BENCHMARKS.md")
    args = p.parse_args(argv)
    tables = sorted(str(f) for f in (Path(args.reference) / "tidy").iterdir())
    work = Path(tempfile.mkdtemp(prefix="analyze-bench-"))
    exe = [sys.executable, "-m", "emergence.cli"]
    try:
        cli = {"analyze": timed(exe + ["analyze", *tables, "--duplicates", "first", "--setting-is-note", "--workers",
                                       str(args.workers), "-o", str(work / "analysis")])}
        if args.report:
            sys.path.insert(0, str(ROOT / "bench"))
            import report_speed

            table, _ = report_speed._table(None, work)
            cli["report"] = timed(exe + ["report", str(table), "-o", str(work / "report"), "--reanalyze"])
        if args.validate:
            cli["validate"] = timed(exe + ["validate", "--reference-data", args.reference,
                                           "--output", str(work / "VALIDATION.md")])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    steps = scaling(tables, [float(f) for f in args.fractions.split(",")], args.workers)
    text = markdown(cli, steps, args)
    print(text)
    write(text, args.out)
    return 0


def timed(cmd) -> dict:
    """Wall clock, CPU (the command and its children) and load averages of one command."""
    before, cpu0, t0 = os.getloadavg()[0], _children_cpu(), time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
                   env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return {"wall": time.perf_counter() - t0, "cpu": _children_cpu() - cpu0, "load": (before, os.getloadavg()[0])}


def scaling(tables, fractions, workers) -> list:
    """Analysis time at each share of the curves (whole tidy groups, drawn once with seed 0)."""
    from emergence import schema as S
    from emergence.analysis.analyze import analyze
    from emergence.tidy import read_tidy

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = read_tidy(tables, duplicates="first", setting_is_note=True)   # the reference tables describe runs there
    keys = [S.FAMILY, S.TASK, S.SUBTASK, S.METRIC]
    group = df.groupby(keys, dropna=False, sort=False).ngroup().to_numpy()
    rank = np.random.default_rng(0).permutation(group.max() + 1)   # a group's place in the draw
    out = []
    for f in sorted(fractions):
        sub = df[rank[group] < np.ceil(f * len(rank))]
        load, cpu0, t0 = os.getloadavg()[0], _cpu(), time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = analyze(sub, n_boot=100, seed=0, workers=workers)
        out.append({"fraction": f, "rows": len(sub), "curves": len(result.verdicts),
                    "wall": time.perf_counter() - t0, "cpu": _cpu() - cpu0,
                    "verdicts": result.seconds["verdicts"], "significance": result.seconds.get("significance", 0.0),
                    "emergent": int(result.verdicts["p_value"].notna().sum()) if "p_value" in result.verdicts else 0,
                    "load": (load, os.getloadavg()[0])})
        print(f"{f:g}: {out[-1]['curves']} curves, {out[-1]['wall']:.1f} s", file=sys.stderr)
    return out


def slope(x, y) -> float:
    """Least-squares slope of log y on log x."""
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def markdown(cli, steps, args) -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    lines = [START, "## Analysis speed", "",
             f"`bench/analyze_speed.py{' --report' if args.report else ''}{' --validate' if args.validate else ''}`"
             f" on {platform.processor() or platform.machine()}, {cores} CPU cores, workers "
             f"{args.workers or cores}; n_boot = 100. Load average (1 min) is given before and after each "
             "timing: the machine is shared, and wall clock is only comparable at equal load. CPU is the "
             "time of the process and its workers.", "",
             "| command | wall s | CPU s | load before / after |", "|---|---:|---:|---|"]
    what = {"analyze": "`emergence analyze` all reference tidy tables (446k rows)",
            "report": "`emergence report --reanalyze`, OLMo-ladder rungs (114k rows)",
            "validate": "`emergence validate` (writes VALIDATION.md)"}
    lines += [f"| {what[k]} | {v['wall']:.1f} | {v['cpu']:.1f} | {v['load'][0]:.1f} / {v['load'][1]:.1f} |"
              for k, v in cli.items()]
    lines += ["", "Time against the number of curves (the analysis in one process, tables read once; "
              "a share of the (family, task, subtask, metric) groups, drawn with seed 0):", "",
              "| share | rows | curves | analysis wall s | of which verdicts s | of which resampling emergent curves s "
              "(curves) | CPU s | load before / after |",
              "|---:|---:|---:|---:|---:|---:|---:|---|"]
    lines += [f"| {s['fraction']:g} | {s['rows']:,} | {s['curves']:,} | {s['wall']:.1f} | {s['verdicts']:.1f} | "
              f"{s['significance']:.1f} ({s['emergent']:,}) | {s['cpu']:.1f} | {s['load'][0]:.1f} / {s['load'][1]:.1f} |"
              for s in steps]
    if len(steps) > 1:
        curves = [s["curves"] for s in steps]
        wall, verdict, cpu = ([s[k] for s in steps] for k in ("wall", "verdicts", "cpu"))
        lines += ["", f"Slope of log time on log curves: whole analysis {slope(curves, wall):.2f}, verdicts "
                      f"{slope(curves, verdict):.2f}, CPU {slope(curves, cpu):.2f} (1 = linear; below 1: the "
                      "scaling-law fits and process start-up do not grow with the curves)."]
    return "\n".join(lines + [END]) + "\n"


def write(text, out):
    if out:
        Path(out).write_text(text)
        return
    bench = ROOT / "BENCHMARKS.md"
    if not bench.exists():
        (ROOT / "bench" / "ANALYSIS_SPEED.md").write_text(text)
        return
    old = bench.read_text()
    if START in old and END in old:   # replace only this script's own section
        head, rest = old.split(START, 1)
        bench.write_text(head + text.rstrip("\n") + rest.split(END, 1)[1])
    else:
        bench.write_text(old.rstrip("\n") + "\n\n" + text)


def _cpu():
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def _children_cpu():
    b = resource.getrusage(resource.RUSAGE_CHILDREN)
    return b.ru_utime + b.ru_stime


if __name__ == "__main__":
    sys.exit(main())
