"""Emergence verdicts: is a metric-vs-scale curve a threshold, smooth, flat, inverse or noise?

Owns ``classify`` (one curve -> ``Verdict``) and ``verdicts`` (a tidy table -> one row per
(family, task, subtask, metric[, n_shot, setting]) curve), plus the definitions other papers use,
reported beside ours: BIG-bench breakthroughness and linearity, and Wei et al.'s criterion.

How a verdict is reached (thresholds live in ``ClassifyConfig``):
1. Bad input (NaN/inf, < 3 points, x that does not vary, proportions outside [0, 1]) and
   curves at the metric's floor (exact match ~0 everywhere) are ``undetermined``.
2. Everything is fitted on a capability axis t in [0, 1] (log size, or -ln loss: 1 = most
   capable) and on the metric oriented so that up is better. Noise: the stderr column, else
   binomial from n, else estimated from the curve (and the evidence says so).
3. Candidates, fitted by weighted least squares: constant; smooth = linear, power law
   (a + b exp(c t), i.e. a power law in size or loss) and a gentle sigmoid (10-90% rise over
   >= ``gentle_width`` of the observed range); threshold = Du et al.'s hinge (flat, then
   rising linearly past t0), the same with a saturating rise, and a steep sigmoid (10-90% rise
   within ``steep_width``), all with >= 2 distinct x on the plateau and >= 2 above it. Models
   are compared by AIC on chi2 / dispersion (quasi-AIC; AICc when the noise was estimated).
   For pooled tables (x = loss over sizes and steps) more than ``max_points`` points are
   judged as that many inverse-variance bins along x.
4. No monotone model beats the constant by ``trend_margin``: ``flat`` if the constant fits
   within the noise, else ``noisy``. A trend undone by a drop of ``reversal_se`` SE and
   ``reversal_share`` of its size is ``noisy`` (not monotone); a decrease is ``inverse``.
5. An increase is ``emergent`` only if the best threshold model beats every smooth model by
   ``emergent_margin`` AND its rise is at least ``jump_se`` standard errors; else ``smooth``.
   A jump inside the noise the data carries is therefore never emergent.
"""

import functools
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy import special

from emergence import schema as S
from emergence.analysis.curves import AXES as CURVE_AXES
from emergence.analysis.curves import (CONSTANT, EXPONENTIAL, LINEAR, SATURATING_THRESHOLD, SIGMOID, THRESHOLD,
                              Axis, CurveFit, bin_curve, median, noise_model, one_blas_thread, profile, profile_many,
                              sigmoid_grid)
from emergence.analysis.parallel import map_chunks
from emergence.metric_rules import directions_of, metric_higher_is_better, metric_is_proportion, metric_kind
from emergence.names import lookup

LABELS = ("emergent", "smooth", "flat", "undetermined", "inverse", "noisy")
def definition(config=None) -> str:
    """What `emergent` means, in one paragraph: the report legend, `emergence analyze --help`
    and docs/verdicts.md all state this text (a test keeps the docs in step)."""
    c = config or ClassifyConfig()
    return (f"Emergent: the curve sits at the floor (chance; where chance is unknown, or for a binary task "
            f"whose constant-answer rate the table does not give, the level of the least capable points) "
            f"for at least 2 judged points and {c.min_floor_share:.0%} of them, past the warm-up (checkpoints "
            f"before {c.warmup_fraction:.0%} of their run's tokens are not judged), then rises: a threshold "
            f"model beats every smooth model by >= {c.emergent_margin:g} AIC and its rise is >= {c.jump_se:g} "
            f"standard errors (Wei et al. 2022: not present, then present; Du et al. 2024: at chance above "
            f"a loss threshold). A bend from a plateau well above the floor (more than 2 SE and "
            f"{c.floor_tolerance:.0%} of the metric's range) is smooth, noted 'accelerating'.")


# Reasons that mean "no curve to judge" rather than a verdict: these rows have judged=False and
# `emergence analyze` moves them to its not_judged table.
NOT_JUDGED = ("only ", "constant axis", "fewer than 3 distinct x", "duplicate axis")
LN9 = float(np.log(9.0))
_CHI2_95 = float(special.chdtri(1, 0.05))   # chi2(1) 95% quantile, 3.84 (scipy.stats is slow per call)


@dataclass(frozen=True)
class ClassifyConfig:
    emergent_margin: float = 8.0   # AIC units (likelihood ratio ~55): more than a change point gains by chance
    trend_margin: float = 8.0      # AIC units a monotone model needs over a constant
    jump_se: float = 5.0           # a threshold's rise, in standard errors of its end points
    # Sigmoid 10-90% widths in the axis's own units, never as shares of the observed window (the
    # same curve must get the same label seen over 2 decades or 4). Chosen on the synthetic
    # benchmark (development set: its threshold sigmoids rise within <= 0.45 decade or 0.27 nats,
    # its smooth ones over >= 0.9 decade or 1.1 nats): gentle = the narrowest smooth width there,
    # steep just above the widest threshold one; between steep and gentle: neither.
    steep_decades: float = 0.5     # size, tokens, compute: a rise within half a decade is a jump
    gentle_decades: float = 0.9    # ... and one over >= 0.9 decade is smooth
    steep_nats: float = 0.3        # loss: a rise within 0.3 nats (at the curve's mean loss) is a jump
    gentle_nats: float = 1.1       # ... and one over >= 1.1 nats is smooth
    steep_width: float = 0.3       # the same, for the unitless 'capability' axis (its own units)
    gentle_width: float = 0.6
    # Emergence = at the floor, then a rise (Wei et al. 2022; Du et al. 2024). The plateau must sit
    # within max(2 SE, floor_tolerance x the metric's range above chance) of the floor (the
    # tolerance of our Wei et al. criterion) and hold >= 2 distinct x and >= min_floor_share of the
    # judged points (a floor made of a few edge points is not observed; warm-up checkpoints are
    # left out by warmup_fraction). The share was chosen on the development ladders of
    # ``analysis.dense_ladders`` (recall 0.92 at 0.01 vs 0.35 at 0.05, no smooth control emergent
    # at any share; two seeds agree), not on the real labelled curves it is scored on.
    floor_tolerance: float = 0.05
    min_floor_share: float = 0.01
    # Checkpoints before warmup_fraction of their run's final tokens (or steps) are the warm-up
    # (learning-rate warm-up and the initial loss plateau: 1% in Pythia/GPT-NeoX, <= 1% in OLMo
    # and LLaMA) and are not judged on the tokens, flops and pooled loss axes.
    warmup_fraction: float = 0.01
    # Without stderr or n the noise is estimated from the curve's own second differences; below
    # this many points that estimate is unreliable (< 6 differences) and the verdict undetermined.
    min_points_estimated: int = 8
    reversal_se: float = 4.5       # a drop against the trend, in SE, that makes a curve non-monotone
    reversal_share: float = 0.5    # ... when it also undoes this share of the trend's change
    max_points: int = 200          # pooled tables with more points are judged on this many bins
    alpha: float = 1e-3            # goodness-of-fit level: "fits within the noise"
    floor_alpha: float = 0.01      # level of the test "every point is at the metric's floor"
    bootstrap: int = 100           # parametric draws for the threshold location (emergent only)
    seed: int = 0
    drop_nonfinite: bool = False   # False: NaN/inf anywhere -> undetermined, never a silent drop


@dataclass(frozen=True)
class Evidence:
    reason: str
    best_model: str | None = None
    margin: float = float("nan")       # AIC advantage of the label's model over the runner-up label
    trend_delta: float = float("nan")  # AIC advantage of the best monotone model over a constant
    eta: float | None = None           # threshold location in x units (size, or loss in nats)
    eta_lo: float | None = None
    eta_hi: float | None = None
    eta_draws: tuple = field(default=(), repr=False)
    jump_se: float = float("nan")
    points_above_chance: int | None = None
    n_points: int = 0
    noise: str = ""                    # 'stderr' | 'binomial' | 'estimated' (+ ', N points in B bins')
    dispersion: float = float("nan")   # scatter beyond the stated noise (1 = none)
    breakthroughness: float = float("nan")
    linearity: float = float("nan")
    wei_emergent: bool | None = None
    floor: float | None = None         # the level emergence starts from (metric units), None: unknown
    floor_source: str = ""             # 'chance' | 'measured' (chance unknown, or binary: majority rate)
    accelerating: bool = False         # a bend upwards from a plateau well above the floor (not emergence)
    non_monotone_after_onset: bool = False   # emergent, then a later point falls back beyond its noise
    judged: bool = True                # False: no curve to judge (< 3 points or distinct x, duplicate axis)
    ic: dict = field(default_factory=dict, repr=False)  # quasi-AIC by role ('threshold_up' = rising hinge)


@dataclass(frozen=True)
class Verdict:
    label: str
    evidence: Evidence
    best_fit: CurveFit | None = None
    alternatives: tuple = ()           # the other fits, best (lowest AIC) first

    def summary(self) -> str:
        e = self.evidence
        eta = "" if e.eta is None else f", eta={e.eta:.4g} [{e.eta_lo:.4g}, {e.eta_hi:.4g}]"
        return f"{self.label}: {e.reason} (model={e.best_model}, margin={e.margin:.1f}{eta})"


def classify(x, y=None, *, stderr=None, n=None, chance=None, higher_is_better=None,
             axis="params", bounded=None, config=ClassifyConfig()) -> Verdict:
    """Verdict for one curve: ``x`` in the units of ``axis`` (params/tokens/flops: counts,
    loss: nats, 'capability': already increasing with capability) and y, or one curve's rows
    of a tidy table (value, stderr, n, chance, higher_is_better and metric columns are used).
    ``higher_is_better``: default True; for a table, its column, else the metric's name rule.
    ``bounded``: the metric is a proportion in [0, 1] (default: when ``n`` is given, or by
    name for a table); proportions get the binomial noise model and the floor test."""
    if isinstance(x, pd.DataFrame):
        frame, x = x, x[axis].to_numpy(float)
        y = frame[S.VALUE].to_numpy(float)
        stderr = _column(frame, S.STDERR) if stderr is None else stderr
        n = _column(frame, S.N) if n is None else n
        chance = _scalar(frame, S.CHANCE) if chance is None else chance
        if S.METRIC in frame and frame[S.METRIC].nunique() == 1:
            metric = frame[S.METRIC].iloc[0]
            if higher_is_better is None:
                higher_is_better = directions_of(frame)[metric]
            bounded = metric_is_proportion(metric) if bounded is None else bounded
    higher_is_better = True if higher_is_better is None else bool(higher_is_better)
    x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
    se = None if stderr is None else np.broadcast_to(np.asarray(stderr, float), y.shape).copy()
    nn = None if n is None else np.broadcast_to(np.asarray(n, float), y.shape).copy()
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} values, y has {len(y)}")
    lookup("axis", axis, CURVE_AXES)                      # unknown axis names fail here
    bounded = nn is not None if bounded is None else bounded
    bad = ~np.isfinite(x) | ~np.isfinite(y) | (nn is not None and ~np.isfinite(nn))
    if bad.any():
        if not config.drop_nonfinite:
            return _undetermined(f"{int(bad.sum())} non-finite value(s) (NaN/inf) among {len(y)} points", len(y))
        x, y = x[~bad], y[~bad]
        se, nn = (None if a is None else a[~bad] for a in (se, nn))
    chance = None if chance is None or not np.isfinite(chance) else float(chance)
    problem = _check(x, y, se, nn, axis, bounded, chance)
    if problem:
        return _undetermined(problem, len(y), judged=not problem.startswith(NOT_JUDGED))
    return _classify(x, y, se, nn, chance, higher_is_better, axis, bounded, config)


def verdicts(df: pd.DataFrame, axis: str = "params", *, chance=None, higher_is_better=None,
             keys=(S.FAMILY, S.TASK, S.SUBTASK, S.METRIC), extra_keys=S.SETTING_KEYS,
             config=ClassifyConfig(), workers: int = 0) -> pd.DataFrame:
    """One verdict row per curve of a tidy table. axis='params' keeps the final step of each
    model (one point per size, said in the 'note' column); 'tokens' gives one curve per model
    (its training run); 'loss' and 'flops' pool every checkpoint of a family, sizes and steps
    together. Rows without a value or x (x <= 0 on a log axis) are dropped and counted in
    'n_dropped'. ``chance``/``higher_is_better`` override the table's columns (a metric without
    a declared direction follows the name rule ``metric_higher_is_better``): a value, or a dict
    keyed by (task, subtask, metric), (task, metric), task or metric. Each row says the
    ``metric_kind`` and ``higher_is_better`` used. Proportions are recognised by name
    (``metric_is_proportion``). ``workers``: processes fitting curves (0: one per CPU)."""
    return verdicts_by_axis(df, [axis], chance=chance, higher_is_better=higher_is_better, keys=keys,
                            extra_keys=extra_keys, config=config, workers=workers)[axis]


def verdicts_by_axis(df: pd.DataFrame, axes, **options) -> dict:
    """``verdicts`` on several axes, {axis: table}: every axis's curves go to one pool of workers
    (one start-up, and no worker idles while another finishes an axis)."""
    config, workers = options.pop("config", ClassifyConfig()), options.pop("workers", 0)
    prepared = {axis: _axis_curves(df, axis, warmup_fraction=config.warmup_fraction, **options) for axis in axes}
    todo = [c for p in prepared.values() if p for g, c in enumerate(p[1]) if g not in p[4]]
    rows = iter(classify_many(todo, config, workers=workers))
    out = {}
    for axis, p in prepared.items():
        if p is None:
            out[axis] = pd.DataFrame()
            continue
        meta, curves, dropped, note, skip, warm = p
        found = pd.DataFrame([verdict_row(_undetermined(skip[g], len(c[0]), judged=False)) if g in skip
                              else next(rows) for g, c in enumerate(curves)])
        out[axis] = pd.concat([meta.assign(axis=axis), found.assign(n_dropped=dropped, n_warmup=warm, note=note)],
                              axis=1)
    return out


def _axis_curves(df, axis, *, chance=None, higher_is_better=None, keys=(S.FAMILY, S.TASK, S.SUBTASK, S.METRIC),
                 extra_keys=S.SETTING_KEYS, warmup_fraction=0.0):
    """(meta, curves, dropped, note, skip, warmup) of one axis (see ``verdicts``), or None when no
    row is left. ``skip``: {curve index: reason} for curves whose axis duplicates another;
    ``warmup``: per curve, the warm-up checkpoints left out (``warmup_mask``)."""
    xcol = axis
    if xcol not in df.columns:
        raise KeyError(f"The table has no {xcol!r} column for axis {axis!r}; columns: {', '.join(map(str, df.columns))}")
    keys = list(keys) + [k for k in extra_keys if k in df.columns]
    used = [c for c in dict.fromkeys(keys + [S.MODEL, S.STEP, S.TOKENS, S.PARAMS, xcol, S.VALUE, S.STDERR, S.N,
                                             S.CHANCE, S.METRIC_KIND, S.HIGHER_IS_BETTER]) if c in df]
    data = pd.DataFrame({c: df[c] for c in used})  # no deep copy of the whole table and its attrs
    data[S.SUBTASK] = data[S.SUBTASK].fillna("").astype(str) if S.SUBTASK in data else ""
    note = ""
    if axis in (S.PARAMS, S.PARAMS_NONEMBED) and S.STEP in data and S.MODEL in data and data[S.STEP].notna().any():
        last = data.groupby([S.FAMILY, S.MODEL], dropna=False)[S.STEP].transform("max")
        data, note = data[(data[S.STEP] == last) | last.isna()], "final step of each model"
    elif axis == S.TOKENS and S.MODEL in data:
        keys.append(S.MODEL)
    if data.empty:
        return None
    # Group once, then work on numpy slices, with every per-group fact computed for all groups
    # at once: per-group pandas indexing (and even per-group numpy calls) cost more than the fits.
    codes = data.groupby(keys, sort=True, dropna=False).ngroup().to_numpy()
    order = np.argsort(codes, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(codes[order]) != 0])
    groups = len(starts)
    meta = data[keys].iloc[order[starts]].reset_index(drop=True)
    x, y = data[xcol].to_numpy(float), data[S.VALUE].to_numpy(float)
    ok = np.isfinite(x) & np.isfinite(y) & ((x > 0) if axis != "capability" else True)
    warm = warmup_mask(data, warmup_fraction) if axis in (S.TOKENS, S.FLOPS, S.LOSS) else np.zeros(len(x), bool)
    dropped = np.bincount(codes[~ok], minlength=groups)
    warmup = np.bincount(codes[ok & warm], minlength=groups)
    ok &= ~warm
    skip = _duplicate_axis(data, axis, codes, ok)
    order = order[ok[order]]                                       # the rows each curve keeps
    bounds = np.r_[0, np.cumsum(np.bincount(codes[ok], minlength=groups))]
    extra = {}                                                     # stderr and n: None when a curve has none
    for c in (S.STDERR, S.N):
        v = data[c].to_numpy(float) if c in data else None
        extra[c] = None if v is None else (v, np.bincount(codes[ok & ~np.isnan(v)], minlength=groups) > 0)
    table_chance = _group_medians(data, codes, ok, groups)
    metrics = meta[S.METRIC].tolist()
    table_kind, table_hib = (_group_first(data, c, codes, groups) for c in (S.METRIC_KIND, S.HIGHER_IS_BETTER))
    per_curve = meta.to_dict("records") if isinstance(chance, dict) or isinstance(higher_is_better, dict) else None
    curves = []
    for g in range(groups):
        idx = order[bounds[g]:bounds[g + 1]]
        se, nn = (None if e is None or not e[1][g] else e[0][idx] for e in (extra[S.STDERR], extra[S.N]))
        m = per_curve[g] if per_curve else {}
        c = _lookup(chance, m)
        c = table_chance[g] if c is None else c
        hib = _lookup(higher_is_better, m)
        hib = table_hib[g] if hib is None else hib            # what the task declared
        hib = metric_higher_is_better(metrics[g]) if hib is None else bool(hib)  # the name rule
        curves.append((x[idx], y[idx], se, nn, c, hib, axis, metric_is_proportion(metrics[g])))
    meta[S.METRIC_KIND] = [k if k is not None else metric_kind(m) for k, m in zip(table_kind, metrics)]
    meta[S.HIGHER_IS_BETTER] = [curve[5] for curve in curves]
    return meta, curves, dropped, note, skip, warmup


def warmup_mask(data, fraction):
    """Rows in the warm-up of their run: before ``fraction`` of the run's (family, model) final
    tokens (steps where the run has no token counts). A run's last checkpoint is never warm-up."""
    if fraction <= 0 or S.MODEL not in data or not ({S.TOKENS, S.STEP} & set(data.columns)):
        return np.zeros(len(data), bool)
    run = [data[S.FAMILY], data[S.MODEL]]
    progress = pd.Series(np.nan, index=data.index)
    for col in (S.TOKENS, S.STEP):   # tokens where a run has them, else its steps
        if col in data:
            v = pd.to_numeric(data[col], errors="coerce")
            has = v.notna().groupby(run, dropna=False).transform("all") & progress.isna()
            progress = progress.mask(has, v)
    final = progress.groupby(run, dropna=False).transform("max")
    return (progress < fraction * final).to_numpy(bool)


def _duplicate_axis(data, axis, codes, ok):
    """{curve: reason} for curves whose x is a constant multiple of another axis's (flops = c N
    when every point has the same tokens, c D for one model): the same curve, judged once."""
    skip = {}
    for other in (S.PARAMS, S.TOKENS):
        if axis != S.FLOPS or other not in data:
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.log(data[S.FLOPS].to_numpy(float)) - np.log(data[other].to_numpy(float))
            lx = np.log(data[S.FLOPS].to_numpy(float))
        use = ok & np.isfinite(r)
        g = pd.DataFrame({"r": r[use], "lx": lx[use]}).groupby(codes[use]).agg(["min", "max"])
        dup = (g[("r", "max")] - g[("r", "min")] <= 1e-6) & (g[("lx", "max")] - g[("lx", "min")] > 1e-6)
        dup &= pd.Series(np.bincount(codes[ok], minlength=codes.max() + 1)[g.index] == np.bincount(
            codes[use], minlength=codes.max() + 1)[g.index], index=g.index)   # every kept point has it
        for c in g.index[dup.to_numpy()]:
            skip.setdefault(int(c), f"duplicate axis: flops = c x {other} on this curve (judged on {other})")
    return skip


def _group_first(data, col, codes, groups):
    """Each curve's first non-empty value of ``col`` (None where it has none, or no such column)."""
    out = [None] * groups
    if col in data:
        have = data[col].notna().to_numpy(bool)
        first = pd.Series(data[col].to_numpy(object)[have]).groupby(codes[have]).first()
        for g, value in first.items():
            out[g] = value
    return out


def _group_medians(data, codes, ok, groups):
    """Each curve's chance: the median of its finite-row chance values (None when none is finite)."""
    if S.CHANCE not in data:
        return [None] * groups
    v = data[S.CHANCE].to_numpy(float)
    use = ok & ~np.isnan(v)
    med = pd.Series(v[use]).groupby(codes[use]).median().reindex(range(groups))
    finite = np.bincount(codes[ok & np.isfinite(v)], minlength=groups) > 0
    return [float(m) if f else None for m, f in zip(med.to_numpy(), finite)]


def classify_many(curves, config=ClassifyConfig(), *, workers: int = 0) -> list[dict]:
    """``verdict_row`` of each curve (x, y, stderr, n, chance, higher_is_better, axis, bounded),
    in order, in ``workers`` processes (0: one per CPU). Each curve's bootstrap is seeded from
    ``config.seed`` alone, so rows do not depend on the number of workers or on the chunking."""
    return map_chunks(functools.partial(_classify_chunk, config=config), curves, workers=workers,
                      chunk=250, min_items=64)


def _classify_chunk(curves, config):
    with one_blas_thread():
        return [verdict_row(classify(x, y, stderr=se, n=nn, chance=c, higher_is_better=hib, axis=axis,
                                     bounded=bounded, config=config))
                for x, y, se, nn, c, hib, axis, bounded in curves]


def verdict_row(v: Verdict) -> dict:
    e = v.evidence
    return {"label": v.label, "best_model": e.best_model, "margin": e.margin, "eta": e.eta,
            "eta_lo": e.eta_lo, "eta_hi": e.eta_hi, "jump_se": e.jump_se,
            "points_above_chance": e.points_above_chance, "n_points": e.n_points,
            "breakthroughness": e.breakthroughness, "linearity": e.linearity,
            "wei_emergent": e.wei_emergent, "noise": e.noise, "dispersion": e.dispersion,
            "floor": e.floor, "floor_source": e.floor_source, "accelerating": e.accelerating,
            "non_monotone_after_onset": e.non_monotone_after_onset, "judged": e.judged,
            "reason": e.reason}


def breakthroughness_linearity(t, y):
    """BIG-bench (Srivastava et al. 2022, App. B "linearity and breakthroughness"), on scores
    y_i sorted by scale: I(y) = sign(argmax y - argmin y) (max y - min y);
    linearity L = I(y) / sqrt(mean_i (y_{i+1} - y_i)^2)   (root mean square step),
    breakthroughness B = I(y) / sqrt(median_i (y_{i+1} - y_i)^2) (root median square step).
    Both are invariant to BIG-bench's score normalisation. Ties in t are averaged first."""
    ut, inv = np.unique(np.asarray(t, float), return_inverse=True)
    m = np.bincount(inv, np.asarray(y, float)) / np.bincount(inv)
    if len(m) < 3:
        return np.nan, np.nan
    d2 = np.diff(m) ** 2
    i = np.sign(np.argmax(m) - np.argmin(m)) * (m.max() - m.min())
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(i / np.sqrt(median(d2))), float(i / np.sqrt(np.mean(d2)))


def wei_emergent(t, y, sigma, baseline, scale=None) -> bool | None:
    """Wei et al. (2022): "not present in smaller models, present in larger ones". Here: the
    smallest model is near the baseline (chance): within 2 SE or 5% of the metric's range
    above it; the largest is above it by 3 SE and beats the smallest by 5% of the range (by
    3 SE of the difference when the range is unknown). y oriented so that up is better."""
    if baseline is None or len(y) < 2:
        return None
    lo, hi = np.argmin(t), np.argmax(t)
    tol = 0.05 * scale if scale is not None and np.isfinite(scale) else 0.0
    near = y[lo] - baseline <= max(2 * sigma[lo], tol)
    gain = y[hi] - y[lo] >= (tol if tol > 0 else 3 * np.hypot(sigma[lo], sigma[hi]))
    return bool(near and y[hi] - baseline >= 3 * sigma[hi] and gain)


# ---- the procedure ------------------------------------------------------------------------

def _classify(x, y, se, nn, chance, hib, axis, bounded, cfg) -> Verdict:
    sign = 1.0 if hib else -1.0
    known = chance is not None
    base = None if chance is None else sign * chance
    floor = (0.0 if hib else -1.0) if bounded else None
    base = floor if base is None else base
    scale = (1.0 if hib else 0.0) - base if bounded and base is not None else None
    ax = Axis.over(axis, x)
    t, yo, npts = ax.to_t(x), sign * y, len(y)
    sigma, noise = noise_model(t, y, se, nn, bounded)
    if npts > cfg.max_points:
        t, yo, sigma = bin_curve(t, yo, sigma, cfg.max_points)
        noise += f", {npts} points in {cfg.max_points} bins"
    widths = _widths(ax, x, cfg)
    B, L = breakthroughness_linearity(t, yo)
    common = dict(n_points=npts, noise=noise, breakthroughness=B, linearity=L,
                  wei_emergent=wei_emergent(t, yo, sigma, base, scale),
                  points_above_chance=None if base is None else int(np.sum((yo - base) / sigma > 2)))
    n_raw, npts = npts, len(yo)
    if floor is not None:
        c2 = float(np.sum(((yo - floor) / sigma) ** 2))
        if special.chdtrc(npts, c2) >= cfg.floor_alpha and np.max((yo - floor) / sigma) < 3:
            return Verdict("undetermined", Evidence(
                "at the metric's floor everywhere (e.g. exact match ~0): an improvement below the "
                "floor would be invisible, so neither smooth nor emergent can be shown", **common))
    estimated = noise.startswith("estimated")
    # The floor emergence starts from: chance where it is known and means "nothing learned"; for
    # a binary task (chance 1/2) the constant-answer (majority) rate, which the table does not
    # give, and where chance is unknown, the level of the least capable points (both 'measured').
    binary = known and bounded and abs(chance - 0.5) < 1e-6
    floor_source = "chance" if known and not binary else "measured"
    fell = {}   # a rising curve that falls back: where the fall starts (t) and what it is

    def judge(fits, grids, complete):
        """The verdict from these fits; None when the late threshold shapes could change it."""
        # Scatter beyond the stated noise (e.g. seed-to-seed variation) shrinks every AIC gap:
        # quasi-AIC on chi2 / dispersion, with the small-sample term when the noise was estimated.
        phi = max(1.0, min(f.chi2 / (npts - f.k) for f in fits.values() if npts > f.k))
        if not complete and phi > 1:
            return None   # a late shape may fit closer and lower the dispersion
        ic = {m: f.chi2 / phi + 2 * f.k + (2 * (f.k + 1) * (f.k + 2) / max(npts - f.k - 2, 1e-9) if estimated else 0)
              for m, f in fits.items()}
        mono = [m for m in ic if m not in ("constant",) + THRESHOLDS]
        best_mono = min(mono, key=ic.get) if mono else "constant"
        trend = ic["constant"] - ic[best_mono]
        order = sorted(ic, key=ic.get)
        info = dict(common, dispersion=phi, trend_delta=trend, ic=ic,
                    floor=None if not known else float(chance), floor_source=floor_source if known else "")
        alts = tuple(fits[m] for m in order)

        def verdict(label, reason, model, margin, **kw):
            return Verdict(label, Evidence(reason, best_model=_public(model), margin=margin,
                                           **{**info, **kw}), fits[model], alts)

        if trend < cfg.trend_margin:
            p_const = 1.0 if estimated else special.chdtrc(max(npts - 1, 1), fits["constant"].chi2)
            level = fits["constant"].values[0]
            if p_const >= cfg.alpha:
                where = ("at chance" if known and abs(level - base) <= 2 * median(sigma)
                         else f"at {sign * level:.4g}" + (f" (chance {sign * base:.4g})" if known else " (chance unknown)"))
                return verdict("flat", f"no trend (best monotone model {_public(best_mono)} gains "
                               f"{trend:.1f} AIC < {cfg.trend_margin}); constant {where}", "constant", -trend)
            return verdict("noisy", f"varies beyond its noise (constant rejected, p={p_const:.1g}) but no "
                           f"monotone model explains it (gain {trend:.1f} AIC < {cfg.trend_margin})",
                           "constant", -trend)
        fit = fits[best_mono]
        change = float(np.diff(fit.spec.func(np.array([0.0, 1.0]), *fit.values))[0])
        drop, drop_z, drop_from = _reversal(t, yo, sigma, np.sign(change))
        reversed_ = drop_z >= cfg.reversal_se and drop >= cfg.reversal_share * abs(change)
        fall = f"falls back {drop:.3g} ({drop_z:.1f} SE) against a trend of {abs(change):.3g}"
        if reversed_ and change < 0:
            return verdict("noisy", f"not monotone: {fall}", best_mono, -trend)
        if change < 0:
            return verdict("inverse", f"gets worse with scale ({_public(best_mono)} beats a constant by "
                           f"{trend:.1f} AIC)", best_mono, trend)
        if not complete:
            return None   # rising (a fall after an onset included): the threshold shapes decide
        thr = [m for m in THRESHOLDS if m in ic]
        smooth = min((m for m in ("linear", "power_law", "sigmoid_gentle") if m in ic), key=ic.get)
        if not thr:
            if reversed_:
                return verdict("noisy", f"not monotone: {fall}", best_mono, -trend)
            return verdict("smooth", "improves with scale; too few points for a threshold model",
                           smooth, np.nan)
        best_thr = min(thr, key=ic.get)
        margin = ic[smooth] - ic[best_thr]
        jump, onset, plateau_n, plateau, se_plateau = _jump(fits[best_thr], t, sigma, phi)
        threshold_wins = margin >= cfg.emergent_margin and jump >= cfg.jump_se
        tol = max(2 * np.sqrt(phi) * se_plateau, cfg.floor_tolerance * (scale if scale else float(np.ptp(yo))))
        at_floor = floor_source == "measured" or plateau - base <= tol
        support = max(2, int(np.ceil(cfg.min_floor_share * npts)))
        if threshold_wins and at_floor and plateau_n >= support and (not reversed_ or drop_from > onset):
            eta, lo, hi, draws = _bootstrap_eta(fits[best_thr], grids[best_thr], t, sigma * np.sqrt(phi), ax, cfg)
            where = (f"at chance ({sign * base:.4g})" if floor_source == "chance" else
                     "at its measured floor (" + ("binary task: the constant-answer rate" if binary else
                                                  "chance unknown: the least capable points' level") + ")")
            later = f"; later not monotone: {fall}" if reversed_ else ""
            return verdict("emergent", f"{where} for {plateau_n} points, then rises {jump:.1f} SE; "
                           f"{_public(best_thr)} beats {_public(smooth)} by {margin:.1f} AIC{later}", best_thr,
                           margin, eta=eta, eta_lo=lo, eta_hi=hi, eta_draws=draws, jump_se=jump,
                           non_monotone_after_onset=bool(reversed_))
        if reversed_:
            fell.update(t=drop_from, fall=fall)
            return verdict("noisy", f"not monotone: {fall}", best_mono, -trend)
        if threshold_wins and not at_floor:
            return verdict("smooth", f"accelerating, not emergent: {_public(best_thr)} beats {_public(smooth)} by "
                           f"{margin:.1f} AIC, but its plateau ({sign * plateau:.4g}) is well above the floor "
                           f"(chance {sign * base:.4g}; tolerance {tol:.3g}): emergence starts at the floor",
                           smooth, -margin, jump_se=jump, accelerating=True)
        why = (f"a threshold fits worse (by {-margin:.1f} AIC)" if margin <= 0 else
               f"a threshold fits better by only {margin:.1f} AIC < {cfg.emergent_margin}" if margin < cfg.emergent_margin
               else f"the threshold's rise is only {jump:.1f} SE < {cfg.jump_se}" if jump < cfg.jump_se
               else f"the threshold's plateau holds only {plateau_n} of {npts} {'bins' if npts < n_raw else 'points'} "
               f"(< {support}): no observed floor")
        return verdict("smooth", f"improves with scale ({_public(smooth)}); {why}", smooth, -margin,
                       jump_se=jump)

    # The saturating and steep threshold shapes cost most of the fitting but matter only for a
    # rising curve, or when they could lower the dispersion: a curve judged flat, noisy or
    # inverse without them gets exactly the verdict it gets with them (its alternatives lack them).
    fits, grids = _fit_all(t, yo, sigma, cfg, ax, int(sign), widths, late=False)
    if "constant" not in fits:
        return Verdict("undetermined", Evidence("no model could be fitted (degenerate noise or values)", **common))
    v = judge(fits, grids, complete=False)
    if v is None:
        more, more_grids = _fit_all(t, yo, sigma, cfg, ax, int(sign), widths, late=True)
        v = judge({**fits, **more}, {**grids, **more_grids}, complete=True)
    if fell:
        v = _onset_before_fall(v, x, y, se, nn, chance, hib, axis, bounded, cfg, ax.to_t(x) <= fell["t"] + 1e-12,
                               fell["fall"])
    if estimated and n_raw < cfg.min_points_estimated:
        return Verdict("undetermined", replace(
            v.evidence, reason=f"noise unknown (no stderr or n), {n_raw} points: too few to estimate it from "
            f"the curve's own scatter (with the estimate it would be {v.label}: {v.evidence.reason})",
            eta=None, eta_lo=None, eta_hi=None, eta_draws=()), v.best_fit, v.alternatives)
    return v


def _onset_before_fall(v, x, y, se, nn, chance, hib, axis, bounded, cfg, before, fall):
    """An onset is a fact of its own: a rising curve that falls back later is judged again on
    the points up to where the fall starts; an emergent onset there is reported (with its eta),
    the fall recorded beside it (non_monotone_after_onset). Otherwise the verdict stays ``v``."""
    if len(np.unique(x[before])) < 4 or before.all():
        return v
    pick = (lambda a: None if a is None else a[before])
    pre = _classify(x[before], y[before], pick(se), pick(nn), chance, hib, axis, bounded, cfg)
    if pre.label != "emergent":
        return v
    e = pre.evidence
    return Verdict("emergent", replace(e, reason=f"{e.reason}; then not monotone: {fall} (onset judged on the "
                                       f"{int(before.sum())} points before the fall)",
                                       non_monotone_after_onset=True, n_points=len(y)), pre.best_fit, pre.alternatives)


def _widths(ax, x, cfg):
    """(steep, gentle) sigmoid 10-90% widths on this curve's t axis, from the absolute widths of
    ``cfg`` (decades; nats of loss at the curve's geometric-mean loss; capability units)."""
    span = ax.u_hi - ax.u_lo
    kind = CURVE_AXES[ax.name]
    if kind == "log10":
        steep, gentle = cfg.steep_decades, cfg.gentle_decades
    elif kind == "-ln":   # u = -ln L, so du = dL / L
        mean_loss = float(np.exp(-(ax.u_lo + ax.u_hi) / 2))
        steep, gentle = cfg.steep_nats / mean_loss, cfg.gentle_nats / mean_loss
    else:
        steep, gentle = cfg.steep_width, cfg.gentle_width
    return tuple(max(round(w / span, 4), 1e-3) for w in (steep, gentle))   # rounded: grids are cached by width


THRESHOLDS = ("threshold_up", "saturating_up", "steep_up")


def _fit_all(t, y, sigma, cfg, ax, ysign, widths, late=None):
    """Every candidate with a residual degree of freedom (two for threshold shapes), by role,
    and the grid each was profiled on. Threshold shapes come in a rising-only form too.
    ``widths``: the (steep, gentle) sigmoid widths on the t axis (``_widths``).
    ``late``: only the saturating and steep threshold shapes (True), all but those (False)."""
    npts, ut = len(y), np.unique(t)
    roles = [(role, spec, sign_param) for role, spec, sign_param in _ROLES
             if (late is None or late == (role in ("saturating", "steep")))
             and npts - len(spec.params) >= (2 if sign_param else 1)
             and not (sign_param and len(ut) < 4)]   # break points need >= 2 distinct x on either side
    thetas = [_grid(role, ut, widths, ax) for role, _, _ in roles]
    fits, grids = {}, {}
    for (role, spec, sign_param), theta, (chi2, beta) in zip(
            roles, thetas, profile_many([(spec, th) for (_, spec, _), th in zip(roles, thetas)], t, y, sigma)):
        variants = {role: chi2[:, 0]}
        if sign_param:
            up = np.where(beta[:, 0, spec.linear.index(sign_param)] >= 0, chi2[:, 0], np.inf)
            variants = {role: chi2[:, 0], f"{role}_up": up} if role == "threshold" else {f"{role}_up": up}
        for name, c2 in variants.items():
            g = int(np.argmin(c2))
            if not np.isfinite(c2[g]):
                continue
            th, b, c2g = theta[g], beta[g, 0], float(c2[g])
            if role == "sigmoid_gentle":
                th, b, c2g = _refine_gentle(spec, t, y, sigma, th, b, c2g, widths[1], ax)
            fits[name], grids[name] = CurveFit(spec, _public(name), spec.assemble(t, th, b),
                                               t, y, sigma, c2g, True, ax, ysign), theta
    return fits, grids


def _refine_gentle(spec, t, y, sigma, theta, beta, chi2, width, ax, rounds=3):
    """The best gentle sigmoid of the lattice, refined: three rounds of a 5 x 5 grid around it,
    halving the steps (from one lattice step in midpoint and rate), never steeper than gentle.
    The fit then approaches the continuous optimum, whatever the window's lattice."""
    k_max = 2 * LN9 / width
    dk, dx = np.log(32) / 11, width / 4
    for _ in range(rounds):
        ks = np.minimum(theta[0] * np.exp(np.linspace(-dk, dk, 5)), k_max)
        grid = sigmoid_grid(None, np.unique(ks), theta[1] + np.linspace(-dx, dx, 5))
        c2, b = profile(spec, t, y, sigma, grid)
        g = int(np.argmin(c2[:, 0]))
        if c2[g, 0] < chi2:
            theta, beta, chi2 = grid[g], b[g, 0], float(c2[g, 0])
        dk, dx = dk / 2, dx / 2
    return theta, beta, chi2


# role, shape, the linear parameter whose sign says "rising" (threshold shapes only)
_ROLES = (("constant", CONSTANT, None), ("linear", LINEAR, None), ("power_law", EXPONENTIAL, None),
          ("sigmoid_gentle", SIGMOID, None), ("threshold", THRESHOLD, "s"),
          ("saturating", SATURATING_THRESHOLD, "a"), ("steep", SIGMOID, "a"))


def _grid(role, ut, widths, ax):
    """The profile grid of a role's nonlinear parameters, on the t axis (distinct values ut)."""
    if role in ("constant", "linear"):
        return np.empty((1, 0))
    if role == "power_law":
        return _POWER_RATES[:, None]
    if role == "sigmoid_gentle":
        return _gentle_grid(widths[1], ax.u_lo, ax.u_hi - ax.u_lo)
    inner = np.linspace(ut[1], ut[-2], 121, endpoint=False)
    if role == "threshold":
        return inner[:, None]
    if role == "saturating":
        return sigmoid_grid(None, inner[::2], _TAUS)
    return sigmoid_grid(None, _steep_rates(widths[0]), np.linspace(ut[1], ut[-2], 48))


def _gentle_grid(width, u_lo, span):
    """Gentle sigmoids on the t axis, placed in absolute units: 12 rates from the steepest gentle
    one (10-90% over ``width``) to 32 times wider, midpoints on a lattice of width / 4 in u (log
    size, -ln loss) over the window +- half its span. Trimming the window's edge then leaves the
    candidates (and so the fit) unchanged, rather than moving every grid point with the range."""
    rates = 2 * LN9 / width / np.geomspace(1, 32, 12)
    step = width / 4 * span
    lo, hi = np.ceil((u_lo - 0.5 * span) / step), np.floor((u_lo + 1.5 * span) / step)
    if hi - lo > 160:   # a window hundreds of widths wide: a coarser lattice
        return sigmoid_grid(None, rates, np.linspace(-0.5, 1.5, 161))
    if hi - lo < 8:     # a window narrower than a gentle width: 41 midpoints across it
        return sigmoid_grid(None, rates, np.linspace(-0.5, 1.5, 41))
    return sigmoid_grid(None, rates, (np.arange(lo, hi + 1) * step - u_lo) / span)


_POWER_RATES = np.r_[-np.geomspace(12, 0.25, 30), np.geomspace(0.25, 12, 30)]
_TAUS = np.geomspace(0.03, 1, 10)   # saturation scales of the saturating threshold


@functools.lru_cache(maxsize=256)
def _steep_rates(width):
    return np.geomspace(2 * LN9 / width, 2 * LN9 / min(0.02, width / 4), 12)


def _onset(p):
    """Where a rising threshold fit leaves its plateau (10% of the rise for a sigmoid)."""
    return (p["x0"], p["c"]) if "c" in p else (p["x0"] - LN9 / p["k"], p["b"])


def _reversal(t, y, sigma, direction):
    """Largest move against ``direction`` from an earlier (less capable) point to a later one,
    in metric units and in standard errors of the difference, and the earlier point's t."""
    d = direction * (y[:, None] - y[None, :])           # d[i, j] > 0: j is worse than i
    later = t[:, None] < t[None, :]
    s2 = sigma ** 2
    z = np.where(later, d / np.sqrt(s2[:, None] + s2[None, :]), -np.inf)   # hypot: ~10x slower, same to rounding
    i, j = np.unravel_index(np.argmax(z), z.shape)
    return float(max(d[i, j], 0.0)), float(max(z[i, j], 0.0)), float(t[i])


def _jump(fit, t, sigma, phi):
    """Rise of a threshold fit from its plateau to its top, in standard errors; its onset, the
    points on its plateau, the plateau's level and its standard error."""
    onset, plateau = _onset(fit.params)
    on = t <= onset
    se_plateau = 1 / np.sqrt(np.sum(1 / sigma[on] ** 2)) if on.any() else sigma[np.argmin(t)]
    top = np.argmax(t)
    rise = fit.spec.func(np.array([t[top]]), *fit.values)[0] - plateau
    return (float(rise / (np.sqrt(phi) * np.hypot(sigma[top], se_plateau))), float(onset), int(on.sum()),
            float(plateau), float(se_plateau))


def _bootstrap_eta(fit, theta, t, sigma, ax, cfg):
    """Interval for the onset: the union of a parametric bootstrap (redraw y around the
    threshold fit with its noise, dispersion included, refit on the same grid), the
    profile-likelihood set (chi2 within 3.84 of its minimum) and the gap between the two
    measured x around the estimate (where inside it the curve leaves chance, only the assumed
    shape says). Change points are non-regular; any one alone undercovers."""
    eta = float(ax.to_x(_onset(fit.params)[0]))
    if cfg.bootstrap <= 0:
        return eta, None, None, ()
    rng = np.random.default_rng(cfg.seed)
    yhat = fit.spec.func(t, *fit.values)
    Y = np.column_stack([fit.y, yhat[:, None] + rng.normal(size=(len(t), cfg.bootstrap)) * sigma[:, None]])
    chi2, beta = profile(fit.spec, t, Y, sigma, theta, {"s" if "s" in fit.params else "a": 1})
    names = fit.spec.params

    def onset(i, b):
        return _onset(dict(zip(names, fit.spec.assemble(t, theta[i], beta[i, b]))))[0]

    draws = np.array([onset(i, b) for b, i in enumerate(np.argmin(chi2[:, 1:], 0), 1)])
    inside = np.flatnonzero(chi2[:, 0] <= np.min(chi2[:, 0]) + _CHI2_95)
    prof = [onset(i, 0) for i in inside] if len(inside) <= 400 else [onset(i, 0) for i in inside[::len(inside) // 400]]
    lo, hi = np.percentile(draws, [2.5, 97.5])
    t_hat = _onset(fit.params)[0]
    gap_lo, gap_hi = np.max(t[t <= t_hat], initial=t.min()), np.min(t[t > t_hat], initial=t.max())
    lo, hi = min(lo, gap_lo, min(prof, default=lo)), max(hi, gap_hi, max(prof, default=hi))
    lo, hi = sorted((float(ax.to_x(lo)), float(ax.to_x(hi))))   # loss runs the other way
    return eta, lo, hi, tuple(float(d) for d in ax.to_x(draws))


def _check(x, y, se, nn, axis, bounded, chance) -> str:
    if len(y) < 3:
        return f"only {len(y)} point(s); a verdict needs at least 3"
    if axis != "capability" and np.any(x <= 0):
        return f"{axis} must be positive (found {np.min(x):.3g})"
    if len(np.unique(x)) == 1:
        return f"constant axis: every point has the same {axis} (fewer than 3 distinct x values)"
    if len(np.unique(x)) < 3:
        return "fewer than 3 distinct x values: no curve to judge"
    if np.max(np.abs(y)) > 1e100 or np.ptp(y) > 1e100:
        return "values too large to fit (|y| > 1e100)"
    if bounded and (np.any(y < 0) or np.any(y > 1)):
        return f"values outside [0, 1] for a proportion metric (min {np.min(y):.3g}, max {np.max(y):.3g})"
    if chance is not None and (abs(chance) > 1e100 or (bounded and not 0 <= chance <= 1)):
        return f"chance {chance:.3g} is impossible for this metric"
    if nn is not None and np.any(nn <= 0):
        return "n must be positive"
    if se is not None and np.any(se[np.isfinite(se)] < 0):
        return "negative standard errors"
    return ""


def _undetermined(reason, npts, judged=True):
    return Verdict("undetermined", Evidence(reason, n_points=npts, judged=judged))


def _public(role):
    return {"threshold_up": "threshold", "steep_up": "sigmoid_steep",
            "saturating_up": "saturating_threshold"}.get(role, role)


def _column(g, col):
    if col not in g.columns or not g[col].notna().any():
        return None
    return g[col].to_numpy(float)


def _scalar(g, col):
    v = _column(g, col)
    return None if v is None or not np.isfinite(v).any() else float(np.nanmedian(v))


def _lookup(spec, meta):
    if spec is None or not isinstance(spec, dict):
        return spec
    task, sub, metric = meta.get(S.TASK), meta.get(S.SUBTASK), meta.get(S.METRIC)
    for k in ((task, sub, metric), (task, metric), task, metric):
        if k in spec:
            return spec[k]
    return None
