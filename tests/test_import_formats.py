"""Importers of published result formats: lm-eval per-sample files, lm-eval 0.3 result JSON and
BIG-bench score files, on real-format fixtures (tests/fixtures/README.md); bad input is an error
naming the file and the key, and nothing is written."""

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from emergence import schema as S
from emergence.families import Checkpoint, Family
from emergence.run.import_bigbench import import_bigbench
from emergence.run.import_samples import _read_samples, import_lmeval_samples
from emergence.run.importers import import_lmeval
from emergence.tidy import check_tidy

FIXTURES = Path(__file__).parent / "fixtures"
SAMPLES = FIXTURES / "lmeval_samples" / "tiny__neox-h32"
BIGBENCH = FIXTURES / "bigbench" / "toy_arithmetic" / "results"
PYTHIA_03 = FIXTURES / "pythia_lmeval" / "pythia-v1" / "pythia-160m" / "zero-shot" / "160m_step3000.json"
EMPTY = SimpleNamespace(families={})


def _samples_file(task):
    (path,) = SAMPLES.glob(f"samples_{task}_*.jsonl")
    return path


def _results():
    (path,) = SAMPLES.glob("results_*.json")
    return json.loads(path.read_text())


def _copy_samples(tmp_path) -> Path:
    dest = tmp_path / "run"
    shutil.copytree(SAMPLES, dest)
    return dest


def _rewrite(path: Path, edit):
    """Apply ``edit(records)`` to a samples file's records, in place."""
    records = [json.loads(line) for line in path.read_text().splitlines()]
    edit(records)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


# ---------------------------------------------------------------------------- lm-eval samples
def test_samples_give_the_continuous_metrics_of_each_multiple_choice_task():
    df = import_lmeval_samples(SAMPLES, registry=EMPTY, family="tiny")
    assert list(df.columns) == list(S.TIDY_COLUMNS)
    assert set(df[S.TASK]) == {"tiny_arith", "tiny_yesno", "tiny_grp"}   # the generation task has no choices
    assert "samples_tiny_gen" in df.attrs["notes"][0]
    assert set(df[S.METRIC]) == {"prob_correct", "brier", "gold_logprob", "gold_bpb"}
    assert set(df[df[S.SUBTASK] != ""][S.N]) == {12} and set(df[S.N_SHOT]) == {0} and set(df[S.SETTING]) == {""}
    assert set(df[S.PARAMS]) == {_results()["config"]["model_num_parameters"]}
    assert set(df[S.MODEL]) == {"neox-h32"} and set(df[S.FAMILY]) == {"tiny"}
    row = df.set_index([S.TASK, S.METRIC])
    assert row.loc[("tiny_arith", "prob_correct"), S.CHANCE] == 0.25
    assert row.loc[("tiny_arith", "brier"), S.CHANCE] == 0.75 and row.loc[("tiny_yesno", "brier"), S.CHANCE] == 0.5
    assert pd.isna(row.loc[("tiny_arith", "gold_logprob"), S.CHANCE])
    assert not row.loc[("tiny_arith", "brier"), S.HIGHER_IS_BETTER] and row.loc[("tiny_arith", "prob_correct"),
                                                                                   S.HIGHER_IS_BETTER]
    assert set(df[S.METRIC_KIND]) == {"continuous"}
    assert len(check_tidy(df)) == len(df)   # what analyze reads


@pytest.mark.parametrize("task", ["tiny_arith", "tiny_yesno"])
def test_sample_metrics_equal_a_direct_computation_from_the_file(task):
    lls, golds = [], []
    for line in _samples_file(task).read_text().splitlines():
        rec = json.loads(line)
        lls.append(np.array([float(r[0]) for r in rec["filtered_resps"]]))
        golds.append(int(rec["doc"]["label"]) if task == "tiny_arith" else ["no", "yes"].index(rec["doc"]["answer"]))
    probs = [np.exp(x - x.max()) / np.exp(x - x.max()).sum() for x in lls]
    expect = {"prob_correct": [p[g] for p, g in zip(probs, golds)],
              "brier": [((p - np.eye(len(p))[g]) ** 2).sum() for p, g in zip(probs, golds)],
              "gold_logprob": [x[g] for x, g in zip(lls, golds)]}
    df = import_lmeval_samples(SAMPLES, registry=EMPTY, family="tiny").set_index([S.TASK, S.METRIC])
    for metric, values in expect.items():
        assert df.loc[(task, metric), S.VALUE] == pytest.approx(np.mean(values), rel=1e-12)
        assert df.loc[(task, metric), S.STDERR] == pytest.approx(np.std(values, ddof=1) / math.sqrt(12), rel=1e-9)


def test_a_group_is_one_task_its_members_subtasks_and_the_whole_pools_their_documents(tmp_path):
    df = import_lmeval_samples(SAMPLES, registry=EMPTY, family="tiny")
    grp = df[df[S.TASK] == "tiny_grp"].set_index([S.SUBTASK, S.METRIC])
    assert set(grp.index.get_level_values(0)) == {"", "plain", "words"}
    for metric in ("prob_correct", "brier", "gold_logprob"):   # equal sizes: the pooled mean is the mean
        whole = grp.loc[("", metric)]
        assert whole[S.N] == 24 and whole[S.TASK_VERSION] == grp.loc[("plain", metric), S.TASK_VERSION]
        parts = grp.loc[("plain", metric), S.VALUE], grp.loc[("words", metric), S.VALUE]
        assert whole[S.VALUE] == pytest.approx(sum(parts) / 2)
    part = import_lmeval_samples(_samples_file("tiny_grp_plain"), registry=EMPTY, family="tiny")
    assert set(part[S.SUBTASK]) == {"plain"}
    assert "tiny_grp as a whole (1 of its subtasks have no samples file, e.g. words)" in part.attrs["notes"][0]


@pytest.mark.parametrize("task", ["tiny_arith", "tiny_yesno", "tiny_grp_plain", "tiny_grp_words"])
def test_gold_choices_reproduce_lm_evals_own_accuracy(task):
    """The gold read back from ``target`` (an index, or a choice's text) scores lm-eval's acc."""
    docs = _read_samples(_samples_file(task), [])["none"]
    ours = np.mean([float(np.argmax(lls) == gold) for lls, gold, _ in docs])
    assert ours == _results()["results"][task]["acc,none"]


def test_a_registered_checkpoint_gives_family_and_counts():
    ck = Checkpoint(family="tinyfam", name="neox-h32", repo="tiny/neox-h32", model="neox-h32", params=1000,
                    params_nonembed=500, tokens=2e6, step=10)
    registry = SimpleNamespace(families={"tinyfam": Family("tinyfam", (ck,))})
    df = import_lmeval_samples(_samples_file("tiny_arith"), registry=registry)
    assert set(df[S.FAMILY]) == {"tinyfam"} and set(df[S.PARAMS]) == {1000} and set(df[S.TOKENS]) == {2e6}


def test_lm_eval_040_layout_reads_the_same(tmp_path):
    """lm-eval 0.4.0-0.4.2: ``results.json`` and ``<model_args>_<task>.jsonl`` holding one JSON
    array, arguments as [context, continuation], responses as numbers, the target unconverted,
    no ``filter`` key."""
    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(next(SAMPLES.glob("results_*.json")), old / "results.json")
    for task in ("tiny_arith", "tiny_yesno", "tiny_grp_plain", "tiny_grp_words", "tiny_gen"):
        records = [json.loads(line) for line in _samples_file(task).read_text().splitlines()]
        for r in records:
            r["arguments"] = [[a["arg_0"], a["arg_1"]] for a in r["arguments"].values()]
            if task != "tiny_gen":
                r["filtered_resps"] = [[float(ll), greedy == "True"] for ll, greedy in r["filtered_resps"]]
            if task != "tiny_yesno" and task != "tiny_gen":
                r["target"] = int(r["target"])
            for key in ("filter", "metrics", "doc_hash", "prompt_hash", "target_hash"):
                del r[key]
        (old / f"pretrained__tiny__neox-h32_{task}.jsonl").write_text(json.dumps(records, indent=2))
    pd.testing.assert_frame_equal(import_lmeval_samples(old, registry=EMPTY, family="tiny"),
                                  import_lmeval_samples(SAMPLES, registry=EMPTY, family="tiny"))


def test_a_filter_and_mutual_information_requests(tmp_path):
    """A filter other than none names the metric like lm-eval's results; with acc_mutual_info
    lm-eval appends one unconditional request per choice, which is not a choice."""
    run = _copy_samples(tmp_path)
    path = run / _samples_file("tiny_yesno").name

    def edit(records):
        for r in records:
            r["filter"] = "strict"
            r["metrics"] = ["acc", "acc_mutual_info"]
            r["filtered_resps"] += [["-1.0", "False"], ["-2.0", "False"]]
            r["arguments"].update({"gen_args_2": {"arg_0": "", "arg_1": " no"},
                                   "gen_args_3": {"arg_0": "", "arg_1": " yes"}})
    _rewrite(path, edit)
    df = import_lmeval_samples(path, registry=EMPTY, family="tiny").set_index(S.METRIC)
    ref = import_lmeval_samples(_samples_file("tiny_yesno"), registry=EMPTY, family="tiny").set_index(S.METRIC)
    assert set(df.index) == {f"{m},strict" for m in ref.index}
    assert df.loc["prob_correct,strict", S.VALUE] == ref.loc["prob_correct", S.VALUE]
    assert df.loc["brier,strict", S.CHANCE] == 0.5


def test_a_target_read_as_index_or_as_text_is_settled_by_lm_evals_acc(tmp_path):
    """Choices " 1", " 0" and target "1": index 1 or the text of choice 0. lm-eval's acc says."""
    run = _copy_samples(tmp_path)
    path = run / _samples_file("tiny_yesno").name
    lls = []

    def edit(records):
        for r in records:
            r["arguments"] = {"gen_args_0": {"arg_0": "Q", "arg_1": " 1"}, "gen_args_1": {"arg_0": "Q", "arg_1": " 0"}}
            r["target"] = "1"
            pair = [float(x[0]) for x in r["filtered_resps"]]
            r["acc"] = float(np.argmax(pair) == 0)   # lm-eval read the target as choice 0's text
            lls.append(np.array(pair))
    _rewrite(path, edit)
    df = import_lmeval_samples(path, registry=EMPTY, family="tiny").set_index(S.METRIC)
    assert df.loc["gold_logprob", S.VALUE] == pytest.approx(np.mean([x[0] for x in lls]))
    _rewrite(path, lambda records: [r.pop("acc") for r in records])
    with pytest.raises(ValueError, match=r":1: 'target' '1' .* is ambiguous between an index and a choice's text"):
        import_lmeval_samples(path, registry=EMPTY, family="tiny")


def test_an_unknown_model_without_a_family_is_an_error_naming_the_flag():
    with pytest.raises(ValueError, match=r"results_.*\.json: no registered family lists tiny/neox-h32.*--family"):
        import_lmeval_samples(SAMPLES, registry=EMPTY)


def test_a_samples_file_without_its_results_file_is_an_error_naming_both(tmp_path):
    path = tmp_path / _samples_file("tiny_arith").name
    shutil.copy(_samples_file("tiny_arith"), path)
    with pytest.raises(FileNotFoundError, match=rf"{path.name}: no results_.*\.json beside it"):
        import_lmeval_samples(path, registry=EMPTY, family="tiny")


def test_one_run_in_two_folders_is_an_error_naming_both_files(tmp_path):
    first, second = _copy_samples(tmp_path / "a"), _copy_samples(tmp_path / "b")
    with pytest.raises(ValueError, match=r"b/run/samples_tiny_arith_.*\.jsonl and .*a/run/samples_tiny_arith_.*\.jsonl "
                                         r"both hold neox-h32 / tiny_arith / - / prob_correct with 0 shots"):
        import_lmeval_samples([first, second], registry=EMPTY, family="tiny")
    once = import_lmeval_samples([first, next(first.glob("samples_tiny_arith_*"))], registry=EMPTY, family="tiny")
    assert len(once) == 20


def _set(key, value):
    def edit(records):
        records[2][key] = value
    return edit


def _drop(key):
    def edit(records):
        del records[2][key]
    return edit


@pytest.mark.parametrize("edit,match", [
    (_drop("target"), r":3: no 'target'"),
    (_set("target", "42"), r":3: 'target' '42' .* matches no choice"),
    (_set("target", "[0, 1]"), r":3: 'target' .* several gold answers"),
    (_set("filtered_resps", [["x", "False"]] * 4), r":3: 'filtered_resps\[0\]\[0\]' is 'x'"),
    (_set("filtered_resps", [["0.5", "False"]] * 4), r":3: 'filtered_resps\[0\]\[0\]' is 0.5; a log-likelihood"),
    (_set("arguments", {"gen_args_0": {"arg_0": "Q", "arg_1": " 1"}}), r":3: 4 responses .* but 1 requests"),
    (_set("arguments", "nope"), r":3: 'arguments' is 'nope'"),
    (_set("doc_id", 0), r":3: document 0 appears twice"),
    (_set("filter", 3), r":3: 'filter' is 3"),
    (_set("filtered_resps", ["14"]), r":3: 'filtered_resps' is not one \[log-likelihood, is_greedy\] per choice"),
])
def test_malformed_samples_are_errors_naming_file_line_and_key(tmp_path, edit, match):
    run = _copy_samples(tmp_path)
    path = run / _samples_file("tiny_arith").name
    _rewrite(path, edit)
    with pytest.raises(ValueError, match=rf"{path.name}{match}"):
        import_lmeval_samples(run, registry=EMPTY, family="tiny")


def test_a_line_that_is_not_json_is_an_error_naming_the_line(tmp_path):
    run = _copy_samples(tmp_path)
    path = run / _samples_file("tiny_yesno").name
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:4] + ["{not json"] + lines[4:]) + "\n")
    with pytest.raises(ValueError, match=rf"{path.name}:5: not JSON"):
        import_lmeval_samples(run, registry=EMPTY, family="tiny")


def test_shots_and_task_must_be_in_the_results_file(tmp_path):
    run = _copy_samples(tmp_path)
    (results,) = run.glob("results_*.json")
    data = json.loads(results.read_text())
    data["n-shot"]["tiny_arith"] = "five"
    results.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=rf"{results.name}: 'n-shot.tiny_arith' is 'five'"):
        import_lmeval_samples(run, registry=EMPTY, family="tiny")
    renamed = run / _samples_file("tiny_yesno").name.replace("tiny_yesno", "tiny_other")
    (run / _samples_file("tiny_yesno").name).rename(renamed)
    with pytest.raises(ValueError, match=r"task 'tiny_other' is not in"):
        import_lmeval_samples(renamed, registry=EMPTY, family="tiny")


# ---------------------------------------------------------------------------- lm-eval 0.3 results
def test_lm_eval_03_results_import_every_number_with_its_stderr_and_version():
    """0.3's layout: results/versions/config with model_args as text and num_fewshot."""
    raw = json.loads(PYTHIA_03.read_text())
    assert set(raw) == {"results", "versions", "config"} and isinstance(raw["config"]["model_args"], str)
    df = import_lmeval([PYTHIA_03]).set_index([S.TASK, S.SUBTASK, S.METRIC])
    expected = 0
    for name, metrics in raw["results"].items():
        task, subtask = ("mmlu", name.split("-", 1)[1]) if name.startswith("hendrycksTest-") else (name, "")
        for metric, value in metrics.items():
            if metric.endswith("_stderr"):
                continue
            expected += 1
            row = df.loc[(task, subtask, metric)]
            assert row[S.VALUE] == value and row[S.STDERR] == metrics[f"{metric}_stderr"]
            assert row[S.TASK_VERSION] == str(raw["versions"][name])
    assert len(df) == expected and set(df[S.CHECKPOINT]) == {"pythia-160m@step3000"}


# ---------------------------------------------------------------------------- BIG-bench
def test_bigbench_scores_become_rows_with_model_info_subtasks_shots_and_chance():
    df = import_bigbench(BIGBENCH.parent.parent)
    raw = json.loads((BIGBENCH / "scores_toy-lm_125m.json").read_text())
    # 3 models x (4 subtask entries x 4 metrics + 2 aggregate entries x 5 metrics)
    assert len(df) == 78 and list(df.columns) == list(S.TIDY_COLUMNS)
    assert list(dict.fromkeys(df[S.MODEL])) == ["2m", "16m", "125m"] and set(df[S.FAMILY]) == {"toy-lm"}
    big = df[df[S.MODEL] == "125m"]
    assert set(big[S.PARAMS]) == {raw["model"]["total_params"]}
    assert set(big[S.PARAMS_NONEMBED]) == {raw["model"]["non_embedding_params"]}
    assert set(big[S.STEP]) == {raw["model"]["training_steps"]} and big[S.TOKENS].isna().all()
    assert set(df[S.TASK]) == {"toy_arithmetic"}
    assert set(df[S.SUBTASK]) == {"", "1_digit_addition", "2_digit_addition"} and set(df[S.N_SHOT]) == {0, 1}
    entry = raw["scores"][2]   # 1-shot, 1_digit_addition
    rows = big[(big[S.SUBTASK] == "1_digit_addition") & (big[S.N_SHOT] == 1)].set_index(S.METRIC)
    assert rows[S.VALUE].to_dict() == entry["score_dict"]
    assert rows.loc["multiple_choice_grade", S.CHANCE] == entry["low_score"]
    assert rows.drop("multiple_choice_grade")[S.CHANCE].isna().all()
    assert rows.loc["multiple_choice_grade", S.METRIC_KIND] == "discontinuous"
    assert not rows.loc["calibration_multiple_choice_brier_score", S.HIGHER_IS_BETTER]
    whole = big[(big[S.SUBTASK] == "") & (big[S.N_SHOT] == 0)].set_index(S.METRIC)
    assert "normalized_aggregate_score" in whole.index and whole.loc["multiple_choice_grade", S.CHANCE] == 0.25
    assert len(check_tidy(df)) == len(df)   # what analyze reads: shots keep the keys apart


def _bigbench_copy(tmp_path, edit=None, name="scores_toy-lm_2m.json") -> Path:
    dest = tmp_path / "toy_arithmetic" / "results"
    dest.mkdir(parents=True)
    data = json.loads((BIGBENCH / name).read_text())
    if edit:
        edit(data)
    (dest / name).write_text(json.dumps(data))
    return dest / name


def test_the_task_comes_from_the_folder_and_unknown_metrics_take_the_score_range_direction(tmp_path):
    def edit(data):
        del data["task"]
        data["model"]["training_steps"] = 19531.25   # an averaged step count, as ModelData allows
        data["scores"] = [{"score_dict": {"custom_loss": 3.0, "other": 1.0}, "preferred_score": "custom_loss",
                           "number_of_shots": -1, "low_score": 10.0, "high_score": 0.0,
                           "subtask_description": "toy_arithmetic"}]
    df = import_bigbench(_bigbench_copy(tmp_path, edit)).set_index(S.METRIC)
    assert set(df[S.TASK]) == {"toy_arithmetic"} and set(df[S.SUBTASK]) == {""} and df[S.N_SHOT].isna().all()
    assert not df.loc["custom_loss", S.HIGHER_IS_BETTER] and pd.isna(df.loc["other", S.HIGHER_IS_BETTER])
    assert df[S.CHANCE].isna().all() and set(df[S.STEP]) == {19531}


def test_a_score_with_no_finite_value_is_skipped_with_a_note(tmp_path):
    def edit(data):
        data["scores"][0]["score_dict"]["exact_str_match"] = None
    df = import_bigbench(_bigbench_copy(tmp_path, edit))
    assert len(df) == 25 and "scores[0].score_dict.exact_str_match" in df.attrs["notes"][0]


def _bb(path, value):
    """An edit that sets data[path...] = value (None deletes the key)."""
    def edit(data):
        *head, last = path
        for key in head:
            data = data[key]
        if value is None:
            del data[last]
        else:
            data[last] = value
    return edit


@pytest.mark.parametrize("edit,match", [
    (_bb(["scores"], None), r"not a BIG-bench scores file \(expected keys 'scores' and 'model'\)"),
    (_bb(["scores"], {"a": 1}), r"'scores' is \{'a': 1\}"),
    (_bb(["model", "model_name"], None), r"'model.model_name' is None"),
    (_bb(["model", "total_params"], "2M"), r"'model.total_params' is '2M'"),
    (_bb(["task", "task_name"], 7), r"'task.task_name' is 7"),
    (_bb(["scores", 1], "x"), r"'scores\[1\]' is 'x'"),
    (_bb(["scores", 1, "low_score"], None), r"'scores\[1\]' has no 'low_score'"),
    (_bb(["scores", 1, "high_score"], 0.25), r"'scores\[1\]' has low_score = high_score"),
    (_bb(["scores", 1, "preferred_score"], "bleu"), r"'scores\[1\].preferred_score' is 'bleu'"),
    (_bb(["scores", 1, "number_of_shots"], "0"), r"'scores\[1\].number_of_shots' is '0'"),
    (_bb(["scores", 1, "score_dict", "exact_str_match"], "0.1"), r"'scores\[1\].score_dict.exact_str_match' is '0.1'"),
    (_bb(["scores", 1, "score_dict", "multiple_choice_grade"], 25.0), r"'scores\[1\].score_dict.multiple_choice_grade' "
                                                                      r"is 25.0; expected a proportion"),
    (_bb(["scores", 1, "subtask_description"], 3), r"'scores\[1\].subtask_description' is 3"),
])
def test_malformed_bigbench_files_are_errors_naming_file_and_key(tmp_path, edit, match):
    path = _bigbench_copy(tmp_path, edit)
    with pytest.raises(ValueError, match=rf"{path.name}: {match}"):
        import_bigbench(path)


def test_one_model_in_two_files_is_an_error_naming_both(tmp_path):
    path = _bigbench_copy(tmp_path)
    shutil.copy(path, path.with_name("scores_toy-lm_2m_copy.json"))
    with pytest.raises(ValueError, match=r"scores_toy-lm_2m(_copy)?\.json and .*scores_toy-lm_2m(_copy)?\.json "
                                         r"\(scores\[0\]\) both hold toy-lm / 2m"):
        import_bigbench(path.parent)


# ---------------------------------------------------------------------------- the command
def test_import_command_writes_bigbench_and_sample_tables(tmp_path, capsys):
    from emergence.cli import main

    out = tmp_path / "bb.csv"
    assert main(["import", "bigbench", str(BIGBENCH), "-o", str(out)]) == 0
    assert "78 rows from 3 checkpoints" in capsys.readouterr().out
    assert len(pd.read_csv(out)) == 78
    out = tmp_path / "samples.csv"
    assert main(["import", "lm-eval-samples", str(SAMPLES), "--family", "tiny", "-o", str(out)]) == 0
    df = pd.read_csv(out)
    assert len(df) == 20 and set(df[S.N_SHOT]) == {0}


def test_bad_input_leaves_the_output_as_it_was(tmp_path, capsys):
    from emergence.cli import main

    bad = _bigbench_copy(tmp_path, _bb(["scores", 0, "number_of_shots"], 1.5))
    out = tmp_path / "out.csv"
    out.write_text("old\n")
    assert main(["import", "bigbench", str(bad), "-o", str(out)]) == 1
    assert "'scores[0].number_of_shots' is 1.5" in capsys.readouterr().err
    assert out.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["out.csv", "toy_arithmetic"]
    assert main(["import", "lm-eval-samples", str(SAMPLES), "-o", str(out)]) == 1
    assert "--family" in capsys.readouterr().err and out.read_text() == "old\n"
    assert main(["import", "bigbench", str(BIGBENCH), "--family", "x", "-o", str(out)]) == 1
    assert "--family and --setting do not apply to bigbench" in capsys.readouterr().err


# ---------------------------------------------------------------------------- the tidy template
TEMPLATE = Path(__file__).parents[1] / "examples" / "tidy-template.csv"
DOC = Path(__file__).parents[1] / "docs" / "import.md"


def test_the_documented_template_is_read_as_it_is_and_lists_every_column():
    from emergence.tidy import read_tidy

    df = read_tidy(TEMPLATE)
    assert len(df) == len(TEMPLATE.read_text().splitlines()) - 1
    assert not [note for note in df.attrs["notes"] if note.startswith("dropped")]
    assert set(df[S.N_SHOT]) == {0, 5} and set(df[S.SETTING].fillna("")) == {"", "mc", "rc"}
    header = TEMPLATE.read_text().splitlines()[0].split(",")
    assert header == list(S.TIDY_COLUMNS)
    documented = {line.split("|")[1].strip() for line in DOC.read_text().split("## The tidy template")[1].splitlines()
                  if line.startswith("| `")}
    listed = {name.strip(" `") for cell in documented for name in cell.split(",")}
    assert listed == set(header)
