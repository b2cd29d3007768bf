"""Prediction intervals for the predictor backtest, calibrated on the training models alone.

A predictor's bootstrap draws carry only its first step's uncertainty, so on the reference
ladders their 90% intervals hold the actual value far less often than 90%. The calibrated
interval uses the predictor's own out-of-sample errors inside the training range instead: the
backtest's sensitivity refit (the largest training size left out) predicts those left-out models,
and each of their absolute errors, divided by how far that prediction extrapolated (the natural
log of the model's size or compute over the largest one it was fitted on), is one calibration
score. Per predictor the scores of every task and group are pooled (a split-conformal quantile,
assuming the tasks exchangeable), and a target's half-width is that quantile times its own
extrapolation distance, so a target four times beyond the training range gets twice the width
of one two times beyond. The rule is fixed in advance; the backtest tables report how often it
holds the actual value on held-out models.
"""

import math

import numpy as np
import pandas as pd

from emergence import schema as S

KEYS = ["group", "task", "subtask", "metric", "model", "predictor"]


def distance(values: pd.Series, fitted_max: pd.Series) -> pd.Series:
    """ln(value / largest fitted value): how far a prediction extrapolates (0 where unknown)."""
    d = np.log(pd.to_numeric(values, errors="coerce") / pd.to_numeric(fitted_max, errors="coerce"))
    return d.where(d > 0)


def conformal_quantile(scores, level: float) -> tuple[float, float]:
    """(quantile, level it guarantees): the ceil((n + 1) level)-th smallest score; with too few
    scores for ``level``, the largest, which guarantees n / (n + 1)."""
    s = np.sort(np.asarray([x for x in scores if np.isfinite(x)], float))
    n = len(s)
    if n == 0:
        return np.nan, np.nan
    k = math.ceil((n + 1) * level)
    return (float(s[k - 1]), level) if k <= n else (float(s[-1]), n / (n + 1))


def add_calibrated(table: pd.DataFrame, again: pd.DataFrame, values: dict, group_of: dict, cutoff: float,
                   lower: dict, level: float) -> pd.DataFrame:
    """``table`` with ``cal_low``/``cal_high`` (the calibrated interval, never narrower than the
    bootstrap one), ``cal_level`` (the level its calibration set can guarantee) and ``cal_n``.

    ``again``: the backtest refitted at ``lower`` (group -> its largest training value, left
    out); ``values``: model -> size or compute; ``group_of``: model -> its backtest group."""
    table = table.assign(cal_low=np.nan, cal_high=np.nan, cal_level=np.nan, cal_n=0)
    v = pd.Series(values, dtype=float)
    groups = pd.Series(group_of)
    fitted = v[v < cutoff]
    top = fitted.groupby(groups[fitted.index]).max()                       # per group: largest fitted value
    refit = fitted[fitted < groups[fitted.index].map(lower).to_numpy()]
    inner_top = refit.groupby(groups[refit.index]).max()                   # the same in the refit
    left_out = again.dropna(subset=["model"])
    left_out = left_out[left_out["status"].eq("ok") & left_out["model"].map(v).lt(cutoff)]
    d_in = distance(left_out["model"].map(v), left_out["group"].map(inner_top))
    score = (left_out["predicted"] - left_out["actual"]).abs() / d_in
    ok = table["status"].eq("ok") & table["predicted"].notna() & table["model"].notna()
    d_out = distance(table["model"].map(v), table["group"].map(top))
    for name, rows in table[ok].groupby("predictor"):
        scores = score[left_out["predictor"] == name]
        q, guaranteed = conformal_quantile(scores, level)
        if not np.isfinite(q):
            continue
        half = q * d_out[rows.index]
        pred = rows["predicted"]
        lo = np.fmin((pred - half).clip(0, 1), rows["pred_low"].fillna(np.inf))
        hi = np.fmax((pred + half).clip(0, 1), rows["pred_high"].fillna(-np.inf))
        n = int(np.isfinite(scores).sum())
        table.loc[rows.index, ["cal_low", "cal_high", "cal_level", "cal_n"]] = np.column_stack(
            [lo, hi, np.full(len(rows), guaranteed), np.full(len(rows), n)])
    return table


def model_values(finals: pd.DataFrame, split_values: pd.Series, pool: bool) -> tuple[dict, dict]:
    """(model -> split value, model -> backtest group) from each model's final rows."""
    per = pd.DataFrame({S.MODEL: finals[S.MODEL].to_numpy(), "v": split_values.to_numpy(),
                        "g": "all" if pool else finals[S.FAMILY].astype(str).to_numpy()}).drop_duplicates(S.MODEL)
    return dict(zip(per[S.MODEL], per["v"])), dict(zip(per[S.MODEL], per["g"]))
