"""Curve specs and weighted fits: recovery of known parameters, the result object, the axis."""

import dataclasses

import numpy as np
import pytest
from scipy.special import expit

from emergence.analysis.curves import (CONSTANT, EXPONENTIAL, LINEAR, POWER_LAW, SATURATING_THRESHOLD, SIGMOID,
                              THRESHOLD, THRESHOLD_BELOW, Axis, bin_curve, binomial_sigma, fit_curve,
                              noise_model, profile, profile_many, sigmoid_grid)
from emergence.analysis.parallel import map_chunks


def _noisy(spec, x, true, sigma=0.01, seed=0):
    return spec.func(x, *true) + np.random.default_rng(seed).normal(0, sigma, len(x))


@pytest.mark.parametrize("spec, true", [
    (CONSTANT, (0.3,)), (LINEAR, (0.2, 0.5)), (EXPONENTIAL, (0.1, 0.05, 3.0)),
    (THRESHOLD, (0.25, 1.0, 0.5)), (SATURATING_THRESHOLD, (0.25, 0.5, 0.4, 0.2)),
    (SIGMOID, (0.5, 20.0, 0.6, 0.25)),
])
def test_fit_recovers_known_parameters(spec, true):
    x = np.linspace(0, 1, 25)
    fit = fit_curve(spec, x=x, y=_noisy(spec, x, true), sigma=0.01)
    for name, value in zip(spec.params, true):
        lo, hi = fit.intervals[name]
        assert lo - 0.1 * abs(value) <= value <= hi + 0.1 * abs(value), (name, fit.summary())
    assert fit.chi2 < 3 * len(x)


def test_du_threshold_on_loss_and_power_law_on_size():
    loss = np.linspace(4.0, 2.2, 15)                      # Du et al.: chance until loss < eta
    fit = fit_curve(THRESHOLD_BELOW, x=loss, y=_noisy(THRESHOLD_BELOW, loss, (0.25, 0.4, 3.1)), sigma=0.01)
    assert abs(fit.params["x0"] - 3.1) < 0.1
    size = np.geomspace(7e7, 1.2e10, 12)
    fit = fit_curve(POWER_LAW, x=size, y=0.1 + 5e-5 * size ** 0.4, sigma=0.001)
    assert fit.params["c"] == pytest.approx(0.4, rel=1e-3)


def test_result_is_immutable_and_reports():
    x = np.linspace(0, 1, 10)
    lin = fit_curve(LINEAR, x=x, y=0.2 + 0.5 * x + 0.01 * np.sin(7 * x), sigma=0.01)
    const = fit_curve(CONSTANT, x=x, y=lin.y, sigma=0.01)
    with pytest.raises(dataclasses.FrozenInstanceError):
        lin.chi2 = 0.0
    assert lin.aic < const.aic and lin.bic < const.bic and lin.aicc > lin.aic
    assert lin.predict([0.0, 1.0]) == pytest.approx([0.2, 0.7], abs=0.02)
    assert "a =" in lin.summary() and "AIC" in lin.summary()
    assert len(LINEAR.guess(x, lin.y)) == 2


def test_unweighted_fit_estimates_the_variance():
    x = np.linspace(0, 1, 40)
    y = _noisy(LINEAR, x, (0.2, 0.5), sigma=0.05, seed=3)
    fit = fit_curve(LINEAR, x=x, y=y)
    assert not fit.sigma_known and fit.k == 3
    assert 0.01 < fit.stderr["b"] < 0.06


def test_profile_vectorises_over_bootstrap_columns():
    x = np.linspace(0, 1, 12)
    Y = np.stack([THRESHOLD.func(x, 0.2, 1.0, t0) for t0 in (0.3, 0.5, 0.7)], 1)
    theta = THRESHOLD.grid(x)
    chi2, beta = profile(THRESHOLD, x, Y, np.full(12, 0.01), theta)
    assert chi2.shape == (len(theta), 3) and beta.shape == (len(theta), 3, 2)
    best = theta[np.argmin(chi2, 0), 0]
    assert best == pytest.approx([0.3, 0.5, 0.7], abs=0.01)
    signed, _ = profile(THRESHOLD, x, -Y, np.full(12, 0.01), theta, {"s": 1})
    assert np.isinf(signed).all()                        # a falling curve has no rising hinge


def test_profile_many_matches_one_profile_per_shape():
    rng = np.random.default_rng(0)
    x = np.sort(rng.random(15))
    y, sigma = 0.3 + 0.4 * x + rng.normal(0, 0.02, 15), np.full(15, 0.02)
    jobs = [(spec, spec.grid(x) if spec.grid(x).size else np.empty((1, 0)))
            for spec in (CONSTANT, LINEAR, EXPONENTIAL, THRESHOLD, SATURATING_THRESHOLD, SIGMOID)]
    for (spec, theta), (chi2, beta) in zip(jobs, profile_many(jobs, x, y, sigma)):
        c, b = profile(spec, x, y, sigma, theta)
        assert np.allclose(chi2, c, rtol=1e-9, atol=1e-9), spec.name
        assert np.allclose(beta, b, rtol=1e-9, atol=1e-12, equal_nan=True), spec.name   # NaN: collinear design


def test_sigmoid_and_saturation_bases_match_the_direct_formulas():
    x = np.linspace(0, 1, 30)
    for ks, taus in ((np.geomspace(0.5, 50, 12), np.geomspace(0.03, 1, 10)),      # factorised exp
                     (np.geomspace(0.5, 4000, 12), np.geomspace(1e-3, 1, 10))):    # could overflow: direct
        theta = sigmoid_grid(x, ks, np.linspace(-0.5, 1.5, 9))
        direct = expit(theta[:, :1] * (x[None] - theta[:, 1:2]))
        assert np.allclose(SIGMOID.basis(x, theta)[0], direct, rtol=1e-12, atol=1e-14)
        theta = sigmoid_grid(x, np.linspace(0.1, 0.9, 9), taus)
        direct = -np.expm1(-np.maximum(0.0, x[None] - theta[:, :1]) / theta[:, 1:2])
        assert np.allclose(SATURATING_THRESHOLD.basis(x, theta)[1], direct, rtol=1e-12, atol=1e-14)


def test_map_chunks_keeps_order_whatever_the_workers():
    items = list(range(203))
    for workers in (1, 2, 3):
        assert map_chunks(_squares, items, workers=workers, chunk=8) == [i * i for i in items]


def _squares(chunk):
    return [i * i for i in chunk]


def test_no_admissible_grid_point_raises():
    with pytest.raises(ValueError, match="no admissible"):
        fit_curve(THRESHOLD, x=[0, 1, 2], y=[0, 1, 2], sigma=0.1)


def test_axis_maps_capability_both_ways():
    loss = Axis.over("loss", [2.2, 3.0, 4.0])
    assert loss.to_t([4.0, 2.2]) == pytest.approx([0, 1])   # lower loss = more capable
    size = Axis.over("params", [1e7, 1e10])
    assert size.to_t(1e8) == pytest.approx(1 / 3)
    assert size.to_x(size.to_t(3e9)) == pytest.approx(3e9)
    with pytest.raises(KeyError, match="Did you mean 'params'"):
        Axis.over("parms", [1, 2])


def test_noise_model_sources():
    y = np.array([0.0, 0.2, 0.5, 1.0])
    assert (binomial_sigma(y, 100) > 0).all()           # p = 0 or 1 keeps a variance
    se, how = noise_model(np.arange(4), y, stderr=np.array([0.0, 0.04, 0.05, 0.0]), proportion=True)
    assert how == "stderr" and (se > 0).all() and se[1] == 0.04
    se, how = noise_model(np.arange(4), y, n=np.full(4, 100.0), proportion=True)
    assert how == "binomial"
    se, how = noise_model(np.arange(6), np.linspace(0, 1, 6))
    assert how == "estimated" and se[0] >= 0.01


def test_bin_curve_keeps_precision():
    t = np.linspace(0, 1, 1000)
    tb, yb, sb = bin_curve(t, 2 * t, np.full(1000, 0.1), 50)
    assert len(tb) == 50 and yb == pytest.approx(2 * tb) and sb == pytest.approx(0.1 / np.sqrt(20))
