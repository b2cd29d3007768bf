"""Run-level uncertainty of emergence verdicts: P(emergent), p-values, q-values, eta intervals.

Checkpoints of one training run are not independent points: they share the run's seed, data
order and recipe, so a curve pooled over runs has as many independent units as it has runs.
This module treats each run (one ``model`` of a family) as a cluster and owns:

- ``curve_significance``: for one curve, (1) a bootstrap over runs (whole models resampled with
  replacement): P(emergent) is the share of resamples in which the best rising threshold beats
  every smooth model by ``ClassifyConfig.emergent_margin`` (quasi-AIC), and the 2.5-97.5%
  percentiles of that threshold's onset are a run-level 95% interval for eta; (2) a parametric
  bootstrap under the curve's best smooth model, with its run offsets and its dispersion: the
  p-value of the threshold's AIC advantage;
- ``bh_qvalues``: Benjamini-Hochberg q-values;
- ``add_significance``: the three columns ``p_emergent``, ``p_value``, ``q_value`` on a verdict
  table, and the gate: ``emergent`` needs q < ``SignificanceConfig.level`` (default 0.05), else
  the curve is relabelled ``smooth`` and its reason says why.

The verdict itself (``verdicts.classify``) is used as it is. The resampling refits, by one
vectorised weighted least-squares solve per shape and grid row for all draws at once, the same
families of shapes on coarser grids (``_shapes``): a change of weights (resampled runs) or of y
(simulated curves) changes only the sums of the normal equations. Each run's checkpoints are
first averaged into at most ``max_points / runs`` inverse-variance bins along the axis, so a
pooled table of thousands of checkpoints costs as much as a curve of ~200 points.

Only curves the verdict calls ``emergent`` are resampled (the q-value gates only that label);
elsewhere the three columns are NaN. A curve of one run (the tokens axis) has no run to resample:
its points are the clusters there, which the ``significance_note`` column says.
"""

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from emergence import schema as S
from emergence.analysis.curves import Axis, bin_curve, noise_model, one_blas_thread
from emergence.analysis.parallel import map_chunks
from emergence.analysis.verdicts import LN9, ClassifyConfig, _widths, warmup_mask
from emergence.metric_rules import metric_higher_is_better, metric_is_proportion


@dataclass(frozen=True)
class SignificanceConfig:
    run_draws: int = 100     # bootstrap draws over runs (P(emergent), eta interval): a share to +-0.05
    null_draws: int = 99     # parametric draws under the smooth model: p >= 1/(1 + 99) = 0.01
    level: float = 0.05      # the q-value (Benjamini-Hochberg) an emergent label needs
    seed: int = 0


def curve_significance(x, y, runs=None, *, stderr=None, n=None, higher_is_better=True, axis="params",
                       bounded=False, config=SignificanceConfig(), classify_config=ClassifyConfig()) -> dict:
    """P(emergent), the run-level eta interval and the p-value of one curve (see the module
    docstring). ``runs``: the run (model) of each point; None or a single run: each point is
    its own cluster. Returns p_emergent, p_value, eta_lo, eta_hi, eta_draws (x units, one per
    run resample whose best threshold has an onset), clusters and a note."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    runs = np.zeros(len(x), int) if runs is None else pd.factorize(np.asarray(runs))[0]
    ok = np.isfinite(x) & np.isfinite(y) & ((x > 0) if axis != "capability" else True)
    x, y, runs = x[ok], y[ok], runs[ok]
    se = None if stderr is None else np.broadcast_to(np.asarray(stderr, float), ok.shape)[ok]
    nn = None if n is None else np.broadcast_to(np.asarray(n, float), ok.shape)[ok]
    empty = dict(p_emergent=np.nan, p_value=np.nan, eta_lo=np.nan, eta_hi=np.nan, eta_draws=np.array([]),
                 clusters=0, note="")
    if len(np.unique(x)) < 4:
        return {**empty, "note": "too few distinct x to resample"}
    ax = Axis.over(axis, x)
    t, yo = ax.to_t(x), (1.0 if higher_is_better else -1.0) * y
    sigma, _ = noise_model(t, y, se, nn, bounded)
    note = ""
    if len(np.unique(runs)) < 2:
        if len(t) > classify_config.max_points:
            t, yo, sigma = bin_curve(t, yo, sigma, classify_config.max_points)
        runs, note = np.arange(len(t)), "one run: its points are the clusters"
    t, yo, sigma, cl = _run_bins(t, yo, sigma, runs, classify_config.max_points)
    n_cl = int(cl.max()) + 1
    rng = np.random.default_rng(config.seed)
    d = _Design.of(t, _shapes(np.unique(t), *_widths(ax, x, classify_config)))

    # (1) runs resampled: multiplicity of each run in each draw, as weights on its bins
    counts = rng.multinomial(n_cl, np.full(n_cl, 1.0 / n_cl), size=config.run_draws).T    # (clusters, B)
    W = counts[cl].astype(float)
    T_run, onset = _statistic(d, yo[:, None], W, sigma)
    # (2) curves simulated from the best smooth model, its run offsets and its dispersion;
    # column 0 is the curve itself
    Y = np.column_stack([yo, _null_draws(d, t, yo, sigma, cl, config.null_draws, rng)])
    T, _ = _statistic(d, Y, np.ones((len(t), 1)), sigma)
    T_obs, T_null = T[:1], T[1:]
    t_on = onset[np.isfinite(onset)]
    eta = np.sort(ax.to_x(np.percentile(t_on, [2.5, 97.5]))) if len(t_on) else (np.nan, np.nan)
    return dict(p_emergent=float(np.mean(T_run >= classify_config.emergent_margin)),
                p_value=float((1 + np.sum(T_null >= T_obs[0])) / (1 + len(T_null))),
                eta_lo=float(eta[0]), eta_hi=float(eta[1]), eta_draws=ax.to_x(t_on), clusters=n_cl, note=note)


def bh_qvalues(p) -> np.ndarray:
    """Benjamini-Hochberg q-values of p (NaN stays NaN and is not counted among the tests)."""
    p = np.asarray(p, float)
    q = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if len(ok):
        order = ok[np.argsort(p[ok], kind="stable")]
        ranked = p[order] * len(ok) / np.arange(1, len(ok) + 1)
        q[order] = np.minimum(1.0, np.minimum.accumulate(ranked[::-1])[::-1])
    return q


def add_significance(table: pd.DataFrame, df: pd.DataFrame, *, config=SignificanceConfig(),
                     classify_config=ClassifyConfig(), workers: int = 0) -> pd.DataFrame:
    """The verdict table (``verdicts``/``verdicts_by_axis`` rows, with an ``axis`` column) with
    p_emergent, p_value and q_value, for its ``emergent`` curves resampled from their rows of
    ``df``; q-values over every curve of the table with a p-value; ``emergent`` curves with
    q >= ``config.level`` become ``smooth``."""
    out = table.copy()
    for c in ("p_emergent", "p_value", "q_value"):
        out[c] = np.nan
    out["significance_note"] = ""
    if out.empty or "label" not in out:
        return out
    jobs, where = [], []
    for axis, rows in out[out["label"] == "emergent"].groupby("axis", sort=False):
        for i, curve in curve_arrays(df, rows, axis, classify_config.warmup_fraction):
            jobs.append(curve)
            where.append(i)
    results = map_chunks(functools.partial(_significance_chunk, config=config, classify_config=classify_config),
                         jobs, workers=workers, chunk=16, min_items=32)
    if results:
        where = out.index.get_indexer(where)
        for col, key in (("p_emergent", "p_emergent"), ("p_value", "p_value"), ("significance_note", "note")):
            values = out[col].to_numpy(object if col == "significance_note" else float).copy()
            values[where] = [r[key] for r in results]
            out[col] = values
    out["q_value"] = bh_qvalues(out["p_value"].to_numpy(float))
    weak = (out["label"] == "emergent") & ~(out["q_value"] < config.level)
    if weak.any():
        out["reason"] = out["reason"].astype(object)
        out.loc[weak, "reason"] = [
            f"{r}; not significant after resampling over runs (q={q:.2g} >= {config.level})" if np.isfinite(q) else
            f"{r}; could not be resampled ({note or 'no rows'}), so its significance is unknown"
            for r, q, note in zip(out.loc[weak, "reason"], out.loc[weak, "q_value"], out.loc[weak, "significance_note"])]
        out.loc[weak, "label"] = "smooth"
    return out


def curve_arrays(df, rows, axis, warmup_fraction: float = ClassifyConfig().warmup_fraction):
    """(index in the verdict table, (x, y, runs, stderr, n, higher_is_better, axis, bounded)) of
    each verdict row (``rows``, one axis), from df's rows, chosen as ``verdicts`` chooses them
    (the final step of each model on the params axes; no warm-up checkpoint on the others)."""
    keys = [k for k in (S.FAMILY, S.TASK, S.SUBTASK, S.METRIC, *S.SETTING_KEYS) if k in rows and k in df]
    if axis == S.TOKENS and S.MODEL in rows and S.MODEL in df:
        keys.append(S.MODEL)
    used = [c for c in dict.fromkeys(keys + [S.MODEL, S.STEP, S.TOKENS, axis, S.VALUE, S.STDERR, S.N]) if c in df]
    near = np.ones(len(df), bool)                  # first the rows of these families, tasks and metrics
    for k in (S.FAMILY, S.TASK, S.METRIC):
        near &= df[k].isin(rows[k].unique()).to_numpy()
    data = df.loc[near, used].reset_index(drop=True)
    for c in (S.SUBTASK, S.SETTING):   # text keys: empty, missing and NaN (a CSV read back) are one value
        if c in data:
            data[c] = data[c].astype(object).where(data[c].notna(), "").astype(str)
    if S.SUBTASK not in data:
        data[S.SUBTASK] = ""
    if axis in (S.PARAMS, S.PARAMS_NONEMBED) and S.STEP in data and S.MODEL in data and data[S.STEP].notna().any():
        last = data.groupby([S.FAMILY, S.MODEL], dropna=False)[S.STEP].transform("max")
        data = data[(data[S.STEP] == last) | last.isna()]
    elif axis in (S.TOKENS, S.FLOPS, S.LOSS):   # as the verdicts judged them: warm-up left out
        data = data[~warmup_mask(data, warmup_fraction)]
    want = rows[keys].copy()
    for c in (S.SUBTASK, S.SETTING):
        if c in want:
            want[c] = want[c].astype(object).where(want[c].notna(), "").astype(str)
    if S.SUBTASK not in want:
        want[S.SUBTASK] = ""
    want["_row"] = np.arange(len(rows))
    data = data.merge(want, on=keys, how="inner").sort_values("_row", kind="stable")
    which = data["_row"].to_numpy()
    cut = np.flatnonzero(np.diff(which)) + 1
    split = {c: np.split(data[c].to_numpy(float), cut) for c in (axis, S.VALUE, S.STDERR, S.N) if c in data}
    runs = np.split(pd.factorize(data[S.MODEL])[0], cut) if S.MODEL in data else [None] * (len(cut) + 1)
    metrics = rows[S.METRIC].astype(str).to_numpy()
    hibs = (rows[S.HIGHER_IS_BETTER].to_numpy(object) if S.HIGHER_IS_BETTER in rows    # as the verdict had it
            else [metric_higher_is_better(m) for m in metrics])
    for j, r in enumerate(which[np.r_[0, cut]] if len(which) else []):
        metric, hib = metrics[r], hibs[r]
        hib = metric_higher_is_better(metric) if hib is None or hib != hib else bool(hib)
        col = lambda c: split[c][j] if c in split and np.isfinite(split[c][j]).any() else None   # noqa: E731
        yield rows.index[r], (split[axis][j], split[S.VALUE][j], runs[j], col(S.STDERR), col(S.N),
                              hib, axis, metric_is_proportion(metric))


# ---- helpers ----------------------------------------------------------------------------------

def _significance_chunk(curves, config, classify_config):
    with one_blas_thread():
        return [curve_significance(x, y, runs, stderr=se, n=nn, higher_is_better=hib, axis=axis, bounded=b,
                                   config=config, classify_config=classify_config)
                for x, y, runs, se, nn, hib, axis, b in curves]


def _run_bins(t, y, sigma, runs, max_points):
    """Each run's points averaged into at most max(1, max_points // runs) inverse-variance bins
    along t; returns (t, y, sigma, cluster of each bin)."""
    ids = np.unique(runs)
    per = max(1, max_points // len(ids))
    if len(t) <= max_points:
        return t, y, sigma, pd.factorize(runs)[0]
    parts = []
    for k, r in enumerate(ids):
        m = runs == r
        if m.sum() > per:
            bt, by, bs = bin_curve(t[m], y[m], sigma[m], per)
        else:
            bt, by, bs = t[m], y[m], sigma[m]
        parts.append((bt, by, bs, np.full(len(bt), k)))
    return tuple(np.concatenate(p) for p in zip(*parts))


def _shapes(ut, steep_width, gentle_width):
    """name: (kind, grid of nonlinear parameters, parameter count, is a rising threshold).
    The verdicts' candidate families on coarser grids (the resampling refits them per draw);
    the sigmoid widths are the verdicts' absolute ones on this curve's t axis (``_widths``)."""
    inner = np.linspace(ut[1], ut[-2], 41, endpoint=False)
    gentle = np.geomspace(0.5, 2 * LN9 / gentle_width, 8)
    steep = np.geomspace(2 * LN9 / steep_width, 2 * LN9 / 0.02, 8)
    return {"linear": ("linear", np.zeros((1, 0)), 2, False),
            "power_law": ("exp", np.r_[-np.geomspace(12, 0.25, 15), np.geomspace(0.25, 12, 15)][:, None], 3, False),
            "sigmoid_gentle": ("logistic", _pairs(gentle, np.linspace(-0.5, 1.5, 21)), 4, False),
            "threshold": ("hinge", inner[:, None], 3, True),
            "saturating_threshold": ("saturating", _pairs(inner[::2], np.geomspace(0.03, 1, 6)), 4, True),
            "sigmoid_steep": ("logistic", _pairs(steep, np.linspace(ut[1], ut[-2], 24)), 4, True)}


def _pairs(a, b):
    return np.column_stack([np.repeat(a, len(b)), np.tile(b, len(a))])


def _columns(kind, t, grid):
    """The non-intercept design column of every grid row, (G, n); every shape is c + a f(t)."""
    if kind == "linear":
        return t[None]
    if kind == "exp":
        return np.exp(grid[:, :1] * (t - t.min())[None])
    if kind == "hinge":
        return np.maximum(0.0, t[None] - grid[:, :1])
    if kind == "saturating":
        return -np.expm1(-np.maximum(0.0, t[None] - grid[:, :1]) / grid[:, 1:2])
    return 1.0 / (1.0 + np.exp(-grid[:, :1] * (t[None] - grid[:, 1:2])))


@dataclass(frozen=True, eq=False)
class _Design:
    """Every shape's grid rows of one curve stacked: centred columns (G, n), their squares, the
    first row of each shape, and per shape its parameter count, whether it is a rising
    threshold and the onset (t) of each of its rows (thresholds)."""

    fc: np.ndarray
    fc2: np.ndarray
    fbar: np.ndarray
    f: np.ndarray
    starts: np.ndarray
    k: np.ndarray
    rising: np.ndarray
    onsets: list

    @classmethod
    def of(cls, t, shapes):
        cols = [_columns(kind, t, grid) for kind, grid, _, _ in shapes.values()]
        f = np.concatenate(cols)
        fbar = f.mean(axis=1, keepdims=True)
        fc = f - fbar
        onsets = [None if not rising else grid[:, 1] - LN9 / grid[:, 0] if kind == "logistic" else grid[:, 0]
                  for kind, grid, _, rising in shapes.values()]
        return cls(fc, fc * fc, fbar, f, np.r_[0, np.cumsum([len(c) for c in cols])[:-1]],
                   np.array([v[2] for v in shapes.values()]), np.array([v[3] for v in shapes.values()]), onsets)


def _fits(d, Y, W, sigma):
    """chi2 (G, B), intercept and slope of c + a f for every grid row and every draw: weights
    W (n, B) times 1/sigma^2, data Y (n, 1) or (n, B). A falling rising threshold is inadmissible."""
    w = W / sigma[:, None] ** 2
    ybar = np.mean(Y)
    Yc = Y - ybar                                          # centred: the intercept absorbs it
    wy = w * Yc
    S0, Sy, Syy = w.sum(0), wy.sum(0), (wy * Yc).sum(0)
    S1 = d.fc @ w                                          # (G, B), or (G, 1) for one weighting
    S2, Sfy = d.fc2 @ w, d.fc @ wy
    with np.errstate(divide="ignore", invalid="ignore"):
        det = S0 * S2 - S1 ** 2
        det = np.where(det > 1e-12 * S0 * np.maximum(S2, 1e-300), det, np.nan)
        a = (S0 * Sfy - S1 * Sy) / det
        c = (S2 * Sy - S1 * Sfy) / det
        chi2 = Syy - c * Sy - a * Sfy
    chi2 = np.where(np.isfinite(chi2), np.maximum(chi2, 0.0), np.inf)
    rising = np.repeat(d.rising, np.diff(np.r_[d.starts, len(d.fc)]))
    chi2[rising[:, None] & ~(a >= 0)] = np.inf
    return chi2, c - a * d.fbar + ybar, a


def _statistic(d, Y, W, sigma):
    """Per draw: the quasi-AIC advantage of the best rising threshold over the best smooth model
    (chi2 / dispersion + 2k, the dispersion estimated from the draw itself as the verdicts do),
    and the onset (t) of that threshold (NaN where no threshold fits)."""
    B = max(Y.shape[1], W.shape[1])
    n = np.broadcast_to(W.sum(0), (B,))
    chi2 = _fits(d, Y, W, sigma)[0]
    best = np.minimum.reduceat(chi2, d.starts, axis=0)                      # (shapes, B)
    phi = np.maximum(1.0, np.min(best / np.maximum(n[None] - d.k[:, None], 1), axis=0))
    ic = best / phi + 2 * d.k[:, None]
    thr = np.flatnonzero(d.rising)
    smooth = np.min(ic[~d.rising], axis=0)
    pick = thr[np.argmin(ic[thr], axis=0)]
    ic_thr = ic[pick, np.arange(B)]
    onset = np.full(B, np.nan)
    ends = np.r_[d.starts[1:], len(chi2)]
    for j in thr:
        sel = (pick == j) & np.isfinite(ic_thr)
        if sel.any():
            rows = np.argmin(chi2[d.starts[j]:ends[j]][:, sel], axis=0)
            onset[sel] = d.onsets[j][rows]
    return smooth - ic_thr, onset


def _null_draws(d, t, y, sigma, cl, draws, rng):
    """Curves (n, draws) from the best smooth model of (t, y): its fit, plus a normal offset per
    run with the between-run variance its residuals show (method of moments), plus normal noise
    of sigma times the within-run dispersion (at least 1)."""
    chi2, c, a = _fits(d, y[:, None], np.ones((len(t), 1)), sigma)
    shape = np.repeat(np.arange(len(d.k)), np.diff(np.r_[d.starts, len(chi2)]))
    aic = np.where(d.rising[shape], np.inf, chi2[:, 0] + 2 * d.k[shape])   # the smooth models
    g = int(np.argmin(aic))
    yhat, k = c[g, 0] + a[g, 0] * d.f[g], d.k[shape[g]]
    z = (y - yhat) / sigma
    runs = np.unique(cl)
    w = 1 / sigma ** 2
    n_run = np.bincount(cl)
    if len(runs) >= 3 and n_run.max() > 1:
        W = np.bincount(cl, w)
        mean = np.bincount(cl, w * (y - yhat)) / W                 # each run's mean residual
        tau2 = max(0.0, (np.sum(W * mean ** 2) - len(runs)) / np.sum(W))   # E[sum W m^2] = R + tau2 sum W
        within = np.sum(((y - yhat - mean[cl]) / sigma) ** 2)
        phi = max(1.0, within / max(len(t) - len(runs) - k, 1))
        offsets = rng.normal(size=(len(runs), draws)) * np.sqrt(tau2)
        return yhat[:, None] + offsets[cl] + rng.normal(size=(len(t), draws)) * sigma[:, None] * np.sqrt(phi)
    phi = max(1.0, float(np.sum(z ** 2)) / max(len(t) - k, 1))
    return yhat[:, None] + rng.normal(size=(len(t), draws)) * sigma[:, None] * np.sqrt(phi)
