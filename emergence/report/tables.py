"""The report's tables as plain records: verdicts at a glance, the verdict, fit, audit and onset
tables, with the number formatting every table shares."""


import numpy as np
import pandas as pd

from emergence import schema as S
from emergence.analysis.scaling import size_law_critical
from emergence.analysis.verdicts import LABELS, ClassifyConfig, definition
from emergence.metric_rules import kinds_of, metric_is_proportion
from emergence.tidy import setting_label, setting_labels
from emergence.report import figures as F
from emergence.report import plotting as P

_C = ClassifyConfig()

LEGEND = {  # one line per verdict, numbers from the classifier's defaults
    "emergent": definition(_C).removeprefix("Emergent: "),
    "smooth": "improves with scale; a smooth curve (linear, power law, sigmoid rising over >= "
              f"{_C.gentle_decades:g} decade or {_C.gentle_nats:g} nats) explains it as well as any threshold, "
              "or the threshold's plateau is well above the floor ('accelerating')",
    "flat": "no trend: a constant fits within the noise",
    "undetermined": "cannot be judged: at the metric's floor (e.g. exact match ~0), noise unknown with under "
                    f"{_C.min_points_estimated} points, or bad input (curves with no shape at all are listed "
                    "apart, as not judged)",
    "inverse": "gets worse with scale",
    "noisy": "varies beyond its noise but not monotonically (a trend undone by a drop, or scatter); an "
             "onset from the floor followed by a fall stays emergent (non_monotone_after_onset)",
}

COLOURS = {"emergent": "#D55E00", "smooth": "#009E73", "flat": "#BBBBBB", "undetermined": "#F0F0F0",
           "inverse": "#CC79A7", "noisy": "#E69F00"}  # Okabe-Ito: safe for colour-blind readers

AUDIT_COLOURS = {"genuine": "#D55E00", "metric-induced": "#56B4E9", "siblings disagree": "#E69F00", "none": "#BBBBBB",
                 "undetermined": "#F0F0F0"}


def glance(verdicts: pd.DataFrame, tasks=None, max_rows: int = 300) -> dict:
    """Verdicts at a glance, one grid per axis: rows (family, task, subtask), columns (metric);
    a cell with several curves (the tokens axis: one per model) shows the commonest label and
    its count. Rows and metric columns with no judged curve on an axis (every cell empty or
    undetermined) are left out of its grid and counted in its ``hidden``."""
    if verdicts.empty:
        return {"axes": [], "one_family": True}
    v = verdicts
    axes = [a for a in (S.PARAMS, S.LOSS, S.FLOPS, S.TOKENS) if a in set(v["axis"])] + \
        sorted(set(v["axis"]) - {S.PARAMS, S.LOSS, S.FLOPS, S.TOKENS})
    kinds = kinds_of(v)  # the verdicts' metric_kind (what the tasks declared), else the name rule
    order = {t: i for i, t in enumerate(tasks or [])}
    # a curve per evaluation setting where the verdicts have several: a row each
    settings = [c for c in S.SETTING_KEYS if c in v.columns and v[c].astype(str).nunique() > 1]
    if settings:
        v = v.assign(_setting=setting_labels(v, settings))
    return {"axes": [_axis_grid(v[v["axis"] == a], a, kinds, order, max_rows, bool(settings)) for a in axes],
            "one_family": v[S.FAMILY].nunique() == 1, "settings": bool(settings)}

def _axis_grid(v, axis, kinds, order, max_rows, by_setting=False):
    judged = v[v["label"] != "undetermined"]
    metrics = F.order_by_kind(judged[S.METRIC].unique(), kinds)
    key = [S.FAMILY, S.TASK, S.SUBTASK] + (["_setting"] if by_setting else [])
    keys = sorted(judged[key].drop_duplicates().itertuples(index=False, name=None),
                  key=lambda k: (order.get(k[1], len(order)), str(k[0]), str(k[2]), *map(str, k[3:])))
    n_rows = len(keys)
    keys = keys[:max_rows]
    shown = v[v[S.METRIC].isin(metrics)].merge(pd.DataFrame(keys, columns=key))
    cells = {}  # (family, task, subtask, metric) -> [(label, count)], commonest first
    counted = shown.groupby(key + [S.METRIC, "label"]).size()
    for (*k, label), n in counted.sort_values(ascending=False, kind="stable").items():
        cells.setdefault(tuple(k), []).append((label, int(n)))
    rows = []
    for curve in keys:
        row = []
        for metric in metrics:
            counts = cells.get((*curve, metric))
            if counts is None:
                row.append(None)
                continue
            (top, k), n = counts[0], sum(c for _, c in counts)
            row.append({"label": top, "colour": COLOURS.get(top, "#FFFFFF"),
                        "text": top if n == 1 else f"{top} {k}/{n}",
                        "title": ", ".join(f"{label}: {c}" for label, c in counts)})
        rows.append({"family": curve[0], "task": curve[1], "subtask": curve[2],
                     "setting": curve[3] if by_setting else "",
                     "cells": row})
    return {"axis": axis, "columns": [{"metric": m, "kind": kinds.get(m) or "?"} for m in metrics],
            "rows": rows, "n_rows": n_rows, "n_curves": len(v), "hidden": len(v) - len(shown),
            "counts": v["label"].value_counts().to_dict()}

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
        out.append({"family": r[S.FAMILY], "task": r[S.TASK], "subtask": r[S.SUBTASK], "setting": setting_label(r),
                    "metric": r[S.METRIC],
                    "axis": r["axis"], "model": _text(r.get(S.MODEL)), "label": r["label"],
                    "colour": COLOURS.get(r["label"], "#FFFFFF"), "confidence": confidence(r),
                    "reason": _text(r.get("reason")), "margin": _fmt(r.get("margin"), 3),
                    "jump_se": _fmt(r.get("jump_se"), 3), "eta": eta, "n_points": _fmt(r.get("n_points")),
                    "p_emergent": _fmt(r.get("p_emergent"), 2), "q_value": _fmt(r.get("q_value"), 2),
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
    return [{"family": r[S.FAMILY], "task": r[S.TASK], "setting": setting_label(r), "axis": _text(r.get("axis")),
             "label": r["label"],
             "colour": AUDIT_COLOURS.get(r["label"], "#FFFFFF"), "reason": _text(r.get("reason")),
             "discontinuous": _clip(_text(r.get("discontinuous"))), "continuous": _clip(_text(r.get("continuous")))}
            for r in a.to_dict("records")]

def coverage(df: pd.DataFrame, max_rows: int = 400) -> dict:
    """Which model x task x setting exists: per (family, model), per task, the number of
    checkpoints with a row, split by evaluation setting where the table has several
    (``plotting.setting_columns``). Missing cells are None."""
    settings = P.setting_columns(df)
    key = [S.FAMILY, S.MODEL]
    tasks = sorted(df[S.TASK].astype(str).unique())
    label = setting_labels(df, settings)
    counts = (df.assign(_setting=label, _task=df[S.TASK].astype(str))
              .groupby(key + ["_task", "_setting"], dropna=False)[S.CHECKPOINT].nunique())
    models = list(dict.fromkeys(df[key].itertuples(index=False, name=None)))
    rows = []
    for fam, model in models[:max_rows]:
        cells = []
        for task in tasks:
            try:
                per = counts.loc[(fam, model, task)]
            except KeyError:
                cells.append(None)
                continue
            parts = [f"{s}: {n}" if s else str(n) for s, n in per.items()]
            cells.append({"text": " / ".join(parts), "title": f"{model}, {task}: checkpoints per setting: "
                          + ", ".join(parts)})
        rows.append({"family": fam, "model": model, "cells": cells})
    return {"tasks": tasks, "rows": rows, "n_models": len(models), "settings": settings,
            "one_family": df[S.FAMILY].nunique() == 1,
            "n_missing": sum(c is None for r in rows for c in r["cells"])}


def outlier_checkpoints(df: pd.DataFrame, *, k: float = 6.0, min_tasks: int = 3, min_share: float = 0.5,
                        min_change: float = 0.1, neighbours: int = 2) -> pd.DataFrame:
    """Checkpoints that are outliers on many tasks at once (a broken evaluation or checkpoint,
    not a curve's shape). On each training curve (family, model, task, subtask, metric, setting)
    ordered by tokens (else step), a checkpoint's residual is its value minus the median of its
    ``neighbours`` on each side (as many on each side) (log values for perplexities); it is off on that curve when the
    residual exceeds ``k`` robust standard deviations (1.4826 x MAD of every residual of that
    task's metric, pooled over the family's runs) and is large in itself: ``min_change`` of the
    neighbours' median (0.1: 10%; for perplexities a factor e^0.1), or, for a proportion,
    ``min_change`` / 2 in absolute terms (5 points of accuracy). A checkpoint is flagged when it is off on at
    least ``min_tasks`` tasks and ``min_share`` of the tasks it has. A spike shifts its
    neighbours' medians too: of adjacent points off on a curve only the furthest counts, and the
    residuals are computed again without the points found off. The warm-up (before 1% of a
    run's tokens) is not judged: every metric moves fast there. One row per flagged checkpoint:
    family, model, checkpoint, step, tasks_off, tasks, share, worst (task, metric, value and the
    neighbours' median where it is furthest off), z and same_step: how many other runs of the
    family are flagged at the same step (a training event the runs share rather than one broken
    checkpoint)."""
    cols = ["family", "model", "checkpoint", "step", "tasks_off", "tasks", "share", "worst", "z", "same_step"]
    order = next((c for c in (S.TOKENS, S.STEP) if c in df.columns and df[c].notna().any()), None)
    if order is None or df.empty:
        return pd.DataFrame(columns=cols)
    curve = [S.FAMILY, S.MODEL, S.TASK, S.SUBTASK, S.METRIC] + P.setting_columns(df)
    d = df.dropna(subset=[order, S.VALUE]).copy()
    d[S.SUBTASK] = d[S.SUBTASK].fillna("").astype(str)
    for c in P.setting_columns(df):
        d[c] = d[c].fillna("").astype(str)
    d = d.groupby(curve + [S.CHECKPOINT], sort=False, as_index=False).agg(
        x=(order, "first"), value=(S.VALUE, "mean"), **({"step": (S.STEP, "first")} if S.STEP in d else {}))
    log = d[S.METRIC].astype(str).str.contains(r"ppl|perplexity", case=False) & (d["value"] > 0)
    d["y"] = np.where(log, np.log(d["value"].where(log, 1.0)), d["value"])
    d["log"] = log
    d = d.sort_values(curve + ["x"], kind="stable").reset_index(drop=True)
    d["warmup"] = d["x"] < 0.01 * d.groupby([S.FAMILY, S.MODEL])["x"].transform("max")
    d["skip"] = False
    first = _residuals(d, curve, neighbours, min_change)
    # Pass two: no point found off is anyone's neighbour (a spike shifts its neighbours' medians).
    d.loc[first.index[first["z"] > k], "skip"] = True
    d = _residuals(d, curve, neighbours, min_change)
    tasks = d.groupby([S.FAMILY, S.CHECKPOINT])[S.TASK].nunique()
    off = d[d["z"] > k]
    if off.empty:
        return pd.DataFrame(columns=cols)
    n_off = off.groupby([S.FAMILY, S.CHECKPOINT])[S.TASK].nunique()
    share = n_off / tasks.reindex(n_off.index)
    flagged = n_off[(n_off >= min_tasks) & (share >= min_share)].index
    out = []
    for fam, ck in flagged:
        rows = off[(off[S.FAMILY] == fam) & (off[S.CHECKPOINT] == ck)]
        w = rows.loc[rows["z"].idxmax()]
        ref = np.exp(w["ref"]) if w["log"] else w["ref"]
        out.append({"family": fam, "model": w[S.MODEL], "checkpoint": ck, "step": w.get("step", np.nan),
                    "tasks_off": int(n_off[(fam, ck)]), "tasks": ", ".join(sorted(rows[S.TASK].astype(str).unique())),
                    "share": float(share[(fam, ck)]), "z": float(w["z"]),
                    "worst": f"{w[S.TASK]} {w[S.METRIC]}: {_fmt(float(w['value']), 4)} "
                             f"(neighbours' median {_fmt(float(ref), 4)})"})
    out = pd.DataFrame(out, columns=cols)
    out["same_step"] = out.groupby([S.FAMILY, S.STEP], dropna=False)[S.MODEL].transform("size") - 1
    return out.sort_values(["tasks_off", "z"], ascending=False, ignore_index=True)


def outlier_rule() -> str:
    """``outlier_checkpoints``' rule in one paragraph, with its default thresholds (the report's
    legend for the table)."""
    import inspect

    d = {k: v.default for k, v in inspect.signature(outlier_checkpoints).parameters.items()
         if v.default is not inspect.Parameter.empty}
    return (f"On each training curve a checkpoint is off when it differs from the median of its nearest "
            f"neighbours (up to {d['neighbours']} on each side, as many on each side) by more than {d['k']:g} robust "
            f"standard deviations (1.4826 x MAD of that task metric's residuals over the family's runs) and by "
            f"{d['min_change']:.0%} (perplexities: compared on log values, a factor of e^{d['min_change']:g}; proportions: "
            f"{50 * d['min_change']:g} points); the "
            f"residuals are computed again with the points found off left out of everyone's neighbours. A "
            f"checkpoint off on at least {d['min_tasks']} tasks and {d['min_share']:.0%} of the tasks it has is "
            f"listed; the warm-up (before 1% of a run's tokens) is not judged.")


def confidence(row) -> str:
    """How strongly the data back the label: its model's AIC margin over the best alternative."""
    if row.get("label") == "undetermined":
        return "n/a"
    m = row.get("margin")
    if m is None or not np.isfinite(m):
        return "low"
    return "high" if m >= 2 * _C.emergent_margin else "moderate" if m >= _C.emergent_margin else "low"

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

def _residuals(d, curve, neighbours, min_change):
    """``d`` past the warm-up with each point's residual from its neighbours' median (``ref``,
    ``resid``) and its robust z (0 where the change is small in itself, and for all but the
    furthest off of adjacent points)."""
    d = d.copy()
    codes = d.groupby(curve, sort=False).ngroup().to_numpy()   # d is sorted by curve, then x
    d["ref"] = _neighbour_median(d["y"].to_numpy(float), codes, d["skip"].to_numpy(bool), neighbours)
    d = d[~d["warmup"] & d["ref"].notna()].copy()
    d["resid"] = d["y"] - d["ref"]
    pooled = [d[c] for c in (S.FAMILY, S.TASK, S.SUBTASK, S.METRIC)]
    centre = d["resid"].groupby(pooled).transform("median")
    mad = 1.4826 * (d["resid"] - centre).abs().groupby(pooled).transform("median")
    d["z"] = (d["resid"].abs() / mad.where(mad > 0)).fillna(0.0)
    proportion = d[S.METRIC].map(lambda m: metric_is_proportion(str(m))).astype(bool)
    big = np.where(d["log"], min_change, np.where(proportion, min_change / 2, min_change * d["ref"].abs()))
    d.loc[d["resid"].abs() < big, "z"] = 0.0
    near = d.groupby(curve, sort=False)["z"]
    d.loc[(d["z"] < near.shift(1).fillna(0)) | (d["z"] < near.shift(-1).fillna(0)), "z"] = 0.0
    return d


def _neighbour_median(y, codes, skip, k):
    """Per point of curves laid end to end (``codes``: each point's curve, sorted), the median of
    its nearest neighbours on its curve that are not in ``skip``, as many on each side (up to k;
    itself left out), so that a trend does not bias it; NaN where one side has none (the ends of
    a curve: no trend to compare with)."""
    n = len(y)
    usable = np.flatnonzero(~skip)
    idx = np.arange(n)
    before, after = np.searchsorted(usable, idx, "left"), np.searchsorted(usable, idx, "right")
    left, right = np.full((n, k), np.nan), np.full((n, k), np.nan)
    for o in range(k):   # the o-th usable neighbour on each side, if it is on the same curve
        for side, pos in ((left, before - 1 - o), (right, after + o)):
            ok = (pos >= 0) & (pos < len(usable))
            j = usable[np.clip(pos, 0, max(len(usable) - 1, 0))] if len(usable) else idx
            ok &= codes[j] == codes
            side[ok, o] = y[j[ok]]
    depth = np.minimum(np.isfinite(left).sum(1), np.isfinite(right).sum(1))
    out = np.full(n, np.nan)
    for m in range(1, k + 1):
        rows = depth == m
        if rows.any():
            out[rows] = np.median(np.hstack([left[rows, :m], right[rows, :m]]), axis=1)
    return out

def _counts(v):
    if v.empty:
        return []
    c = v.groupby(["axis", "label"]).size().unstack(fill_value=0)
    return [{"axis": a, "cells": [{"label": k, "n": int(c.loc[a].get(k, 0)), "colour": COLOURS[k]} for k in LABELS],
             "total": int(c.loc[a].sum())} for a in c.index]

def _size_law(fits):
    if fits is None or fits.empty or "form" not in fits.columns:
        return {}
    ok = fits[(fits["form"] == "size") & (fits["status"] == "ok")]
    return {fam: dict(zip(g["param"], g["estimate"])) for fam, g in ok.groupby(S.FAMILY)}

def _critical(r, law):
    """N_c of the size law at eta; the range propagates eta's interval only."""
    etas = [r["eta"], r.get("eta_hi"), r.get("eta_lo")]
    nc, *ends = size_law_critical(law, [np.nan if e is None or pd.isna(e) else e for e in etas])
    lo, hi = sorted(np.where(np.isnan(ends), np.inf, ends))
    return f"{_fmt(nc)} [{_fmt(lo)}, {_fmt(hi)}] params (eta's interval only)"

def _clean(t):
    if t is None or t.empty:
        return pd.DataFrame() if t is None else t
    t = t.copy()
    if S.SUBTASK in t.columns:
        t[S.SUBTASK] = t[S.SUBTASK].fillna("").astype(str)
    return t

def trimming_rows(trimming: pd.DataFrame) -> list:
    """The trimming-sensitivity table (``analysis.trimming.earliest_checkpoints``) as text rows."""
    if trimming is None or trimming.empty:
        return []
    return [{"axis": r.axis, "dropped": r.dropped, "curves": int(r.curves),
             "changed": "" if not np.isfinite(r.labels_changed) else f"{r.labels_changed:.0%}",
             "emergent": f"{r.emergent_before} -> {r.emergent_after}",
             "emergent_changed": f"{r.emergent_changed} of {r.emergent_either}"} for r in trimming.itertuples()]


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
