"""Curve shapes and weighted fits: the models a metric-vs-scale curve is compared against.

Owns the curve specs (lmfit-style: a pure vectorised function plus ``guess(x, y)``), the
weighted least-squares fit ``fit_curve`` and its immutable ``CurveFit`` result, the capability
axis that lets one code path serve size, tokens, compute and loss, and two small fits the
verdicts need (the noise model: stderr, binomial or estimated; binning pooled tables).

Every spec is linear in all but one or two parameters, so a fit profiles the nonlinear ones
over a grid (one vectorised weighted least-squares solve per grid point, no optimiser and no
starting-value luck) and may then polish the best grid point with ``scipy.optimize``.
"""

from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable

import numpy as np
from scipy import optimize, special

from emergence import schema
from emergence.names import lookup

# Capability axis: u grows with capability. Sizes, tokens and compute are compared on log10,
# loss on -ln(loss), so that exp(c*u) is exactly a power law in x on every axis.
AXES = {schema.PARAMS: "log10", schema.PARAMS_NONEMBED: "log10", schema.TOKENS: "log10",
        schema.FLOPS: "log10", schema.LOSS: "-ln", "capability": "identity"}


@dataclass(frozen=True)
class Axis:
    """Maps x in its own units to t in [0, 1] over the observed range (1 = most capable)."""

    name: str
    u_lo: float
    u_hi: float

    @classmethod
    def over(cls, name: str, x) -> "Axis":
        u = _to_u(lookup("axis", name, AXES), np.asarray(x, float))
        return cls(name, float(np.min(u)), float(np.max(u)))

    def to_t(self, x):
        return (_to_u(AXES[self.name], np.asarray(x, float)) - self.u_lo) / (self.u_hi - self.u_lo)

    def to_x(self, t):
        u = self.u_lo + np.asarray(t, float) * (self.u_hi - self.u_lo)
        kind = AXES[self.name]
        return 10.0 ** u if kind == "log10" else np.exp(-u) if kind == "-ln" else u


def _to_u(kind, x):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log10(x) if kind == "log10" else -np.log(x) if kind == "-ln" else x


@dataclass(frozen=True)
class CurveSpec:
    """y = func(x, *params); ``basis(x, theta)`` gives, for the rows of nonlinear parameters
    theta (G, q), the m columns of the design matrix of the linear ones: (G, n) arrays, or the
    scalar 1.0 for an intercept; ``assemble`` joins them into params."""

    name: str
    params: tuple[str, ...]
    func: Callable
    basis: Callable
    grid: Callable
    assemble: Callable
    linear: tuple[str, ...] = ()

    def guess(self, x, y, sigma=None) -> tuple:
        """Starting parameters: the best point of the profile grid."""
        return fit_curve(self, x=x, y=y, sigma=sigma, polish=False).values


@dataclass(frozen=True, eq=False)   # holds arrays: compared by identity
class CurveFit:
    """An immutable weighted least-squares fit. ``chi2`` uses the given sigma (or unit weights,
    with the variance then estimated from the residuals, as statsmodels WLS does)."""

    spec: CurveSpec
    name: str
    values: tuple
    x: np.ndarray = field(repr=False)
    y: np.ndarray = field(repr=False)
    sigma: np.ndarray = field(repr=False)
    chi2: float
    sigma_known: bool = True
    axis: Axis | None = None   # predict() maps x through it when set
    y_sign: int = 1            # fits on -y for lower-is-better metrics; predict() undoes it
    level: float = 0.95        # of `intervals`
    status: str = "ok"         # "ok" | "undetermined" (a fit that exists but says nothing)
    reason: str = ""

    @property
    def params(self) -> dict:
        return dict(zip(self.spec.params, self.values))

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def k(self) -> int:
        return len(self.values) + (0 if self.sigma_known else 1)

    @property
    def loglike(self) -> float:
        if self.sigma_known:
            return float(-0.5 * self.chi2 - np.log(self.sigma).sum() - 0.5 * self.n * np.log(2 * np.pi))
        s2 = max(self.chi2 / self.n, 1e-300)
        return float(-0.5 * self.n * (np.log(2 * np.pi * s2) + 1))

    @property
    def aic(self) -> float:
        return -2 * self.loglike + 2 * self.k

    @property
    def aicc(self) -> float:
        d = self.n - self.k - 1
        return self.aic + 2 * self.k * (self.k + 1) / d if d > 0 else np.inf

    @property
    def bic(self) -> float:
        return -2 * self.loglike + self.k * np.log(self.n)

    @cached_property
    def stderr(self) -> dict:
        """Standard errors from the Jacobian at the optimum (scaled by the residual variance
        when sigma was not given). Approximate for kinked shapes: bootstrap those."""
        p = np.asarray(self.values, float)
        step = 1e-6 * np.maximum(np.abs(p), 1e-3)
        f0 = self.spec.func(self.x, *p)
        J = np.stack([(self.spec.func(self.x, *(p + np.eye(len(p))[i] * step[i])) - f0) / step[i]
                      for i in range(len(p))], axis=1) / self.sigma[:, None]
        try:
            cov = np.linalg.pinv(J.T @ J)
        except np.linalg.LinAlgError:
            return {n: np.nan for n in self.spec.params}
        dof = self.n - len(p)
        if not self.sigma_known:
            cov = cov * (self.chi2 / dof if dof > 0 else np.nan)
        return dict(zip(self.spec.params, np.sqrt(np.clip(np.diag(cov), 0, None))))

    @property
    def intervals(self) -> dict:
        """Wald intervals at ``level``: name -> (low, high) (normal when sigma is known, Student t
        otherwise)."""
        dof = self.n - len(self.values)
        from scipy import stats   # ~0.5 s to import, and only intervals need it

        tail = (1 + self.level) / 2
        q = stats.norm.ppf(tail) if self.sigma_known or dof <= 0 else stats.t.ppf(tail, dof)
        return {n: (v - q * self.stderr[n], v + q * self.stderr[n]) for n, v in self.params.items()}

    def predict(self, x):
        t = self.axis.to_t(x) if self.axis is not None else np.asarray(x, float)
        return self.y_sign * self.spec.func(t, *self.values)

    def summary(self) -> str:
        rows = [f"{self.name}: n={self.n} chi2={self.chi2:.3g} AIC={self.aic:.2f} "
                f"AICc={self.aicc:.2f} BIC={self.bic:.2f}, status = {self.status}"
                + (f" ({self.reason})" if self.reason else "")]
        for name, v in self.params.items():
            lo, hi = self.intervals[name]
            rows.append(f"  {name:>4} = {v:.4g}  [{lo:.4g}, {hi:.4g}] ({100 * self.level:.0f}%)")
        return "\n".join(rows)


def fit_curve(spec: CurveSpec, *, x, y, sigma=None, theta=None, signs=None, polish=True,
              name=None, axis=None, y_sign=1) -> CurveFit:
    """Weighted least squares of ``spec`` to (x, y). ``theta`` overrides the profile grid of the
    nonlinear parameters; ``signs`` ({linear param: +1 or -1}) constrains linear parameters'
    signs. Raises ValueError when no grid point is admissible."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    known = sigma is not None
    sigma = np.broadcast_to(np.asarray(sigma if known else 1.0, float), y.shape).copy()
    theta = spec.grid(x) if theta is None else np.asarray(theta, float).reshape(-1, _q(spec))
    chi2, beta = profile(spec, x, y, sigma, theta, signs)
    g = int(np.argmin(chi2[:, 0])) if len(theta) else 0
    if not len(theta) or not np.isfinite(chi2[g, 0]):
        raise ValueError(f"{spec.name}: no admissible parameters on the grid")
    values, best = spec.assemble(x, theta[g], beta[g, 0]), float(chi2[g, 0])
    if polish and len(y) > len(values) and not signs:
        res = optimize.least_squares(lambda p: (spec.func(x, *p) - y) / sigma, values, method="lm")
        if res.success and np.all(np.isfinite(res.x)) and 2 * res.cost < best:
            values, best = tuple(res.x), float(2 * res.cost)
    return CurveFit(spec, name or spec.name, tuple(float(v) for v in values), x, y, sigma, best,
                    known, axis, y_sign)


def profile(spec: CurveSpec, x, Y, sigma, theta, signs=None):
    """chi2 (G, B) and linear parameters (G, B, m) for every grid row of ``theta`` and every
    column of ``Y`` (n, B) at once: the vectorised core of fits and parametric bootstraps."""
    x, sigma = np.asarray(x, float), np.asarray(sigma, float)
    Y = np.asarray(Y, float).reshape(len(x), -1)
    w2 = 1.0 / sigma ** 2
    G, B = len(theta), Y.shape[1]
    m = len(spec.linear)
    chi2, beta = np.empty((G, B)), np.empty((G, B, m))
    step = max(1, 2_000_000 // (len(x) * max(B, m)))  # bound memory on pooled tables
    for s in range(0, G, step):
        th = theta[s:s + step]
        chi2[s:s + step], beta[s:s + step] = _solve(spec.basis(x, th), len(th), w2, Y)
    chi2[~np.isfinite(chi2)] = np.inf
    for pname, sign in (signs or {}).items():
        chi2[sign * beta[..., spec.linear.index(pname)] < 0] = np.inf
    return chi2, beta


def profile_many(jobs, x, y, sigma) -> list:
    """``profile`` of several (spec, theta) jobs on one curve: [(chi2, beta), ...]. Designs of
    an intercept plus one column share one solve: for small curves the cost of a fit is the
    number of numpy calls, not the arithmetic."""
    x, sigma = np.asarray(x, float), np.asarray(sigma, float)
    Y = np.asarray(y, float).reshape(len(x), -1)
    out, shared = [None] * len(jobs), []
    for i, (spec, theta) in enumerate(jobs):
        cols = spec.basis(x, theta) if len(spec.linear) == 2 and len(theta) * len(x) <= 500_000 else ()
        if len(cols) == 2 and [np.ndim(c) for c in cols].count(0) == 1:
            j = 0 if np.ndim(cols[0]) == 0 else 1                          # where the intercept is
            shared.append((i, j, np.broadcast_to(cols[1 - j], (len(theta), len(x)))))
        else:
            out[i] = profile(spec, x, Y, sigma, theta)
    if shared:
        F = np.concatenate([f for _, _, f in shared])
        chi2, beta = _solve((1.0, F), len(F), 1.0 / sigma ** 2, Y)
        chi2[~np.isfinite(chi2)] = np.inf
        start = 0
        for i, j, f in shared:
            rows = slice(start, start + len(f))
            start += len(f)
            out[i] = chi2[rows], beta[rows] if j == 0 else beta[rows][..., ::-1]
    return out


def _solve(cols, g, w2, Y):
    """Weighted least squares for every grid row (g) and every column of Y at once, from the
    normal equations. ``cols``: the design's columns, (g, n) arrays or the scalar 1 of an
    intercept. Closed form for one column, and for an intercept plus one column (every spec
    here; numpy's batched solvers are slow at this size); no (g, n, m) design or (g, n, B)
    residuals are built; chi2 = y'Wy - beta.b, on y centred when there is an intercept (else
    the difference cancels catastrophically when sigma is small)."""
    icpt = next((i for i, u in enumerate(cols) if np.ndim(u) == 0), None)
    W = _ADD(w2)
    ybar = (w2 @ Y) / W if icpt is not None else np.zeros(Y.shape[1])
    Yc = Y - ybar
    M = np.column_stack([w2, Yc * w2[:, None]])   # sums against w2 and w2 y: one product per column
    yy = np.einsum("nb,nb->b", Yc, M[:, 1:])[None]
    with np.errstate(divide="ignore", invalid="ignore"):
        if len(cols) == 2 and icpt is not None:   # every spec here
            f = cols[1 - icpt]
            fM, a22, b1 = f @ M, ((f * f) @ w2)[:, None], _ADD(M[:, 1:], axis=0)
            a12, b2 = fM[:, :1], fM[:, 1:]
            det = W * a22 - a12 ** 2
            det = np.where(det > 1e-12 * W * a22, det, np.nan)                    # collinear: no fit
            bt = np.empty(b2.shape + (2,))
            bt[..., icpt] = (a22 * b1 - a12 * b2) / det
            bt[..., 1 - icpt] = (W * b2 - a12 * b1) / det
            chi2 = yy - (bt[..., icpt] * b1 + bt[..., 1 - icpt] * b2)
        else:
            S = [np.broadcast_to(u * _ADD(M, axis=0), (g, M.shape[1])) if np.ndim(u) == 0 else u @ M for u in cols]
            b = [s[:, 1:] for s in S]

            def gram(i, j):    # sum_n w2 u_i u_j, (g, 1)
                return S[j][:, :1] if i == icpt else S[i][:, :1] if j == icpt else ((cols[i] * cols[j]) @ w2)[:, None]

            if len(cols) == 1:
                a = gram(0, 0)
                bt = (b[0] / np.where(a > 0, a, np.nan))[..., None]
            else:
                A = np.stack([np.concatenate([gram(i, j) for j in range(len(cols))], 1) for i in range(len(cols))], 1)
                bt = np.einsum("gij,jgb->gbi", np.linalg.pinv(A), np.stack(b))
            chi2 = yy - sum(bt[..., i] * bi for i, bi in enumerate(b))
    if icpt is not None:
        bt[..., icpt] += ybar
    return np.maximum(chi2, 0.0), bt


_ADD = np.add.reduce   # ndarray.sum without its Python wrapper: a fit makes hundreds of small sums


def _q(spec):
    return len(spec.params) - len(spec.linear)


def one_blas_thread():
    """Fits multiply small matrices (and L-BFGS calls BLAS on 5-vectors); a multi-threaded BLAS
    on a busy machine makes each product ~100x slower (its threads spin waiting for work), so
    fitting loops run with one BLAS thread where threadpoolctl is available."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        return nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


# ---- specs ---------------------------------------------------------------------------------

def _span(x):
    r = float(np.ptp(x))
    return r if r > 0 else 1.0


def _inner(x, num=121):
    """Break points with at least two distinct x on either side (a threshold needs both)."""
    u = np.unique(x)
    if len(u) < 4:
        return np.empty((0, 1))
    return np.linspace(u[1], u[-2], num, endpoint=False).reshape(-1, 1)


def _rates(x, lo, hi, num):
    r = np.geomspace(lo, hi, num) / _span(x)
    return np.concatenate([-r[::-1], r])


CONSTANT = CurveSpec(
    "constant", ("c",), lambda x, c: np.full(np.shape(x), c, float),
    lambda x, th: (1.0,), lambda x: np.empty((1, 0)),
    lambda x, th, b: (b[0],), linear=("c",))

LINEAR = CurveSpec(
    "linear", ("a", "b"), lambda x, a, b: a + b * np.asarray(x, float),
    lambda x, th: (1.0, np.broadcast_to(x, (len(th), len(x)))),
    lambda x: np.empty((1, 0)), lambda x, th, b: (b[0], b[1]), linear=("a", "b"))

# a + b*exp(c*x): on a log-size axis (or -ln loss) this is a power law in size (or loss).
EXPONENTIAL = CurveSpec(
    "exponential", ("a", "b", "c"), lambda x, a, b, c: a + b * np.exp(c * np.asarray(x, float)),
    lambda x, th: (1.0, np.exp(th[:, :1] * (x - x.min())[None])),
    lambda x: _rates(x, 0.25, 12.0, 30)[:, None],
    lambda x, th, b: (b[0], b[1] * np.exp(-th[0] * x.min()), th[0]), linear=("a", "b"))

POWER_LAW = CurveSpec(
    "power_law", ("a", "b", "c"), lambda x, a, b, c: a + b * np.asarray(x, float) ** c,
    lambda x, th: (1.0, (x / _gmean(x))[None] ** th[:, :1]),
    lambda x: _rates(np.log(x), 0.25, 12.0, 30)[:, None],
    lambda x, th, b: (b[0], b[1] * _gmean(x) ** (-th[0]), th[0]), linear=("a", "b"))

# Du et al. (2024) threshold: flat (chance) on one side of x0, linear improvement on the other.
THRESHOLD = CurveSpec(
    "threshold", ("c", "s", "x0"), lambda x, c, s, x0: c + s * np.maximum(0.0, np.asarray(x, float) - x0),
    lambda x, th: (1.0, np.maximum(0.0, x[None] - th[:, :1])),
    _inner, lambda x, th, b: (b[0], b[1], th[0]), linear=("c", "s"))

# ... and a threshold whose improvement saturates: c + a (1 - exp(-max(0, x - x0) / tau)).
SATURATING_THRESHOLD = CurveSpec(
    "saturating_threshold", ("c", "a", "x0", "tau"),
    lambda x, c, a, x0, tau: c + a * -np.expm1(-np.maximum(0.0, np.asarray(x, float) - x0) / tau),
    lambda x, th: (1.0, _saturation_rows(x, th[:, 0], th[:, 1])),
    lambda x: sigmoid_grid(x, _inner(x, 60)[:, 0], np.geomspace(0.03, 1.0, 10) * _span(x)),
    lambda x, th, b: (b[0], b[1], th[0], th[1]), linear=("c", "a"))

THRESHOLD_BELOW = CurveSpec(  # the mirror image: improvement below x0 (x = loss)
    "threshold_below", ("c", "s", "x0"),
    lambda x, c, s, x0: c + s * np.maximum(0.0, x0 - np.asarray(x, float)),
    lambda x, th: (1.0, np.maximum(0.0, th[:, :1] - x[None])),
    _inner, lambda x, th, b: (b[0], b[1], th[0]), linear=("c", "s"))

# OLMo-ladder form a / (1 + exp(-k (x - x0))) + b, k > 0 (the sign of a gives the direction).
SIGMOID = CurveSpec(
    "sigmoid", ("a", "k", "x0", "b"),
    lambda x, a, k, x0, b: a * _expit(k * (np.asarray(x, float) - x0)) + b,
    lambda x, th: (_logistic_rows(x, th[:, 0], th[:, 1]), 1.0),
    lambda x: sigmoid_grid(x, np.geomspace(0.5, 400, 24) / _span(x),
                           np.linspace(x.min() - 0.5 * _span(x), x.max() + 0.5 * _span(x), 61)),
    lambda x, th, b: (b[0], th[0], th[1], b[1]), linear=("a", "b"))


def _gmean(x):
    return float(np.exp(np.mean(np.log(x))))


def _expit(z):
    return special.expit(z)   # overflow-free logistic, ~3x faster than a tanh form


def _logistic_rows(x, k, x0):
    """expit(k (x - x0)) for rows (k, x0), exp (the cost) evaluated once per distinct k and x:
    exp(-k (x - x0)) = exp(-k (x - m)) exp(k (x0 - m)), exact to rounding while neither
    factor can overflow; else, or with few rows per k, directly."""
    e = _exp_product(x, k, -k * x0)
    if e is None:
        return _expit(k[:, None] * (x[None] - x0[:, None]))
    e += 1.0
    return np.reciprocal(e, out=e)   # in place: these arrays are the bulk of a fit's memory traffic


def _saturation_rows(x, x0, tau):
    """1 - exp(-max(0, x - x0) / tau) for rows (x0, tau), factorised as _logistic_rows."""
    e = _exp_product(x, 1 / tau, -x0 / tau)
    if e is None:
        return -np.expm1(-np.maximum(0.0, x[None] - x0[:, None]) / tau[:, None])
    np.subtract(1.0, e, out=e)
    return np.maximum(e, 0.0, out=e)   # x <= x0: e >= 1, so 1 - e <= 0 is clipped to the flat part


def _exp_product(x, r, c):
    """exp(-(r x + c)) for rows (r, c) as exp(-r (x - m)) exp(-(r m + c)), with one exp per
    distinct r and x; None when there are few rows per r or a factor could overflow."""
    ur, inv = np.unique(r, return_inverse=True)
    if 4 * len(ur) > len(r):
        return None
    m = 0.5 * (np.minimum.reduce(x) + np.maximum.reduce(x))
    a, b = -np.outer(ur, x - m), -(r * m + c)
    if np.maximum.reduce(np.abs(a), axis=None, initial=0) + np.maximum.reduce(np.abs(b), initial=0) > 700:
        return None
    e = np.exp(a)[inv]
    e *= np.exp(b)[:, None]
    return e


def sigmoid_grid(x, ks, x0s):
    """(k, x0) rows for SIGMOID: every slope with every midpoint."""
    ks, x0s = np.asarray(ks, float), np.asarray(x0s, float)
    return np.column_stack([np.repeat(ks, len(x0s)), np.tile(x0s, len(ks))])


# ---- the two small fits the verdicts need ---------------------------------------------------

def binomial_sigma(p, n):
    """sqrt(p(1-p)/n) with p smoothed to (pn + 0.5)/(n + 1), so p = 0 or 1 keeps a variance."""
    p, n = np.asarray(p, float), np.asarray(n, float)
    q = (np.clip(p, 0, 1) * n + 0.5) / (n + 1)
    return np.sqrt(q * (1 - q) / n)


def noise_model(t, y, stderr=None, n=None, proportion=False):
    """Per-point standard errors and where they came from: 'stderr' (the column, with the zeros
    lm-eval reports at p = 0 or 1 refilled from n, or from the n the other points imply),
    'binomial' (from n), else 'estimated' from the curve itself: the robust scatter of its
    second differences (which a smooth trend hardly has), floored at 1% of its range so that a
    noiseless curve is not judged against zero noise."""
    y = np.asarray(y, float)
    if stderr is not None:
        se = np.where(np.isfinite(stderr) & (stderr > 0), stderr, np.nan)
        if np.isnan(se).any():
            inner = np.isfinite(se) & (y > 0) & (y < 1)
            if n is not None and proportion:
                se = np.where(np.isnan(se), binomial_sigma(y, n), se)
            elif proportion and inner.any():
                se = np.where(np.isnan(se), binomial_sigma(y, np.median(y[inner] * (1 - y[inner]) / se[inner] ** 2)), se)
            elif np.isfinite(se).any():
                se = np.where(np.isnan(se), np.nanmin(se), se)
        if np.isfinite(se).all():
            return np.maximum(se, 1e-9 * max(1.0, float(np.ptp(y)))), "stderr"
    if n is not None and proportion:
        return binomial_sigma(y, n), "binomial"
    d2 = np.diff(y[np.argsort(t, kind="stable")], 2)
    s = 1.4826 * median(np.abs(d2)) / np.sqrt(6) if len(d2) >= 3 else np.std(y)
    return np.full(len(y), max(s, 0.01 * np.ptp(y), 1e-9)), "estimated"


def median(a) -> float:
    """np.median of a short 1-D array without NaN, by sorting: the same value at a tenth of
    the cost (np.median's overhead dominates for the few dozen values of a curve)."""
    s = np.sort(a)
    h = len(s) // 2
    return float(s[h]) if len(s) % 2 else float((s[h - 1] + s[h]) / 2)


def bin_curve(t, y, sigma, bins):
    """Inverse-variance means of ``bins`` equal-count groups along t: pooled tables with
    thousands of checkpoints are judged on these (the fits are the same, only faster)."""
    order = np.argsort(t, kind="stable")
    sizes = np.full(bins, len(t) // bins) + (np.arange(bins) < len(t) % bins)   # as np.array_split
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    w = 1.0 / sigma[order] ** 2
    W = np.add.reduceat(w, starts)
    return np.add.reduceat(w * t[order], starts) / W, np.add.reduceat(w * y[order], starts) / W, 1 / np.sqrt(W)
