"""Emergence laws from fine-tuning: the law fit, the fine-tuning cells, resume and bad input."""

import itertools
import json

import numpy as np
import pandas as pd
import pytest

from emergence import schema as S
from emergence.analysis.finetune_law import (AMOUNT, SEEN_VALUE, emergence_prediction, fit_emergence_law,
                                             measured_onset, prediction_markdown, score_prediction,
                                             truth_markdown)
from emergence.analysis.scaling import FitError
from emergence.lab.finetune import (MANIFEST, FinetuneConfig, FinetuneError, finetune_run, finetune_table,
                                    training_examples)
from emergence.store import Store
from helpers import manager

TRUTH = {"k": 0.08, "alpha": 1.3, "C": 1.6}


def _eta(D):
    return TRUTH["C"] + TRUTH["k"] * np.log(D) ** TRUTH["alpha"]


# ----------------------------------------------------------------------------- the law


def test_log_power_law_recovers_the_few_shot_threshold():
    D = np.array([16, 64, 256, 1024, 4096, 16384])
    noise = np.random.default_rng(1).normal(0, 0.01, len(D))
    law = fit_emergence_law(D, _eta(D) + noise, _eta(D) - 0.02, _eta(D) + 0.02, d0=1, n_boot=100)
    assert law.form == "log_power"
    assert abs(law.eta - TRUTH["C"]) < 0.05
    assert law.eta_lo <= TRUTH["C"] <= law.eta_hi
    assert abs(law.predict([4096])[0] - _eta(4096)) < 0.02


def test_three_amounts_fix_alpha_and_two_are_refused():
    D = np.array([64, 256, 1024])
    truth = 1.5 + 0.05 * np.log(D)
    law = fit_emergence_law(D, truth, d0=4, n_boot=50)
    assert law.form == "log_linear" and law.params["alpha"] == 1.0
    assert abs(law.eta - (1.5 + 0.05 * np.log(4))) < 1e-6
    with pytest.raises(FitError, match=">= 3 positive amounts"):
        fit_emergence_law(D[:2], truth[:2])
    with pytest.raises(FitError, match="needs >= 4 amounts"):
        fit_emergence_law(D, truth, form="log_power")


def _synthetic_table(etas: dict, n_models=24, width=0.04, seed=0):
    """A fine-tuning run's tidy table: base checkpoints over losses 1.4..3.4 and, per amount D,
    exact match leaving 0 at the loss eta(D) (10% of its rise, the verdicts' onset) up to 0.9."""
    rng = np.random.default_rng(seed)
    losses = np.linspace(1.4, 3.4, n_models)
    rows = []
    for D, eta in etas.items():
        for i, loss in enumerate(losses):
            p = 0.9 / (1 + np.exp((loss - eta) / width + np.log(9))) if eta is not None else 0.2 * (3.4 - loss) / 2
            rows.append({S.FAMILY: "f", S.MODEL: f"m{i}+ft{D}", S.CHECKPOINT: f"m{i}@step1+ft{D}", S.PARAMS: 1000 * (i + 1),
                         S.TOKENS: 1e6, S.STEP: 1, S.LOSS: loss, S.TASK: "t", S.SUBTASK: "", S.METRIC: "exact_match",
                         S.VALUE: rng.binomial(400, p) / 400, S.N: 400, S.CHANCE: 0.0, AMOUNT: D})
    df = pd.DataFrame(rows)
    df[S.STDERR] = np.sqrt(np.maximum(df[S.VALUE] * (1 - df[S.VALUE]), 1e-4) / df[S.N])
    return df


def test_prediction_on_a_synthetic_run_finds_the_extrapolated_threshold():
    df = _synthetic_table({0: None, 64: float(_eta(64)), 256: float(_eta(256)), 1024: float(_eta(1024)),
                           4096: float(_eta(4096))})
    row = emergence_prediction(df, task="t", metric="exact_match", d0=1, n_boot=50)
    assert row["status"] == "predicted", row["reason"]
    # eta(1) lies ln(64) = 4 units of ln D below the first amount: the extrapolation is long.
    assert abs(row["eta_pred"] - TRUTH["C"]) < 0.15
    assert row["eta_pred_lo"] <= TRUTH["C"] <= row["eta_pred_hi"]
    assert "Law: eta(D)" in prediction_markdown(row)


def test_a_smooth_task_gets_no_onset_and_says_why():
    df = _synthetic_table({0: None, 64: None, 256: None, 1024: None})
    row = emergence_prediction(df, task="t", metric="exact_match", n_boot=10)
    assert row["status"] == "no onset"
    assert "0 of 3 fine-tuned amounts emergent" in row["reason"]
    assert "no onset" in prediction_markdown(row)
    assert "does not transfer" not in row["reason"]


def test_fine_tuning_that_teaches_only_its_training_questions_is_named():
    """Held-out scores flat while the models answer their own training questions: the reason says
    the skill did not transfer, at the amounts where it did not."""
    df = _synthetic_table({0: None, 64: None, 256: None, 1024: None})
    learned = {0: np.nan, 64: 0.3, 256: 0.9, 1024: 1.0}
    df[SEEN_VALUE] = df[AMOUNT].map(learned)
    row = emergence_prediction(df, task="t", metric="exact_match", n_boot=10)
    assert row["status"] == "no onset"
    transfer = row["reason"].split("Fine-tuning does not transfer to the held-out questions")[1]
    assert "D=256: 0.90" in transfer and "D=1024: 1.00" in transfer and "D=64" not in transfer
    assert "| 1.000 |" in prediction_markdown(row)


def test_the_figure_draws_every_amount_the_law_and_the_truth():
    from emergence.report.figures import finetune_law_figure

    df = _synthetic_table({0: None, 64: float(_eta(64)), 256: float(_eta(256)), 1024: float(_eta(1024))})
    df[SEEN_VALUE] = np.where(df[AMOUNT] > 0, 1.0, np.nan)
    row = emergence_prediction(df, task="t", metric="exact_match", d0=1, n_boot=20)
    left, right = finetune_law_figure(df, row, {"eta": 1.6, "eta_lo": 1.58, "eta_hi": 1.62}).axes[:2]
    assert len(left.lines) == 4 + 1                     # a line per amount, and chance
    assert len(left.collections) == 3                   # own training questions of each positive amount
    labels = right.get_legend_handles_labels()[1]
    assert {"emergence law", "measured onset (held out)", "predicted few-shot eta (D0 = 1)"} <= set(labels)
    none = emergence_prediction(_synthetic_table({0: None, 64: None, 256: None}), task="t", metric="exact_match",
                                n_boot=5)
    assert "no law: no onset" in finetune_law_figure(_synthetic_table({0: None, 64: None, 256: None}),
                                                     none).axes[1].texts[0].get_text()


def test_the_measured_onset_and_the_targets_a_prediction_is_scored_on():
    """The check of a prediction: the family's own onset without fine-tuning (here at 2.0 nats, the
    sizes' final losses falling with size), and the targets against it."""
    df = _synthetic_table({0: 2.0}, n_models=30).drop(columns=[AMOUNT])
    df[S.PARAMS] = np.round(1e3 * 10 ** (3.4 - df[S.LOSS]))          # larger models, lower loss
    truth = measured_onset(df, task="t", metric="exact_match")
    assert truth["label"] == "emergent" and abs(truth["eta"] - 2.0) < 0.05
    above, below = truth["bracket"]
    assert above < below and above / 2 < truth["nc"] < below * 2

    exact = {"status": "predicted", "eta_pred": truth["eta"], "eta_pred_lo": truth["eta"] - 0.1,
             "eta_pred_hi": truth["eta"] + 0.1, "nc_pred": truth["nc"], "nc_pred_lo": truth["nc"] / 3,
             "nc_pred_hi": truth["nc"] * 3}
    assert all(met for _, _, met in score_prediction(exact, truth))
    off = {**exact, "eta_pred": truth["eta"] + 0.2, "eta_pred_lo": truth["eta"] + 0.15,
           "eta_pred_hi": truth["eta"] + 0.25, "nc_pred": truth["nc"] / 3}
    assert [met for _, _, met in score_prediction(off, truth)] == [False, False, False, True]
    missed = score_prediction({"status": "no onset"}, truth)
    assert missed == [("eta within 0.05 nats", "not predicted (no onset)", False),
                      ("N_c within 2x", "not predicted", False)]
    assert "| eta within 0.05 nats | not predicted (no onset) | no |" in truth_markdown({"status": "no onset"}, truth)

    flat = measured_onset(_synthetic_table({0: None}), task="t", metric="exact_match")   # a fine-tuning table: D = 0
    assert flat["eta"] is None and flat["label"] != "emergent"
    assert score_prediction(exact, flat)[0] == ("eta within 0.05 nats",
                                                f"predicted {truth['eta']:.3f}; no measured onset ({flat['label']})",
                                                False)
    with pytest.raises(FitError, match="no rows with a pretraining loss for task 'other'"):
        measured_onset(df, task="other", metric="exact_match")


def test_validate_shows_the_backtest_targets_its_last_run_recorded(tmp_path):
    import sys
    from argparse import Namespace
    from pathlib import Path

    from emergence.analysis.validate import finetune_law_section

    sys.path.insert(0, str(Path(__file__).parents[1] / "bench"))
    import finetune_law as bench

    missed = {"status": "predicted", "eta_pred": 1.50, "eta_pred_lo": 1.45, "eta_pred_hi": 1.55, "nc_pred": 3e4,
              "nc_pred_lo": 1e4, "nc_pred_hi": 5e4}
    truth = {"label": "emergent", "eta": np.float64(1.40), "eta_lo": 1.38, "eta_hi": 1.42, "nc": np.float64(4e4)}
    sections = [(25000.0, "walk", missed, truth, None),
                (25000.0, "copy", {"status": "undetermined", "reason": "2 of 7 amounts emergent"}, truth, None),
                (25000.0, "add_1d", {"status": "no onset", "reason": "none emergent"}, None, None)]
    summary = bench._summary(Namespace(out="x.md", lr=0.01), sections, {"all": 12.0})
    path = tmp_path / "finetune_law.json"
    path.write_text(json.dumps(summary))

    text = finetune_law_section(path)
    assert "| walk | prediction | emergent, eta 1.400, N_c 4e+04 | predicted | eta within 0.05 nats | " \
           "1.500 vs 1.400 (error +0.100) | **no** |" in text
    assert "| walk | prediction | emergent, eta 1.400, N_c 4e+04 | predicted | N_c within 2x | " \
           "3e+04 vs 4e+04 (ratio 0.75) | yes |" in text
    assert "| add_1d | control |  | no onset | no onset predicted | no onset | yes |" in text
    assert "3 of 7 targets met" in text and "- copy: 2 of 7 amounts emergent" in text
    assert finetune_law_section(tmp_path / "absent.json").startswith("Not run here: `python bench/finetune_law.py")
    assert "whether it has changed since is unknown" in text      # no checkout beside tmp_path


def test_validate_says_when_the_backtest_code_changed_since_its_last_run(tmp_path):
    from emergence.analysis.validate import finetune_law_section, procedure_fingerprint

    (tmp_path / "bench").mkdir()
    (tmp_path / "tasks").mkdir()
    (tmp_path / "bench" / "finetune_law.py").write_text("A = 1\n")
    (tmp_path / "tasks" / "probe.py").write_text("B = 1\n")
    summary = {"command": "python bench/finetune_law.py", "seconds": 1, "cores": 2, "versions": {},
               "procedure": procedure_fingerprint(tmp_path),
               "sections": [{"cutoff": 1.0, "task": "t", "role": "control", "status": "no onset", "reason": "",
                             "targets": [{"target": "no onset predicted", "result": "no onset", "met": True}]}]}
    path = tmp_path / "bench" / "finetune_law.json"
    path.write_text(json.dumps(summary))
    assert "its fingerprint matches" in finetune_law_section(path)
    (tmp_path / "tasks" / "probe.py").write_text("B = 2\n")
    assert "**Stale: the code of the procedure" in finetune_law_section(path)
    path.write_text(json.dumps({**summary, "procedure": ""}))
    assert "recorded no fingerprint of its code" in finetune_law_section(path)
    assert procedure_fingerprint(tmp_path / "elsewhere") == ""


def test_a_table_without_amounts_or_losses_is_refused():
    with pytest.raises(FitError, match="ft_examples"):
        emergence_prediction(_synthetic_table({0: None}).drop(columns=[AMOUNT]), task="t", metric="exact_match")
    with pytest.raises(FitError, match="--loss-task"):
        emergence_prediction(_synthetic_table({0: None}).assign(**{S.LOSS: np.nan}), task="t", metric="exact_match")


# ----------------------------------------------------------------------------- training data


def _task(name):
    from emergence.plugins import collect

    return collect(manager()).tasks[name]


def test_training_examples_share_no_prompt_with_evaluation_or_shots():
    from emergence.run.evaluate import checked_examples

    task = _task("t_add")                       # 1 shot: its few-shot pool is excluded too
    train = training_examples(task, 300, train_seed=99, seed=5, limit=50)
    assert len(train) == 300
    held = {ex.prompt for ex in checked_examples(task, 5, 50)}
    held |= {ex.prompt for ex in itertools.islice(task.examples(6), 64)}
    assert not held & {ex.prompt for ex in train}


def test_walk_training_examples_avoid_the_evaluated_walks():
    from emergence_tasks.composition import walk_task
    from emergence.run.evaluate import checked_examples

    walk = walk_task()
    train = training_examples(walk, 100, train_seed=20_000_000, seed=1234, limit=30)
    evaluated = {ex.prompt for ex in checked_examples(walk, 1234, 30)}
    assert len(train) == 100 and not evaluated & {ex.prompt for ex in train}
    assert len({ex.prompt for ex in train}) == 20     # 50 walks in all: the other 20, repeated
    with pytest.raises(FinetuneError, match="0 training examples disjoint"):
        training_examples(walk, 10, train_seed=20_000_000, seed=1234, limit=None)


def test_walk_training_walks_pass_through_every_evaluated_start():
    """The disjoint training walks still hold each evaluated start's successor, mid-walk: what
    is missing is only the evaluated question itself (docs/finetune-law.md)."""
    from emergence_tasks.composition import SUCCESSORS, walk_task
    from emergence.run.evaluate import checked_examples

    walk = walk_task()
    train = training_examples(walk, 25, train_seed=20_000_000, seed=1234, limit=25)
    trained_steps = {(a, b) for ex in train for a, b in zip(ex.parts[1:], ex.parts[2:])}
    starts = {ex.parts[1] for ex in checked_examples(walk, 1234, 25)}
    assert {(x, SUCCESSORS["red"][x]) for x in starts} <= trained_steps
    assert not starts & {ex.parts[1] for ex in train}


def test_tasks_without_training_examples_are_refused():
    from dataclasses import dataclass

    from emergence.tasks import GENERATE_METRICS, ROLLING, Example, TaskBase

    @dataclass(frozen=True)
    class NoTraining(TaskBase):
        def examples(self, seed):
            yield Example(id="0", prompt="a", target=" b")

        def train_examples(self, seed):
            raise NotImplementedError

    with pytest.raises(FinetuneError, match="has no training examples"):
        training_examples(NoTraining(name="nt", metrics=GENERATE_METRICS), 4, train_seed=1, seed=0, limit=None)
    class Foreign:   # a task object from another plugin, outside TaskBase
        name, kind, num_fewshot = "foreign", "generate", 0

        def examples(self, seed):
            yield Example(id="0", prompt="a", target=" b")

    with pytest.raises(FinetuneError, match="does not implement train_examples"):
        training_examples(Foreign(), 4, train_seed=1, seed=0, limit=None)
    with pytest.raises(FinetuneError, match="rolling"):
        training_examples(TaskBase(name="r", kind=ROLLING), 4, train_seed=1, seed=0, limit=None)


# ----------------------------------------------------------------------------- fine-tuning cells


@pytest.fixture()
def small_family(tmp_path, tokenizer):
    from emergence.testing import build_model

    root = tmp_path / "fam"
    build_model(root / "tiny-h16@step1", hidden=16, layers=1, heads=2, context=64, tokenizer=tokenizer)
    return root


def _config(family, out, **kw):
    settings = dict(amounts=(0, 8, 16), epochs=1, batch_size=8, lr=1e-3, limit=4, loss_task=None, device="cpu")
    return FinetuneConfig(family=str(family), task="t_add", out=str(out), **{**settings, **kw})


def test_fine_tuning_changes_weights_writes_cells_and_resumes(small_family, tmp_path):
    out = tmp_path / "ft"
    summary = finetune_run(_config(small_family, out), manager(), progress=False, log=lambda *a: None)
    assert summary.trained == 2 and summary.ok and summary.run.evaluated == 3
    models = json.loads((out / MANIFEST).read_text())["models"]
    assert {m["ft_examples"] for m in models.values()} == {8, 16}
    assert all(m["weight_change"] > 0 and m["seed"] == 20_000_000 for m in models.values())
    # each model answered its own distinct training questions (all of them: fewer than seen_questions)
    assert sorted(m["seen"]["n"] for m in models.values()) == [8, 16]
    assert all(0 <= m["seen"]["exact_match"] <= 1 for m in models.values())
    with Store(out / "run", lock=False) as store:
        assert {ck for ck, _ in store.done_cells()} == {"tiny-h16@step1", "tiny-h16@step1+ft8", "tiny-h16@step1+ft16"}
    table = finetune_table(out)
    assert sorted(table[AMOUNT].unique()) == [0, 8, 16]
    assert (table["base_checkpoint"] == "tiny-h16@step1").all()
    tuned = table[(table[AMOUNT] == 16) & (table[S.TASK] == "t_add") & (table[S.METRIC] == "exact_match")]
    assert tuned[SEEN_VALUE].iloc[0] == models["tiny-h16@step1+ft16"]["seen"]["exact_match"]
    assert table.loc[table[AMOUNT] == 0, SEEN_VALUE].isna().all()

    again = finetune_run(_config(small_family, out), manager(), progress=False, log=lambda *a: None)
    assert again.trained == 0 and again.reused == 2
    assert again.run.evaluated == 0 and again.run.skipped == 3


def test_changed_training_settings_are_refused_and_nothing_is_lost(small_family, tmp_path):
    out = tmp_path / "ft"
    finetune_run(_config(small_family, out), manager(), progress=False, log=lambda *a: None)
    before = (out / MANIFEST).read_text()
    with pytest.raises(FinetuneError, match="lr 0.001 -> 0.1"):
        finetune_run(_config(small_family, out, lr=0.1), manager(), progress=False, log=lambda *a: None)
    assert (out / MANIFEST).read_text() == before


def test_a_checkpoint_that_cannot_be_fine_tuned_is_a_row_saying_why(small_family, tmp_path):
    broken = small_family / "broken@step1"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    out = tmp_path / "ft"
    summary = finetune_run(_config(small_family, out), manager(), progress=False, log=lambda *a: None)
    assert summary.trained == 2 and not summary.ok
    assert {ck for ck, _, _ in summary.failed} == {"broken@step1"}
    assert all("cannot be loaded as a causal language model" in why and "no-such-architecture" in why
               for _, _, why in summary.failed)
    recorded = json.loads((out / MANIFEST).read_text())["failed"]
    assert set(recorded) == {"broken@step1+ft8", "broken@step1+ft16"}
    with Store(out / "run", lock=False) as store:
        assert ("tiny-h16@step1+ft16", "t_add") in store.done_cells()


def test_the_command_refuses_too_few_amounts_before_training(tmp_path, capsys):
    from emergence.cli import main

    out = tmp_path / "ft"
    assert main(["finetune-law", "--family", str(tmp_path), "--task", "t_add", "--amounts", "0,64",
                 "--out", str(out)]) == 1
    assert ">= 3 positive amounts" in capsys.readouterr().err
    assert not out.exists()


def test_the_command_fine_tunes_evaluates_fits_and_resumes(small_family, tmp_path, capsys):
    from emergence.cli import main

    out = tmp_path / "ft"
    argv = ["finetune-law", "--family", str(small_family), "--task", "add_1d", "--amounts", "0,4,8,16",
            "--epochs", "1", "--lr", "1e-3", "--limit", "8", "--num-fewshot", "0", "--device", "cpu",
            "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "3 models fine-tuned, 0 reused, 0 failed; 8 cells evaluated" in first
    assert "## Emergence law: add_1d exact_match" in (out / "finetune_law.md").read_text()
    assert "![threshold vs fine-tuning data](finetune_law.png)" in (out / "finetune_law.md").read_text()
    assert (out / "finetune_law.png").read_bytes()[:4] == b"\x89PNG"
    # The base checkpoints' own run, as a stand-in for a run of the whole family: the check is added.
    assert main(argv + ["--truth-run", str(out / "run")]) == 0
    assert "0 models fine-tuned, 3 reused, 0 failed; 0 cells evaluated, 8 already done" in capsys.readouterr().out
    assert "## Against the measured onset" in (out / "finetune_law.md").read_text()
    other = tmp_path / "ft2"
    assert main([*argv[:-3], "--out", str(other), "--truth-run", str(tmp_path / "absent"), "--no-progress"]) == 1
    assert f"--truth-run {tmp_path / 'absent'}" in capsys.readouterr().err
    assert not other.exists()


def test_frozen_weights_are_refused_with_the_checkpoint_named(small_family, tmp_path, monkeypatch):
    import transformers

    from emergence.families import Checkpoint
    from emergence.lab.finetune import finetune_checkpoint

    load = transformers.AutoModelForCausalLM.from_pretrained
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained",
                        lambda *a, **k: load(*a, **k).requires_grad_(False))
    ck = Checkpoint(family="f", name="tiny@step1", repo=str(small_family / "tiny-h16@step1"))
    examples = training_examples(_task("t_add"), 4, train_seed=1, seed=0, limit=4)
    with pytest.raises(FinetuneError, match="'tiny@step1' has no trainable floating-point weights"):
        finetune_checkpoint(ck, examples, tmp_path / "out", FinetuneConfig(device="cpu"))
    assert not (tmp_path / "out").exists()


def test_replay_adds_pretraining_text_to_every_batch_and_changes_the_weights(small_family, tmp_path):
    plain = finetune_run(_config(small_family, tmp_path / "plain"), manager(), progress=False, log=lambda *a: None)
    mixed = finetune_run(_config(small_family, tmp_path / "replay", replay_rows=4), manager(),
                         progress=False, log=lambda *a: None)
    assert plain.ok and mixed.ok
    records = [json.loads((tmp_path / d / MANIFEST).read_text())["models"] for d in ("plain", "replay")]
    name = "tiny-h16@step1+ft8"
    assert records[0][name]["replay_rows"] == 0 and records[1][name]["replay_rows"] == 4
    # the same examples in the same order, plus replay rows: a different training loss and result
    assert records[0][name]["first_loss"] != records[1][name]["first_loss"]
    assert records[0][name]["weight_change"] != records[1][name]["weight_change"]
    with pytest.raises(FinetuneError, match="replay_rows must be >= 0"):
        _config(small_family, tmp_path / "bad", replay_rows=-1)


def test_bfloat16_autocast_trains_records_its_precision_and_cannot_mix_with_float32(small_family, tmp_path):
    """Mixed precision (bfloat16 autocast; float32 weights) on the CPU, as on a GPU: it trains, the
    models say how they were made, and a folder of float32 models refuses bfloat16 ones."""
    plain = finetune_run(_config(small_family, tmp_path / "fp32"), manager(), progress=False, log=lambda *a: None)
    mixed = finetune_run(_config(small_family, tmp_path / "bf16", precision="bfloat16"), manager(),
                         progress=False, log=lambda *a: None)
    assert plain.ok and mixed.ok
    records = [json.loads((tmp_path / d / MANIFEST).read_text())["models"] for d in ("fp32", "bf16")]
    name = "tiny-h16@step1+ft16"
    assert records[0][name]["precision"] == "float32" and records[1][name]["precision"] == "bfloat16"
    assert records[1][name]["weight_change"] > 0
    # bfloat16 matmuls: the same training, not the same numbers (random-init logits are near 0, so
    # the losses agree to their recorded digits; the weights' path does not)
    assert abs(records[0][name]["last_loss"] - records[1][name]["last_loss"]) < 0.1
    assert records[0][name]["weight_change"] != records[1][name]["weight_change"]
    with pytest.raises(FinetuneError, match="precision 'float32' -> 'bfloat16'"):
        finetune_run(_config(small_family, tmp_path / "fp32", precision="bfloat16"), manager(), progress=False,
                     log=lambda *a: None)
    with pytest.raises(FinetuneError, match="precision must be one of float32, bfloat16"):
        _config(small_family, tmp_path / "bad", precision="float16")


def test_replay_text_is_never_the_evaluated_heldout_text():
    from emergence.lab.finetune import _replay_texts
    from emergence.plugins import collect

    registry = collect(manager())
    texts = _replay_texts(FinetuneConfig(replay_rows=1), registry)
    evaluated = {ex.text for ex in registry.tasks["heldout_loss"].examples(0)}
    assert texts and not any(t in chunk for chunk in evaluated for t in texts[:200])
    assert texts != _replay_texts(FinetuneConfig(replay_rows=1, shuffle_seed=1), registry)


def test_a_folder_without_a_recorded_setting_counts_as_made_at_its_default(tmp_path):
    from emergence.lab.finetune import FinetuneConfig, FinetuneError, _check_training_settings, _config_record

    old = {k: v for k, v in _config_record(FinetuneConfig(task="copy")).items() if k != "replay_rows"}
    _check_training_settings(tmp_path, old, FinetuneConfig(task="copy"))          # the default: same models
    with pytest.raises(FinetuneError, match="replay_rows 0 -> 8"):
        _check_training_settings(tmp_path, old, FinetuneConfig(task="copy", replay_rows=8))
