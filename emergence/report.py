"""``emergence report``: tidy tables or run directories in; one self-contained HTML file (figures
inlined, no network resources), a short Markdown summary and the figures as PNG (and SVG where
small) out.

Re-uses the CSVs ``emergence analyze`` wrote (an ``analysis/`` folder next to the table or inside
the run directory) when they match the table and are newer than it; runs the analysis otherwise.
Figures come from ``emergence.figures``; text goes through Jinja2 templates with autoescape, fed
one plain context dict. Only the ``max_tasks`` most informative tasks get full figures, so that a
100k-row table renders in seconds; every curve is in the verdict table.
"""

import base64
import hashlib
import io
import json
import multiprocessing as mp
import os
import platform
import re
import shlex
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from emergence import figures as F
from emergence import schema as S
from emergence.analyze import Analysis, analyze, load_tables, write_analysis
from emergence.decompose import CONTINUOUS, DISCONTINUOUS, metric_kind
from emergence.tidy import fill_chance
from emergence.verdicts import LABELS, ClassifyConfig

ANALYSIS_DIR = "analysis"
PREDICTION_COLUMNS = ("task", "actual", "predicted")
_C = ClassifyConfig()
LEGEND = {  # one line per verdict, numbers from the classifier's defaults
    "emergent": f"a threshold model (flat, then a rise) beats every smooth model by >= {_C.emergent_margin:g} AIC "
                f"and the rise is >= {_C.jump_se:g} standard errors",
    "smooth": "improves with scale; a smooth curve (linear, power law, gentle sigmoid) explains it as well as "
              "any threshold",
    "flat": "no trend: a constant fits within the noise",
    "undetermined": "cannot be judged: at the metric's floor (e.g. exact match ~0), too few points, or bad input",
    "inverse": "gets worse with scale",
    "noisy": "varies beyond its noise but not monotonically (a trend undone by a drop, or scatter)",
}
COLOURS = {"emergent": "#D55E00", "smooth": "#009E73", "flat": "#BBBBBB", "undetermined": "#F0F0F0",
           "inverse": "#CC79A7", "noisy": "#E69F00"}  # Okabe-Ito: safe for colour-blind readers
AUDIT_COLOURS = {"genuine": "#D55E00", "metric-induced": "#56B4E9", "none": "#BBBBBB", "undetermined": "#F0F0F0"}
PACKAGES = ("emergence", "numpy", "pandas", "scipy", "matplotlib", "seaborn", "jinja2")


@dataclass(frozen=True)
class ReportConfig:
    max_tasks: int = 6            # tasks with full figures (the rest are in the tables): keeps 100k rows < 30 s
    dpi: int = 80                 # PNG resolution: legible on screen at ~40-80 kB a figure
    svg_max_kb: int = 250         # an SVG larger than this is not kept (its PNG is)
    max_table_rows: int = 2000    # verdict rows listed in the HTML; every row is in the analysis CSVs
    max_glance_rows: int = 300    # (family, task, sub-task) rows of the at-a-glance grid, best-ranked tasks first
    n_boot: int = 100             # bootstrap draws when the analysis runs here (as `emergence analyze`)
    cutoff: float | None = None   # backtest below this many parameters when the analysis runs here
    workers: int = 0              # processes drawing figures and fitting curves; 0: one per CPU (figures: <= 4), 1: none
    seed: int = 0
    title: str | None = None


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
    for old in list(fig_dir.glob("*.png")) + list(fig_dir.glob("*.svg")):
        old.unlink()  # figures of an earlier build that this one may not make
    context = report_context(df, analysis, fig_dir=fig_dir, predictions=pred, config=config,
                             provenance=provenance(sources, df, origin, command, config))
    clock["figures"] = time.perf_counter()
    html, summary_md = out_dir / "report.html", out_dir / "summary.md"
    html.write_text(render("report.html", context), encoding="utf-8")
    summary_md.write_text(render("summary.md", context), encoding="utf-8")
    clock["render"] = time.perf_counter()
    steps = ["load", "analysis", "figures", "render"]
    prev = ["start"] + steps[:-1]
    seconds = {s: round(clock[s] - clock[p], 2) for s, p in zip(steps, prev)}
    seconds["total"] = round(clock["render"] - clock["start"], 2)
    files = tuple(sorted(fig_dir.iterdir()))
    return Report(out_dir, html, summary_md, files, origin, seconds)


def report_context(df: pd.DataFrame, analysis: Analysis, *, fig_dir=None, predictions=None,
                   config: ReportConfig = ReportConfig(), provenance: dict | None = None) -> dict:
    """The one plain dict the templates render: tables as lists of dicts, figures as data URIs
    (and files in ``fig_dir`` when given)."""
    df = fill_chance(df)
    df[S.SUBTASK] = df[S.SUBTASK].fillna("").astype(str)
    v = _clean(analysis.verdicts)
    tasks = rank_tasks(df, v)
    shown = tasks[:config.max_tasks]
    law = law_curves(df, analysis.fits)
    jobs = []
    if _has(df, S.LOSS) and _has(df, S.PARAMS):
        n_fam = df.loc[df[S.LOSS].notna(), S.FAMILY].nunique()
        caption = _scaling_caption(law) + (f" Rows: the {F.MAX_PANELS} of {n_fam} families with most models."
                                           if n_fam > F.MAX_PANELS else "")
        jobs.append(_Job("loss-scaling", "Held-out loss vs parameters, tokens and compute", caption,
                         "loss_scaling_figure", (F.checkpoints(df), None if law.empty else law)))
    sections = [_task_jobs(df[df[S.TASK] == task], v, analysis.composites, task, i) for i, task in enumerate(shown)]
    jobs += [j for s in sections for j in s.pop("jobs")]
    pred = None
    if predictions is not None and not predictions.empty:
        pred = _records(predictions.assign(
            rel_error=(predictions["predicted"] - predictions["actual"]) / predictions["actual"].abs()))
        dropped = predictions.attrs.get("dropped", 0)
        caption = ("Filled: actual; open: predicted" + (" (bar: its interval)" if "lo" in predictions else "")
                   + ("; diamond: the published prediction" if "reference" in predictions else "")
                   + "; right: relative error of the prediction."
                   + (f" {dropped} row(s) without a prediction (a fit that failed) left out." if dropped else ""))
        jobs.append(_Job("predictions", "Predictions vs actual (backtests)", caption, "predictions_figure",
                         (predictions,)))
    onset = _onset_rows(analysis.onset)
    if onset:
        jobs.append(_Job("onset", "Where tasks emerge: predicted from the small models",
                         ONSET_CAPTION, "onset_figure", (analysis.onset,)))
    records = dict(zip([j.stem for j in jobs], render_figures(jobs, fig_dir, config)))
    for s in sections:
        s["figures"] = [records[stem] for stem in s["figures"]]
    return {
        "title": config.title or f"Emergence report: {', '.join(map(str, df[S.FAMILY].unique()[:4]))}",
        "n_rows": len(df), "families": [str(f) for f in df[S.FAMILY].unique()],
        "n_checkpoints": int(df[[S.FAMILY, S.CHECKPOINT]].drop_duplicates().shape[0]),
        "n_tasks": len(tasks), "tasks_shown": shown, "tasks_not_shown": tasks[config.max_tasks:],
        "legend": [{"label": k, "colour": COLOURS[k], "text": LEGEND[k]} for k in LABELS],
        "notes": list(dict.fromkeys(analysis.notes)),
        "counts": _counts(v), "glance": glance(v, tasks, config.max_glance_rows),
        "verdicts": verdict_rows(v, analysis.fits, config.max_table_rows),
        "n_verdicts": len(v), "max_table_rows": config.max_table_rows,
        "audit": audit_rows(analysis.audit), "composites": _records(_clean(analysis.composites)),
        "fits": fit_rows(analysis.fits),
        "scaling_figure": records.get("loss-scaling"), "task_sections": sections,
        "predictions": pred, "predictions_figure": records.get("predictions"),
        "onset": onset, "onset_figure": records.get("onset"),
        "figure_files": list(records.values()),
        "provenance": provenance or {},
    }


ONSET_CAPTION = (
    "Fitted on the models below the size cutoff (dashed), scored on the rest. Left: the loss threshold "
    "eta located on the small models' pooled checkpoints (open, with its interval) and on all models "
    "(filled). Right: the critical size N_c at which the small models' loss law reaches eta at the "
    "family's recipe, the same from all models, and the sizes between which the family's measured "
    "losses cross the all-model eta (grey). A triangle is a lower bound: the small models never "
    "reached eta, so only 'above this size' can be said.")
ONSET_COLUMNS = {S.FAMILY: "family", S.TASK: "task", S.METRIC: "metric", "status": "status",
                 "eta_pred": "eta (small)", "eta_full": "eta (all)", "nc_pred": "N_c predicted",
                 "nc_pred_lo": "N_c low", "nc_pred_hi": "N_c high", "nc_full": "N_c (all)",
                 "nc_bound": "N_c above", "mae_threshold": "held-out MAE: threshold",
                 "mae_smooth": "held-out MAE: smooth"}


def _onset_rows(onset: pd.DataFrame) -> list:
    """The onset backtest as table rows (curves with a prediction, a bound or a miss)."""
    if onset is None or onset.empty or "status" not in onset:
        return None
    o = onset[onset["status"].isin(["predicted", "not confirmed", "bound", "missed"])]
    return _records(_clean(o.reindex(columns=list(ONSET_COLUMNS)).rename(columns=ONSET_COLUMNS)))


def render_figures(jobs, fig_dir=None, config: ReportConfig = ReportConfig()) -> list:
    """Draw each figure job (in worker processes when there are several and CPUs to spare),
    write PNG (palette-quantised) and SVG (text as text; only if under ``svg_max_kb``) into
    ``fig_dir``, and return one record per job: id, title, caption, data URI, file paths."""
    workers = config.workers or min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                    else os.cpu_count() or 1, 4)
    args = [(j, config.dpi, config.svg_max_kb) for j in jobs]
    if workers > 1 and len(jobs) >= 6 and "fork" in mp.get_all_start_methods():
        # fork: workers inherit the imported modules (no re-import of the caller's __main__)
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=mp.get_context("fork")) as pool:
            drawn = list(pool.map(_draw, args))
    else:
        drawn = [_draw(a) for a in args]
    records = []
    for i, (job, (png, svg)) in enumerate(zip(jobs, drawn), 1):
        name = f"{i:02d}-{_slug(job.stem)}"
        rec = {"id": name, "title": job.title, "caption": job.caption, "png": None, "svg": None,
               "src": "data:image/png;base64," + base64.b64encode(png).decode("ascii")}
        if fig_dir is not None:
            (Path(fig_dir) / f"{name}.png").write_bytes(png)
            rec["png"] = f"figures/{name}.png"
            if svg is not None:
                (Path(fig_dir) / f"{name}.svg").write_bytes(svg)
                rec["svg"] = f"figures/{name}.svg"
        records.append(rec)
    return records


def rank_tasks(df: pd.DataFrame, verdicts: pd.DataFrame) -> list:
    """Tasks, most informative first: an emergent verdict on a size/compute/loss axis, then the
    share of emergent curves, then the share with any trend (not flat/undetermined), then rows."""
    tasks = list(dict.fromkeys(df[S.TASK].astype(str)))
    if verdicts.empty:
        return tasks
    em = verdicts["label"] == "emergent"
    g = pd.DataFrame({S.TASK: verdicts[S.TASK].astype(str), "pooled": em & (verdicts["axis"] != S.TOKENS),
                      "emergent": em, "trend": verdicts["label"].isin(["emergent", "smooth", "inverse"])})
    score = g.groupby(S.TASK).agg(pooled=("pooled", "any"), emergent=("emergent", "mean"), trend=("trend", "mean"))
    rows = df[S.TASK].astype(str).value_counts()
    key = {t: (-float(score.loc[t, "pooled"]), -score.loc[t, "emergent"], -score.loc[t, "trend"], -rows.get(t, 0))
           if t in score.index else (0.0, 0.0, 0.0, -rows.get(t, 0)) for t in tasks}
    return sorted(tasks, key=key.get)


def glance(verdicts: pd.DataFrame, tasks=None, max_rows: int = 300) -> dict:
    """Verdicts at a glance: rows (family, task, subtask), columns (axis, metric); a cell with
    several curves (the tokens axis: one per model) shows the commonest label and its count."""
    if verdicts.empty:
        return {"columns": [], "axes": [], "rows": [], "one_family": True, "n_rows": 0}
    v = verdicts
    axes = [a for a in (S.PARAMS, S.LOSS, S.FLOPS, S.TOKENS) if a in set(v["axis"])] + \
        sorted(set(v["axis"]) - {S.PARAMS, S.LOSS, S.FLOPS, S.TOKENS})
    columns = [(a, m) for a in axes for m in F.order_by_kind(v.loc[v["axis"] == a, S.METRIC].unique())]
    order = {t: i for i, t in enumerate(tasks or [])}
    keys = sorted(v[[S.FAMILY, S.TASK, S.SUBTASK]].drop_duplicates().itertuples(index=False),
                  key=lambda k: (order.get(k[1], len(order)), str(k[0]), str(k[2])))
    rows, n_rows = [], len(keys)
    keys = keys[:max_rows]
    shown = v.merge(pd.DataFrame(keys, columns=[S.FAMILY, S.TASK, S.SUBTASK]))
    cells = {}  # (family, task, subtask, axis, metric) -> [(label, count)], commonest first
    counted = shown.groupby([S.FAMILY, S.TASK, S.SUBTASK, "axis", S.METRIC, "label"]).size()
    for (*key, label), n in counted.sort_values(ascending=False, kind="stable").items():
        cells.setdefault(tuple(key), []).append((label, int(n)))
    for fam, task, sub in keys:
        row = []
        for axis, metric in columns:
            counts = cells.get((fam, task, sub, axis, metric))
            if counts is None:
                row.append(None)
                continue
            (top, k), n = counts[0], sum(c for _, c in counts)
            row.append({"label": top, "colour": COLOURS.get(top, "#FFFFFF"),
                        "text": top if n == 1 else f"{top} {k}/{n}",
                        "title": ", ".join(f"{label}: {c}" for label, c in counts)})
        rows.append({"family": fam, "task": task, "subtask": sub, "cells": row})
    spans = [{"axis": a, "span": sum(1 for c in columns if c[0] == a)} for a in axes]
    return {"columns": [{"axis": a, "metric": m, "kind": metric_kind(m) or "?"} for a, m in columns],
            "axes": spans, "rows": rows, "one_family": v[S.FAMILY].nunique() == 1, "n_rows": n_rows}


def verdict_rows(verdicts: pd.DataFrame, fits: pd.DataFrame | None = None, max_rows: int | None = None) -> list:
    """The verdict table as records: label, confidence and evidence first; emergent first."""
    if verdicts.empty:
        return []
    size_law = _size_law(fits)
    order = {k: i for i, k in enumerate(LABELS)}
    pooled = {S.PARAMS: 0, S.LOSS: 1, S.FLOPS: 2}  # one curve per family before one per model
    v = verdicts.assign(_o=verdicts["label"].map(order), _a=verdicts["axis"].map(pooled).fillna(3)).sort_values(
        ["_o", "_a", S.FAMILY, S.TASK, S.SUBTASK, S.METRIC], kind="stable").head(max_rows)
    out = []
    for r in v.to_dict("records"):
        eta = ""
        if pd.notna(r.get("eta")):
            eta = f"{_fmt(r['eta'])} [{_fmt(r.get('eta_lo'))}, {_fmt(r.get('eta_hi'))}]"
            if r["axis"] == S.LOSS and r[S.FAMILY] in size_law:
                eta += f"; N_c = {_critical(r, size_law[r[S.FAMILY]])}"
        out.append({"family": r[S.FAMILY], "task": r[S.TASK], "subtask": r[S.SUBTASK], "metric": r[S.METRIC],
                    "axis": r["axis"], "model": _text(r.get(S.MODEL)), "label": r["label"],
                    "colour": COLOURS.get(r["label"], "#FFFFFF"), "confidence": confidence(r),
                    "reason": _text(r.get("reason")), "margin": _fmt(r.get("margin"), 3),
                    "jump_se": _fmt(r.get("jump_se"), 3), "eta": eta, "n_points": _fmt(r.get("n_points")),
                    "breakthroughness": _fmt(r.get("breakthroughness"), 3),
                    "linearity": _fmt(r.get("linearity"), 3), "wei": _text(r.get("wei_emergent"))})
    return out


def fit_rows(fits: pd.DataFrame) -> list:
    """Scaling-law parameters as records: estimate, 95% interval, status."""
    if fits is None or fits.empty:
        return []
    return [{"family": r[S.FAMILY], "form": r["form"], "x": _text(r.get("x")), "param": r["param"],
             "estimate": _fmt(r.get("estimate")), "stderr": _fmt(r.get("stderr"), 3),
             "ci": f"[{_fmt(r.get('ci_low'))}, {_fmt(r.get('ci_high'))}]" if pd.notna(r.get("ci_low")) else "",
             "n": _fmt(r.get("n")), "status": _text(r.get("status")), "reason": _text(r.get("reason"))}
            for r in fits.to_dict("records")]


def audit_rows(audit: pd.DataFrame) -> list:
    """The metric audit as records, the labels that say something first."""
    if audit is None or audit.empty:
        return []
    order = {k: i for i, k in enumerate(AUDIT_COLOURS)}
    a = _clean(audit).assign(_o=audit["label"].map(order)).sort_values(["_o", S.FAMILY, S.TASK, "axis"], kind="stable")
    return [{"family": r[S.FAMILY], "task": r[S.TASK], "axis": _text(r.get("axis")), "label": r["label"],
             "colour": AUDIT_COLOURS.get(r["label"], "#FFFFFF"), "reason": _text(r.get("reason")),
             "discontinuous": _clip(_text(r.get("discontinuous"))), "continuous": _clip(_text(r.get("continuous")))}
            for r in a.to_dict("records")]


def confidence(row) -> str:
    """How strongly the data back the label: its model's AIC margin over the best alternative."""
    if row.get("label") == "undetermined":
        return "n/a"
    m = row.get("margin")
    if m is None or not np.isfinite(m):
        return "low"
    return "high" if m >= 2 * _C.emergent_margin else "moderate" if m >= _C.emergent_margin else "low"


def law_curves(df: pd.DataFrame, fits: pd.DataFrame, *, extrapolate: float = 10.0, points: int = 60) -> pd.DataFrame:
    """The fitted laws as lines: per family, the size law over [N_min / 2, N_max * extrapolate]
    and the Chinchilla law at each tokens-per-parameter ratio of the final checkpoints (up to
    five), with a 95% delta-method band (Gauss-Newton covariance of the log-loss fit at the
    final checkpoints; no refit)."""
    if fits is None or fits.empty or "status" not in fits.columns:
        return pd.DataFrame()
    pts = F.checkpoints(df)
    pts = pts[pts["final"]].dropna(subset=[S.PARAMS, S.LOSS])
    frames = []
    for (fam, form), g in fits[fits["status"] == "ok"].groupby([S.FAMILY, "form"]):
        p = dict(zip(g["param"], g["estimate"]))
        fp = pts[pts[S.FAMILY] == fam]
        if fp.empty:
            continue
        grid = np.geomspace(fp[S.PARAMS].min() / 2, fp[S.PARAMS].max() * extrapolate, points)
        if form == "size":
            theta = np.log([p["L_inf"], p["N0"]]).tolist() + [p["alpha"]]
            frames.append(_band(form, theta, grid, None, fp, fam, np.nan))
        elif form == "chinchilla" and fp[S.TOKENS].notna().all():
            theta = np.log([p["E"], p["A"], p["B"]]).tolist() + [p["alpha"], p["beta"]]
            ratios = sorted({float(f"{r:.2g}") for r in fp[S.TOKENS] / fp[S.PARAMS]})
            for r in F._thin(ratios, 5):
                frames.append(_band(form, theta, grid, grid * r, fp, fam, r))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def provenance(sources, df: pd.DataFrame, analysis_origin: str, command: str, config: ReportConfig) -> dict:
    """Families and checkpoints, task versions, inputs, package versions, how to rebuild."""
    runs = [json.loads((s / "run.json").read_text()) for s in sources if s.is_dir() and (s / "run.json").exists()]
    fams = []
    for fam, g in df.groupby(S.FAMILY, sort=False):
        ck = F.checkpoints(g)
        models = list(dict.fromkeys(ck[S.MODEL].astype(str)))
        steps = ck[S.STEP].dropna()
        fams.append({"family": fam, "n_models": len(models), "n_checkpoints": len(ck),
                     "models": ", ".join(models[:16]) + (f" and {len(models) - 16} more" if len(models) > 16 else ""),
                     "params": _range(ck[S.PARAMS]), "tokens": _range(ck[S.TOKENS]),
                     "steps": f"{steps.nunique()} ({_range(steps)})" if len(steps) else "not recorded"})
    versions = {t: v for r in runs for t, v in (r.get("tasks") or {}).items()}
    tasks = []
    for task, g in df.groupby(S.TASK, sort=True):
        extra = []
        for col in ("n_shot", "setting"):
            if col in g.columns and g[col].notna().any():
                vals = [str(int(x)) if isinstance(x, float) and x.is_integer() else str(x)
                        for x in g[col].dropna().unique()]
                extra.append(f"{col}: {', '.join(vals[:3])}" + (" ..." if len(vals) > 3 else ""))
        tasks.append({"task": task, "version": versions.get(task, "not recorded in a tidy table"),
                      "metrics": ", ".join(map(str, g[S.METRIC].unique())),
                      "subtasks": int((g[S.SUBTASK].fillna("") != "").groupby(g[S.SUBTASK]).any().sum()),
                      "details": "; ".join(extra)})
    packages = {p: _version(p) for p in PACKAGES}
    packages["python"] = platform.python_version()
    evaluated = {f"{k} (evaluation)": v for r in runs[:1] for k, v in (r.get("packages") or {}).items() if v}
    return {"command": command, "analysis": analysis_origin, "families": fams, "tasks": tasks,
            "inputs": [_input(s) for s in sources], "packages": {**packages, **evaluated},
            "runs": [{"git_sha": r.get("git_sha"), "started_at": r.get("started_at"),
                      "command": " ".join(map(str, r.get("command") or []))} for r in runs],
            "config": {k: getattr(config, k) for k in ("max_tasks", "dpi", "n_boot", "seed")}}


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
    those columns, or the outputs of ``emergence.predict``: ``backtest_loss`` (one row per held-out
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


def find_analysis(sources) -> Path | None:
    """The analysis/ folder `emergence analyze` writes for these sources, if there is one."""
    first = Path(next(iter(sources)))
    folder = (first if first.is_dir() else first.parent) / ANALYSIS_DIR
    return folder if (folder / "verdicts.csv").exists() else None


def read_analysis(folder) -> Analysis:
    """The CSVs of ``write_analysis`` back as an ``Analysis``."""
    folder = Path(folder)
    tables = {}
    for name in ("verdicts", "audit", "composites", "fits", "backtest", "onset"):
        path = folder / f"{name}.csv"
        text = (S.FAMILY, S.MODEL, S.TASK, S.SUBTASK, S.METRIC, "reason", "note", "label", "axis")
        try:
            t = pd.read_csv(path, dtype={c: str for c in text})
        except (FileNotFoundError, pd.errors.EmptyDataError):
            t = pd.DataFrame()
        for col in (S.SUBTASK, S.MODEL, "reason", "note"):
            if col in t.columns:
                t[col] = t[col].fillna("")
        tables[name] = t
    notes_file = folder / "notes.txt"
    notes = [n for n in notes_file.read_text().splitlines() if n] if notes_file.exists() else []
    return Analysis(tables["verdicts"], tables["audit"], tables["composites"], tables["fits"], notes,
                    backtest=tables["backtest"], onset=tables["onset"])


def render(template: str, context: dict) -> str:
    """Render a template of emergence/templates: autoescaped HTML, Markdown with ``md`` escaping."""
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(loader=PackageLoader("emergence", "templates"), undefined=StrictUndefined,
                      autoescape=select_autoescape(enabled_extensions=("html",), default=False),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["md"] = _md
    return env.get_template(template).render(**context)


# ---- helpers -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Job:
    """A figure to draw: ``figures.<func>(*args)``, with its file stem, title and caption."""
    stem: str
    title: str
    caption: str
    func: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)


def _draw(item):
    """PNG and SVG bytes of one job (runs in a worker process too)."""
    import matplotlib
    from PIL import Image

    job, dpi, svg_max_kb = item
    fig = getattr(F, job.func)(*job.args, **job.kwargs)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    # A 256-colour palette keeps anti-aliased plots intact at a third of the size.
    img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
    png = io.BytesIO()
    img.save(png, format="png", optimize=True)
    fig.set_layout_engine("none")  # keep the positions just computed: the SVG reuses them
    svg = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "emergence"}):
        fig.savefig(svg, format="svg", metadata={"Date": None})
    fig.clear()
    return png.getvalue(), (svg.getvalue() if svg.tell() <= svg_max_kb * 1024 else None)


def _task_jobs(t, v, composites, task, i):
    """Figure jobs for one task: size, loss, metric views, composite."""
    sub, metric = _primary(t)
    curve = t[(t[S.SUBTASK] == sub) & (t[S.METRIC] == metric)]
    tv = v[(v[S.TASK] == task)] if not v.empty else v
    name = f"{task}" + (f" / {sub}" if sub else "")
    jobs = []
    if _has(curve, S.PARAMS):
        jobs.append(_Job(f"{task}-size", f"{name}: {metric} vs size",
                         "One line per training step shared by the models (colour: step; the final step "
                         "drawn thick with its 95% interval), or each model's last checkpoint.",
                         "metric_vs_size", (curve,)))
    same = t[t[S.SUBTASK] == sub]
    both = {DISCONTINUOUS, CONTINUOUS} <= {metric_kind(m) for m in same[S.METRIC].unique()}
    x = S.LOSS if _has(curve, S.LOSS) else S.PARAMS
    xv = tv[(tv["axis"] == x) & (tv[S.SUBTASK] == sub)] if not tv.empty else None
    where = ("held-out loss, every checkpoint pooled (lower loss to the right)" if x == S.LOSS
             else "size, final checkpoint of each model")
    shading = " Shaded: the threshold eta's 95% interval where the verdict is emergent; dashed: chance."
    n_fam = t[S.FAMILY].nunique()
    if n_fam > F.MAX_PANELS:
        shading += f" Rows: the {F.MAX_PANELS} of {n_fam} families with most models."
    if both:  # the same outputs under each kind of metric, side by side (the first panel is `metric`)
        jobs.append(_Job(f"{task}-metrics", f"{name}: discontinuous vs continuous metrics vs {x}",
                         f"The same outputs scored by each metric, against {where}." + shading,
                         "metric_views", (same, x, xv)))
    elif x == S.LOSS:
        lv = xv[xv[S.METRIC] == metric] if xv is not None else None
        jobs.append(_Job(f"{task}-loss", f"{name}: {metric} vs held-out loss",
                         f"Against {where}." + shading, "metric_vs_loss", (curve, lv)))
    comp = composites[composites[S.TASK] == task] if not composites.empty and S.TASK in composites else None
    if comp is not None and not comp.empty:
        row = comp.iloc[0]
        fam_t = t[t[S.FAMILY] == row[S.FAMILY]]
        x = S.LOSS if _has(fam_t, S.LOSS) else S.PARAMS
        jobs.append(_Job(f"{task}-composite", f"{name}: sub-tasks vs composite",
                         f"{int(row['k'])} sub-tasks; RMSE of the product prediction "
                         f"{_fmt(row['rmse_independent'], 3)}, of mean**k_eff {_fmt(row['rmse_fitted'], 3)}.",
                         "composite_figure", (fam_t, x), {"k_eff": float(row["k_eff"])}))
    return {"task": task, "subtask": sub, "metric": metric, "anchor": f"task-{i}",
            "figures": [j.stem for j in jobs], "jobs": jobs}


def _primary(t):
    """The curve a task's figures show: the whole task (subtask "") if present, else its commonest
    sub-task; its first discontinuous metric."""
    subs = t[S.SUBTASK]
    sub = "" if (subs == "").any() else subs.value_counts().index[0]
    metrics = F.order_by_kind(t.loc[subs == sub, S.METRIC].unique())
    return sub, metrics[0]


def _analysis(df, sources, analysis_dir, reanalyze, config, out_dir):
    if analysis_dir is not None and reanalyze:
        raise ValueError("give either an analysis folder or --reanalyze, not both")
    folder = Path(analysis_dir) if analysis_dir is not None else None if reanalyze else find_analysis(sources)
    if analysis_dir is not None and not (folder / "verdicts.csv").exists():
        raise FileNotFoundError(f"{folder} has no verdicts.csv (write one with `emergence analyze`)")
    if folder is not None:
        result = read_analysis(folder)
        problem = _mismatch(df, result.verdicts)
        if analysis_dir is None:
            newest = max(_mtime(s) for s in sources)
            if (folder / "verdicts.csv").stat().st_mtime < newest:
                problem = problem or "it is older than the table"
            if config.cutoff is not None and result.onset.empty:
                problem = problem or "it has no backtest (onset.csv) for --cutoff"
        if not problem:
            return result, f"re-used from {folder} (written by `emergence analyze`)"
        if analysis_dir is not None:
            raise ValueError(f"{folder} does not belong to this table: {problem}")
        note = f"{folder} not used ({problem}): analysis run here"
    else:
        note = "run here" + (" (--reanalyze)" if reanalyze else ": no analysis/ folder beside the input")
    result = analyze(df, n_boot=config.n_boot, seed=config.seed, workers=config.workers, cutoff=config.cutoff)
    write_analysis(result, out_dir / ANALYSIS_DIR)  # the full tables, beside the report
    return result, (f"{note}, n_boot={config.n_boot}, seed={config.seed}; its CSV files are in "
                    f"{out_dir / ANALYSIS_DIR}")


def _mismatch(df, verdicts):
    if verdicts.empty:
        return "it has no verdicts"
    cols = [S.FAMILY, S.TASK, S.SUBTASK, S.METRIC]
    have = set(df[cols].drop_duplicates().fillna("").astype(str).itertuples(index=False, name=None))
    got = set(verdicts[cols].fillna("").astype(str).itertuples(index=False, name=None))
    if have != got:
        return f"its curves differ from the table's ({len(got - have)} unknown, {len(have - got)} missing)"
    return ""


def _mtime(path):
    path = Path(path)
    files = [path / "results.sqlite"] if path.is_dir() else [path]
    return max(f.stat().st_mtime for f in files if f.exists()) if any(f.exists() for f in files) else 0.0


def _band(form, theta, N, D, pts, fam, ratio):
    """Law at (N, D) with a 95% delta-method band from residuals at the final checkpoints."""
    theta = np.asarray(theta, float)
    Xn, Xd = pts[S.PARAMS].to_numpy(float), (pts[S.TOKENS].to_numpy(float) if form == "chinchilla" else None)
    y = np.log(pts[S.LOSS].to_numpy(float))
    fit = _loglaw(form, theta, Xn, Xd)
    k = len(theta)
    lo = hi = np.full(len(N), np.nan)
    pred = _loglaw(form, theta, N, D)
    if len(y) > k and np.all(np.isfinite(fit)):
        J, G = _jac(form, theta, Xn, Xd), _jac(form, theta, N, D)
        s2 = float(np.sum((y - fit) ** 2) / (len(y) - k))
        cov = s2 * np.linalg.pinv(J.T @ J)
        se = np.sqrt(np.clip(np.einsum("ij,jk,ik->i", G, cov, G), 0, None))
        lo, hi = np.exp(pred - F.Z95 * se), np.exp(pred + F.Z95 * se)
    return pd.DataFrame({S.FAMILY: fam, "form": form, "ratio": ratio, S.PARAMS: N,
                         S.TOKENS: np.nan if D is None else D, S.LOSS: np.exp(pred), "lo": lo, "hi": hi,
                         "extrapolated": N > pts[S.PARAMS].max()})


def _loglaw(form, theta, N, D):
    lN = np.log(np.asarray(N, float))
    if form == "size":
        return np.logaddexp(theta[0], theta[2] * (theta[1] - lN))
    lD = np.log(np.asarray(D, float))
    return np.logaddexp(np.logaddexp(theta[0], theta[1] - theta[3] * lN), theta[2] - theta[4] * lD)


def _jac(form, theta, N, D):
    cols = []
    for j in range(len(theta)):
        h = 1e-6 * max(1.0, abs(theta[j]))
        up, dn = theta.copy(), theta.copy()
        up[j] += h
        dn[j] -= h
        cols.append((_loglaw(form, up, N, D) - _loglaw(form, dn, N, D)) / (2 * h))
    return np.column_stack(cols)


def _scaling_caption(law):
    text = ("Left: final checkpoint of each model with the fitted law (solid), its extrapolation to 10x the "
            "largest model (dashed) and a 95% band (delta method from the residuals). Middle: each model's "
            "training curve against tokens. Right: every checkpoint against training compute.")
    return text if not law.empty else "No law could be drawn (no successful fit); points only."


def _size_law(fits):
    if fits is None or fits.empty or "form" not in fits.columns:
        return {}
    ok = fits[(fits["form"] == "size") & (fits["status"] == "ok")]
    return {fam: dict(zip(g["param"], g["estimate"])) for fam, g in ok.groupby(S.FAMILY)}


def _critical(r, law):
    """N_c = N0 (eta - L_inf)^(-1/alpha); the range propagates eta's interval only."""
    def nc(eta):
        gap = eta - law["L_inf"]
        return law["N0"] * gap ** (-1 / law["alpha"]) if pd.notna(eta) and gap > 0 else np.inf
    lo, hi = sorted((nc(r.get("eta_hi")), nc(r.get("eta_lo"))))
    return f"{_fmt(nc(r['eta']))} [{_fmt(lo)}, {_fmt(hi)}] params (eta's interval only)"


def _counts(v):
    if v.empty:
        return []
    c = v.groupby(["axis", "label"]).size().unstack(fill_value=0)
    return [{"axis": a, "cells": [{"label": k, "n": int(c.loc[a].get(k, 0)), "colour": COLOURS[k]} for k in LABELS],
             "total": int(c.loc[a].sum())} for a in c.index]


def _clean(t):
    if t is None or t.empty:
        return pd.DataFrame() if t is None else t
    t = t.copy()
    if S.SUBTASK in t.columns:
        t[S.SUBTASK] = t[S.SUBTASK].fillna("").astype(str)
    return t


def _records(t):
    if t is None or t.empty:
        return {"columns": [], "rows": []}
    t = t[[c for c in t.columns if not str(c).startswith("_")]]
    return {"columns": [str(c) for c in t.columns],
            "rows": [[_fmt(x, 4) if isinstance(x, (float, np.floating)) else _text(x) for x in row]
                     for row in t.itertuples(index=False, name=None)]}


def _fmt(x, digits=4):
    if x is None or (isinstance(x, (float, np.floating)) and not np.isfinite(x)):
        return "inf" if x is not None and np.isinf(x) and x > 0 else "" if x is None or np.isnan(x) else "-inf"
    if isinstance(x, (int, np.integer)):
        return f"{int(x):,}" if abs(x) >= 10000 else str(int(x))
    if isinstance(x, (float, np.floating)):
        return f"{x:.{digits}g}"
    return str(x)


def _clip(text, n=300):
    """A long list of views, cut: the full text is in the analysis' audit.csv."""
    if len(text) <= n:
        return text
    return text[:n].rsplit(";", 1)[0] + f"; ... ({text.count(';') + 1} views in all)"


def _text(x):
    return "" if x is None or (isinstance(x, float) and np.isnan(x)) or x is pd.NA else str(x)


def _range(s):
    s = pd.to_numeric(s, errors="coerce").dropna()
    if s.empty:
        return "not recorded"
    lo, hi = s.min(), s.max()
    return _fmt(float(lo), 3) if lo == hi else f"{_fmt(float(lo), 3)} - {_fmt(float(hi), 3)}"


def _input(path):
    path = Path(path)
    if path.is_dir():
        return {"path": str(path), "kind": "run directory", "sha256": "", "bytes": ""}
    h = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"path": str(path), "kind": "tidy table", "sha256": h, "bytes": f"{path.stat().st_size:,}"}


def _version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _has(df, col):
    return col in df.columns and pd.to_numeric(df[col], errors="coerce").notna().any()


def _slug(text):
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")[:60] or "figure"


_MD_SPECIAL = re.compile(r"([\\`*\[\]<>|])")


def _md(text):
    """Markdown text from data: markup characters escaped (so HTML and table pipes stay text)."""
    s = "" if text is None else str(text)
    return _MD_SPECIAL.sub(r"\\\1", s.replace("&", "&amp;")).replace("\n", " ")

