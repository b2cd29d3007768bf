"""The predictor backtest: predictors fitted on their own functional form recover held-out values,
and splits or tables a predictor cannot use give reasons while the others still run."""

import numpy as np
import pandas as pd
import pytest

from emergence import schema as S
from emergence.analysis.backtest import BacktestConfig, backtest, markdown, predictor_summary, split, summary
from emergence.analysis.predictors import PREDICTORS
from emergence.analysis.synthetic import synthetic_family

E, A, B, ALPHA, BETA = 1.8, 400.0, 410.0, 0.34, 0.28
SIZES = np.geomspace(2e7, 2e9, 6)          # the top two are held out at a cutoff of 5e8
MULTS = (10, 20, 40)


def _sigmoid_of(x, a=-0.75, x0=3.0, k=4.0, b=1.0):
    return a / (1 + np.exp(-k * (x - x0))) + b


def _family(value_of, *, loss=True, task_loss_of=None, steps=(0.25, 0.5, 0.75, 1.0), family="fam"):
    """Sizes x token multipliers, a few checkpoints each; loss from the Chinchilla law, the task's
    accuracy ``value_of(loss, N, D)``, and optionally a task-loss metric bpb."""
    rows = []
    for n in SIZES:
        for m in MULTS:
            for f in steps:
                d = m * n * f
                L = E + A / n ** ALPHA + B / d ** BETA
                base = {S.FAMILY: family, S.MODEL: f"{n:.3g}-x{m}", S.CHECKPOINT: f"{n:.3g}-x{m}@{f}",
                        S.PARAMS: n, S.TOKENS: d, S.FLOPS: 6 * n * d, S.STEP: 1000 * f, S.LOSS: L if loss else np.nan,
                        S.TASK: "task", S.SUBTASK: "", S.CHANCE: 0.25}
                rows.append({**base, S.METRIC: "acc", S.VALUE: float(value_of(L, n, d))})
                if task_loss_of is not None:
                    rows.append({**base, S.METRIC: "bpb", S.VALUE: float(task_loss_of(L))})
    return pd.DataFrame(rows)


def _errors(table, predictor):
    rows = table[table["predictor"] == predictor]
    assert (rows["status"] == "ok").all(), rows[["status", "reason"]].drop_duplicates().to_string()
    return rows["abs_err"].to_numpy()


def test_split_holds_out_the_large_models_and_keeps_every_checkpoint_of_the_small():
    df = _family(lambda L, n, d: _sigmoid_of(L))
    sp = split(df, 5e8)
    (p,) = sp.problems
    assert set(p.test[S.PARAMS]) == set(SIZES[SIZES >= 5e8]) and len(p.test) == 2 * len(MULTS)
    assert len(p.history) == 4 * len(MULTS) * 4 and (p.train[S.STEP] == 1000).all()
    by_flops = split(df, 6 * SIZES[3] * 10 * SIZES[3], by=S.FLOPS)
    assert len(by_flops.problems[0].train) + len(by_flops.problems[0].test) == len(SIZES) * len(MULTS)


def test_curves_of_different_evaluation_settings_are_backtested_apart():
    rc = _family(lambda L, n, d: _sigmoid_of(L)).assign(**{S.N_SHOT: 5, S.SETTING: ""})
    mc = rc.assign(**{S.SETTING: "mc", S.VALUE: 0.25})
    problems = split(pd.concat([rc, mc], ignore_index=True), 5e8).problems
    assert sorted(p.task for p in problems) == ["task (5-shot)", "task (5-shot, mc)"]
    assert [len(p.history) for p in problems] == [4 * len(MULTS) * 4] * 2     # no curve holds both


def test_two_step_recovers_a_chinchilla_law_and_a_sigmoid():
    table = backtest(_family(lambda L, n, d: _sigmoid_of(L)), 5e8, predictors=["two_step"], n_boot=5)
    assert _errors(table, "two_step").max() < 0.01
    assert table["reason"].str.contains("via the model's loss").all()   # no task-loss metric in the table
    assert (table["pred_low"] <= table["pred_high"]).all()


def test_power_law_recovers_its_own_form_in_compute():
    a, b = -0.12, 5.5      # log(-log q) = a ln C + b
    table = backtest(_family(lambda L, n, d: 0.25 + 0.75 * np.exp(-np.exp(a * np.log(6 * n * d) + b))), 5e8,
                     predictors=["power_law"], n_boot=5)
    assert _errors(table, "power_law").max() < 1e-6


def test_loss_to_loss_recovers_a_shifted_power_law_and_a_sigmoid():
    def task_loss(L):
        return 2.0 * (L - E) ** 0.8 + 0.4
    table = backtest(_family(lambda L, n, d: _sigmoid_of(task_loss(L), x0=1.6, k=5.0), task_loss_of=task_loss),
                     5e8, predictors=["loss_to_loss"], n_boot=5)
    assert _errors(table, "loss_to_loss").max() < 0.03   # the sigmoid extrapolates past the trained losses


def test_flp_uses_only_checkpoints_past_the_onset():
    """Accuracy at chance above a loss of 3.2 and linear in loss below it: the line fitted past
    the onset extrapolates exactly; a line through every checkpoint would not."""
    table = backtest(_family(lambda L, n, d: max(0.25, 0.25 + 0.3 * (3.2 - L))), 5e8, predictors=["flp"],
                     by=S.PARAMS, n_boot=0)
    assert _errors(table, "flp").max() < 0.02


def test_obs_scaling_recovers_a_sigmoid_of_capability_components():
    rng = np.random.default_rng(0)
    n_models, rows = 40, []
    skill = rng.normal(0, 1, (n_models, 2))
    loadings = rng.uniform(0.05, 0.15, (2, 5))
    for i in range(n_models):
        flops = 10 ** (20 + 3 * (i / n_models))
        base = {S.FAMILY: f"f{i % 4}", S.MODEL: f"m{i}", S.PARAMS: 1e9, S.TOKENS: flops / 6e9, S.FLOPS: flops,
                S.SUBTASK: "", S.CHANCE: 0.0}
        for j in range(5):
            rows.append({**base, S.TASK: f"bench{j}", S.METRIC: "acc", S.VALUE: 0.5 + skill[i] @ loadings[:, j]})
        z = 3 * (skill[i, 0] - 0.5 * skill[i, 1])
        rows.append({**base, S.TASK: "hard", S.METRIC: "acc", S.VALUE: 1 / (1 + np.exp(-z))})
    df = pd.DataFrame(rows)
    table = backtest(df, 10 ** 22.2, by=S.FLOPS, pool=True, tasks=["hard"], predictors=["obs_scaling", "power_law"],
                     benchmarks=[f"bench{j}" for j in range(5)], n_boot=5)
    obs = table[table["predictor"] == "obs_scaling"]
    assert len(obs) == 10 and obs["abs_err"].max() < 0.02
    assert summary(table)["winner"].eq("obs_scaling").all()   # compute alone does not see the skill


def test_obs_compute_recovers_components_from_compute_and_family_efficiency():
    rows, n_models = [], 40
    loadings = np.random.default_rng(1).uniform(0.05, 0.15, (2, 5))
    offsets = {"f0": 0.0, "f1": 0.8, "f2": -0.6, "f3": 0.3}
    for i in range(n_models):
        fam, logc = f"f{i % 4}", 20 + 3 * (i / n_models)
        skill = np.array([offsets[fam] + 0.7 * (logc - 21), 0.2 * (logc - 21) - offsets[fam]])
        base = {S.FAMILY: fam, S.MODEL: f"m{i}", S.PARAMS: 1e9, S.TOKENS: 10 ** logc / 6e9, S.FLOPS: 10 ** logc,
                S.SUBTASK: "", S.CHANCE: 0.0}
        rows += [{**base, S.TASK: f"bench{j}", S.METRIC: "acc", S.VALUE: 0.5 + skill @ loadings[:, j]}
                 for j in range(5)]
        rows.append({**base, S.TASK: "hard", S.METRIC: "acc", S.VALUE: 1 / (1 + np.exp(-3 * skill[0]))})
    df = pd.DataFrame(rows)
    table = backtest(df, 10 ** 22.2, by=S.FLOPS, pool=True, tasks=["hard"], predictors=["obs_compute", "power_law"],
                     benchmarks=[f"bench{j}" for j in range(5)], n_boot=3, sensitivity=False)
    assert _errors(table, "obs_compute").max() < 0.02
    ps = predictor_summary(table).set_index("predictor")
    assert ps.loc["obs_compute", "mae"] < ps.loc["power_law", "mae"] / 5   # one compute law misses the offsets
    unseen = backtest(df.assign(**{S.FAMILY: np.where(df[S.MODEL] == "m39", "new", df[S.FAMILY])}), 10 ** 22.2,
                      by=S.FLOPS, pool=True, tasks=["hard"], predictors=["obs_compute"],
                      benchmarks=[f"bench{j}" for j in range(5)], n_boot=0, sensitivity=False)
    new = unseen[unseen["model"] == "m39"].iloc[0]
    assert new["status"] == "not run" and "no training model of new" in new["reason"]


def test_onset_predicts_held_out_models_of_a_threshold_family():
    fam = synthetic_family(3, "overtrained")
    df = fam.table[fam.table[S.TASK] == "threshold"]
    table = backtest(df, fam.cutoff, predictors=["onset", "two_step"], n_boot=0, sensitivity=False)
    onset = table[table["predictor"] == "onset"]
    assert (onset["status"] == "ok").all() and onset["reason"].str.startswith("verdict").all()
    assert onset["abs_err"].max() < 0.1


def test_a_split_too_small_gives_reasons_and_the_others_still_run():
    df = _family(lambda L, n, d: _sigmoid_of(L), steps=(0.5, 1.0))
    table = backtest(df, 3e7, predictors=["two_step", "power_law", "loss_to_loss"], n_boot=0)
    by = table.groupby("predictor")
    assert by.get_group("two_step")["reason"].str.contains("L\\(N\\) needs 4").all()
    assert by.get_group("loss_to_loss")["reason"].str.contains("task-loss metric").all()
    assert (by.get_group("power_law")["status"] == "ok").all()
    assert (table["status"] == "not run").sum() == 2 * len(by.get_group("power_law"))


def test_a_family_without_loss_says_so():
    table = backtest(_family(lambda L, n, d: _sigmoid_of(L), loss=False), 5e8, n_boot=0, sensitivity=False)
    reasons = table.set_index("predictor")["reason"].groupby(level=0).first()
    for name in ("two_step", "flp", "onset"):
        assert "no loss" in reasons[name], (name, reasons[name])
    assert "no standard benchmark" in reasons["obs_scaling"]
    assert set(table.loc[table["status"] == "ok", "predictor"]) == {"power_law"}


def test_nothing_to_hold_out_or_fit_is_a_reason_not_a_crash():
    df = _family(lambda L, n, d: _sigmoid_of(L), steps=(1.0,))
    table = backtest(df, 1e12, predictors=["power_law"], n_boot=0)
    assert table["reason"].iloc[0].startswith("18 models below and 0 at or above")
    assert "No problem could be backtested" in markdown(table)


def test_a_table_without_scores_says_so():
    df = _family(lambda L, n, d: _sigmoid_of(L), steps=(1.0,))
    table = backtest(df.assign(**{S.METRIC: "bpb"}), 5e8, predictors=["power_law"])
    assert table["reason"].iloc[0].startswith("no task scored in [0, 1]")


def test_winner_and_predictable_on_an_exact_family():
    table = backtest(_family(lambda L, n, d: _sigmoid_of(L)), 5e8, predictors=["two_step", "power_law"], n_boot=0)
    s = summary(table)
    assert len(s) == 6 and (s["winner"] == "two_step").all() and (s["predictable"] == "yes").all()
    assert s["evidence"].str.contains("cutoff shift").all()
    ps = predictor_summary(table).set_index("predictor")
    assert ps.loc["two_step", "wins"] == 6 and ps.loc["power_law", "wins"] == 0
    assert "**" in markdown(table)


def test_validation_block_and_reading_come_from_the_table(tmp_path):
    from emergence.analysis.validate_predictions import Backtest, _block, predictors_section, reading

    table = backtest(_family(lambda L, n, d: _sigmoid_of(L)), 5e8, predictors=["two_step", "power_law"], n_boot=0)
    lines = _block(Backtest("toy", table, "intro"))
    assert lines[0] == "### toy" and any(line.startswith("| two_step | 6 | 0 |") for line in lines)
    assert lines[-1].endswith("6 of 6 task x target pairs (100%).")
    assert reading([("toy", table)]).startswith("**Reading.** toy: two_step wins 6 of 6")
    assert reading([]).endswith("not found.") and predictors_section(None).startswith("Skipped")
    assert "Skipped: `tidy/pythia.csv.gz` not found." in predictors_section(tmp_path)


def test_unknown_names_stop_with_a_suggestion():
    df = _family(lambda L, n, d: _sigmoid_of(L), steps=(1.0,))
    with pytest.raises(ValueError, match="two_step"):
        backtest(df, 5e8, predictors=["two_stp"])
    with pytest.raises(ValueError, match="Did you mean 'acc'"):
        backtest(df, 5e8, metrics=["ac"])
    with pytest.raises(ValueError, match="Unknown metric 'bpbb'"):
        backtest(df, 5e8, task_loss="bpbb")
    with pytest.raises(ValueError, match="split by 'params' or 'flops'"):
        backtest(df, 5e8, by="tokens")


def test_every_predictor_is_registered_with_the_same_signature():
    import inspect

    assert set(PREDICTORS) == {"two_step", "power_law", "loss_to_loss", "flp", "onset", "obs_scaling",
                               "obs_compute"}
    assert all(list(inspect.signature(fn).parameters) == ["p"] for fn in PREDICTORS.values())


def test_cli_writes_the_table_the_summary_and_the_config(tmp_path):
    from emergence.cli import main

    path = tmp_path / "fam.csv"
    _family(lambda L, n, d: _sigmoid_of(L), steps=(1.0,)).to_csv(path, index=False)
    out = tmp_path / "bt"
    assert main(["backtest", str(path), "--cutoff", "5e8", "--predictors", "power_law", "--n-boot", "0",
                 "-o", str(out)]) == 0
    table = pd.read_csv(out / "backtest.csv")
    assert set(table["predictor"]) == {"power_law"} and len(table) == 6
    assert (out / "backtest.md").read_text().startswith("| group | task |")
    assert BacktestConfig(**__import__("json").loads((out / "backtest.json").read_text())).cutoff == 5e8
