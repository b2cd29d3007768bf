"""Sub-task decomposition and the metric audit: is a task's threshold made by its metric?

Owns ``predict_composite`` (a composite's exact match from its sub-task accuracies: their
product, as if independent, and (mean accuracy)^k_eff with a fitted exponent, for dependent
sub-steps), ``decompose`` (the same over a tidy table, with the errors), ``backtest_composite``
(k_eff fitted on small models, scored on the composite of larger ones) and ``metric_audit``
(per task: the verdict in every view, and whether a threshold is 'metric-induced' (only the
discontinuous metrics show it; continuous metrics and sub-tasks improve smoothly) or
'genuine' (a threshold in every view)).

A metric's kind is the one its task declared (the tidy table's ``metric_kind``, carried into
the verdict table); ``kinds`` ({metric: kind}) overrides it, and ``metric_kind``'s name rule
decides for tables that lack it. Rows with a sub-task (subtask != "") are sub-task views.

``sibling_audit`` flags sibling metrics (the same outputs scored alike: acc, acc_norm and
acc_len_norm of one multiple-choice run) whose verdicts differ: a label that flips with the
normalisation is not a property of the task.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize

from emergence import schema as S
from emergence.analysis.verdicts import ClassifyConfig, verdicts
from emergence.metric_rules import CONTINUOUS, DISCONTINUOUS, metric_kind  # noqa: F401 (re-exported)

# Metrics computed from the same model outputs that measure the same thing; '[rc]'-style suffixes
# (the task format) must match too. Brier, bpb and log-probabilities are not siblings of
# accuracy: that they differ from it is what ``metric_audit`` is for.
SIBLINGS = ({"acc", "acc_norm", "acc_len_norm", "acc_mutual_info"}, {"exact_match", "gold_greedy"},
            {"prob_correct", "logprob_correct", "gold_logprob", "gold_token_prob"})
SIBLINGS_DISAGREE = "siblings disagree"


@dataclass(frozen=True)
class CompositePrediction:
    k: int                        # sub-tasks
    independent: np.ndarray       # prod_j p_j at each checkpoint
    fitted: np.ndarray            # (mean_j p_j) ** k_eff
    k_eff: float                  # < k: sub-steps fail together; > k: errors compound
    rmse_independent: float
    rmse_fitted: float
    max_error_independent: float
    max_error_fitted: float


def predict_composite(subtasks, composite, sigma=None) -> CompositePrediction:
    """Predict a composite (exact match) from sub-task accuracies (k, checkpoints)."""
    p = np.atleast_2d(np.asarray(subtasks, float))
    c = np.asarray(composite, float)
    w = np.ones_like(c) if sigma is None else 1.0 / np.maximum(np.asarray(sigma, float), 1e-12) ** 2
    indep, mean = p.prod(0), p.mean(0)
    k = p.shape[0]

    def loss(kappa):
        return float(np.sum(w * (c - mean ** kappa) ** 2))

    k_eff = float(optimize.minimize_scalar(loss, bounds=(0.01, 5.0 * k + 1), method="bounded").x)
    fitted = mean ** k_eff
    err_i, err_f = indep - c, fitted - c
    return CompositePrediction(k, indep, fitted, k_eff, _rms(err_i), _rms(err_f),
                               float(np.max(np.abs(err_i))), float(np.max(np.abs(err_f))))


def decompose(df: pd.DataFrame, *, subtask_metric: str = "acc", composite_metric: str = "exact_match",
              extra_keys=S.SETTING_KEYS) -> pd.DataFrame:
    """Per (family, task): the composite (subtask "", ``composite_metric``) predicted from the
    sub-tasks (subtask != "", ``subtask_metric``) over the checkpoints that have all of them."""
    data = _with_subtask(df[df[S.METRIC].isin([subtask_metric, composite_metric])])
    keys = [S.FAMILY, S.TASK] + [k for k in extra_keys if k in data.columns]
    ckpt = [c for c in (S.CHECKPOINT, S.MODEL, S.STEP) if c in data.columns and data[c].notna().any()]
    is_sub = (data[S.SUBTASK] != "") & (data[S.METRIC] == subtask_metric)
    is_comp = (data[S.SUBTASK] == "") & (data[S.METRIC] == composite_metric)
    data = data[_both(data, keys, is_sub, is_comp)]  # only tasks with both: the loop is per group
    rows = []
    for key, g in data.groupby(keys, sort=True, dropna=False):
        subs = g[(g[S.SUBTASK] != "") & (g[S.METRIC] == subtask_metric)]
        comp = g[(g[S.SUBTASK] == "") & (g[S.METRIC] == composite_metric)]
        if subs.empty or comp.empty:
            continue
        wide = subs.pivot_table(index=ckpt, columns=S.SUBTASK, values=S.VALUE, aggfunc="mean").dropna()
        c = comp.groupby(ckpt)[S.VALUE].mean()
        se = comp.groupby(ckpt)[S.STDERR].mean() if S.STDERR in comp else None
        common = wide.index.intersection(c.index)
        if len(common) < 2:
            continue
        sigma = None if se is None or not np.isfinite(se.loc[common]).all() or (se.loc[common] <= 0).any() \
            else se.loc[common].to_numpy(float)
        pred = predict_composite(wide.loc[common].to_numpy(float).T, c.loc[common].to_numpy(float), sigma)
        rows.append({**dict(zip(keys, key if isinstance(key, tuple) else (key,))), "k": pred.k,
                     "n_checkpoints": len(common), "k_eff": pred.k_eff,
                     "rmse_independent": pred.rmse_independent, "rmse_fitted": pred.rmse_fitted,
                     "max_error_independent": pred.max_error_independent,
                     "max_error_fitted": pred.max_error_fitted,
                     "composite_min": float(c.loc[common].min()), "composite_max": float(c.loc[common].max())})
    return pd.DataFrame(rows)


def backtest_composite(df: pd.DataFrame, cutoff: float, *, by: str = S.PARAMS, subtask_metric: str = "acc",
                       composite_metric: str = "exact_match", extra_keys=S.SETTING_KEYS) -> pd.DataFrame:
    """The decomposition as a prediction: ``k_eff`` fitted on the checkpoints of models with
    ``by`` < cutoff, then the composite of the larger models predicted from their sub-task
    accuracies, (mean accuracy)^k_eff and the product rule, beside the descriptive fit on all
    checkpoints (``decompose``). One row per (family, task); a task whose split leaves fewer
    than 2 checkpoints on either side gets a row saying why."""
    if by not in df.columns or df[by].isna().all():
        raise ValueError(f"no values in {by!r}: cannot split at a cutoff")
    rows = []
    small = df[by] < cutoff
    for side in (small, ~small):
        if not side.any():
            return pd.DataFrame([{"status": "not run", "reason": f"no checkpoints with {by} "
                                  f"{'below' if side is small else 'at or above'} {cutoff:.3g}"}])
    fit_all = decompose(df, subtask_metric=subtask_metric, composite_metric=composite_metric, extra_keys=extra_keys)
    train = decompose(df[small], subtask_metric=subtask_metric, composite_metric=composite_metric,
                      extra_keys=extra_keys)
    keys = [S.FAMILY, S.TASK] + [k for k in extra_keys if k in df.columns]
    for r in fit_all.to_dict("records"):
        key = {k: r[k] for k in keys}
        fitted = _select(train, key) if not train.empty else train
        held = _composite_points(df[~small], key, subtask_metric, composite_metric)
        row = {**key, "k": r["k"], "k_eff_all": r["k_eff"], "rmse_descriptive": r["rmse_fitted"]}
        if fitted.empty or held is None:
            rows.append({**row, "status": "not run", "reason": "fewer than 2 checkpoints with the composite and "
                         f"every sub-task on {'the small' if fitted.empty else 'the held-out'} side of the cutoff"})
            continue
        sub, comp = held
        k_eff = float(fitted["k_eff"].iloc[0])
        pred, indep = sub.mean(0) ** k_eff, sub.prod(0)
        # a composite at 0 on every fitted checkpoint says nothing about k: the fit ends at its bound
        identified = bool(fitted["composite_max"].iloc[0] > 0)
        rows.append({**row, "k_eff_small": k_eff, "k_eff_identified": identified, "n_heldout": len(comp),
                     "n_train": int(fitted["n_checkpoints"].iloc[0]), "mae_k_eff": float(np.mean(np.abs(pred - comp))),
                     "mae_independent": float(np.mean(np.abs(indep - comp))),
                     "max_error_k_eff": float(np.max(np.abs(pred - comp))), "status": "ok",
                     "reason": "" if identified else "k_eff not identified: the composite is 0 on every checkpoint "
                                                     "below the cutoff (the product rule needs no fit)"})
    return pd.DataFrame(rows)


def metric_audit(df: pd.DataFrame, axis: str = "params", *, kinds: dict | None = None, chance=None,
                 config: ClassifyConfig = ClassifyConfig(), extra_keys=S.SETTING_KEYS,
                 verdict_table: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per (family, task) with both a discontinuous and a continuous view (a continuous metric
    or any sub-task): the verdict of each view and one label:
    'genuine'        the discontinuous metric looks emergent (our verdict, or Wei et al.'s
                     criterion) AND every continuous view and sub-task that can be judged has a
                     threshold (verdict emergent);
    'metric-induced' the discontinuous metric looks emergent (our verdict, or Wei et al.'s
                     criterion) while no continuous view or sub-task has a threshold and at
                     least one improves smoothly;
    'none'           the discontinuous metric shows no threshold by either definition;
    'undetermined'   the views cannot be judged (at the floor, flat, noisy) or disagree.
    ``verdict_table``: verdicts already computed for this axis, to avoid fitting twice."""
    v = verdicts(df, axis, chance=chance, config=config, extra_keys=extra_keys) \
        if verdict_table is None else verdict_table.copy()
    if v.empty:
        return pd.DataFrame()
    v["kind"] = np.where(v[S.SUBTASK] != "", CONTINUOUS, _kinds(v, kinds))
    keys = [S.FAMILY, S.TASK] + [k for k in extra_keys if k in v.columns]
    v = v[_both(v, keys, (v[S.SUBTASK] == "") & (v["kind"] == DISCONTINUOUS), v["kind"] == CONTINUOUS)]
    rows = []
    for key, g in v.groupby(keys, sort=True, dropna=False):
        d = g[(g[S.SUBTASK] == "") & (g["kind"] == DISCONTINUOUS)]
        c = g[g["kind"] == CONTINUOUS]
        if d.empty or c.empty:
            continue
        label, reason = _audit(d, c)
        rows.append({**dict(zip(keys, key if isinstance(key, tuple) else (key,))), "label": label,
                     "reason": reason, "discontinuous": _views(d), "continuous": _views(c)})
    return pd.DataFrame(rows)


def sibling_audit(verdict_table: pd.DataFrame) -> pd.DataFrame:
    """Audit rows (label 'siblings disagree') for curves whose sibling metrics (``SIBLINGS``) got
    different judged labels: per (family, task, subtask, n_shot, axis) and sibling group, the
    labels of each metric, and on the tokens axis (a curve per model) how many models disagree.
    'undetermined' labels are left out: they say the data cannot tell, not something else."""
    v = verdict_table
    if v is None or v.empty or S.METRIC not in v:
        return pd.DataFrame()
    base = v[S.METRIC].astype(str).str.split("[").str[0]
    group = base.map({m: i for i, g in enumerate(SIBLINGS) for m in g})
    suffix = v[S.METRIC].astype(str).str.extract(r"(\[.*\])$")[0].fillna("")
    keep = group.notna() & (v["label"] != "undetermined")
    if not keep.any():
        return pd.DataFrame()
    keys = [S.FAMILY, S.TASK, S.SUBTASK] + [k for k in S.SETTING_KEYS if k in v] + ["axis"]
    curve = keys + ([S.MODEL] if S.MODEL in v else [])
    w = v.loc[keep, curve + [S.METRIC, "label"]].assign(_g=group[keep], _s=suffix[keep])
    w[curve] = w[curve].astype(object).where(w[curve].notna(), "")
    per = w.groupby(curve + ["_g", "_s"], dropna=False)["label"].agg(["nunique", "size"])
    per = per[per["size"] >= 2]
    if per.empty:
        return pd.DataFrame()
    differ = per["nunique"] > 1
    rows = []
    for key, g in w.set_index(curve + ["_g", "_s"]).loc[per.index[differ]].groupby(keys + ["_g", "_s"], dropna=False):
        n_curves = int(per.loc[per.index.droplevel(S.MODEL) == key].shape[0]) if S.MODEL in curve else 1
        n_differ = g.reset_index()[S.MODEL].nunique() if S.MODEL in curve else 1
        views = "; ".join(f"{m}: {lab}" for m, lab in g.groupby(S.METRIC)["label"].agg(
            lambda s: ", ".join(f"{n} {k}" for k, n in s.value_counts().items())).items())
        who = f" for {n_differ} of {n_curves} models" if S.MODEL in curve and n_curves > 1 else ""
        rows.append({**dict(zip(keys, key[:len(keys)])), "label": SIBLINGS_DISAGREE,
                     "reason": f"sibling metrics of the same outputs get different verdicts{who}",
                     "discontinuous": views, "continuous": ""})
    return pd.DataFrame(rows)


def _audit(d, c):
    judged_d = d[d["label"] != "undetermined"]
    judged_c = c[~c["label"].isin(["undetermined", "noisy"])]
    threshold = (judged_d["label"] == "emergent").any()
    apparent = threshold or (judged_d["wei_emergent"] == True).any()  # noqa: E712 (None = unknown)
    c_thr, c_smooth = judged_c["label"] == "emergent", judged_c["label"] == "smooth"
    if judged_d.empty:
        return "undetermined", "every discontinuous metric is undetermined (" + _views(d) + ")"
    if not apparent:
        return "none", "no threshold in the discontinuous metrics, by our verdict or Wei et al.'s"
    if len(judged_c) and c_thr.all():
        return "genuine", "a threshold in every view, continuous metrics and sub-tasks included"
    if not c_thr.any() and c_smooth.any():
        how = "a threshold" if threshold else "emergent by Wei et al.'s criterion (our verdict: smooth)"
        return "metric-induced", (f"discontinuous metric shows {how}; continuous views improve "
                                  f"smoothly ({int(c_smooth.sum())} smooth, none with a threshold)")
    if judged_c.empty or not (c_thr | c_smooth).any():
        return "undetermined", "no continuous view improves measurably (" + _views(c) + ")"
    return "undetermined", (f"views disagree: {int(c_thr.sum())} continuous view(s) with a threshold, "
                            f"{int(c_smooth.sum())} smooth")


def _kinds(v, kinds):
    """Each verdict row's metric kind: ``kinds``, else the verdict's own (what the task
    declared; an analysis folder written before it was recorded has none), else the name rule."""
    rule = {m: metric_kind(m, kinds) for m in v[S.METRIC].unique()}
    by_rule = v[S.METRIC].map(rule).to_numpy(object)
    if S.METRIC_KIND not in v.columns:
        return by_rule
    own = v[S.METRIC_KIND].to_numpy(object)
    forced = v[S.METRIC].isin(list(kinds or ())).to_numpy(bool)
    return np.where(forced | pd.isna(own), by_rule, own)


def _views(g):
    return "; ".join(f"{(s + '/') if s else ''}{m}: {lab}" for s, m, lab in zip(g[S.SUBTASK], g[S.METRIC], g["label"]))


def _both(df, keys, a, b):
    """Rows of the groups (by ``keys``) that have a row in mask ``a`` and one in mask ``b``."""
    g = pd.DataFrame({"a": a, "b": b}).groupby([df[k] for k in keys], dropna=False)
    return (g["a"].transform("any") & g["b"].transform("any")).to_numpy(bool)


def _with_subtask(df):
    data = df.copy()
    data[S.SUBTASK] = data[S.SUBTASK].fillna("").astype(str) if S.SUBTASK in data else ""
    return data


def _composite_points(df, key, subtask_metric, composite_metric):
    """(sub-task accuracies (k, checkpoints), composite) of one (family, task) in ``df``, or None
    with fewer than 2 checkpoints that have both."""
    g = _select(_with_subtask(df), key)
    ckpt = [c for c in (S.CHECKPOINT, S.MODEL, S.STEP) if c in g.columns and g[c].notna().any()]
    subs = g[(g[S.SUBTASK] != "") & (g[S.METRIC] == subtask_metric)]
    comp = g[(g[S.SUBTASK] == "") & (g[S.METRIC] == composite_metric)].groupby(ckpt)[S.VALUE].mean()
    if subs.empty or comp.empty:
        return None
    wide = subs.pivot_table(index=ckpt, columns=S.SUBTASK, values=S.VALUE, aggfunc="mean").dropna()
    common = wide.index.intersection(comp.index)
    if len(common) < 2:
        return None
    return wide.loc[common].to_numpy(float).T, comp.loc[common].to_numpy(float)


def _select(df, key):
    """The rows of ``df`` with every column of ``key`` at its value (NaN matching NaN)."""
    for k, v in key.items():
        df = df[df[k] == v] if pd.notna(v) else df[df[k].isna()]
    return df


def _rms(e):
    return float(np.sqrt(np.mean(np.square(e))))
