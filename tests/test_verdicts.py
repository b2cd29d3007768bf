"""Emergence verdicts: explicit shapes, bad input, random input, the synthetic benchmark, and
the real Pythia table (skipped where the shared reference data is absent)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emergence import schema as S
from emergence.analysis.curves import Axis
from emergence.analysis.synthetic import SHAPES, benchmark, generate
from emergence.analysis.verdicts import (LABELS, ClassifyConfig, breakthroughness_linearity, classify, verdicts,
                                wei_emergent)

SIZES = np.geomspace(7e7, 1.2e10, 10)
T = Axis.over("params", SIZES).to_t(SIZES)
PYTHIA = Path(__file__).resolve().parents[2] / "shared" / "reference-data" / "tidy" / "pythia.csv.gz"


def _sample(p, n=1000, seed=0):
    return np.random.default_rng(seed).binomial(n, np.clip(p, 0, 1)) / n


def test_floor_zeros_are_undetermined():
    v = classify(SIZES, np.zeros(10), n=500, chance=0.0)
    assert v.label == "undetermined" and "floor" in v.evidence.reason


def test_flat_at_chance_is_flat():
    v = classify(SIZES, _sample(np.full(10, 0.25)), n=1000, chance=0.25)
    assert v.label == "flat" and "at chance" in v.evidence.reason


def test_clear_threshold_is_emergent_with_eta_near_truth():
    p = np.where(T < 0.45, 0.25, 0.25 + 1.1 * (T - 0.45))
    v = classify(SIZES, _sample(p), n=1000, chance=0.25)
    e, truth = v.evidence, Axis.over("params", SIZES).to_x(0.45)
    assert v.label == "emergent", v.summary()
    assert abs(np.log10(e.eta / truth)) < 0.15 and e.eta_lo <= truth <= e.eta_hi
    assert e.jump_se > 5 and e.margin >= ClassifyConfig().emergent_margin and len(e.eta_draws) == 100
    assert e.points_above_chance >= 3 and v.best_fit.predict(SIZES[-1]) == pytest.approx(p[-1], abs=0.05)
    assert v.alternatives[0].name in ("threshold", "saturating_threshold", "sigmoid_steep")
    assert {"constant", "linear", "power_law", "sigmoid_gentle"} <= {f.name for f in v.alternatives}


def test_threshold_in_loss_is_emergent_with_eta_in_nats():
    loss = np.linspace(4.0, 2.2, 14)               # Du et al.: chance until the loss drops below 3.0
    p = np.where(loss > 3.0, 0.25, 0.25 + 0.6 * (3.0 - loss))
    v = classify(loss, _sample(p, seed=1), n=1000, chance=0.25, axis="loss")
    assert v.label == "emergent" and abs(v.evidence.eta - 3.0) < 0.12
    assert v.evidence.eta_lo <= 3.0 <= v.evidence.eta_hi


def test_smooth_power_law_is_smooth():
    v = classify(SIZES, _sample(0.25 + 0.6 * (SIZES / SIZES[-1]) ** 0.3), n=1000, chance=0.25)
    assert v.label == "smooth" and v.evidence.eta is None


def test_decreasing_is_inverse():
    assert classify(SIZES, _sample(0.7 - 0.3 * T), n=1000, chance=0.25).label == "inverse"


def test_zigzag_beyond_noise_is_noisy_and_a_jump_inside_noise_is_not_emergent():
    zigzag = 0.5 + 0.1 * (-1.0) ** np.arange(10)
    assert classify(SIZES, zigzag, n=1000, chance=0.25).label == "noisy"
    small_jump = np.where(T < 0.5, 0.25, 0.28)     # 3 points' worth of noise at n=100
    assert classify(SIZES, small_jump, n=100, chance=0.25).label != "emergent"


def test_lower_is_better_metric_is_oriented():
    p = np.where(T < 0.45, 0.75, 0.75 - 1.1 * (T - 0.45))   # error rate falls after a threshold
    v = classify(SIZES, _sample(p), n=1000, chance=0.75, higher_is_better=False)
    assert v.label == "emergent" and v.best_fit.predict(SIZES[-1]) == pytest.approx(p[-1], abs=0.05)


def test_bad_input_is_undetermined_with_a_reason():
    y = _sample(np.linspace(0.3, 0.7, 10))
    cases = {"non-finite": (SIZES, np.r_[y[:9], np.nan]), "1 point": (SIZES[:1], y[:1]),
             "outside [0, 1]": (SIZES, np.r_[y[:9], 1.5]), "positive": (-SIZES, y),
             "distinct": (np.full(10, 1e9), y)}
    for words, (x, yy) in cases.items():
        v = classify(x, yy, n=1000)
        assert v.label == "undetermined" and words in v.evidence.reason, (words, v.evidence.reason)
    assert classify(SIZES, np.r_[y[:9], np.inf]).label == "undetermined"
    assert classify(SIZES, np.full(10, 0.4)).label == "flat"        # constant, no noise given
    for level in (1 / 3, -1 / 3):   # not exact in binary: chi2 used to cancel into noise, not 0
        assert classify(SIZES[:8], np.full(8, level)).label == "flat"
        assert classify(SIZES[:8], np.full(8, level), stderr=np.full(8, 1e-12)).label == "flat"
    assert classify(SIZES, np.r_[y[:9], np.nan], n=1000,
                    config=ClassifyConfig(drop_nonfinite=True)).evidence.n_points == 9
    with pytest.raises(ValueError):
        classify(SIZES, y[:5])
    with pytest.raises(KeyError, match="Did you mean"):
        classify(SIZES, y, axis="parameters")


finite_or_not = st.floats(allow_nan=True, allow_infinity=True)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_curve_gets_a_valid_verdict(data):
    k = data.draw(st.integers(0, 14))
    level = data.draw(st.floats(0, 1))
    y = data.draw(st.one_of(
        st.lists(st.one_of(st.floats(0, 1), finite_or_not), min_size=k, max_size=k),
        st.just([level] * k)))                                        # constant curves
    x = data.draw(st.lists(st.one_of(st.floats(1e6, 1e12), finite_or_not), min_size=k, max_size=k))
    stderr = data.draw(st.one_of(st.none(), st.lists(finite_or_not, min_size=k, max_size=k)))
    v = classify(x, y, stderr=stderr, n=data.draw(st.one_of(st.none(), st.integers(-3, 5000))),
                 chance=data.draw(st.one_of(st.none(), finite_or_not)),
                 higher_is_better=data.draw(st.booleans()), bounded=data.draw(st.one_of(st.none(), st.booleans())),
                 axis=data.draw(st.sampled_from(["params", "tokens", "loss", "capability"])),
                 config=ClassifyConfig(bootstrap=20))
    assert v.label in LABELS and v.evidence.reason
    if v.label == "emergent":
        assert v.evidence.eta is not None and v.evidence.jump_se >= ClassifyConfig().jump_se


def test_big_bench_scores_and_wei_criterion():
    t = np.arange(6.0)
    b, lin = breakthroughness_linearity(t, t)                  # steady: I = 5, every step 1
    assert b == pytest.approx(5) and lin == pytest.approx(5)
    b, lin = breakthroughness_linearity(t, [0, 0, 0, 1, 1, 1])  # one jump: median step 0
    assert np.isinf(b) and lin == pytest.approx(1 / np.sqrt(0.2))
    s = np.full(3, 0.01)
    assert wei_emergent(t[:3], np.array([0.26, 0.27, 0.6]), s, baseline=0.25, scale=0.75)
    assert not wei_emergent(t[:3], np.array([0.45, 0.5, 0.6]), s, baseline=0.25, scale=0.75)
    assert wei_emergent(t[:3], np.ones(3), s, baseline=None) is None


def test_verdicts_table_keeps_final_step_and_reports_evidence():
    rows = []
    for i, size in enumerate(SIZES):
        for step, frac in ((1000, 0.5), (2000, 1.0)):
            acc = 0.25 + frac * 0.5 * T[i]
            rows.append({S.FAMILY: "toy", S.MODEL: f"m{i}", S.PARAMS: size, S.STEP: step, S.TASK: "qa",
                         S.SUBTASK: None, S.METRIC: "acc", S.VALUE: round(acc, 3), S.N: 2000, S.CHANCE: 0.25})
    v = verdicts(pd.DataFrame(rows))
    assert len(v) == 1 and v.label[0] == "smooth" and v.n_points[0] == 10
    assert v.note[0] == "final step of each model"
    assert {"label", "best_model", "margin", "eta", "eta_lo", "eta_hi", "jump_se", "points_above_chance",
            "n_points", "breakthroughness", "linearity", "wei_emergent", "reason"} <= set(v.columns)
    assert classify(pd.DataFrame(rows).query("step == 2000")).label == "smooth"


def test_verdicts_do_not_depend_on_the_number_of_workers():
    rows = []
    curves = [c for c in generate(100, seed=7) if c.higher_is_better]   # emergent ones get bootstrap intervals
    for c, curve in enumerate(curves):
        for xi, yi in zip(curve.x, curve.y):
            rows.append({S.FAMILY: "toy", S.MODEL: f"m{xi:.6g}", S.TASK: f"t{c}", S.SUBTASK: "",
                         S.METRIC: "acc", curve.axis: xi, S.VALUE: yi, S.N: curve.n, S.CHANCE: curve.chance})
    df = pd.DataFrame(rows)
    for axis in ("params", "loss"):
        one = verdicts(df, axis, workers=1)
        assert len(one) >= 64 and "emergent" in set(one.label)   # enough curves for worker processes
        pd.testing.assert_frame_equal(one, verdicts(df, axis, workers=2))
        pd.testing.assert_frame_equal(one, verdicts(df, axis, workers=3))


def test_synthetic_generator_is_deterministic_and_labelled():
    a, b = generate(30, seed=3), generate(30, seed=3)
    assert [c.label for c in a] == [c.label for c in b] and all((c.y == d.y).all() for c, d in zip(a, b))
    assert {c.label for c in generate(60, seed=4)} == set(SHAPES) <= set(LABELS)
    assert all(c.in_regime for c in generate(20, seed=5, regime=True))


def test_synthetic_benchmark_meets_targets():
    r = benchmark(300, seed=11, rest=40)
    assert r.accuracy >= 0.95 and r.false_emergent_rate <= 0.02, r.summary()
    assert r.eta_error < 0.05 and r.eta_coverage >= 0.8
    assert set(r.confusion.index) == set(SHAPES)


@pytest.mark.skipif(not PYTHIA.exists(), reason="shared reference data not present")
def test_pythia_final_step_accuracies():
    df = pd.read_csv(PYTHIA)
    chance = {"arc_challenge": .25, "arc_easy": .25, "lambada_openai": 0.0, "logiqa": .25, "mmlu": .25,
              "piqa": .5, "sciq": .25, "winogrande": .5, "wsc": .5}
    v = verdicts(df[(df.metric == "acc") & (df.subtask.isna())], "params", chance=chance)
    assert len(v) == 32 and (v.n_points == 8).all()      # 2 families x 8 tasks x {0, 5} shots
    labels = dict(zip(zip(v.family, v.task, v.n_shot), v.label))
    assert labels[("pythia", "arc_easy", 0)] == "smooth" and labels[("pythia", "lambada_openai", 0)] == "smooth"
    assert labels[("pythia", "logiqa", 0)] == "flat"
    assert not (v.label == "emergent").any()


# ---- the definition of emergence (docs/verdicts.md) ----------------------------------------

def test_a_bend_well_above_chance_is_smooth_accelerating_not_emergent():
    bend = np.where(T < 0.45, 0.45, 0.45 + 0.9 * (T - 0.45))      # 4-way MC far above chance, then up
    v = classify(SIZES, _sample(bend), n=1000, chance=0.25)
    assert v.label == "smooth" and v.evidence.accelerating and "accelerating" in v.evidence.reason, v.summary()
    at_chance = classify(SIZES, _sample(bend - 0.2), n=1000, chance=0.25)
    assert at_chance.label == "emergent" and not at_chance.evidence.accelerating
    assert at_chance.evidence.floor == 0.25 and at_chance.evidence.floor_source == "chance"


def test_the_same_logistic_gets_the_same_label_over_two_and_four_decades():
    for width, label in ((1.0, "smooth"), (0.3, "emergent")):    # 10-90% rise, in decades
        got = set()
        for span in (2, 4):
            x = np.logspace(9 - span / 2, 9 + span / 2, 8 * span + 1)
            p = 0.25 + 0.6 / (1 + np.exp(-2 * np.log(9) / width * (np.log10(x) - 9)))
            got.add(classify(x, _sample(p, seed=span), n=1000, chance=0.25).label)
        assert got == {label}, (width, got)


def test_an_onset_followed_by_a_fall_stays_emergent_and_records_the_fall():
    p = np.where(T < 0.45, 0.25, np.minimum(0.25 + 1.6 * (T - 0.45), 0.85))
    p[-1] = 0.45                                                  # the largest model falls back
    v = classify(SIZES, _sample(p), n=1000, chance=0.25)
    assert v.label == "emergent" and v.evidence.non_monotone_after_onset, v.summary()
    assert v.evidence.eta is not None and "not monotone" in v.evidence.reason
    assert verdicts(pd.DataFrame({S.FAMILY: "f", S.TASK: "t", S.SUBTASK: "", S.METRIC: "acc", S.PARAMS: SIZES,
                                  S.VALUE: _sample(p), S.N: 1000, S.CHANCE: 0.25}))["non_monotone_after_onset"][0]


def test_unknown_noise_with_few_points_is_undetermined_and_unknown_chance_is_said():
    v = classify(SIZES[:5], [0.05, 0.09, 0.16, 0.27, 0.41])     # rises 8x, no stderr, no n
    assert v.label == "undetermined" and "noise unknown" in v.evidence.reason and "5 points" in v.evidence.reason
    flat = classify(SIZES, _sample(np.full(10, 0.4)), n=1000)      # chance not given
    assert flat.label == "flat" and "chance unknown" in flat.evidence.reason and "chance 0" not in flat.evidence.reason


def test_a_floor_made_of_a_few_edge_points_is_not_observed():
    x = np.geomspace(1e8, 1e10, 400)                 # a pooled table: 400 points
    t = Axis.over("params", x).to_t(x)
    p = np.where(t < 0.03, 0.25, 0.25 + 0.5 * -np.expm1(-(t - 0.03) / 0.2))   # 3% at chance, then up
    y = _sample(p, n=2000)
    assert classify(x, y, n=2000, chance=0.25).label == "emergent"   # >= 1% of the points: an observed floor
    v = classify(x, y, n=2000, chance=0.25, config=ClassifyConfig(min_floor_share=0.05))
    assert v.label == "smooth" and "no observed floor" in v.evidence.reason, v.summary()


def _run_table(steps, acc):
    """One model's training run: tokens = step x 2M, as Pythia."""
    return pd.DataFrame({S.FAMILY: "toy", S.MODEL: "m", S.TASK: "qa", S.SUBTASK: "", S.METRIC: "acc",
                         S.STEP: steps, S.TOKENS: np.asarray(steps, float) * 2 ** 21, S.VALUE: acc, S.N: 2000,
                         S.CHANCE: 0.25})


def test_warm_up_checkpoints_are_not_judged_so_trimming_them_changes_nothing():
    steps = np.array([1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000, 3000, 13000, 33000, 63000, 93000, 143000])
    frac = np.log10(np.maximum(steps, 1000) / 1000) / np.log10(143)    # chance until step 1000, then up
    df = _run_table(steps, _sample(0.25 + 0.4 * frac, n=2000))
    full, trimmed = verdicts(df, "tokens"), verdicts(df[df[S.STEP] >= 1000], "tokens")
    assert full["n_warmup"][0] == 11 and trimmed["n_warmup"][0] == 1     # steps 1-1000: < 1% of 143000
    assert full["label"][0] == trimmed["label"][0] == "smooth"
    no_rule = verdicts(df, "tokens", config=ClassifyConfig(warmup_fraction=0))
    assert no_rule["label"][0] == "emergent"                             # what the rule prevents


def test_curves_with_no_shape_are_marked_not_judged():
    assert not classify(SIZES[:2], [0.3, 0.5], n=100).evidence.judged
    assert not classify([1e9] * 5, [0.3] * 5, n=100).evidence.judged
    assert classify(SIZES, np.full(10, np.nan), n=100).evidence.judged     # bad input is a verdict
    rows = pd.DataFrame({S.FAMILY: "f", S.TASK: "t", S.SUBTASK: "", S.METRIC: "acc", S.PARAMS: SIZES,
                         S.TOKENS: 3e11, S.FLOPS: 6 * SIZES * 3e11, S.VALUE: _sample(0.3 + 0.4 * T), S.N: 1000})
    v = verdicts(rows, "flops")
    assert not v["judged"][0] and "duplicate axis" in v["reason"][0] and "params" in v["reason"][0]
    assert verdicts(rows, "params")["judged"][0]


def test_the_definition_is_stated_alike_in_docs_legend_and_help(capsys):
    from emergence.analysis.verdicts import definition
    from emergence.cli import _analyze_description
    from emergence.report.tables import LEGEND

    text = definition()
    docs = (Path(__file__).resolve().parents[1] / "docs" / "verdicts.md").read_text()
    assert " ".join(text.split()) in " ".join(docs.split())
    assert LEGEND["emergent"] == text.removeprefix("Emergent: ")
    assert " ".join(text.split()) in " ".join(_analyze_description().split())


def test_a_window_much_narrower_than_a_gentle_sigmoid_is_still_judged():
    x = np.geomspace(1e9, 1.05e9, 6)                  # 0.02 decade: the gentle width is 45 windows
    v = classify(x, _sample(np.linspace(0.3, 0.5, 6)), n=1000, chance=0.25)
    assert v.label == "smooth" and v.evidence.judged   # a steady rise that starts above chance


def test_the_floor_rule_is_chosen_on_dense_ladders_by_its_stated_rule():
    from emergence.analysis.dense_ladders import dense_ladder, floor_rule_benchmark

    table, floor_points, judged = dense_ladder(1000)
    thr = table[table[S.TASK] == "threshold"]
    assert judged == 6 * 36 and len(thr) == 6 * 40 and 0 <= floor_points <= judged
    out = floor_rule_benchmark(6, shares=(0.0, 0.3), workers=1).set_index("share")
    assert out.loc[0.0, "recall"] > out.loc[0.3, "recall"]      # a 30% floor is more than most ladders hold
    assert (out["false_emergent"] <= 0.01).all() and out["chosen"].tolist() == [True, False]
