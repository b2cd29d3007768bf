"""Where a task emerges, predicted from small models and backtested on larger ones.

If a task emerges below a pretraining-loss threshold eta, it does so at the same loss for every
size and training length (Du et al. 2024). Models below a size cutoff that reach low losses
(over-trained, or seen across their training steps) can then locate eta before any large model
exists, and the loss law fitted on the same small models says at what size the family's recipe
reaches eta: the critical size N_c. ``onset_backtest`` makes both predictions below a cutoff and
scores them against the same estimates from the whole family, against the sizes between which
the family's own losses actually cross eta, and against the held-out models' measured values.

Checkpoints of one run are correlated, so eta's interval is the verdict's own (pointwise) one
widened to the 95% interval of a bootstrap over the small models' runs (whole models resampled,
``significance.curve_significance``); N_c's interval follows from it through the loss law.

When the small models do not reach the threshold the honest answer is a bound, not a location:
the ability, if it comes, comes below the losses they reached (a threshold shows only with two
checkpoints past it: below the second-lowest), and so above the size that reaches that loss.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from emergence import schema as S
from emergence.analysis.scaling import FitError, ScalingFit, critical_size, fit_chinchilla, fit_size_law, loss_points
from emergence.tidy import fill_chance
from emergence.analysis.significance import SignificanceConfig, curve_significance
from emergence.analysis.verdicts import ClassifyConfig, classify, warmup_mask
from emergence.metric_rules import directions_of, metric_is_proportion

SMOOTH_MODELS = ("linear", "power_law", "sigmoid_gentle")
# Statuses, from the small models' verdict (rows) and the whole family's (columns):
#   both emergent -> "predicted"; only the small models' -> "not confirmed";
#   only the family's -> "bound" (no small model reached eta) or "missed" (they did).


@dataclass(frozen=True, eq=False)
class LossLaw:
    """The loss law used to place eta in size: a fit and the recipe its N_c is quoted for."""

    fit: ScalingFit
    tokens_per_param: float | None   # Chinchilla form: N_c at D = r N

    def loss(self, n, d) -> np.ndarray:
        return self.fit.predict(n, d) if self.fit.form == "chinchilla" else self.fit.predict(n)

    def critical(self, eta, lo=None, hi=None):
        """N_c at threshold eta, with an interval spanning the law's bootstrap draws at both ends
        of eta's interval [lo, hi] (a higher threshold is reached by a smaller model). The eta
        interval is a union of bootstrap, profile, grid-gap and run-resampling sets; its
        bootstrap draws alone undercover, so they are not what is propagated."""
        recipe = {"tokens_per_param": self.tokens_per_param} if self.fit.form == "chinchilla" else {}
        point = critical_size(eta, self.fit, **recipe)
        low, high = point.intervals["n_c"]
        if lo is not None and hi is not None:
            low = min(low, critical_size(max(lo, hi), self.fit, **recipe).intervals["n_c"][0])
            high = max(high, critical_size(min(lo, hi), self.fit, **recipe).intervals["n_c"][1])
        return point.n_c, low, high, point.reason


def onset_backtest(df: pd.DataFrame, cutoff: float, *, tokens_per_param: float | None = None,
                   n_boot: int = 100, seed: int = 0, config: ClassifyConfig = ClassifyConfig(),
                   include_all: bool = False) -> pd.DataFrame:
    """Predict eta and N_c per (family, task, subtask, metric) from the models with
    params < ``cutoff`` (all their checkpoints, pooled on the loss axis) and compare with the
    whole family. One row per curve that is emergent in either view (every curve with
    ``include_all``); a family that cannot be split or fitted gets one row saying why.

    N_c is quoted at ``tokens_per_param`` (default: the median D/N of the held-out models' final
    checkpoints) when the law is the Chinchilla form, which is used when the final checkpoints
    vary D independently of N; otherwise the size law L(N) of the final checkpoints (one recipe).
    """
    df = fill_chance(df)
    rows = []
    for family, group in df.groupby(S.FAMILY, sort=True):
        try:
            rows += _family_backtest(family, group, cutoff, tokens_per_param, n_boot, seed, config, include_all)
        except FitError as e:
            rows.append({S.FAMILY: family, "cutoff": cutoff, "status": "undetermined", "reason": str(e)})
    return pd.DataFrame(rows)


def onset_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per family: curves by status, and for the predicted ones the median eta and N_c errors,
    how often the family's estimates fall inside the predicted intervals, and the held-out MAE
    of the threshold model at predicted loss against the best smooth model's extrapolation."""
    if table.empty or "status" not in table:
        return pd.DataFrame()
    scores = ["eta_abs_err", "eta_covered", "nc_log10_err", "nc_covered", "nc_in_observed", "mae_threshold",
              "mae_smooth"]
    table = table.reindex(columns=table.columns.union(scores, sort=False))   # absent where nothing was predicted
    out = []
    for family, g in table.groupby(S.FAMILY, sort=True):
        ok = g[g["status"] == "predicted"]
        row = {S.FAMILY: family, **{s: int((g["status"] == s).sum())
                                    for s in ("predicted", "not confirmed", "bound", "missed")}}
        row.update(median_eta_abs_err=ok["eta_abs_err"].median(), eta_covered=ok["eta_covered"].mean(),
                   median_nc_log10_err=ok["nc_log10_err"].abs().median(), nc_covered=ok["nc_covered"].mean(),
                   nc_in_observed=ok["nc_in_observed"].mean(), mae_threshold=ok["mae_threshold"].mean(),
                   mae_smooth=ok["mae_smooth"].mean())
        out.append(row)
    return pd.DataFrame(out)


# ----------------------------------------------------------------------------- helpers

def _family_backtest(family, group, cutoff, tokens_per_param, n_boot, seed, config, include_all):
    for col in (S.PARAMS, S.LOSS):
        if col not in group or group[col].isna().all():
            raise FitError(f"no values in {col!r}: the loss axis and the size split need both")
    group = group.dropna(subset=[S.PARAMS, S.LOSS])
    small = group[S.PARAMS] < cutoff
    finals = loss_points(group, need_tokens=False)
    if finals[S.PARAMS][finals[S.PARAMS] < cutoff].nunique() < 3:
        raise FitError(f"fewer than 3 sizes below the cutoff {cutoff:.3g}: no loss law to fit")
    held = finals[finals[S.PARAMS] >= cutoff]
    if held.empty:
        raise FitError(f"no model with params >= {cutoff:.3g} to hold out")
    if tokens_per_param is None and S.TOKENS in held and held[S.TOKENS].notna().any():
        tokens_per_param = float((held[S.TOKENS] / held[S.PARAMS]).median())
    law_small = _loss_law(group[small], tokens_per_param, n_boot, seed)
    law_full = _loss_law(group, tokens_per_param, n_boot, seed)
    held_keys = set(held[S.MODEL])

    keys = [k for k in (S.TASK, S.SUBTASK, S.METRIC, *S.SETTING_KEYS) if k in group]
    judged = group[~warmup_mask(group, config.warmup_fraction)]   # as the verdicts judge the loss axis
    rows = []
    for key, curve in judged.groupby(keys, sort=True, dropna=False):
        meta = {S.FAMILY: family, **dict(zip(keys, key if isinstance(key, tuple) else (key,)))}
        full = classify(curve, axis=S.LOSS, config=config)
        part = classify(curve[small[curve.index]], axis=S.LOSS, config=config)
        if not include_all and "emergent" not in (full.label, part.label):
            continue
        rows.append(_curve_row(meta, curve, small[curve.index], held_keys, full, part, law_small, law_full,
                               cutoff, _run_level(curve[small[curve.index]], part, seed, config)))
    return rows


def _run_level(curve, verdict, seed, config) -> dict:
    """P(emergent) and the run-level 95% eta interval of the small models' curve: a bootstrap over
    its runs (whole models, every checkpoint of each), ``significance.curve_significance``."""
    if verdict.label != "emergent":
        return {}
    metric = str(curve[S.METRIC].iloc[0])
    col = lambda c: curve[c].to_numpy(float) if c in curve and curve[c].notna().any() else None   # noqa: E731
    r = curve_significance(curve[S.LOSS].to_numpy(float), curve[S.VALUE].to_numpy(float),
                           curve[S.MODEL].to_numpy() if S.MODEL in curve else None, stderr=col(S.STDERR),
                           n=col(S.N), higher_is_better=directions_of(curve)[metric], axis=S.LOSS,
                           bounded=metric_is_proportion(metric), config=SignificanceConfig(seed=seed),
                           classify_config=config)
    return r


def _loss_law(points, tokens_per_param, n_boot, seed) -> LossLaw:
    """Chinchilla L(N, D) when the final checkpoints vary D independently of N (over-training
    ladders); else the size law L(N) (one recipe: the same D, or D proportional to N)."""
    finals = loss_points(points)
    n, L = finals[S.PARAMS].to_numpy(float), finals[S.LOSS].to_numpy(float)
    d = finals[S.TOKENS].to_numpy(float) if S.TOKENS in finals else np.full(len(n), np.nan)
    if np.isfinite(d).all() and tokens_per_param and len(n) >= 8 and _independent(np.log(n), np.log(d)):
        fit = fit_chinchilla(n, d, L, n_boot=n_boot, seed=seed, level=0.9, workers=1)
        return LossLaw(fit, tokens_per_param)
    if np.unique(n).size < 3:
        raise FitError(f"{np.unique(n).size} distinct size(s) in the final checkpoints: no size law")
    return LossLaw(fit_size_law(n, L, n_boot=n_boot, seed=seed, level=0.9, workers=1), None)


def _independent(ln, ld) -> bool:
    """D varies, and not just in proportion to N (then N and D exponents are separable)."""
    if np.ptp(ld) < np.log(2):
        return False
    resid = ld - np.polyval(np.polyfit(ln, ld, 1), ln)
    return bool(np.ptp(resid) > np.log(2))


def _curve_row(meta, curve, small, held_keys, full, part, law_small, law_full, cutoff, runs) -> dict:
    ef, ep = full.evidence, part.evidence
    eta_lo, eta_hi = ep.eta_lo, ep.eta_hi        # the verdict's interval, widened to the run-level one
    if eta_lo is not None and np.isfinite(runs.get("eta_lo", np.nan)):
        eta_lo, eta_hi = min(eta_lo, eta_hi, runs["eta_lo"]), max(eta_lo, eta_hi, runs["eta_hi"])
    train_losses = curve.loc[small, S.LOSS]
    if full.label == part.label == "emergent":
        status = "predicted"
    elif part.label == "emergent":
        status = "not confirmed"
    elif full.label == "emergent":
        reached = ef.eta_lo is not None and train_losses.min() < min(ef.eta_lo, ef.eta_hi)
        status = "missed" if reached else "bound"
    else:
        status = "neither"
    row = dict(meta, cutoff=cutoff, status=status, label_small=part.label, label_full=full.label,
               law=law_small.fit.form, tokens_per_param=law_small.tokens_per_param,
               n_train_points=int(small.sum()), min_train_loss=float(train_losses.min()),
               eta_pred=ep.eta, eta_pred_lo=eta_lo, eta_pred_hi=eta_hi,
               eta_verdict_lo=ep.eta_lo, eta_verdict_hi=ep.eta_hi, p_emergent_small=runs.get("p_emergent"),
               p_value_small=runs.get("p_value"), runs_small=runs.get("clusters"),
               eta_full=ef.eta, eta_full_lo=ef.eta_lo, eta_full_hi=ef.eta_hi)
    if status == "bound":
        # A threshold shows only with >= 2 checkpoints past it, so eta lies below the second-lowest
        # loss seen; N_c is above the size that reaches that loss (the law band's low end).
        row["nc_bound"] = law_small.critical(float(np.sort(train_losses.unique())[:2].max()))[1]
    if ep.eta is not None:
        nc, lo, hi, why = law_small.critical(ep.eta, eta_lo, eta_hi)
        row.update(nc_pred=nc, nc_pred_lo=lo, nc_pred_hi=hi, nc_reason=why)
    if ef.eta is not None:
        row["nc_full"] = law_full.critical(ef.eta)[0]
        row["nc_observed_lo"], row["nc_observed_hi"] = _observed_bracket(curve, ef.eta, law_small.tokens_per_param)
    if ep.eta is not None and ef.eta is not None:
        lo, hi = sorted((eta_lo, eta_hi))
        vlo, vhi = sorted((ep.eta_lo, ep.eta_hi))
        row.update(eta_abs_err=abs(ep.eta - ef.eta), eta_covered=bool(lo <= ef.eta <= hi),
                   eta_covered_verdict=bool(vlo <= ef.eta <= vhi), eta_width=hi - lo, eta_width_verdict=vhi - vlo)
        if np.isfinite(row["nc_pred"]) and np.isfinite(row["nc_full"]):
            row.update(nc_log10_err=float(np.log10(row["nc_pred"] / row["nc_full"])),
                       nc_covered=bool(row["nc_pred_lo"] <= row["nc_full"] <= row["nc_pred_hi"]))
        olo, ohi = row["nc_observed_lo"], row["nc_observed_hi"]
        if np.isfinite(olo) or np.isfinite(ohi):
            row["nc_in_observed"] = bool(np.nan_to_num(olo, nan=0) <= row["nc_pred"] <= np.nan_to_num(ohi, nan=np.inf))
    row.update(_heldout_errors(curve, held_keys, part, law_small))
    return row


def _observed_bracket(curve, eta, ratio):
    """The sizes between which the family's final checkpoints (at the recipe, where one is given)
    cross loss eta: (largest size above eta, smallest size below it); NaN on an open side."""
    finals = _final_rows(curve)
    if ratio and S.TOKENS in finals and finals[S.TOKENS].notna().all():
        r = finals[S.TOKENS] / finals[S.PARAMS]
        finals = finals[(r / ratio).between(0.9, 1.1)]
    above = finals.loc[finals[S.LOSS] > eta, S.PARAMS]
    below = finals.loc[finals[S.LOSS] <= eta, S.PARAMS]
    return (float(above.max()) if len(above) else np.nan, float(below.min()) if len(below) else np.nan)


def _final_rows(curve) -> pd.DataFrame:
    """Each model's last checkpoint (by step, else tokens) of one curve."""
    order = [c for c in (S.STEP, S.TOKENS) if c in curve and curve[c].notna().any()]
    if not order:
        return curve.drop_duplicates(S.MODEL, keep="last")
    return curve.sort_values(order, na_position="first").groupby(S.MODEL, sort=False).tail(1)


def _heldout_errors(curve, held_keys, part, law) -> dict:
    """MAE on the held-out models' final checkpoints of the small-model fits evaluated at the
    loss the small-model law predicts for them: the threshold model (when the small models call
    the curve emergent) and the best smooth model, the extrapolation one would make without it."""
    if part.best_fit is None:
        return {}
    test = _final_rows(curve)
    test = test[test[S.MODEL].isin(held_keys)]
    if test.empty:
        return {}
    tokens = test[S.TOKENS].to_numpy(float) if S.TOKENS in test else None
    loss_hat = law.loss(test[S.PARAMS].to_numpy(float), tokens)
    bounded = metric_is_proportion(str(curve[S.METRIC].iloc[0])) if S.METRIC in curve else False
    actual = test[S.VALUE].to_numpy(float)

    def mae(fit):
        pred = fit.predict(loss_hat)
        return float(np.mean(np.abs((np.clip(pred, 0, 1) if bounded else pred) - actual)))

    smooth = [f for f in part.alternatives if f.name in SMOOTH_MODELS]
    out = {"n_heldout": len(test), "mae_smooth": mae(smooth[0]) if smooth else np.nan}
    if part.label == "emergent":
        out["mae_threshold"] = mae(part.best_fit)
    return out
