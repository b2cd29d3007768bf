"""The one plain dict the templates render: which tasks get figures (and which figures), the
fitted loss laws as lines, the tables, and the provenance of every input."""

import hashlib
import json
import platform
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from emergence import schema as S
from emergence.analysis.analyze import Analysis
from emergence.analysis.fitted import fitted_line
from emergence.analysis.scaling import law_band
from emergence.analysis.verdicts import LABELS
from emergence.metric_rules import CONTINUOUS, DISCONTINUOUS, kinds_of
from emergence.analysis.trimming import earliest_checkpoints
from emergence.report import figures as F
from emergence.report import plotting as P
from emergence.report.config import ReportConfig
from emergence.report.render import FigureJob, render_figures
from emergence.report.tables import (COLOURS, LEGEND, _clean, _counts, _fmt, _onset_rows, _range, _records,
                                     audit_rows, coverage, fit_rows, glance, outlier_checkpoints, outlier_rule,
                                     trimming_rows, verdict_rows)
from emergence.tidy import fill_chance, setting_label

PACKAGES = ("emergence", "numpy", "pandas", "scipy", "matplotlib", "seaborn", "jinja2")


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
    ck = F.checkpoints(df) if _has(df, S.LOSS) else None
    panels = F.loss_panels(ck.dropna(subset=[S.LOSS, S.PARAMS])) if ck is not None else []
    if _has(df, S.PARAMS) and panels:
        n_fam = df.loc[df[S.LOSS].notna(), S.FAMILY].nunique()
        caption = _scaling_caption(law, panels) + (f" Rows: the {F.MAX_PANELS} of {n_fam} families with most models."
                                           if n_fam > F.MAX_PANELS else "")
        jobs.append(FigureJob("loss-scaling", "Held-out loss vs parameters, tokens and compute", caption,
                         "loss_scaling_figure", (ck, None if law.empty else law)))
    outliers = outlier_checkpoints(df)
    trimming = earliest_checkpoints(df, workers=config.workers) if config.trimming else None
    sections = [_task_jobs(df, df[df[S.TASK] == task], v, analysis.composites, task, i, outliers)
                for i, task in enumerate(shown)]
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
        jobs.append(FigureJob("predictions", "Predictions vs actual (backtests)", caption, "predictions_figure",
                         (predictions,)))
    onset = _onset_rows(analysis.onset)
    if onset:
        jobs.append(FigureJob("onset", "Where tasks emerge: predicted from the small models",
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
        "coverage": coverage(df), "outliers": _records(outliers.drop(columns=["tasks"]) if len(outliers) else None),
        "trimming": trimming_rows(trimming), "trimming_computed": config.trimming,
        "n_outliers": len(outliers), "outlier_rule": outlier_rule(), "first_outliers": outliers.head(10).to_dict("records"),
        "verdicts": verdict_rows(v, analysis.fits, config.max_table_rows),
        "any_setting": _any_setting(v),
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


def _any_setting(verdicts: pd.DataFrame) -> bool:
    """Whether any curve has a known few-shot count or a setting: then the tables show the column."""
    return any(setting_label(r) for r in verdicts.reindex(columns=list(S.SETTING_KEYS)).drop_duplicates()
               .to_dict("records"))


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
            frames.append(_band(form, p, grid, None, fp, fam, np.nan))
        elif form == "chinchilla" and fp[S.TOKENS].notna().all():
            ratios = sorted({float(f"{r:.2g}") for r in fp[S.TOKENS] / fp[S.PARAMS]})
            for r in P.thin(ratios, 5):
                frames.append(_band(form, p, grid, grid * r, fp, fam, r))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

def provenance(sources, df: pd.DataFrame, analysis_origin: str, command: str, config: ReportConfig) -> dict:
    """Families and checkpoints, task versions, inputs, package and third-party plugin versions,
    how to rebuild."""
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
    if S.TASK_VERSION in df.columns:   # the table's own column: what was actually evaluated
        recorded = df.dropna(subset=[S.TASK_VERSION]).groupby(S.TASK)[S.TASK_VERSION].agg(
            lambda v: ", ".join(sorted(set(map(str, v)))))
        versions.update(recorded.to_dict())
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
    # Third-party plugins made the tasks and loaded the models: their versions are part of the result.
    plugins = list({(p.get("name"), p.get("distribution") or p.get("module") or "not installed as a package",
                     p.get("version") or ""): None
                    for r in runs for p in (r.get("plugins") or []) if p.get("distribution") != "emergence"})
    return {"command": command, "analysis": analysis_origin, "families": fams, "tasks": tasks,
            "inputs": [_input(s) for s in sources], "packages": {**packages, **evaluated},
            "plugins": [{"name": n, "distribution": d, "version": v} for n, d, v in plugins],
            "runs": [{"git_sha": r.get("git_sha"), "started_at": r.get("started_at"),
                      "command": " ".join(map(str, r.get("command") or []))} for r in runs],
            "config": {k: getattr(config, k) for k in ("max_tasks", "dpi", "n_boot", "seed")}}

def figure_plan(curve: pd.DataFrame, task: pd.DataFrame) -> list:
    """Which figures one task's primary curve gets, by what its rows hold (per axis, never an
    empty panel): "training" (metric vs tokens, loss pooled beside it) when some model has 3 or
    more checkpoints; "size" (final checkpoints with the size verdict's fit) when some family
    has 2 or more sizes; "metrics" (discontinuous vs continuous metrics side by side) when the
    task has both kinds, against loss, else size; "loss" (pooled vs loss) when there is a loss
    and no training figure shows it."""
    x_train = S.TOKENS if P.has(curve, S.TOKENS) else S.STEP
    plan = []
    training = P.trains(curve[pd.to_numeric(curve.get(x_train), errors="coerce") > 0], x_train)
    sized = any(P.sizes(g) >= 2 for _, g in curve.groupby(S.FAMILY))
    loss = _has(curve, S.LOSS)
    if training:
        plan.append("training")
    if sized:
        plan.append("size")
    both = {DISCONTINUOUS, CONTINUOUS} <= set(kinds_of(task).values())
    if both and (loss or sized):
        plan.append("metrics")
    elif loss and not training:
        plan.append("loss")
    return plan


def _task_jobs(df, t, v, composites, task, i, outliers):
    """Figure jobs for one task (``figure_plan``), on its primary curve (``_primary``)."""
    t, sub, metric, setting = _primary(t)
    curve = t[(t[S.SUBTASK] == sub) & (t[S.METRIC] == metric)]
    tv = _verdicts_of(v, task, sub, setting)
    name = f"{task}" + (f" / {sub}" if sub else "") + (f" [{setting['label']}]" if setting["label"] else "")
    shading = " Shaded: the threshold eta's 95% interval where the verdict has one; dashed: chance."
    n_fam = t[S.FAMILY].nunique()
    if n_fam > F.MAX_PANELS:
        shading += f" Rows: the {F.MAX_PANELS} of {n_fam} families with most models."

    def on(axis, m=None):
        """This curve's verdict rows on ``axis`` (of metric ``m``, else of every metric)."""
        if tv.empty:
            return None
        return tv[(tv["axis"] == axis) & ((tv[S.METRIC] == m) if m else True)]

    jobs = []
    for kind in figure_plan(curve, t):
        if kind == "training":
            odd = outliers[outliers["checkpoint"].isin(set(curve[S.CHECKPOINT]))] if len(outliers) else None
            pooled = (" Right: every checkpoint pooled against held-out loss (lower loss to the right), "
                      "titled with the loss verdict." if _has(curve, S.LOSS) else "")
            jobs.append(FigureJob(f"{task}-training", f"{name}: {metric} during training",
                                  "Each run's checkpoints against training tokens, one line per model (colour: "
                                  "size; ringed: a checkpoint that is an outlier on many tasks)." + pooled + shading,
                                  "metric_vs_tokens", (curve, on(S.LOSS, metric), odd)))
        elif kind == "size":
            sv = on(S.PARAMS, metric)
            lines = _fitted_lines(df, sv, setting)
            jobs.append(FigureJob(f"{task}-size", f"{name}: {metric} vs size",
                                  "Each model's final checkpoint (95% interval; lines join models trained on "
                                  "the same tokens per parameter) with the curve the size verdict chose (black), "
                                  "drawn from the analysis' fit; the title gives the verdict and its model." + shading,
                                  "metric_vs_size_fit", (curve, sv, lines)))
        else:
            x = S.LOSS if _has(curve, S.LOSS) else S.PARAMS
            where = ("held-out loss, every checkpoint pooled (lower loss to the right)" if x == S.LOSS
                     else "size, final checkpoint of each model")
            xv = on(x)
            if kind == "metrics":
                same = t[t[S.SUBTASK] == sub]
                jobs.append(FigureJob(f"{task}-metrics", f"{name}: discontinuous vs continuous metrics vs {x}",
                                      f"The same outputs scored by each metric, against {where}." + shading,
                                      "metric_views", (same, x, xv)))
            else:
                jobs.append(FigureJob(f"{task}-loss", f"{name}: {metric} vs held-out loss",
                                      f"Against {where}." + shading, "metric_vs_loss", (curve, on(S.LOSS, metric))))
    comp = composites[composites[S.TASK] == task] if not composites.empty and S.TASK in composites else None
    if comp is not None and not comp.empty:
        row = comp.iloc[0]
        fam_t = t[t[S.FAMILY] == row[S.FAMILY]]
        x = S.LOSS if _has(fam_t, S.LOSS) else S.PARAMS
        jobs.append(FigureJob(f"{task}-composite", f"{name}: sub-tasks vs composite",
                         f"{int(row['k'])} sub-tasks; RMSE of the product prediction "
                         f"{_fmt(row['rmse_independent'], 3)}, of mean**k_eff {_fmt(row['rmse_fitted'], 3)}.",
                         "composite_figure", (fam_t, x), {"k_eff": float(row["k_eff"])}))
    return {"task": task, "subtask": sub, "metric": metric, "setting": setting["label"], "anchor": f"task-{i}",
            "figures": [j.stem for j in jobs], "jobs": jobs}

def _primary(t):
    """The curve a task's figures show: the task's commonest evaluation setting (where the table
    has several, ``plotting.setting_columns``), the whole task (subtask "") if present, else its
    commonest sub-task; its first discontinuous metric. Returns (rows of that setting, subtask,
    metric, setting {column: value, "label": text})."""
    setting = {"label": ""}
    cols = P.setting_columns(t)
    if cols:
        key = t[cols].astype(str).agg(" | ".join, axis=1)
        top = key.value_counts().index[0]
        t = t[key == top]
        setting = {c: t[c].iloc[0] for c in cols}
        setting["label"] = setting_label(setting, cols)
    subs = t[S.SUBTASK]
    sub = "" if (subs == "").any() else subs.value_counts().index[0]
    rows = t[subs == sub]
    metrics = F.order_by_kind(rows[S.METRIC].unique(), kinds_of(rows))
    return t, sub, metrics[0], setting

def _verdicts_of(v, task, sub, setting):
    """The verdict rows of a task's sub-task in one setting (columns the verdicts key on)."""
    if v.empty:
        return v
    out = v[(v[S.TASK] == task) & (v[S.SUBTASK] == sub)]
    for col, value in setting.items():
        if col != "label" and col in out.columns:
            out = out[_as_text(out[col]) == _as_text(pd.Series([value])).iloc[0]]
    return out

def _as_text(values):
    """Setting values as comparable text: 5, 5.0 and "5" alike (a CSV round trip makes floats)."""
    num = pd.to_numeric(values, errors="coerce")
    return values.astype(str).where(num.isna(), num.map(lambda x: f"{x:g}"))

def _fitted_lines(df, size_verdicts, setting):
    """{family: (x, y)} of the curve each family's size verdict chose (``analysis.fitted``); none
    where the figure shows one setting of a curve the verdicts judged across settings (the fit
    would not be of the points drawn)."""
    if size_verdicts is None or size_verdicts.empty:
        return {}
    if any(c != "label" and c not in size_verdicts.columns for c in setting):
        return {}
    lines = {}
    for row in size_verdicts.to_dict("records"):
        line = fitted_line(df, row)
        if line is not None:
            lines.setdefault(row[S.FAMILY], line)
    return lines

def _band(form, params, N, D, pts, fam, ratio):
    """The law at (N, D) with its 95% band from the residuals at the final checkpoints ``pts``."""
    fit_d = pts[S.TOKENS].to_numpy(float) if form == "chinchilla" else None
    pred, lo, hi = law_band(form, params, N, D, pts[S.PARAMS].to_numpy(float), fit_d,
                            pts[S.LOSS].to_numpy(float), z=F.Z95)
    return pd.DataFrame({S.FAMILY: fam, "form": form, "ratio": ratio, S.PARAMS: N,
                         S.TOKENS: np.nan if D is None else D, S.LOSS: pred, "lo": lo, "hi": hi,
                         "extrapolated": N > pts[S.PARAMS].max()})


def _scaling_caption(law, panels):
    if S.PARAMS not in panels:
        return ("One model size: held-out loss against training tokens (one line per model)"
                + (" and training compute." if S.FLOPS in panels else "."))
    text = ("Left: final checkpoint of each model with the fitted law (solid), its extrapolation to 10x the "
            "largest model (dashed) and a 95% band (delta method from the residuals). Middle: each model's "
            "training curve against tokens. Right: every checkpoint against training compute.")
    return text if not law.empty else "No law could be drawn (no successful fit); points only."

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
