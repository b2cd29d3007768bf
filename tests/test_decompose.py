"""Sub-task decomposition and the metric audit on tidy tables built by the tests."""

import numpy as np
import pandas as pd
import pytest

from emergence import schema as S
from emergence.analysis.curves import Axis
from emergence.analysis.decompose import (CONTINUOUS, DISCONTINUOUS, backtest_composite, decompose, metric_audit,
                                          metric_kind, predict_composite)
from emergence.analysis.synthetic import composite, generate

SIZES = np.geomspace(7e7, 1.2e10, 10)
T = Axis.over("params", SIZES).to_t(SIZES)


def _table(x, curves, n=1000, task="arith"):
    """Tidy rows: curves = {(subtask, metric): (values, chance)}, one model per size."""
    return pd.DataFrame([{S.FAMILY: "toy", S.MODEL: f"m{i}", S.PARAMS: size, S.STEP: 100, S.TASK: task,
                          S.SUBTASK: sub, S.METRIC: metric, S.VALUE: float(v[i]), S.N: n, S.CHANCE: chance}
                         for (sub, metric), (v, chance) in curves.items() for i, size in enumerate(x)])


def _binomial(p, n=1000, seed=0):
    return np.random.default_rng(seed).binomial(n, np.clip(p, 0, 1)) / n


def test_brief_example_five_subtasks_forty_to_sixty_percent():
    x, q, c = composite(noise=False)
    assert c[0] == pytest.approx(0.010, abs=5e-4) and c[-1] == pytest.approx(0.078, abs=5e-4)
    pred = predict_composite(q, c)
    assert pred.k == 5 and pred.rmse_independent < 1e-12 and pred.k_eff == pytest.approx(5, abs=1e-3)


def test_fitted_exponent_captures_dependent_subtasks():
    q = np.tile(np.linspace(0.4, 0.9, 8), (5, 1))
    pred = predict_composite(q, q.mean(0) ** 2)          # sub-steps that fail together: k_eff < k
    assert pred.k_eff == pytest.approx(2, abs=0.01)
    assert pred.rmse_fitted < 1e-6 < pred.rmse_independent


def test_pk_composite_is_metric_induced():
    x, q, c = composite(n=1000, seed=1)
    curves = {("", "exact_match"): (c, 0.0)} | {(f"digit_{j + 1}", "acc"): (q[j], 0.1) for j in range(5)}
    df = _table(x, curves)
    audit = metric_audit(df)
    assert len(audit) == 1 and audit.label[0] == "metric-induced", audit.reason[0]
    dec = decompose(df)
    assert dec.k[0] == 5 and dec.n_checkpoints[0] == 8 and dec.rmse_independent[0] < 0.01
    assert 3.5 < dec.k_eff[0] < 6.5


def test_threshold_in_every_view_is_genuine():
    sub = np.where(T < 0.45, 0.1, 0.1 + 1.5 * (T - 0.45))          # each step has its own threshold
    curves = {(f"step_{j}", "acc"): (_binomial(sub, seed=j), 0.1) for j in range(3)}
    curves[("", "exact_match")] = (_binomial(sub ** 3, seed=9), 0.0)
    curves[("", "gold_bpb")] = (np.where(T < 0.45, 2.0, 2.0 - 2.5 * (T - 0.45)), None)
    df = _table(SIZES, curves)
    df.loc[df.metric == "gold_bpb", S.N] = np.nan
    df.loc[df.metric == "gold_bpb", S.STDERR] = 0.01
    audit = metric_audit(df)
    assert audit.label[0] == "genuine", audit.to_dict("records")


def test_smooth_discontinuous_metric_has_no_threshold_to_explain():
    df = _table(SIZES, {("", "acc"): (_binomial(0.4 + 0.4 * T), 0.25),
                        ("", "prob_correct"): (_binomial(0.35 + 0.3 * T, seed=1), 0.25)}, task="mc")
    assert metric_audit(df).label[0] == "none"


def test_floor_exact_match_is_undetermined():
    df = _table(SIZES, {("", "exact_match"): (np.zeros(10), 0.0), ("", "char_acc"): (_binomial(0.2 + 0.3 * T), None)})
    audit = metric_audit(df)
    assert audit.label[0] == "undetermined" and "undetermined" in audit.reason[0]


def test_tasks_without_both_views_are_not_audited():
    df = _table(SIZES, {("", "acc"): (_binomial(0.4 + 0.4 * T), 0.25)}, task="mc")
    assert metric_audit(df).empty and decompose(df).empty


def test_metric_kind_rule_and_override():
    assert metric_kind("exact_match") == DISCONTINUOUS and metric_kind("acc[rc]") == DISCONTINUOUS
    assert metric_kind("gold_bpb") == CONTINUOUS and metric_kind("brier") == CONTINUOUS
    assert metric_kind("bleu_score") is None
    assert metric_kind("bleu_score", {"bleu_score": CONTINUOUS}) == CONTINUOUS


def test_generator_composites_are_explained_by_their_subtasks():
    comps = [c for c in generate(200, seed=2) if c.shape == "pk_composite"]
    assert comps
    for c in comps:
        pred = predict_composite(c.subtasks, c.y)
        assert pred.rmse_independent < 0.1 and c.subtasks.shape[1] == len(c.x)


def test_k_eff_fitted_on_small_models_predicts_the_larger_composite():
    """Dependent sub-steps (composite = mean^2): the exponent fitted below the cutoff predicts
    the held-out composite; the product rule (k = 5) does not."""
    q = np.linspace(0.3, 0.9, len(SIZES))
    curves = {(f"s{j}", "acc"): (q + 0.01 * j, 0.0) for j in range(5)}
    curves[("", "exact_match")] = (np.mean([q + 0.01 * j for j in range(5)], axis=0) ** 2, 0.0)
    out = backtest_composite(_table(SIZES, curves), 1e9).iloc[0]
    assert out["status"] == "ok" and out["k_eff_small"] == pytest.approx(2, abs=0.01)
    assert out["n_heldout"] == int((SIZES >= 1e9).sum()) and out["mae_k_eff"] < 1e-3 < out["mae_independent"]
    assert out["k_eff_identified"] and out["reason"] == ""


def test_k_eff_is_flagged_when_the_small_models_composite_is_all_zero():
    q = np.linspace(0.1, 0.9, len(SIZES))
    curves = {(f"s{j}", "acc"): (q, 0.0) for j in range(5)}
    curves[("", "exact_match")] = (np.where(SIZES < 1e9, 0.0, q ** 5), 0.0)
    out = backtest_composite(_table(SIZES, curves), 1e9).iloc[0]
    assert out["status"] == "ok" and not out["k_eff_identified"] and "not identified" in out["reason"]


def test_composite_backtest_says_why_a_side_is_empty():
    x, q, c = composite(noise=False)
    curves = {(f"s{j}", "acc"): (q[j], 0.0) for j in range(5)}
    curves[("", "exact_match")] = (c, 0.0)
    table = _table(x, curves)
    assert backtest_composite(table, 1e6)["reason"].iloc[0] == "no checkpoints with params below 1e+06"
    one_small = backtest_composite(table, 8e7).iloc[0]
    assert one_small["status"] == "not run" and "the small side" in one_small["reason"]
    with pytest.raises(ValueError, match="no values in 'flops'"):
        backtest_composite(table, 1e9, by=S.FLOPS)
