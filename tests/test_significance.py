"""Run-level uncertainty: Benjamini-Hochberg q-values, the bootstrap over runs, the parametric
null, the emergent gate on a verdict table, and run offsets in the synthetic families."""

import numpy as np
import pandas as pd
import pytest

from emergence import schema as S
from emergence.analysis.curves import Axis
from emergence.analysis.significance import add_significance, bh_qvalues, curve_significance
from emergence.analysis.synthetic import synthetic_family
from emergence.analysis.verdicts import classify, verdicts


def _pooled(run_sd, seed=0, runs=8, per_run=12, n=2000, t0=0.5):
    """A threshold at t0 on a loss axis, pooled over runs that each cover part of the range
    and carry their own offset (run_sd) shared by all their checkpoints."""
    rng = np.random.default_rng(seed)
    loss = np.concatenate([np.linspace(4.0 - 0.1 * r, 3.0 - 0.1 * r, per_run) for r in range(runs)])
    model = np.repeat([f"m{r}" for r in range(runs)], per_run)
    t = Axis.over("loss", loss).to_t(loss)
    p = 0.25 + 0.6 * np.clip(t - t0, 0, None) + np.repeat(rng.normal(0, run_sd, runs), per_run)
    y = rng.binomial(n, np.clip(p, 0, 1)) / n
    return loss, y, model, n, float(Axis.over("loss", loss).to_x(t0))


def test_bh_qvalues_match_the_step_up_rule():
    q = bh_qvalues([0.01, 0.04, 0.03, np.nan, 0.5])
    assert np.allclose(q[[0, 1, 2, 4]], [0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.5]) and np.isnan(q[3])
    assert np.all(np.diff(bh_qvalues(np.sort(np.random.default_rng(0).random(50)))) >= 0)


def test_run_offsets_widen_the_run_level_eta_interval_and_the_reported_one_covers_the_truth():
    widths, covered = {}, 0
    for sd in (0.0, 0.03):
        for seed in range(4):
            loss, y, model, n, eta = _pooled(run_sd=sd, seed=seed)
            v = classify(loss, y, n=n, chance=0.25, axis="loss")
            if v.label != "emergent":   # run offsets can make a draw non-monotone
                continue
            r = curve_significance(loss, y, model, n=n, axis="loss", bounded=True)
            assert r["clusters"] == 8 and r["note"] == ""
            assert 0 <= r["p_emergent"] <= 1 and r["p_value"] == pytest.approx(0.01)
            widths.setdefault(sd, []).append(r["eta_hi"] - r["eta_lo"])
            lo, hi = min(r["eta_lo"], v.evidence.eta_lo), max(r["eta_hi"], v.evidence.eta_hi)   # as onset reports it
            covered += lo <= eta <= hi
    assert len(widths[0.0]) == 4 and len(widths[0.03]) >= 3
    assert np.median(widths[0.03]) > 1.3 * np.median(widths[0.0])   # offsets shared by a run's points widen it
    assert covered >= len(widths[0.0]) + len(widths[0.03]) - 1


def test_a_smooth_curve_is_not_significant_and_one_run_resamples_its_points():
    x = np.geomspace(1e8, 1e10, 12)
    t = Axis.over("params", x).to_t(x)
    y = np.random.default_rng(1).binomial(1000, 0.3 + 0.4 * t) / 1000
    r = curve_significance(x, y, None, n=1000, axis="params", bounded=True)
    assert r["p_value"] > 0.05 and r["p_emergent"] < 0.5
    assert r["note"] == "one run: its points are the clusters" and r["clusters"] == 12


def test_the_gate_relabels_emergent_curves_that_do_not_survive_resampling():
    x = np.geomspace(7e7, 1.2e10, 10)
    t = Axis.over("params", x).to_t(x)
    clear = np.where(t < 0.45, 0.25, 0.25 + 1.1 * (t - 0.45))
    df = pd.concat([pd.DataFrame({S.FAMILY: "f", S.MODEL: [f"m{i}" for i in range(len(x))], S.TASK: task,
                                  S.SUBTASK: "", S.METRIC: "acc", S.PARAMS: x, S.N: 1000, S.CHANCE: 0.25,
                                  S.VALUE: np.random.default_rng(0).binomial(1000, p) / 1000})
                    for task, p in (("jump", clear), ("ramp", 0.3 + 0.4 * t))], ignore_index=True)
    table = verdicts(df, axis=S.PARAMS, workers=1).assign(axis=S.PARAMS)
    table.loc[table[S.TASK] == "ramp", "label"] = "emergent"   # pretend the verdict got it wrong
    out = add_significance(table, df, workers=1).set_index(S.TASK)
    assert out.loc["jump", "label"] == "emergent" and out.loc["jump", "q_value"] < 0.05
    assert out.loc["ramp", "label"] == "smooth" and "not significant" in out.loc["ramp", "reason"]
    assert {"p_emergent", "p_value", "q_value"} <= set(out.columns)


def test_run_offsets_are_shared_by_a_runs_checkpoints_and_leave_the_rest_as_drawn():
    plain, shifted = synthetic_family(3, "fixed_tokens"), synthetic_family(3, "fixed_tokens", run_sd=0.3)
    assert plain.eta == shifted.eta and plain.table[S.LOSS].equals(shifted.table[S.LOSS])
    assert plain.table.equals(synthetic_family(3, "fixed_tokens", run_sd=0.0).table)
    d = (shifted.table[S.VALUE] - plain.table[S.VALUE]).groupby([shifted.table[S.TASK], shifted.table[S.MODEL]])
    assert d.mean().std() > 0.02   # offsets per run (logit scale), beyond the binomial resampling


def test_onset_intervals_contain_the_verdicts_and_carry_the_run_resampling():
    from emergence.analysis.onset import onset_backtest

    fam = synthetic_family(5, "fixed_tokens", run_sd=0.1)
    rows = onset_backtest(fam.table, fam.cutoff, n_boot=5, include_all=True)
    located = rows[rows["eta_pred"].notna()]
    assert len(located)
    for r in located.to_dict("records"):
        assert r["eta_pred_lo"] <= min(r["eta_verdict_lo"], r["eta_verdict_hi"])
        assert r["eta_pred_hi"] >= max(r["eta_verdict_lo"], r["eta_verdict_hi"])
        assert 0 <= r["p_emergent_small"] <= 1 and r["runs_small"] == 5


def test_analyze_puts_the_significance_columns_in_the_verdict_table():
    from emergence.analysis.analyze import analyze

    x = np.geomspace(7e7, 1.2e10, 10)
    t = Axis.over("params", x).to_t(x)
    df = pd.DataFrame({S.FAMILY: "f", S.MODEL: [f"m{i}" for i in range(10)], S.CHECKPOINT: [f"m{i}" for i in range(10)],
                       S.TASK: "jump", S.SUBTASK: "", S.METRIC: "acc", S.PARAMS: x, S.N: 1000, S.CHANCE: 0.25,
                       S.VALUE: np.random.default_rng(0).binomial(1000, np.where(t < 0.45, 0.25, 0.25 + 1.1 * (t - 0.45))) / 1000})
    result = analyze(df, axes=[S.PARAMS], workers=1)
    v = result.verdicts
    assert v["label"].tolist() == ["emergent"] and v["q_value"].iloc[0] < 0.05 and v["p_emergent"].iloc[0] > 0.5
    from emergence.analysis.analyze import summary

    assert "P(emergent)" in summary(result)
