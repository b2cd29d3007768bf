"""Emergence laws (Snell et al. 2024): where a task emerges, predicted by fine-tuning small models.

Fine-tuning on D examples of a task moves its point of emergence to weaker models: to a higher
pretraining loss eta(D). Snell et al. model the shift as a log power law,

    eta(D) = C + k (ln D)^alpha        (k, alpha > 0; D >= 1 examples)

and extrapolate it to the few-shot limit D0 (of the order of the number of shots; their
ablation finds the choice immaterial below ~10 N shots): eta(D0) is the loss at which the task
will emerge without fine-tuning, read off before any model reaches it. The critical size N_c
follows from the loss law of the same models (``scaling.critical_size``).

Where we deviate, and why. Snell et al. fit one likelihood over every (model, D) accuracy with a
ReLU in loss whose elbow is eta(D), and sample the posterior by MCMC. Here each D's eta (and its
interval) comes from the project's own threshold verdict on the loss axis (``verdicts.classify``,
the machinery ``onset`` uses), so the predicted eta means what every other onset in the project
means and is scored against the same measured onset; the law is then fitted through those etas by
weighted least squares, and its interval is a parametric bootstrap of the etas within their
intervals. With fewer than 4 amounts alpha is fixed at 1 (log-linear: a 2-parameter law), and
below 3 amounts with a threshold no law is fitted: two points fit any line exactly.
"""

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import optimize

from emergence import schema as S
from emergence.analysis.scaling import FitError, critical_size, fit_size_law, loss_points
from emergence.analysis.verdicts import ClassifyConfig, classify
from emergence.tidy import fill_chance

AMOUNT = "ft_examples"       # the fine-tuning data amount column (emergence.lab.finetune writes it)
SEEN_VALUE = "seen_value"    # ... and each fine-tuned model's score on its own training questions
# No transfer: the fine-tuned models answer their training questions this much better than the
# held-out ones. Fine-tuning then teaches the questions, not the skill the evaluation measures.
NO_TRANSFER_GAP = 0.5
MIN_AMOUNTS = 3              # amounts with a threshold needed to fit any law
MIN_FREE_ALPHA = 4           # ... and to fit alpha rather than fix it at 1


@dataclass(frozen=True)
class EmergenceLaw:
    """eta(D) = C + k (ln D)^alpha fitted through the thresholds of several amounts D."""

    form: str                        # "log_power" (alpha fitted) | "log_linear" (alpha = 1)
    params: dict                     # k, alpha, C
    d0: float                        # the few-shot limit the law is extrapolated to
    eta: float                       # eta(d0): the predicted few-shot threshold
    eta_lo: float
    eta_hi: float
    level: float
    n: int                           # amounts fitted
    rss: float                       # weighted residual sum of squares
    draws: np.ndarray = field(default=None, repr=False)   # bootstrap eta(d0) draws

    def predict(self, D) -> np.ndarray:
        return _law(np.asarray(D, float), self.params["k"], self.params["alpha"], self.params["C"])

    def summary(self) -> str:
        p = self.params
        return (f"eta(D) = {p['C']:.4g} + {p['k']:.4g} (ln D)^{p['alpha']:.3g} ({self.form}, {self.n} amounts); "
                f"few-shot eta(D0={self.d0:g}) = {self.eta:.4g} [{self.eta_lo:.4g}, {self.eta_hi:.4g}]")


def threshold_points(df: pd.DataFrame, *, task: str, metric: str, subtask: str = "",
                     config: ClassifyConfig = ClassifyConfig()) -> pd.DataFrame:
    """One row per data amount: the verdict of (task, subtask, metric) against the base models'
    pretraining loss, pooling every checkpoint fine-tuned on that amount, with eta and its
    interval where the curve is emergent."""
    if AMOUNT not in df:
        raise FitError(f"the table has no {AMOUNT!r} column: it is not a fine-tuning run's table "
                       "(emergence.lab.finetune.finetune_table)")
    curves = fill_chance(df)
    curves = curves[(curves[S.TASK] == task) & (curves[S.SUBTASK] == subtask) & (curves[S.METRIC] == metric)]
    if curves.empty:
        raise FitError(f"no rows for task {task!r}, sub-task {subtask!r}, metric {metric!r}")
    if curves[S.LOSS].isna().all():
        raise FitError(f"no pretraining loss for any checkpoint of task {task!r}: the law's axis is the base "
                       "checkpoints' held-out loss; fine-tune with a loss task (--loss-task)")
    rows = []
    for amount, curve in curves.dropna(subset=[S.LOSS]).groupby(AMOUNT, sort=True):
        v = classify(curve, axis=S.LOSS, config=config)
        e = v.evidence
        seen = curve[SEEN_VALUE].max() if SEEN_VALUE in curve else np.nan
        rows.append({AMOUNT: int(amount), "label": v.label, "eta": e.eta, "eta_lo": e.eta_lo, "eta_hi": e.eta_hi,
                     "n_points": int(len(curve)), "min_loss": float(curve[S.LOSS].min()),
                     "max_value": float(curve[S.VALUE].max()), "seen_max": float(seen), "reason": e.reason})
    return pd.DataFrame(rows)


def fit_emergence_law(amounts, etas, eta_lo=None, eta_hi=None, *, d0: float = 1.0, form: str = "auto",
                      n_boot: int = 200, seed: int = 0, level: float = 0.95) -> EmergenceLaw:
    """Fit eta(D) through (amount, eta) points, weighted by their intervals (95% where given),
    and extrapolate to ``d0``. ``form``: "auto" (alpha free with >= 4 amounts, else 1),
    "log_power" or "log_linear". Raises FitError with fewer than 3 usable amounts."""
    D, eta = np.asarray(amounts, float), np.asarray(etas, float)
    ok = np.isfinite(D) & np.isfinite(eta) & (D >= 1)
    if d0 < 1:
        raise FitError(f"d0 = {d0!r}: the law is in ln D, so the few-shot limit must be >= 1 example")
    if ok.sum() < MIN_AMOUNTS:
        raise FitError(f"{int(ok.sum())} data amount(s) with a threshold (of {len(D)}); an emergence law "
                       f"needs >= {MIN_AMOUNTS} positive amounts whose fine-tuned curves are emergent")
    sigma = _sigmas(eta, eta_lo, eta_hi)[ok]
    D, eta = D[ok], eta[ok]
    if form == "auto":
        form = "log_power" if len(D) >= MIN_FREE_ALPHA else "log_linear"
    if form not in ("log_power", "log_linear"):
        raise ValueError(f"form must be 'auto', 'log_power' or 'log_linear', got {form!r}")
    if form == "log_power" and len(D) < MIN_FREE_ALPHA:
        raise FitError(f"a log power law (3 parameters) needs >= {MIN_FREE_ALPHA} amounts, got {len(D)}")
    theta, rss = _fit(D, eta, sigma, form)
    rng = np.random.default_rng(seed)
    draws = np.array([_law(np.array([d0]), *_fit(D, eta + rng.normal(0, sigma), sigma, form)[0])[0]
                      for _ in range(n_boot)]) if n_boot else np.array([])
    point = float(_law(np.array([d0]), *theta)[0])
    lo, hi = (np.quantile(draws, [(1 - level) / 2, (1 + level) / 2]) if len(draws) else (np.nan, np.nan))
    return EmergenceLaw(form, dict(zip(("k", "alpha", "C"), map(float, theta))), float(d0), point,
                        float(min(lo, point)), float(max(hi, point)), level, len(D), float(rss), draws)


def emergence_prediction(df: pd.DataFrame, *, task: str, metric: str, subtask: str = "", d0: float = 1.0,
                         n_boot: int = 200, seed: int = 0, config: ClassifyConfig = ClassifyConfig()) -> dict:
    """The whole procedure on a fine-tuning run's table: thresholds per amount, the law, the
    few-shot eta and N_c from the size law of the base checkpoints (their final losses). Always
    returns a row; ``status`` is "predicted", or "no onset" / "undetermined" with the reason."""
    points = threshold_points(df, task=task, metric=metric, subtask=subtask, config=config)
    row = {S.TASK: task, S.SUBTASK: subtask, S.METRIC: metric, "d0": d0, "points": points}
    positive = points[points[AMOUNT] > 0]
    emergent = positive[positive["label"] == "emergent"]
    row["amounts_emergent"] = f"{len(emergent)}/{len(positive)}"
    if len(emergent) < MIN_AMOUNTS:
        labels = ", ".join(f"D={a}: {lab}" for a, lab in zip(positive[AMOUNT], positive["label"]))
        status = "no onset" if emergent.empty else "undetermined"
        return {**row, "status": status, "reason": f"{len(emergent)} of {len(positive)} fine-tuned amounts "
                f"emergent on the loss axis (>= {MIN_AMOUNTS} needed): {labels or 'none'}" + _transfer(positive)}
    law = fit_emergence_law(emergent[AMOUNT], emergent["eta"], emergent["eta_lo"], emergent["eta_hi"], d0=d0,
                            n_boot=n_boot, seed=seed)
    row.update(status="predicted", reason="", law=law, eta_pred=law.eta, eta_pred_lo=law.eta_lo,
               eta_pred_hi=law.eta_hi, **{f"law_{k}": v for k, v in law.params.items()}, law_form=law.form)
    row.update(_critical(df, law))
    return row


def measured_onset(df: pd.DataFrame, *, task: str, metric: str, subtask: str = "",
                   config: ClassifyConfig = ClassifyConfig()) -> dict:
    """The check of a prediction: the onset the family shows without fine-tuning, measured on a run
    of every checkpoint, the larger sizes included (``df``: its tidy table, with the pretraining
    loss). The threshold verdict of (task, subtask, metric) on the loss axis gives ``label`` and
    ``eta`` [``eta_lo``, ``eta_hi``] (None where it is not emergent); ``nc`` is where the size law
    of the final checkpoints' losses reaches eta, and ``bracket`` the largest size whose final loss
    is above eta and the smallest at or below it."""
    if AMOUNT in df:                 # a fine-tuning run's table: its base checkpoints
        df = df[df[AMOUNT] == 0]
    curve = df[(df[S.TASK] == task) & (df[S.SUBTASK] == subtask) & (df[S.METRIC] == metric)].dropna(subset=[S.LOSS])
    if curve.empty:
        raise FitError(f"no rows with a pretraining loss for task {task!r}, sub-task {subtask!r}, metric {metric!r}: "
                       "the measured onset needs a run of the family on the task and its loss task")
    verdict = classify(curve, axis=S.LOSS, config=config)
    e = verdict.evidence
    out = {"label": verdict.label, "eta": e.eta, "eta_lo": e.eta_lo,
           "eta_hi": e.eta_hi, "nc": None, "bracket": None}
    if e.eta is None:
        return out
    finals = loss_points(df)
    try:
        size_law = fit_size_law(finals[S.PARAMS].to_numpy(float), finals[S.LOSS].to_numpy(float), n_boot=100,
                                workers=1)
        out["nc"] = critical_size(e.eta, size_law).n_c
    except FitError as err:          # too few sizes: eta is still the measured onset
        out["nc_reason"] = str(err)
    above = finals.loc[finals[S.LOSS] > e.eta, S.PARAMS]
    below = finals.loc[finals[S.LOSS] <= e.eta, S.PARAMS]
    out["bracket"] = (above.max() if len(above) else np.nan, below.min() if len(below) else np.nan)
    return out


def score_prediction(pred: dict, truth: dict) -> list:
    """A prediction (``emergence_prediction``) against the measured onset (``measured_onset``), as
    (target, result, met) rows: eta within 0.05 nats and N_c within 2x, and whether each interval
    covers the measured value."""
    if truth["eta"] is None:
        said = f"predicted {pred['eta_pred']:.3f}" if pred["status"] == "predicted" else pred["status"]
        return [("eta within 0.05 nats", f"{said}; no measured onset ({truth['label']})", False),
                ("N_c within 2x", "no measured onset", False)]
    if pred["status"] != "predicted":
        return [("eta within 0.05 nats", f"not predicted ({pred['status']})", False),
                ("N_c within 2x", "not predicted", False)]
    err = pred["eta_pred"] - truth["eta"]
    covered = pred["eta_pred_lo"] <= truth["eta"] <= pred["eta_pred_hi"]
    out = [("eta within 0.05 nats", f"{pred['eta_pred']:.3f} vs {truth['eta']:.3f} (error {err:+.3f})",
            bool(abs(err) <= 0.05)),
           ("eta interval covers", f"[{pred['eta_pred_lo']:.3f}, {pred['eta_pred_hi']:.3f}]", bool(covered))]
    nc = pred.get("nc_pred")
    if nc is None or not np.isfinite(nc) or truth.get("nc") is None:
        why = pred.get("nc_reason", "") if nc is None or not np.isfinite(nc) else "no measured N_c"
        return out + [("N_c within 2x", f"not predicted: {why}", False)]
    ratio = nc / truth["nc"]
    ok = pred["nc_pred_lo"] <= truth["nc"] <= pred["nc_pred_hi"]
    return out + [("N_c within 2x", f"{nc:.3g} vs {truth['nc']:.3g} (ratio {ratio:.2f})", bool(0.5 <= ratio <= 2)),
                  ("N_c interval covers", f"[{pred['nc_pred_lo']:.3g}, {pred['nc_pred_hi']:.3g}]", bool(ok))]


def truth_markdown(row: dict, truth: dict) -> str:
    """The prediction against the measured onset, as Markdown."""
    told = truth["label"]
    if truth["eta"] is not None:
        told += f", eta {truth['eta']:.3f} nats [{truth['eta_lo']:.3f}, {truth['eta_hi']:.3f}]"
        if truth.get("nc") is not None:
            told += f", N_c {truth['nc']:.3g} parameters"
    lines = ["## Against the measured onset", "", f"Measured on the whole family without fine-tuning: {told}.", "",
             "| target | result | met |", "|---|---|---|"]
    lines += [f"| {t} | {r} | {'yes' if m else 'no'} |" for t, r, m in score_prediction(row, truth)]
    return "\n".join(lines) + "\n"


def prediction_markdown(row: dict) -> str:
    """The prediction as Markdown: thresholds per amount, the law and the few-shot extrapolation."""
    lines = [f"## Emergence law: {row[S.TASK]} {row[S.SUBTASK] + ' ' if row[S.SUBTASK] else ''}{row[S.METRIC]}", "",
             "| fine-tuning examples D | verdict (loss axis) | eta (nats) | 95% interval | points | best value "
             "| best on its training questions |",
             "|---|---|---|---|---|---|---|"]
    for p in row["points"].itertuples():
        eta = "" if p.eta is None or not np.isfinite(p.eta) else f"{p.eta:.3f}"
        interval = "" if not eta else f"[{p.eta_lo:.3f}, {p.eta_hi:.3f}]"
        seen = f"{p.seen_max:.3f}" if np.isfinite(p.seen_max) else ""
        lines.append(f"| {getattr(p, AMOUNT)} | {p.label} | {eta} | {interval} | {p.n_points} | {p.max_value:.3f} "
                     f"| {seen} |")
    lines.append("")
    if row["status"] != "predicted":
        lines.append(f"**{row['status']}**: {row['reason']}")
        return "\n".join(lines) + "\n"
    law = row["law"]
    lines.append(f"Law: {law.summary()}.")
    nc = row.get("nc_pred")
    if nc is not None and np.isfinite(nc):
        lines.append(f"Critical size N_c = {nc:.3g} parameters [{row['nc_pred_lo']:.3g}, {row['nc_pred_hi']:.3g}] "
                     "(size law of the base checkpoints' final losses).")
    elif row.get("nc_reason"):
        lines.append(f"N_c: {row['nc_reason']}.")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- helpers

def _transfer(points: pd.DataFrame) -> str:
    """Why no law, when the fine-tuned models answer their training questions and not the held-out
    ones: the amounts where the gap is at least NO_TRANSFER_GAP, or ''."""
    gap = points[(points["seen_max"] - points["max_value"]) >= NO_TRANSFER_GAP]
    if gap.empty:
        return ""
    shown = ", ".join(f"D={a}: {s:.2f} vs {v:.2f}" for a, s, v in zip(gap[AMOUNT], gap["seen_max"], gap["max_value"]))
    return (f". Fine-tuning does not transfer to the held-out questions: best score on the models' own training "
            f"questions vs the evaluated ones, {shown}")


def _law(D, k, alpha, C):
    return C + k * np.log(D) ** alpha


def _sigmas(eta, lo, hi):
    """1-sigma of each eta from its 95% interval; the median width where one is missing."""
    eta = np.asarray(eta, float)
    if lo is None or hi is None:
        return np.full(len(eta), 0.05)
    width = np.abs(np.asarray(hi, float) - np.asarray(lo, float)) / (2 * 1.96)
    good = np.isfinite(width) & (width > 0)
    fill = float(np.median(width[good])) if good.any() else 0.05
    return np.where(good, width, fill)


def _fit(D, eta, sigma, form):
    """Weighted least squares of the law: (k, alpha, C), weighted RSS. k >= 0 and alpha in
    [0.1, 5]: more data never moves the threshold to stronger models."""
    x = np.log(D)
    if form == "log_linear":
        A = np.stack([x, np.ones_like(x)], axis=1) / sigma[:, None]
        (k, C), *_ = np.linalg.lstsq(A, eta / sigma, rcond=None)
        if k < 0:                      # the constrained optimum: a flat law
            k, C = 0.0, float(np.average(eta, weights=sigma ** -2))
        theta = np.array([k, 1.0, C])
    else:
        def resid(t):
            return (_law(D, *t) - eta) / sigma
        k0 = max(1e-3, np.polyfit(x, eta, 1)[0])
        fit = optimize.least_squares(resid, x0=[k0, 1.0, float(eta.min() - k0 * x.min())],
                                     bounds=([0.0, 0.1, -np.inf], [np.inf, 5.0, np.inf]))
        theta = fit.x
    return theta, float(np.sum(((_law(D, *theta) - eta) / sigma) ** 2))


def _critical(df, law: EmergenceLaw) -> dict:
    """N_c at the predicted eta from the size law of the base checkpoints' final losses."""
    base = df[df[AMOUNT] == 0]
    try:
        finals = loss_points(base)
        n, L = finals[S.PARAMS].to_numpy(float), finals[S.LOSS].to_numpy(float)
        if np.unique(n).size < 3:
            raise FitError(f"{np.unique(n).size} distinct size(s) among the base checkpoints: no size law")
        size_law = fit_size_law(n, L, n_boot=100, seed=0, level=0.9, workers=1)
    except FitError as e:
        return {"nc_reason": str(e)}
    point = critical_size(law.eta, size_law)
    lo = critical_size(law.eta_hi, size_law).intervals["n_c"][0]     # a higher threshold: a smaller model
    hi = critical_size(law.eta_lo, size_law).intervals["n_c"][1]
    return {"nc_pred": point.n_c, "nc_pred_lo": float(min(lo, point.n_c)), "nc_pred_hi": float(max(hi, point.n_c)),
            "nc_reason": point.reason, "size_law": size_law}
