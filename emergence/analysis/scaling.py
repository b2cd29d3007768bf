"""Scaling-law fits: L(N) = L_inf + (N0/N)^alpha and L(N, D) = E + A/N^alpha + B/D^beta.

Fitted the way Hoffmann et al. (2022) and the Besiroglu et al. (2024) replication did: in log
space, log L_hat = LSE(a - alpha log N, b - beta log D, e) with A = e^a, B = e^b, E = e^e, a Huber
loss (delta = 1e-3) on log L residuals, box-constrained L-BFGS from a grid of starts, bootstrap
over points for intervals. The L-BFGS is our own (``analysis.lbfgs``), vectorised across problems
(the starts, or the bootstrap resamples as point weights), with scipy's L-BFGS-B stopping rules:
the same optima at a fraction of the per-call overhead. Also owns the compute-optimal allocation N*(C), D*(C)
(C = 6ND) and the critical size N_c of a loss threshold eta (N0 (eta - L_inf)^(-1/alpha) for
the size law; at a training recipe for the Chinchilla law).
"""

import itertools
from functools import partial
from dataclasses import dataclass

import numpy as np
import pandas as pd

from emergence import schema as S
from emergence.analysis.curves import one_blas_thread
from emergence.analysis.lbfgs import minimize_many
from emergence.analysis.parallel import map_chunks

DELTA = 1e-3  # Hoffmann et al.: small enough that a handful of outliers barely move the fit
HOFFMANN_2022 = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
NAMES = {"size": ("L_inf", "N0", "alpha"), "chinchilla": ("E", "A", "B", "alpha", "beta")}
_K = {"size": 1, "chinchilla": 2}  # power-law terms
_ALPHA_MAX = 10.0


class FitError(ValueError):
    """The input cannot be fitted at all (too few points, non-positive or non-finite values)."""


@dataclass(frozen=True, eq=False)
class ScalingFit:
    """A fitted law. ``params`` use the published names; ``theta`` is the raw LSE vector
    (a[, b], e, alpha[, beta]) and ``draws`` its bootstrap replicates (rows; NaN = failed)."""

    form: str                       # "size" | "chinchilla"
    params: dict
    stderr: dict
    intervals: dict                 # name -> (low, high) percentile bootstrap interval at `level`
    level: float
    n: int
    objective: float                # summed Huber loss of log residuals at the optimum
    rss_log: float                  # sum of squared log residuals, for AIC/BIC
    theta: np.ndarray
    draws: np.ndarray | None = None
    status: str = "ok"              # "ok" | "undetermined"
    reason: str = ""
    delta: float = DELTA

    def predict(self, N, D=None) -> np.ndarray:
        return _predict(self.form, self.theta, N, D)

    def predict_draws(self, N, D=None) -> np.ndarray:
        """Predictions under each bootstrap draw, shape (n_draws, len(N))."""
        if self.draws is None:
            raise ValueError("fit has no bootstrap draws (n_boot=0)")
        return np.stack([_predict(self.form, t, N, D) for t in self.draws])

    @property
    def aic(self) -> float:
        """Gaussian AIC of the log residuals (for comparing forms on the same points)."""
        with np.errstate(divide="ignore"):
            return self.n * np.log(self.rss_log / self.n) + 2 * len(self.theta)

    @property
    def bic(self) -> float:
        with np.errstate(divide="ignore"):
            return self.n * np.log(self.rss_log / self.n) + len(self.theta) * np.log(self.n)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"param": list(self.params), "estimate": list(self.params.values()),
                             "stderr": [self.stderr[k] for k in self.params],
                             "ci_low": [self.intervals[k][0] for k in self.params],
                             "ci_high": [self.intervals[k][1] for k in self.params]})

    def summary(self) -> str:
        law = {"size": "L(N) = L_inf + (N0/N)^alpha",
               "chinchilla": "L(N, D) = E + A/N^alpha + B/D^beta"}[self.form]
        lines = [law, f"n = {self.n}, Huber objective = {self.objective:.6g} (delta on log L), "
                      f"status = {self.status}" + (f" ({self.reason})" if self.reason else "")]
        pct = f"{100 * self.level:.0f}% CI"
        lines.append(f"{'param':>8} {'estimate':>12} {'stderr':>11} {pct:>27}")
        for r in self.to_frame().itertuples():
            lines.append(f"{r.param:>8} {r.estimate:12.5g} {r.stderr:11.3g} [{r.ci_low:11.5g}, {r.ci_high:11.5g}]")
        return "\n".join(lines)


def fit_size_law(N, L, *, n_boot: int = 200, seed: int = 0, level: float = 0.95,
                 delta: float = DELTA, n_starts: int | None = 8, workers: int = 0) -> ScalingFit:
    """Fit L(N) = L_inf + (N0/N)^alpha (Hoffmann-style; see module docstring). ``workers``:
    processes for the bootstrap (0: one per CPU); the draws do not depend on it."""
    return _fit("size", [N], L, n_boot, seed, level, delta, n_starts, workers)


def fit_chinchilla(N, D, L, *, n_boot: int = 100, seed: int = 0, level: float = 0.95,
                   delta: float = DELTA, n_starts: int | None = 8, workers: int = 0, best=None) -> ScalingFit:
    """Fit L(N, D) = E + A/N^alpha + B/D^beta (Hoffmann-style; see module docstring). ``workers``:
    processes for the bootstrap (0: one per CPU); the draws do not depend on it. ``best``: the
    ``theta`` of an earlier fit of the same points, to draw a new bootstrap (another seed)
    without repeating the search for the optimum."""
    return _fit("chinchilla", [N, D], L, n_boot, seed, level, delta, n_starts, workers, best)


def huber_objective(params: dict, N, D, L, delta: float = DELTA) -> float:
    """Summed Huber loss of log residuals for Chinchilla-form parameters given by name."""
    theta = np.array([*np.log([params["A"], params["B"], params["E"]]), params["alpha"], params["beta"]])
    lx = np.log(np.column_stack([_arr(N), _arr(D)]))
    return float(_objective_many(theta[None], lx, np.log(_arr(L)), delta)[0])


def compare_to_published(fit: ScalingFit, N, D, L, published: dict = HOFFMANN_2022) -> dict:
    """How much worse published Chinchilla parameters fit these points than ``fit`` does."""
    ours = huber_objective(fit.params, N, D, L, fit.delta)
    theirs = huber_objective(published, N, D, L, fit.delta)
    return {"objective_fit": ours, "objective_published": theirs, "ratio": theirs / ours}


def replicate_chinchilla(df: pd.DataFrame, *, drop_highest: int = 5, n_boot: int = 200,
                         seed: int = 0) -> tuple[ScalingFit, dict]:
    """Refit the points digitised from Hoffmann et al. Fig. 4 (tidy chinchilla_epoch table) as
    Besiroglu et al. did, dropping the ``drop_highest`` highest-loss runs (the replication's
    outlier rule), and compare with the published parameters (compare_to_published)."""
    pts = loss_points(df, checkpoints="all", need_tokens=True)
    if drop_highest:
        pts = pts[pts[S.LOSS] < np.sort(pts[S.LOSS].to_numpy())[-drop_highest]]
    N, D, L = pts[S.PARAMS], pts[S.TOKENS], pts[S.LOSS]
    fit = fit_chinchilla(N, D, L, n_boot=n_boot, seed=seed)
    return fit, compare_to_published(fit, N, D, L)


def compute_optimal(fit: ScalingFit, C) -> pd.DataFrame:
    """N*(C) and D*(C) under C = 6ND, closed form from a Chinchilla fit, with bootstrap intervals."""
    if fit.form != "chinchilla":
        raise ValueError("compute-optimal allocation needs a Chinchilla (N, D) fit")
    C = _arr(C)
    n_opt, d_opt = _allocation(fit.theta, C)
    out = pd.DataFrame({S.FLOPS: C, "n_opt": n_opt, "d_opt": d_opt, "tokens_per_param": d_opt / n_opt})
    if fit.draws is not None:
        nd = np.array([_allocation(t, C) for t in fit.draws])  # (draws, 2, len(C))
        lo, hi = 50 * (1 - fit.level), 50 * (1 + fit.level)
        for j, col in enumerate(("n_opt", "d_opt")):
            out[col + "_low"] = np.nanpercentile(nd[:, j], lo, axis=0)
            out[col + "_high"] = np.nanpercentile(nd[:, j], hi, axis=0)
    return out


@dataclass(frozen=True, eq=False)
class CriticalSize:
    """N_c: the size at which the fitted law reaches loss eta (N0 (eta - L_inf)^(-1/alpha) for
    the size law; for the Chinchilla law, at a training recipe: D = r N or a fixed D)."""

    n_c: float
    intervals: dict                 # {"n_c": (low, high)} at `level`, like every fit result
    level: float
    draws: np.ndarray | None = None
    status: str = "ok"
    reason: str = ""

    @property
    def params(self) -> dict:
        return {"n_c": self.n_c}


def critical_size(eta: float, law: ScalingFit, *, eta_draws=None, level: float | None = None,
                  seed: int = 0, tokens_per_param: float | None = None, tokens: float | None = None) -> CriticalSize:
    """Critical size for threshold ``eta``; the interval pairs bootstrap draws of the law with
    (randomly resampled) draws of eta where given. Thresholds at or below the law's floor are
    never reached. A Chinchilla law needs the recipe the size is for: ``tokens_per_param``
    (D = r N, e.g. 20 for compute-optimal) or a fixed number of ``tokens``."""
    if law.form == "size":
        if tokens_per_param is not None or tokens is not None:
            raise ValueError("a size law L(N) has no tokens: give tokens_per_param or tokens only with "
                             "a Chinchilla law")
        solve = _nc
    elif (tokens_per_param is None) == (tokens is None):
        raise ValueError("critical_size on a Chinchilla law needs the recipe: tokens_per_param or tokens "
                         "(exactly one)")
    else:
        solve = partial(_nc_chinchilla, ratio=tokens_per_param, tokens=tokens)
    level = law.level if level is None else level
    n_c = float(solve(law.theta[None], np.array([eta]))[0])
    status, reason, low, high, draws = "ok", "", np.nan, np.nan, None
    if not np.isfinite(n_c):
        status, reason = "undetermined", f"eta = {eta:.4g} is not above the law's floor: never reached"
    if law.draws is not None:
        etas = np.full(len(law.draws), float(eta)) if eta_draws is None else \
            np.random.default_rng(seed).choice(_arr(eta_draws), size=len(law.draws))
        draws = solve(law.draws, etas)  # +inf where a draw never reaches eta: widens the top
        ok = np.sort(draws[~np.isnan(draws)])
        if len(ok):  # order statistics, since percentile interpolation breaks on inf
            low, high = (ok[min(len(ok) - 1, int(q * len(ok)))] for q in ((1 - level) / 2, (1 + level) / 2))
        unreached = np.isinf(draws).mean()
        if status == "ok" and unreached > (1 - level) / 2:
            reason = f"{unreached:.0%} of bootstrap draws never reach eta: the upper bound is infinite"
    return CriticalSize(n_c, {"n_c": (float(low), float(high))}, level, draws, status, reason)


def size_law_critical(params: dict, etas) -> np.ndarray:
    """N_c = N0 (eta - L_inf)^(-1/alpha) of a size law given by its parameters, for each eta;
    +inf where eta is at or below L_inf, NaN for a NaN eta."""
    return _nc(theta_of("size", params)[None], np.asarray(etas, float))


def theta_of(form: str, params: dict) -> np.ndarray:
    """The fit's own vector (a[, b], e, alpha[, beta]) of a law given by its published names."""
    if form == "size":
        return np.array([params["alpha"] * np.log(params["N0"]), np.log(params["L_inf"]), params["alpha"]])
    return np.array([np.log(params["A"]), np.log(params["B"]), np.log(params["E"]), params["alpha"], params["beta"]])


def law_band(form: str, params: dict, N, D, fit_N, fit_D, fit_L, *, z: float = 1.96):
    """(L_hat, low, high) of a law at (N, D): a delta-method band from the residuals at the
    points it was fitted on (Gauss-Newton covariance of the log-loss fit; no refit). The
    Jacobian is taken in the logs of the published parameters. Low and high are NaN where the
    points cannot support a band (no more points than parameters)."""
    names = NAMES[form]
    phi = np.array([params[k] if k in ("alpha", "beta") else np.log(params[k]) for k in names], float)

    def log_law(phi, N, D):
        theta = theta_of(form, {k: v if k in ("alpha", "beta") else np.exp(v) for k, v in zip(names, phi)})
        cols = [_arr(N)] if D is None else [_arr(N), _arr(D)]
        return _logpred(theta[None], np.log(np.column_stack(np.broadcast_arrays(*cols))))[0]

    def jacobian(N, D):
        cols = []
        for j in range(len(phi)):
            h = 1e-6 * max(1.0, abs(phi[j]))
            up, dn = phi.copy(), phi.copy()
            up[j] += h
            dn[j] -= h
            cols.append((log_law(up, N, D) - log_law(dn, N, D)) / (2 * h))
        return np.column_stack(cols)

    pred = log_law(phi, N, D)
    y, fit = np.log(_arr(fit_L)), log_law(phi, fit_N, fit_D)
    lo = hi = np.full(len(pred), np.nan)
    k = len(phi)
    if len(y) > k and np.all(np.isfinite(fit)):
        J, G = jacobian(fit_N, fit_D), jacobian(N, D)
        s2 = float(np.sum((y - fit) ** 2) / (len(y) - k))
        cov = s2 * np.linalg.pinv(J.T @ J)
        se = np.sqrt(np.clip(np.einsum("ij,jk,ik->i", G, cov, G), 0, None))
        lo, hi = np.exp(pred - z * se), np.exp(pred + z * se)
    return np.exp(pred), lo, hi


def fit_scaling_laws(df: pd.DataFrame, *, form: str = "size", x: str = S.PARAMS, loss: str = S.LOSS,
                     by=(S.FAMILY,), checkpoints: str = "final", n_boot: int = 100, seed: int = 0,
                     level: float = 0.95, workers: int = 0) -> pd.DataFrame:
    """Fit one law per group of a tidy table; one row per parameter, with status and reason.

    x is ``params`` or ``params_nonembed``; the Chinchilla form also uses ``tokens``. Each
    checkpoint contributes one loss. ``checkpoints="final"`` keeps each model's last checkpoint
    (the laws describe trained models; intermediate checkpoints are not trained-to-D runs).
    """
    if form not in NAMES:
        raise ValueError(f"form must be 'size' or 'chinchilla', not {form!r}")
    by = [by] if isinstance(by, str) else list(by)
    # Only the columns a fit reads: grouping copies every column of every group.
    df = df[[c for c in dict.fromkeys(by + _loss_columns(x, loss)) if c in df.columns]]
    groups = []                                      # (meta, (columns, loss) or the FitError)
    for key, group in (df.groupby(by, sort=True, dropna=False) if by else [((), df)]):
        key = key if isinstance(key, tuple) else (key,)
        try:
            points = loss_points(group, x=x, loss=loss, checkpoints=checkpoints,
                                 need_tokens=form == "chinchilla")
            cols = [points[x], points[S.TOKENS]] if form == "chinchilla" else [points[x]]
            groups.append((dict(zip(by, key), form=form, x=x), (cols, points[loss])))
        except FitError as e:
            groups.append((dict(zip(by, key), form=form, x=x), e))
    # Several groups are fitted in parallel, each with its bootstrap in its own worker; a single
    # group runs its bootstrap draws in parallel instead.
    todo = [problem for _, problem in groups if not isinstance(problem, FitError)]
    fits = iter(map_chunks(partial(_fit_problems, form=form, n_boot=n_boot, seed=seed, level=level,
                                   workers=workers if len(todo) < 2 else 1),
                           todo, workers=workers, chunk=1, min_items=2))
    rows = []
    for meta, problem in groups:
        fit = problem if isinstance(problem, FitError) else next(fits)
        if isinstance(fit, FitError):
            rows += [dict(meta, param=p, estimate=np.nan, stderr=np.nan, ci_low=np.nan, ci_high=np.nan,
                          level=level, n=0, objective=np.nan, status="undetermined", reason=str(fit))
                     for p in NAMES[form]]
            continue
        for r in fit.to_frame().to_dict("records"):
            rows.append(dict(meta, **r, level=level, n=fit.n, objective=fit.objective,
                             status=fit.status, reason=fit.reason))
    return pd.DataFrame(rows)


def _fit_problems(problems, form, n_boot, seed, level, workers):
    """ScalingFit (or the FitError) of each (columns, loss) problem."""
    out = []
    for cols, loss in problems:
        try:
            out.append(_fit(form, cols, loss, n_boot, seed, level, DELTA, 8, workers))
        except FitError as e:
            out.append(e)
    return out


def loss_points(df: pd.DataFrame, *, x: str = S.PARAMS, loss: str = S.LOSS,
                checkpoints: str = "final", need_tokens: bool = False) -> pd.DataFrame:
    """One (x[, tokens], loss) row per checkpoint; raises FitError saying what is missing.
    Checkpoints without x (or tokens) are left out: a fit's ``n`` says how many were used."""
    if S.CHECKPOINT not in df.columns:  # a bare DataFrame: one checkpoint per model (and step)
        df = df.assign(**{S.CHECKPOINT: df[S.MODEL].astype(str) + (
            "@" + df[S.STEP].astype(str) if S.STEP in df.columns else "")})
    need = [S.MODEL, x, loss] + ([S.TOKENS] if need_tokens else [])
    missing = [c for c in need if c not in df.columns or df[c].isna().all()]
    if missing:
        raise FitError(f"no values in column(s) {missing}: cannot fit a loss law")
    cols = [c for c in _loss_columns(x, loss) if c in df.columns]
    per = df[cols].dropna(subset=[loss])
    conflict = per.groupby(S.CHECKPOINT)[loss].nunique()
    if (conflict > 1).any():
        raise FitError(f"checkpoints with more than one loss value: {list(conflict[conflict > 1].index[:5])}")
    per = per.drop_duplicates(S.CHECKPOINT)
    if checkpoints == "final":
        order = [c for c in (S.STEP, S.TOKENS) if c in per.columns and per[c].notna().any()]
        if not order and per[S.MODEL].duplicated().any():
            raise FitError("several checkpoints per model but no step or tokens to tell the final one")
        per = per.sort_values(order, na_position="first").groupby(S.MODEL, sort=False).tail(1) if order else per
    elif checkpoints != "all":
        raise ValueError("checkpoints must be 'final' or 'all'")
    return per.dropna(subset=[x] + ([S.TOKENS] if need_tokens else [])).reset_index(drop=True)


def _loss_columns(x, loss) -> list:
    return list(dict.fromkeys([S.MODEL, S.CHECKPOINT, S.STEP, x, S.PARAMS, S.TOKENS, S.FLOPS, loss]))


# ----------------------------------------------------------------------------- fitting machinery

def _arr(v) -> np.ndarray:
    return np.atleast_1d(np.asarray(v, dtype=float))


def _predict(form, theta, N, D=None):
    k = _K[form]
    cols = [_arr(N)] if k == 1 else [_arr(N), _arr(D if D is not None else np.nan)]
    if k == 2 and D is None:
        raise ValueError("the Chinchilla law needs D (tokens) to predict")
    lx = np.log(np.column_stack(np.broadcast_arrays(*cols)))
    return np.exp(_logpred(theta[None], lx)[0])


def _logpred(thetas, lx):
    """log L_hat for many parameter vectors at once: thetas (m, 2k+1), lx (n, k) -> (m, n)."""
    k = lx.shape[1]
    a, e, al = thetas[:, :k], thetas[:, k], thetas[:, k + 1:]
    terms = a[:, None, :] - al[:, None, :] * lx[None]          # (m, n, k)
    allt = np.concatenate([terms, np.broadcast_to(e[:, None, None], terms.shape[:2] + (1,))], axis=2)
    top = allt.max(axis=2, keepdims=True)
    return (top + np.log(np.exp(allt - top).sum(axis=2, keepdims=True)))[..., 0]


def _huber(r, delta):
    ar = np.abs(r)
    return np.where(ar <= delta, 0.5 * r * r, delta * (ar - 0.5 * delta))


def _objective_many(thetas, lx, ly, delta):
    with np.errstate(over="ignore", invalid="ignore"):
        val = _huber(_logpred(thetas, lx) - ly[None], delta).sum(axis=1)
    return np.where(np.isfinite(val), val, np.inf)


def _obj_grad_many(x, lxc, ly, weights, delta):
    """Objective and gradient of many weighted problems at once, in centred coordinates
    (a_j measured at the mean log x_j, which decorrelates a_j from alpha_j): x (B, 2k+1),
    weights (B, n) (bootstrap resample counts, or ones). Divided by delta, which keeps the
    convergence tolerances meaningful."""
    k = lxc.shape[1]
    t = np.empty(x.shape[:1] + (len(ly), k + 1))
    np.subtract(x[:, None, :k], x[:, None, k + 1:] * lxc[None], out=t[..., :k])
    t[..., k] = x[:, k, None]
    top = t.max(axis=2, keepdims=True)
    w = np.exp(t - top)
    s = w.sum(axis=2, keepdims=True)
    r = (top + np.log(s))[..., 0] - ly[None]
    dh = np.clip(r, -delta, delta) * weights
    soft = w / s
    ds = dh[..., None] * soft[..., :k]
    g = np.empty_like(x)
    g[:, :k] = ds.sum(axis=1)
    g[:, k] = (dh * soft[..., k]).sum(axis=1)
    g[:, k + 1:] = -(ds * lxc[None]).sum(axis=1)
    return (weights * _huber(r, delta)).sum(axis=1) / delta, g / delta


def _lbfgs_many(theta0, lx, ly, weights, delta, maxiter=500, memory=10, ftol=1e-13, gtol=1e-10):
    """The law fitted on many problems at once (one row of ``weights`` per problem: bootstrap
    resample counts, or ones), from ``theta0`` (one vector, or one row each), with exponents in
    [0, 10] and log E in [-20, 20]. Works in centred coordinates (see ``_obj_grad_many``).
    Returns (thetas, objectives)."""
    weights = np.asarray(weights, float)
    B, k = len(weights), lx.shape[1]
    mu = lx.mean(0)
    lxc = lx - mu
    x = np.array(np.broadcast_to(np.asarray(theta0, float), (B, 2 * k + 1)))
    x[:, :k] -= x[:, k + 1:] * mu
    lo = np.r_[[-np.inf] * k, -20.0, [0.0] * k]
    hi = np.r_[[np.inf] * k, 20.0, [_ALPHA_MAX] * k]
    x, f = minimize_many(lambda x, rows: _obj_grad_many(x, lxc, ly, weights[rows], delta), x, lo, hi,
                         maxiter=maxiter, memory=memory, ftol=ftol, gtol=gtol)
    x[:, :k] += x[:, k + 1:] * mu
    return x, f * delta


def _grid(k):
    """The replication's grid: a, b in 0..25, e in -1..1, alpha, beta in 0..2 (step 5 / 0.5)."""
    a, e, al = np.arange(0, 30, 5.0), np.arange(-1, 1.5, 0.5), np.arange(0, 2.5, 0.5)
    return np.array([(*p[:k], p[k], *p[k + 1:]) for p in itertools.product(*([a] * k + [e] + [al] * k))])


def _best_fit(lx, ly, delta, n_starts):
    """L-BFGS from the best starts of two vectorised screens: the replication's grid, and a
    variable-projection grid (for each exponent pair, the best non-negative E, A, B by weighted
    least squares). The second finds basins the raw grid misses on small, noisy data sets."""
    grid = _grid(lx.shape[1])
    if n_starts is None:  # the replication's exact procedure: L-BFGS from every grid point
        starts = grid
    else:
        proj = _projected_starts(lx, ly)
        starts = np.concatenate([grid[np.argsort(_objective_many(grid, lx, ly, delta))[:max(2, n_starts // 4)]],
                                 proj[np.argsort(_objective_many(proj, lx, ly, delta))[:n_starts]]])
    ones = np.ones((len(starts), len(ly)))
    if len(starts) <= 2:
        th, f = _lbfgs_many(starts, lx, ly, ones, delta)
        return th[np.argmin(f)], float(f.min())
    # A short run from every start, then the two most promising run to convergence: with a
    # tiny delta the objective is nearly L1 and full runs from poor starts crawl.
    th, f = _lbfgs_many(starts, lx, ly, ones, delta, maxiter=60)
    best = np.argsort(f, kind="stable")[:2]
    th, f = _lbfgs_many(th[best], lx, ly, ones[:2], delta)
    return th[np.argmin(f)], float(f.min())


def _projected_starts(lx, ly):
    k = lx.shape[1]
    ref = lx.mean(0)
    exps = np.array(list(itertools.product(*[np.arange(0.05, 2.55, 0.1)] * k)))  # (m, k)
    # Columns: 1 and (x/x_ref)^-alpha_j, each row divided by L so residuals are relative errors.
    L = np.exp(ly)
    cols = np.concatenate([np.ones((len(exps), len(ly), 1)),
                           np.exp(-exps[:, None, :] * (lx - ref)[None])], axis=2) / L[None, :, None]
    best_sse, best_c = np.full(len(exps), np.inf), np.zeros((len(exps), k + 1))
    for subset in itertools.chain.from_iterable(itertools.combinations(range(k + 1), r) for r in range(1, k + 2)):
        X = cols[:, :, subset]  # exact NNLS for k + 1 <= 3 unknowns: try every active set
        c = np.einsum("mij,mj->mi", np.linalg.pinv(X), np.ones((len(exps), len(ly))))
        sse = ((np.einsum("mnj,mj->mn", X, c) - 1) ** 2).sum(1)
        full = np.zeros_like(best_c)
        full[:, subset] = c
        better = (c >= 0).all(1) & (sse < best_sse)
        best_sse[better], best_c[better] = sse[better], full[better]
    floor = 1e-8 * L.mean()  # a coefficient at zero becomes a tiny positive one (log must exist)
    logc = np.log(np.maximum(best_c, floor))
    a = logc[:, 1:] + exps * ref  # back from (x/x_ref)^-alpha to x^-alpha
    return np.column_stack([a, logc[:, 0], exps])


def _natural(form, theta):
    with np.errstate(over="ignore", divide="ignore"):
        if form == "size":
            a, e, al = theta
            return {"L_inf": np.exp(e), "N0": np.exp(a / al) if al > 0 else np.inf, "alpha": al}
        return {"E": np.exp(theta[2]), "A": np.exp(theta[0]), "B": np.exp(theta[1]),
                "alpha": theta[3], "beta": theta[4]}


def _check_inputs(form, cols, L):
    arrays = [_arr(c) for c in cols] + [_arr(L)]
    n = len(arrays[-1])
    if any(len(a) != n for a in arrays):
        raise FitError(f"inputs have different lengths: {[len(a) for a in arrays]}")
    names = NAMES[form]
    for name, a in zip(["N", "D"][:len(cols)] + ["L"], arrays):
        bad = np.flatnonzero(~np.isfinite(a) | (a <= 0))
        if len(bad):
            raise FitError(f"{name} must be finite and > 0; bad at positions {bad[:5].tolist()}"
                           + (" ..." if len(bad) > 5 else ""))
    if n < len(names):
        raise FitError(f"{n} point(s) cannot determine the {len(names)} parameters of the {form} law")
    return arrays


def _fit(form, cols, L, n_boot, seed, level, delta, n_starts, workers=1, best=None):
    arrays = _check_inputs(form, cols, L)
    lx, ly = np.log(np.column_stack(arrays[:-1])), np.log(arrays[-1])
    n = len(ly)
    why = "loss is constant: no power law to fit" if np.ptp(ly) == 0 else next(
        (f"all points share one {v}: its exponent is not identified"
         for j, v in enumerate("ND"[:lx.shape[1]]) if np.ptp(lx[:, j]) == 0), "")
    if why:
        nan = {k: np.nan for k in NAMES[form]}
        return ScalingFit(form, nan, dict(nan), {k: (np.nan, np.nan) for k in nan}, level, n, np.nan,
                          np.nan, np.full(2 * _K[form] + 1, np.nan), None, "undetermined", why, delta)
    with one_blas_thread():
        return _fit_law(form, lx, ly, n_boot, seed, level, delta, n_starts, workers, best)


def _fit_law(form, lx, ly, n_boot, seed, level, delta, n_starts, workers=1, best=None):
    n = len(ly)
    if best is None:
        theta, obj = _best_fit(lx, ly, delta, n_starts)
    else:
        theta = np.asarray(best, float)
        obj = float(_objective_many(theta[None], lx, ly, delta)[0])
    params = {name: float(v) for name, v in _natural(form, theta).items()}
    reason = _degenerate(theta, lx, ly, params)
    status = "undetermined" if reason else "ok"
    draws = None
    if n_boot > 0 and status == "ok":
        rng = np.random.default_rng(seed)
        resamples = [rng.integers(0, n, n) for _ in range(n_boot)]  # drawn here: the same for any workers
        draws = np.array(map_chunks(partial(_refit, theta=theta, lx=lx, ly=ly, delta=delta), resamples,
                                    workers=workers, chunk=50, min_items=100)).reshape(n_boot, len(theta))
    nat = pd.DataFrame([_natural(form, t) for t in draws if np.isfinite(t).all()] if draws is not None else [],
                       columns=list(params)).replace([np.inf, -np.inf], np.nan)
    q = [(1 - level) / 2, (1 + level) / 2]
    with np.errstate(over="ignore", invalid="ignore"):
        stderr = {k: float(nat[k].std()) if nat[k].count() > 1 else np.nan for k in params}
        ci = {k: tuple(nat[k].quantile(q).tolist()) if nat[k].count() else (np.nan, np.nan) for k in params}
    rss = float(((_logpred(theta[None], lx)[0] - ly) ** 2).sum())
    return ScalingFit(form, params, stderr, ci, level, n, float(obj), rss, theta, draws, status, reason, delta)


def _refit(resamples, theta, lx, ly, delta):
    """Bootstrap refits warm-started at the fit, as the replication, all at once (resamples as
    point weights); NaN rows for resamples that cannot be fitted (a variable without spread)."""
    ok = np.array([np.ptp(ly[idx]) > 0 and all(np.ptp(lx[idx, j]) > 0 for j in range(lx.shape[1]))
                   for idx in resamples], dtype=bool)
    out = np.full((len(resamples), len(theta)), np.nan)
    if ok.any():
        weights = np.array([np.bincount(idx, minlength=len(ly)) for idx, good in zip(resamples, ok) if good])
        with one_blas_thread():
            out[ok] = _lbfgs_many(theta, lx, ly, weights, delta)[0]
    return list(out)


def _degenerate(theta, lx, ly, params) -> str:
    """Why a fitted law is not a usable power law ("" when it is)."""
    k = lx.shape[1]
    alphas = theta[k + 1:]
    # A term contributing < 1e-6 of the loss anywhere in the data: the law collapsed to a constant.
    with np.errstate(over="ignore"):
        contrib = np.exp(theta[:k][None] - alphas[None] * lx - ly[:, None]).max(0)
    if np.any(contrib < 1e-6) or np.any(alphas <= 1e-8):
        return "a power-law term vanished: loss does not fall with this variable"
    if np.any(alphas >= _ALPHA_MAX - 1e-6):
        return f"an exponent hit its bound {_ALPHA_MAX}"
    if not np.isfinite(list(params.values())).all():
        return "a parameter overflows: the law is not identified"
    return ""


def _allocation(theta, C):
    a, b, _, al, be = theta
    G = np.exp((np.log(al) + a - np.log(be) - b) / (al + be))  # (alpha A / (beta B))^(1/(alpha+beta))
    return G * (C / 6) ** (be / (al + be)), (C / 6) ** (al / (al + be)) / G


def _nc(thetas, etas):
    """Size-law N_c for rows of thetas (a, e, alpha) and etas; +inf where eta <= L_inf."""
    a, e, al = thetas[:, 0], thetas[:, 1], thetas[:, 2]
    gap = etas - np.exp(e)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out = np.exp((a - np.log(np.where(gap > 0, gap, np.nan))) / al)
    return np.where(gap <= 0, np.inf, out)  # NaN (a failed draw) stays NaN


def _nc_chinchilla(thetas, etas, ratio=None, tokens=None, lo=0.0, hi=90.0):
    """Chinchilla-law N_c at D = ratio * N or D = tokens, by bisection on ln N in [lo, hi]
    (the loss falls monotonically with N); +inf where eta is not reached by N = e^hi."""
    a, b, e, al, be = (thetas[:, j] for j in range(5))
    etas = np.asarray(etas, float)

    def log_loss(x):       # ln L at ln N = x
        ld = x + np.log(ratio) if tokens is None else np.full_like(x, np.log(tokens))
        return np.logaddexp(np.logaddexp(a - al * x, b - be * ld), e)

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        target = np.log(etas)
        left, right = np.full(len(thetas), lo), np.full(len(thetas), hi)
        for _ in range(60):
            mid = (left + right) / 2
            above = log_loss(mid) > target
            left, right = np.where(above, mid, left), np.where(above, right, mid)
        out = np.exp(right)
        out = np.where(log_loss(np.full(len(thetas), hi)) > target, np.inf, out)
    return np.where(np.isfinite(thetas).all(axis=1), out, np.nan)  # a failed draw stays NaN
