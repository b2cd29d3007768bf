"""Box-constrained L-BFGS on many independent problems at once, vectorised across them.

Projected two-loop directions and a backtracking Armijo search, with scipy's L-BFGS-B stopping
rules (``ftol`` on the relative decrease, ``gtol`` on the projected gradient). A problem's path
depends only on its own start and objective, never on the others in the batch. It replaces
thousands of small ``scipy.optimize.minimize`` calls, whose per-call overhead dominated the
scaling-law bootstrap (tests/test_lbfgs.py compares the optima with scipy's L-BFGS-B).
"""

import numpy as np


def minimize_many(fun_grad, x0, lower, upper, *, maxiter=500, memory=10, ftol=1e-13, gtol=1e-10):
    """Minimise B problems from starts ``x0`` (B, p) within [lower, upper] (p,).

    ``fun_grad(x, rows)`` returns the objectives (len(rows),) and gradients (len(rows), p) of
    problems ``rows`` (indices into the batch) at ``x`` (len(rows), p); +inf or NaN marks a point
    outside the domain. Returns (x, f): the minimisers and their objectives."""
    lo, hi = np.asarray(lower, float), np.asarray(upper, float)
    x = np.clip(np.array(x0, float), lo, hi)
    B, p = x.shape
    with np.errstate(over="ignore", invalid="ignore"):
        f, g = fun_grad(x, np.arange(B))
    S, Y, rho = np.zeros((B, memory, p)), np.zeros((B, memory, p)), np.zeros((B, memory))
    gamma = np.ones(B)
    active = np.isfinite(f)
    for it in range(maxiter):
        idx = np.flatnonzero(active)
        if not len(idx):
            break
        xa, fa, ga = x[idx], f[idx], g[idx]
        free = ~(((xa <= lo) & (ga > 0)) | ((xa >= hi) & (ga < 0)))   # not pressed against a bound
        pg = np.where(free, ga, 0.0)
        done = np.abs(pg).max(axis=1) <= gtol
        q, ring, alphas = pg.copy(), [(it - 1 - j) % memory for j in range(min(it, memory))], []
        for i in ring:                                     # newest pair first
            a = rho[idx, i] * _dot(S[idx, i], q)
            q -= a[:, None] * Y[idx, i]
            alphas.append(a)
        r = gamma[idx, None] * q
        for i, a in zip(reversed(ring), reversed(alphas)):
            r += S[idx, i] * (a - rho[idx, i] * _dot(Y[idx, i], r))[:, None]
        d = np.where(free, -r, 0.0)
        steep = ~(_dot(ga, d) < 0)                         # not a descent direction: use -gradient
        d[steep] = -pg[steep]
        step = np.where((it == 0) | steep, 1.0 / np.maximum(1.0, np.linalg.norm(pg, axis=1)), 1.0)
        x_new, f_new, g_new = xa.copy(), fa.copy(), ga.copy()
        pending = ~done
        for _ in range(40):                                # halve the step until Armijo holds
            j = np.flatnonzero(pending)
            if not len(j):
                break
            trial = np.clip(xa[j] + step[j, None] * d[j], lo, hi)
            with np.errstate(over="ignore", invalid="ignore"):
                ft, gt = fun_grad(trial, idx[j])
            ok = np.isfinite(ft) & (ft <= fa[j] + 1e-4 * _dot(ga[j], trial - xa[j]))
            x_new[j[ok]], f_new[j[ok]], g_new[j[ok]] = trial[ok], ft[ok], gt[ok]
            pending[j[ok]] = False
            step[j[~ok]] *= 0.5
        s_vec, y_vec = x_new - xa, g_new - ga
        sy, yy = _dot(s_vec, y_vec), _dot(y_vec, y_vec)
        good = sy > 1e-10 * np.maximum(1.0, yy)            # curvature condition, else skip the pair
        slot = it % memory
        S[idx, slot], Y[idx, slot] = s_vec * good[:, None], y_vec * good[:, None]
        rho[idx, slot] = np.where(good, 1.0 / np.where(good, sy, 1.0), 0.0)
        gamma[idx] = np.where(good, sy / np.maximum(yy, 1e-300), gamma[idx])
        rel = (fa - f_new) / np.maximum(np.maximum(np.abs(fa), np.abs(f_new)), 1.0)
        x[idx], f[idx], g[idx] = x_new, f_new, g_new
        active[idx] = ~(done | pending | (rel <= ftol))    # pending: no decrease left to find
    return x, f


def _dot(a, b):
    return np.einsum("bp,bp->b", a, b)
