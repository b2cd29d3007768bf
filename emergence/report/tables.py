"""The report's tables as plain records: verdicts at a glance, the verdict, fit, audit and onset
tables, with the number formatting every table shares."""


import numpy as np
import pandas as pd

from emergence import schema as S
from emergence.analysis.scaling import size_law_critical
from emergence.analysis.verdicts import LABELS, ClassifyConfig, definition
from emergence.metric_rules import kinds_of
from emergence.report import figures as F

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
    """Verdicts at a glance: rows (family, task, subtask), columns (axis, metric); a cell with
    several curves (the tokens axis: one per model) shows the commonest label and its count."""
    if verdicts.empty:
        return {"columns": [], "axes": [], "rows": [], "one_family": True, "n_rows": 0}
    v = verdicts
    axes = [a for a in (S.PARAMS, S.LOSS, S.FLOPS, S.TOKENS) if a in set(v["axis"])] + \
        sorted(set(v["axis"]) - {S.PARAMS, S.LOSS, S.FLOPS, S.TOKENS})
    kinds = kinds_of(v)  # the verdicts' metric_kind (what the tasks declared), else the name rule
    columns = [(a, m) for a in axes for m in F.order_by_kind(v.loc[v["axis"] == a, S.METRIC].unique(), kinds)]
    order = {t: i for i, t in enumerate(tasks or [])}
    v = v.assign(_setting=[setting_label(r) for r in v.to_dict("records")])  # a row per setting of a task
    row_keys = [S.FAMILY, S.TASK, S.SUBTASK, "_setting"]
    keys = sorted(v[row_keys].drop_duplicates().itertuples(index=False),
                  key=lambda k: (order.get(k[1], len(order)), str(k[0]), str(k[2]), str(k[3])))
    rows, n_rows = [], len(keys)
    keys = keys[:max_rows]
    shown = v.merge(pd.DataFrame(keys, columns=row_keys))
    cells = {}  # (family, task, subtask, setting, axis, metric) -> [(label, count)], commonest first
    counted = shown.groupby(row_keys + ["axis", S.METRIC, "label"]).size()
    for (*key, label), n in counted.sort_values(ascending=False, kind="stable").items():
        cells.setdefault(tuple(key), []).append((label, int(n)))
    for fam, task, sub, setting in keys:
        row = []
        for axis, metric in columns:
            counts = cells.get((fam, task, sub, setting, axis, metric))
            if counts is None:
                row.append(None)
                continue
            (top, k), n = counts[0], sum(c for _, c in counts)
            row.append({"label": top, "colour": COLOURS.get(top, "#FFFFFF"),
                        "text": top if n == 1 else f"{top} {k}/{n}",
                        "title": ", ".join(f"{label}: {c}" for label, c in counts)})
        rows.append({"family": fam, "task": task, "subtask": sub, "setting": setting, "cells": row})
    spans = [{"axis": a, "span": sum(1 for c in columns if c[0] == a)} for a in axes]
    return {"columns": [{"axis": a, "metric": m, "kind": kinds.get(m) or "?"} for a, m in columns],
            "axes": spans, "rows": rows, "one_family": v[S.FAMILY].nunique() == 1, "n_rows": n_rows,
            "any_setting": any(r["setting"] for r in rows)}

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

def setting_label(row) -> str:
    """'5-shot, mc' for a curve's n_shot and setting; '' for an unknown count and the default."""
    shots, setting = row.get(S.N_SHOT), row.get(S.SETTING)
    parts = [] if shots is None or pd.isna(shots) else [f"{int(shots)}-shot"]
    if setting is not None and not pd.isna(setting) and str(setting).strip():
        parts.append(str(setting).strip())
    return ", ".join(parts)


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
