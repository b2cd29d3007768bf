"""lm-eval both ways: its YAML tasks through our harness, our tasks through its evaluator, and
its result files into the tidy table. Offline: YAML tasks read a local JSONL file."""

import json
import os
import re
import sqlite3
from pathlib import Path

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from emergence import schema as S  # noqa: E402
from emergence.run.evaluate import evaluate  # noqa: E402
from emergence.hookspecs import hookimpl  # noqa: E402
from emergence.run.lmeval import LMEvalTask, to_lmeval_task  # noqa: E402
from emergence.run.runner import resolve_task  # noqa: E402
from emergence.run.importers import import_lmeval  # noqa: E402
from emergence.plugins import collect, plugin_manager  # noqa: E402

FIXTURE = Path(__file__).parent / "fixtures" / "pythia_lmeval" / "pythia-v1"
PYTHIA_RAW = Path(__file__).parents[2] / "shared" / "reference-data" / "pythia" / "raw" / "pythia-v1"
PYTHIA_TIDY = Path(__file__).parents[2] / "shared" / "reference-data" / "tidy" / "pythia.csv.gz"
N_DOCS = 16

YAMLS = {
    "tiny_mc": """
task: tiny_mc
output_type: multiple_choice
doc_to_text: "Q: What is {{a}} plus {{b}}?\\nA:"
doc_to_choice: "{{choices}}"
doc_to_target: label
metric_list:
  - {metric: acc, aggregation: mean, higher_is_better: true}
  - {metric: acc_norm, aggregation: mean, higher_is_better: true}
""",
    "tiny_gen": """
task: tiny_gen
output_type: generate_until
doc_to_text: "Q: What is {{a}} plus {{b}}?\\nA:"
doc_to_target: gen_answer
generation_kwargs: {until: ["\\n"], max_gen_toks: 6, do_sample: false}
metric_list:
  - {metric: exact_match, aggregation: mean, higher_is_better: true}
filter_list:
  - name: strip
    filter: [{function: remove_whitespace}, {function: take_first}]
""",
    "tiny_ll": """
task: tiny_ll
output_type: loglikelihood
doc_to_text: "Q: What is {{a}} plus {{b}}?\\nA:"
doc_to_target: "{{ll_answer}}"
metric_list:
  - {metric: acc, aggregation: mean, higher_is_better: true}
  - {metric: perplexity, aggregation: perplexity, higher_is_better: false}
""",
    "grp_plain": """
task: grp_plain
output_type: multiple_choice
doc_to_text: "{{a}} + {{b}} ="
doc_to_choice: "{{choices}}"
doc_to_target: label
metric_list: [{metric: acc, aggregation: mean, higher_is_better: true}]
""",
    "grp_words": """
task: grp_words
output_type: multiple_choice
doc_to_text: "The sum of {{a}} and {{b}} is"
doc_to_choice: "{{choices}}"
doc_to_target: label
metric_list: [{metric: acc, aggregation: mean, higher_is_better: true}]
""",
    "grp": """
group: grp
task: [grp_plain, grp_words]
aggregate_metric_list: [{metric: acc, aggregation: mean, weight_by_size: true}]
""",
    "tiny_sampled": """
task: tiny_sampled
output_type: generate_until
doc_to_text: "Q: What is {{a}} plus {{b}}?\\nA:"
doc_to_target: gen_answer
generation_kwargs: {until: ["\\n"], do_sample: true, temperature: 0.7}
""",
}


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def engine(loaded):
    from emergence.run.engine import HFEngine

    return HFEngine(*loaded, batch_size=8)


@pytest.fixture(scope="module")
def hflm(loaded):
    from lm_eval.models.huggingface import HFLM

    model, tok = loaded
    return HFLM(pretrained=model, tokenizer=tok, batch_size=8)


@pytest.fixture(scope="module")
def yaml_dir(tmp_path_factory, engine):
    """YAML tasks on a JSONL file. Half the answers are the tiny model's own greedy output, so
    exact match and greedy accuracy are neither all 0 nor all 1."""
    import random

    root = tmp_path_factory.mktemp("lmeval_tasks")
    rng = random.Random(0)
    docs = []
    for i in range(N_DOCS):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        choices = [a + b, a + b + 1, a + b - 1, a + b + 2]
        rng.shuffle(choices)
        docs.append({"a": a, "b": b, "choices": [str(c) for c in choices], "label": choices.index(a + b)})
    prompts = [f"Q: What is {d['a']} plus {d['b']}?\nA:" for d in docs]
    gens = engine.generate(prompts, until=["\n"], max_gen_toks=6)
    firsts = engine.generate(prompts, until=[], max_gen_toks=1)
    for i, (d, g, f) in enumerate(zip(docs, gens, firsts)):
        mine = i % 2 == 0 and g.strip() and f.strip()
        d["gen_answer"] = g.strip() if mine else str(d["a"] + d["b"])
        d["ll_answer"] = f if mine else f" {d['a'] + d['b']}"
    data = root / "data.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in docs))
    dataset = (f"dataset_path: json\ndataset_kwargs:\n  data_files: {{test: {data}}}\n"
               f"  cache_dir: {root / 'cache'}\ntest_split: test\n")
    for name, text in YAMLS.items():
        (root / f"{name}.yaml").write_text(text if name == "grp" else text + dataset)
    return root


def _lmeval(lm, tasks, include=None):
    import lm_eval
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(include) if include else None, include_defaults=False)
    return lm_eval.simple_evaluate(model=lm, tasks=tasks, task_manager=manager, bootstrap_iters=0)


def _numbers(result: dict) -> dict:
    """lm-eval's {"acc,none": v, "exact_match,strip": v} as our metric names."""
    return {(k.split(",")[0] if k.endswith(",none") else k): v for k, v in result.items()
            if "," in k and "_stderr" not in k and isinstance(v, (int, float))}


# ---------------------------------------------------------------------------- lm-eval -> ours
@pytest.mark.parametrize("name,metrics", [("tiny_mc", ("acc", "acc_norm")), ("tiny_gen", ("exact_match,strip",)),
                                          ("tiny_ll", ("acc",))])
def test_yaml_task_scores_equal_lm_evals_own(yaml_dir, engine, name, metrics):
    pm = plugin_manager()
    task = resolve_task(f"lm-eval:{yaml_dir}/{name}", pm, collect(pm))
    assert task.name == f"lm-eval:{name}"
    scores, samples = evaluate(task, engine, seed=0)
    ours = {s.metric: s for s in scores if s.subtask == ""}
    result = _lmeval(engine, [name], yaml_dir)
    theirs = _numbers(result["results"][name])
    assert set(metrics) <= set(theirs)
    for metric in metrics:
        assert ours[metric].value == pytest.approx(theirs[metric], abs=1e-12), metric
        assert ours[metric].n == N_DOCS
    assert 0 < ours[metrics[0]].value < 1  # a comparison that could fail
    # Per sample too: our stored samples carry lm-eval's metric for the same document.
    assert len(samples) == N_DOCS
    by_id = {s.example_id: s for s in samples}
    for logged in result["samples"][name]:
        mine = by_id[str(logged["doc_id"])]
        for metric in metrics:
            assert mine.metrics[metric] == logged[metric.split(",")[0]], (metric, logged["doc_id"])
    if name == "tiny_gen":
        assert {s.example_id: s.prediction.strip() for s in samples} == {
            str(x["doc_id"]): x["filtered_resps"][0] for x in result["samples"][name]}


def test_yaml_task_is_a_full_task(yaml_dir, tmp_path):
    mc = LMEvalTask(f"{yaml_dir}/tiny_mc")
    assert mc.kind == "multiple_choice" and mc.chance("", "acc") == 0.25 and mc.chance("", "brier") == 0.75
    names = {m.name for m in mc.metrics}
    assert {"acc", "acc_norm", "prob_correct", "brier", "gold_logprob"} <= names
    first = next(iter(mc.examples(0)))
    assert first.prompt.startswith("Q: What is") and all(c.startswith(" ") for c in first.choices)
    assert [e.id for e in mc.examples(1)] == [e.id for e in LMEvalTask(f"{yaml_dir}/tiny_mc").examples(1)]
    assert [e.id for e in mc.examples(1)] != [e.id for e in mc.examples(2)]
    gen = LMEvalTask(f"{yaml_dir}/tiny_gen.yaml")
    assert gen.name == "lm-eval:tiny_gen" and gen.until == ("\n",) and gen.max_gen_toks == 6
    # The version changes with any change of the YAML: cached results are never mixed.
    edited = tmp_path / "tiny_mc.yaml"
    edited.write_text((yaml_dir / "tiny_mc.yaml").read_text().replace("Q: What", "Question: What"))
    assert re.fullmatch(r"Yaml-[0-9a-f]{10}", mc.version)
    assert LMEvalTask(str(edited)).version != mc.version != gen.version


def test_group_is_one_task_with_subtasks_and_its_results_import(yaml_dir, engine, tmp_path):
    task = LMEvalTask(f"{yaml_dir}/grp")
    assert task.name == "lm-eval:grp" and task.subtasks == ("plain", "words")
    scores, _ = evaluate(task, engine, seed=0)
    ours = {(s.subtask, s.metric): s.value for s in scores}
    result = _lmeval(engine, ["grp"], yaml_dir)
    for leaf, sub in (("grp_plain", "plain"), ("grp_words", "words")):
        assert ours[(sub, "acc")] == pytest.approx(result["results"][leaf]["acc,none"], abs=1e-12)
    assert ours[("", "acc")] == pytest.approx(result["results"]["grp"]["acc,none"], abs=1e-12)
    # The same result file, as if written for a Pythia checkpoint, imports as one task with subtasks.
    result["config"]["model_args"] = "pretrained=EleutherAI/pythia-160m,revision=step3000"
    path = tmp_path / "results.json"
    path.write_text(json.dumps({k: v for k, v in result.items() if k != "samples"}, default=str))
    df = import_lmeval([path])
    acc = df[df[S.METRIC] == "acc"].set_index(S.SUBTASK)
    assert set(acc[S.TASK]) == {"grp"} and set(acc.index) == {"", "plain", "words"}
    assert acc.loc["plain", S.VALUE] == pytest.approx(ours[("plain", "acc")])
    assert acc.loc["plain", S.N] == N_DOCS and acc.loc["plain", S.STEP] == 3000
    assert acc.loc["plain", S.CHECKPOINT] == "pythia-160m@step3000" and acc.loc["plain", S.PARAMS] == 162_322_944


def test_lm_eval_task_runs_through_the_runner_with_samples(yaml_dir, tiny_model_dir, tmp_path):
    from emergence.run.config import RunConfig
    from emergence.run.runner import run

    task = LMEvalTask(f"{yaml_dir}/tiny_mc")

    class YamlTasks:
        @staticmethod
        @hookimpl
        def register_tasks(register):
            register(task)

    pm = plugin_manager()
    pm.register(YamlTasks, name="yaml_tasks")
    summary = run(RunConfig(family=str(tiny_model_dir), tasks=(task.name,), out=str(tmp_path / "run"), seed=0),
                  pm=pm, progress=False)
    assert summary.ok and summary.evaluated == 1
    db = sqlite3.connect(tmp_path / "run" / "results.sqlite")
    assert db.execute("SELECT COUNT(*) FROM samples WHERE task = 'lm-eval:tiny_mc'").fetchone()[0] == N_DOCS
    version, = db.execute("SELECT task_version FROM cells WHERE task = 'lm-eval:tiny_mc'").fetchone()
    chance, = db.execute("SELECT chance FROM scores WHERE task = 'lm-eval:tiny_mc' AND metric = 'acc_norm'").fetchone()
    db.close()
    assert version == task.version and chance == 0.25


def test_run_accepts_lm_eval_names(yaml_dir, tiny_model_dir, tmp_path):
    from emergence.run import runner
    from emergence.run.config import RunConfig

    if not hasattr(runner, "resolve_task"):
        pytest.skip("emergence.run.runner does not resolve lm-eval: names yet (see docs/lm-eval.md)")
    summary = runner.run(RunConfig(family=str(tiny_model_dir), tasks=(f"lm-eval:{yaml_dir}/tiny_mc",),
                                   out=str(tmp_path / "run"), seed=0), progress=False)
    assert summary.ok and summary.evaluated == 1


def test_task_names_resolve_or_fail_clearly(yaml_dir):
    pm = plugin_manager()
    registry = collect(pm)
    assert resolve_task("add_2d", pm, registry) is registry.tasks["add_2d"]
    with pytest.raises(KeyError, match="Did you mean 'tiny_mc'"):
        resolve_task(f"lm-eval:{yaml_dir}/tiny_mx", pm, registry)
    with pytest.raises(KeyError, match="Unknown task 'lm_eval:x'"):
        resolve_task("lm_eval:x", pm, registry)
    with pytest.raises(FileNotFoundError):
        resolve_task("lm-eval:/no/such/folder/tiny_mc", pm, registry)
    with pytest.raises(ValueError, match="decodes greedily"):
        LMEvalTask(f"{yaml_dir}/tiny_sampled")


# ---------------------------------------------------------------------------- ours -> lm-eval
REQUIRED = {"mc_arith": {"acc", "prob_correct", "brier", "carry/acc", "gold_logprob"},
            "add_2d": {"exact_match", "digit_acc", "digit_1/acc", "gold_logprob", "gold_greedy", "edit_distance"},
            "heldout_loss": {"bits_per_byte"}}


@pytest.mark.parametrize("task_name,limit", [("mc_arith", 10), ("add_2d", 10), ("heldout_loss", 2)])
def test_our_task_in_lm_eval_gives_our_numbers(task_name, limit, engine, hflm):
    task = collect(plugin_manager()).task(task_name)
    scores, samples = evaluate(task, engine, seed=5, limit=limit)
    ours = {(f"{s.subtask}/{s.metric}" if s.subtask else s.metric): s.value for s in scores}
    discrete = {m.name for m in task.metrics if m.kind == "discontinuous"}
    for lm in (engine, hflm):
        result = _lmeval(lm, [to_lmeval_task(task, seed=5, limit=limit)])
        theirs = _numbers(result["results"][task_name])
        assert len(result["samples"][task_name]) == limit
        assert REQUIRED[task_name] <= set(theirs)
        for key, value in theirs.items():
            if key.split("/")[-1] in discrete:
                assert value == ours[key], key
            else:
                assert value == pytest.approx(ours[key], rel=1e-6, abs=1e-6), key
        if task.kind == "generate":
            mine = {s.example_id: s.prediction for s in samples}
            assert {x["doc"]["id"]: x["filtered_resps"][0] for x in result["samples"][task_name]} == mine
    if task_name == "mc_arith":
        assert 0 < ours["acc"] < 1


# ---------------------------------------------------------------------------- result files
def test_import_fixture_maps_models_tasks_and_chance():
    df = import_lmeval(sorted(FIXTURE.glob("*/zero-shot/*.json")))
    assert list(df.columns) == list(S.TIDY_COLUMNS) and len(df) == 4 * 13
    row = df[(df[S.CHECKPOINT] == "pythia-160m@step3000") & (df[S.TASK] == "arc_easy") & (df[S.METRIC] == "acc")]
    raw = json.loads((FIXTURE / "pythia-160m/zero-shot/160m_step3000.json").read_text())["results"]["arc_easy"]
    assert row[S.VALUE].item() == raw["acc"] and row[S.STDERR].item() == raw["acc_stderr"]
    assert row[S.FAMILY].item() == "pythia" and row[S.MODEL].item() == "pythia-160m"
    assert row[S.PARAMS].item() == 162_322_944 and row[S.PARAMS_NONEMBED].item() == 85_056_000
    assert row[S.TOKENS].item() == 3000 * 2_097_152 and row[S.STEP].item() == 3000
    assert row[S.CHANCE].item() == 0.25 and pd.isna(row[S.N].item()) and pd.isna(row[S.LOSS].item())
    assert set(df[S.CHECKPOINT]) == {"pythia-160m@step0", "pythia-160m@step3000", "pythia-1b@step1000",
                                     "pythia-70m-deduped@step512"}
    assert set(df[df[S.MODEL] == "pythia-70m-deduped"][S.FAMILY]) == {"pythia-deduped"}
    mmlu = df[df[S.TASK] == "mmlu"]
    assert set(mmlu[S.SUBTASK]) == {"abstract_algebra", "marketing"} and set(mmlu[S.CHANCE]) == {0.25}
    chance = df.groupby([S.TASK, S.METRIC])[S.CHANCE].first()
    assert chance["piqa", "acc_norm"] == 0.5 and chance["lambada_openai", "acc"] == 0.0
    assert pd.isna(chance["lambada_openai", "ppl"]) and pd.isna(chance["crows_pairs_english_age", "pct_stereotype"])


def test_import_keeps_each_setting_and_names_unknown_models(tmp_path):
    df = import_lmeval([FIXTURE / "pythia-160m"])   # zero- and five-shot files: one table
    assert df.groupby(S.N_SHOT)[S.CHECKPOINT].nunique().to_dict() == {0: 2, 5: 1}
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"results": {"arc_easy": {"acc,none": 0.5, "acc_stderr,none": "N/A", "alias": "arc"}},
                                "config": {"model_args": {"pretrained": "org/my-model", "revision": "step20"}},
                                "n-samples": {"arc_easy": {"original": 10, "effective": 8}}}))
    row = import_lmeval([path]).iloc[0]
    assert (row[S.FAMILY], row[S.CHECKPOINT], row[S.STEP], row[S.N]) == ("", "my-model@step20", 20, 8)
    assert pd.isna(row[S.PARAMS]) and pd.isna(row[S.STDERR]) and row[S.CHANCE] == 0.25
    assert pd.isna(row[S.N_SHOT]) and row[S.SETTING] == ""


def test_import_command_writes_the_table(tmp_path, capsys):
    from emergence.cli import main

    out = tmp_path / "pythia.csv"
    assert main(["import", "lm-eval", str(FIXTURE / "pythia-160m" / "five-shot"), "-o", str(out)]) == 0
    assert "11 rows from 1 checkpoints" in capsys.readouterr().out
    df = pd.read_csv(out)
    assert len(df) == 11 and set(df[S.CHECKPOINT]) == {"pythia-160m@step3000"}
    assert main(["import", "lm-eval", str(tmp_path / "missing")]) == 1


@pytest.mark.skipif(not PYTHIA_RAW.is_dir() or not PYTHIA_TIDY.exists(), reason="no ../shared/reference-data")
@pytest.mark.parametrize("shots,folder,n_reference", [(0, "zero-shot", 55_296), (5, "five-shot", 30_720)])
def test_import_real_pythia_files_equals_the_reference_table(shots, folder, n_reference):
    df = import_lmeval(sorted(PYTHIA_RAW.glob(f"*/{folder}")))
    df = df[~df[S.TASK].str.startswith("crows_pairs")]  # bias probes: the reference leaves them out
    ref = pd.read_csv(PYTHIA_TIDY, keep_default_na=False, na_values=[""])
    ref = ref[ref["n_shot"] == shots].assign(model=lambda r: r["model"].str.removeprefix("EleutherAI/"))
    assert len(df) == len(ref) == n_reference
    keys = [S.MODEL, S.STEP, S.TASK, S.SUBTASK, S.METRIC]
    ref[S.SUBTASK] = ref[S.SUBTASK].fillna("")
    both = df.merge(ref, on=keys, suffixes=("", "_ref"), validate="one_to_one")
    assert len(both) == n_reference
    for col in (S.VALUE, S.STDERR, S.PARAMS, S.PARAMS_NONEMBED, S.TOKENS, S.FAMILY):
        assert (both[col] == both[f"{col}_ref"]).all(), col
    assert df[S.CHANCE].notna().sum() == len(df) - (df[S.METRIC] == "ppl").sum()


def _results_file(tmp_path, name="r.json", **fields):
    data = {"results": {"arc_easy": {"acc,none": 0.5, "acc_stderr,none": 0.01}},
            "config": {"model_args": "pretrained=org/m,revision=step10"}}
    data.update(fields)
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_cyclic_group_subtasks_are_an_error_naming_file_and_cycle(tmp_path):
    import subprocess
    import sys

    path = _results_file(tmp_path, results={"a": {"acc,none": 0.5}, "b": {"acc,none": 0.6}},
                         group_subtasks={"a": ["b"], "b": ["a"]})
    # The import used to follow the cycle for ever: a child process with a deadline keeps a
    # regression from hanging the suite (a thread could not be stopped).
    code = ("import sys, types\nfrom emergence.run.importers import import_lmeval\n"
            "try:\n    import_lmeval([sys.argv[1]], types.SimpleNamespace(families={}))\n"
            "except ValueError as e:\n    print(e)\n    sys.exit(3)")
    child = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    assert child.returncode == 3, child.stderr
    assert re.search(r"r\.json: 'group_subtasks' has a cycle: (a -> b -> a|b -> a -> b)", child.stdout)


def test_nested_groups_still_import_under_their_outermost_group(tmp_path):
    path = _results_file(tmp_path, results={"mmlu_stem_algebra": {"acc,none": 0.3}, "mmlu_stem": {"acc,none": 0.4}},
                         group_subtasks={"mmlu": ["mmlu_stem"], "mmlu_stem": ["mmlu_stem_algebra"]})
    df = import_lmeval([path])
    assert set(zip(df[S.TASK], df[S.SUBTASK])) == {("mmlu", "stem"), ("mmlu", "stem_algebra")}


@pytest.mark.parametrize("value", ["0.5", True, [0.5], {"v": 0.5}])
def test_a_metric_that_is_not_a_number_is_an_error_naming_file_and_key(tmp_path, value):
    path = _results_file(tmp_path, results={"arc_easy": {"acc,none": value, "acc_norm,none": 0.4}})
    with pytest.raises(ValueError, match=r"r\.json: 'results\.arc_easy\.acc,none' is .*expected a number"):
        import_lmeval([path])


def test_a_stderr_that_is_not_a_number_is_an_error_naming_file_and_key(tmp_path):
    path = _results_file(tmp_path, results={"arc_easy": {"acc,none": 0.5, "acc_stderr,none": "0.01"}})
    with pytest.raises(ValueError, match=r"r\.json: 'results\.arc_easy\.acc_stderr,none' is '0\.01'"):
        import_lmeval([path])


def test_metrics_without_a_finite_value_are_counted_and_reported(tmp_path, caplog):
    path = tmp_path / "r.json"
    # Python's json writes NaN and Infinity, as lm-eval's files can hold them.
    path.write_text(json.dumps({"results": {"arc_easy": {"acc,none": float("nan"), "acc_norm,none": 0.4,
                                                         "acc_norm_stderr,none": float("nan")},
                                            "lambada": {"ppl,none": float("inf"), "acc,none": None}},
                                "config": {"model_args": "pretrained=org/m"}}))
    with caplog.at_level("WARNING", logger="emergence.run.importers"):
        df = import_lmeval([path])
    assert list(df[S.METRIC]) == ["acc_norm"] and pd.isna(df[S.STDERR].item())
    notes = df.attrs["notes"]
    assert len(notes) == 1 and notes[0].startswith("skipped 3 metric(s) with no finite value")
    for key in ("results.arc_easy.acc,none = nan", "results.lambada.ppl,none = inf", "results.lambada.acc,none = None"):
        assert f"r.json: {key}" in notes[0]
    assert notes[0] in caplog.text


@pytest.mark.parametrize("fields,key", [
    ({"config": "hf"}, r"'config' is 'hf' \(str\)"),
    ({"config": {"model_args": 12345}}, r"'config\.model_args' is 12345 \(int\)"),
    ({"config": {"model_args": {"pretrained": "org/m", "revision": ["step1"]}}}, r"'config\.model_args\.revision'"),
    ({"group_subtasks": ["arc_easy"]}, r"'group_subtasks' is \['arc_easy'\]"),
    ({"group_subtasks": {"arc": "arc_easy"}}, r"'group_subtasks\.arc' is 'arc_easy'"),
    ({"n-samples": {"arc_easy": {"effective": "8"}}}, r"'n-samples\.arc_easy\.effective' is '8'"),
    ({"results": {"arc_easy": 0.5}}, r"'results\.arc_easy' is 0\.5 \(float\)"),
    ({"higher_is_better": ["acc"]}, r"'higher_is_better' is \['acc'\] \(list\)"),
])
def test_malformed_fields_are_errors_naming_file_and_key(tmp_path, fields, key):
    with pytest.raises(ValueError, match=r"r\.json: " + key):
        import_lmeval([_results_file(tmp_path, **fields)])


def test_a_binary_file_is_an_error_naming_it(tmp_path):
    path = tmp_path / "weights.json"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ValueError, match=r"weights\.json: not a text file"):
        import_lmeval([path])


def test_lm_evals_fixed_keys_are_not_metrics(tmp_path):
    path = _results_file(tmp_path, results={"arc_easy": {"name": "arc_easy", "alias": "ARC", "sample_len": 16,
                                                         "acc,none": 0.5, "acc_stderr,none": "N/A"}})
    assert list(import_lmeval([path])[S.METRIC]) == ["acc"]   # sample_len was imported as a score
