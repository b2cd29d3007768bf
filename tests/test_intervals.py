"""Calibrated backtest intervals (analysis.intervals) and the sensitivity refit behind them."""

import numpy as np
import pandas as pd

from emergence import schema as S
from emergence.analysis.backtest import backtest, predictor_summary
from emergence.analysis.intervals import add_calibrated, conformal_quantile


def test_conformal_quantile_takes_the_rank_the_level_needs_or_says_what_it_guarantees():
    assert conformal_quantile(range(1, 20), 0.9) == (18.0, 0.9)      # ceil(20 * 0.9) = 18th of 19
    assert conformal_quantile([3.0, 1.0, 2.0], 0.9) == (3.0, 0.75)   # 3 scores guarantee 3/4 at most
    assert np.isnan(conformal_quantile([np.nan], 0.9)[0])


def test_a_target_twice_as_far_out_gets_twice_the_width():
    values = {"a": 1.0, "b": np.e, "c": np.e ** 2, "t1": np.e ** 3, "t2": np.e ** 4}
    groups = dict.fromkeys(values, "all")
    again = pd.DataFrame({"group": "all", "task": "x", "subtask": "", "metric": "acc", "model": ["c"],
                          "predictor": "p", "status": "ok", "predicted": [0.5], "actual": [0.4]})
    table = pd.DataFrame({"group": "all", "task": "x", "subtask": "", "metric": "acc", "model": ["t1", "t2"],
                          "predictor": "p", "status": "ok", "predicted": [0.5, 0.5], "actual": [0.5, 0.9],
                          "pred_low": np.nan, "pred_high": np.nan})
    out = add_calibrated(table, again, values, groups, cutoff=np.e ** 2.5, lower={"all": np.e ** 2}, level=0.9)
    # one calibration score: error 0.1 over one e-fold (c from b); t1 is 1 e-fold past c, t2 is 2
    assert np.allclose(out["cal_high"] - out["predicted"], [0.1, 0.2])
    assert (out["cal_n"] == 1).all() and np.allclose(out["cal_level"], 0.5)


def _family_with_benchmark_only_model():
    rows = []
    for i, n in enumerate(np.geomspace(1e7, 1e10, 7)):
        acc = 0.25 + 0.7 / (1 + np.exp(-2 * (np.log10(n) - 8.5)))
        base = {S.FAMILY: "f", S.MODEL: f"m{i}", S.PARAMS: n, S.TOKENS: 20 * n, S.SUBTASK: "", S.METRIC: "acc",
                S.VALUE: acc, S.CHANCE: 0.25}
        rows += [{**base, S.TASK: "task"}, {**base, S.TASK: "bench"}]
    # the largest model below the cutoff has benchmark scores only: dropping it changes no fit
    rows.append({S.FAMILY: "f", S.MODEL: "bench-only", S.PARAMS: 9e8, S.TOKENS: 1.8e10, S.TASK: "bench",
                 S.SUBTASK: "", S.METRIC: "acc", S.VALUE: 0.6, S.CHANCE: 0.25})
    return pd.DataFrame(rows)


def test_sensitivity_refit_leaves_out_a_model_the_task_was_fitted_on():
    table = backtest(_family_with_benchmark_only_model(), 1e9, tasks=["task"], predictors=["power_law"],
                     n_boot=0)
    assert (table["shift"] > 0).all()          # m4 (4.6e8 params) left out, not the bench-only model
    ps = predictor_summary(table).set_index("predictor")
    assert ps.loc["power_law", "cal_coverage"] >= 0 and (table["cal_n"] > 0).all()
    assert (table["cal_high"] >= table["predicted"]).all() and (table["cal_low"] <= table["predicted"]).all()
