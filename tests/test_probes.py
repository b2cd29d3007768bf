"""The built-in probes and held-out loss task: deterministic, large, correctly scored, registered."""

import dataclasses
import itertools
import math
import random
import re
import sys
import types

import pytest

from emergence.tasks import GENERATE, MULTIPLE_CHOICE, ROLLING, Output
from emergence_tasks import composition as C
from emergence_tasks import heldout_loss as H
from emergence_tasks.probes import all_probes

PROBES = {t.name: t for t in all_probes()}
EXHAUSTIVE = {"add_1d": 100, "mul_1d": 100,   # one-digit operands: every problem once
              "walk": len(C.WALK_MAPS) * len(C.WALK_NODES)}   # one walk per (map, start node)


def _task(name):
    return PROBES[name]


def _first(task, seed, n=50):
    return list(itertools.islice(task.examples(seed), n))


def _gen(text):
    return Output(generation=text)


# ---------------------------------------------------------------- examples
def test_registered_names():
    expected = ({f"add_{k}d" for k in range(1, 6)} | {f"mul_{k}d" for k in range(1, 4)}
                | {f"chain_{k}" for k in range(2, 6)}
                | {"mod_arith", "mc_arith", "unscramble", "reverse_word", "copy", "walk", "sums"})
    assert set(PROBES) == expected


@pytest.mark.parametrize("name", sorted(PROBES))
def test_same_seed_same_examples_other_seed_other_examples(name):
    task = _task(name)
    assert _first(task, 0) == _first(task, 0)
    assert _first(task, 0) != _first(task, 1)


@pytest.mark.parametrize("name", sorted(PROBES))
def test_enough_distinct_well_formed_examples(name):
    task = _task(name)
    examples = list(task.examples(0))
    distinct = {(ex.prompt, ex.choices) for ex in examples}
    assert len(distinct) == len(examples) == len({ex.id for ex in examples})
    assert len(examples) == EXHAUSTIVE.get(name, 2000)   # >= 1000 wherever the problem space allows
    for ex in examples:
        # The answer line is last; walk's prompt ends with the start node the answer continues.
        assert ex.prompt.endswith("\nA:") or (name == "walk" and ex.prompt.rsplit("\n", 1)[1].startswith("A: "))
        if task.kind == MULTIPLE_CHOICE:
            assert len(ex.choices) == 4 and len(set(ex.choices)) == 4 and 0 <= ex.gold < 4
            assert all(c.startswith(" ") for c in ex.choices)
        else:
            assert ex.target.startswith(" ") and "\n" not in ex.target
            # An ASCII answer never needs more tokens than it has characters.
            assert len(ex.target) <= task.max_gen_toks
        if task.subtasks and ex.subtask:
            assert ex.subtask in task.subtasks


@pytest.mark.parametrize("name", [n for n in sorted(PROBES) if n[:3] in ("add", "mul")] + ["mc_arith"])
def test_arithmetic_answers_are_right(name):
    task = _task(name)
    for ex in _first(task, 3, 300):
        a, word, b = re.fullmatch(r"Q: What is (\d+) (plus|times) (\d+)\?\nA:", ex.prompt).groups()
        if name != "mc_arith":
            assert len(a) == len(b) == task.digits
        answer = int(a) + int(b) if word == "plus" else int(a) * int(b)
        gold = ex.choices[ex.gold] if ex.choices else ex.target
        assert gold == f" {answer}"
        if ex.parts:
            assert "".join(reversed(ex.parts)) == str(answer)


def test_mod_answers_are_right():
    for ex in _first(_task("mod_arith"), 3, 300):
        a, b, c, m = map(int, re.fullmatch(r"Q: What is \((\d+) \* (\d+) \+ (\d+)\) mod (\d+)\?\nA:",
                                           ex.prompt).groups())
        assert ex.target == f" {(a * b + c) % m}" and ex.subtask == f"mod_{m}"


@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_chain_answers_follow_the_prompt(k):
    for ex in _first(_task(f"chain_{k}"), 3, 300):
        start, said = re.fullmatch(r"Q: Start with (\d+)\. (.*)\. Say the number after each step\.\nA:",
                                   ex.prompt).groups()
        x, values = int(start), []
        for op in said.lower().split(", then "):
            if op == "double it":
                x *= 2
            elif op == "halve it":
                assert x % 2 == 0
                x //= 2
            else:
                verb, n = op.split()
                x = x + int(n) if verb == "add" else x - int(n)
            assert 0 <= x <= 19
            values.append(str(x))
        assert len(values) == k and ex.parts == tuple(values) and ex.target == " " + " ".join(values)


def test_word_answers_are_right():
    for ex in _first(_task("unscramble"), 3, 300):
        letters, options = re.fullmatch(r"Q: Unscramble '(\w+)'\. Options: (.*)\.\nA:", ex.prompt).groups()
        options = options.split(", ")
        assert [o for o in options if sorted(o) == sorted(letters)] == [ex.target.strip()]
        assert letters != ex.target.strip() and ex.subtask == f"len_{len(letters)}"
    for ex in _first(_task("reverse_word"), 3, 300):
        word = re.fullmatch(r"Q: Spell '(\w+)' backwards\.\nA:", ex.prompt).group(1)
        assert ex.target == " " + word[::-1]
    for ex in _first(_task("copy"), 3, 300):
        assert ex.prompt == f"Q: Repeat exactly:{ex.target}\nA:"


# ---------------------------------------------------------------- scoring
def test_digit_scoring():
    task = _task("add_3d")
    ex = task._example(372, 419)
    assert ex.target == " 791" and ex.parts == ("1", "9", "7")
    right = task.score(ex, _gen(" 791"))
    assert right[("", "exact_match")] == 1.0 and right[("", "digit_acc")] == 1.0
    assert all(right[(f"digit_{j}", "acc")] == 1.0 for j in (1, 2, 3))
    wrong = task.score(ex, _gen(" 781"))
    assert wrong[("", "exact_match")] == 0.0
    assert (wrong[("digit_1", "acc")], wrong[("digit_2", "acc")], wrong[("digit_3", "acc")]) == (1.0, 0.0, 1.0)
    assert wrong[("", "digit_acc")] == pytest.approx(2 / 3)
    short = task.score(ex, _gen("91"))   # digits are right-aligned; a missing digit is wrong
    assert (short[("digit_1", "acc")], short[("digit_3", "acc")], short[("", "exact_match")]) == (1.0, 0.0, 0.0)
    assert ("digit_4", "acc") not in right   # a 3-digit answer has no thousands place
    assert task.score(ex, _gen(""))[("", "digit_acc")] == 0.0


def test_chance_levels():
    add = _task("add_2d")
    assert add.chance("digit_1", "acc") == 0.1 and add.chance("", "exact_match") == 0.0
    assert _task("mc_arith").chance("", "acc") == 0.25
    assert _task("unscramble").chance("", "exact_match") == 0.25
    assert _task("mod_arith").chance("mod_7", "exact_match") == pytest.approx(1 / 7)
    assert _task("chain_2").chance("step_1", "acc") == pytest.approx(0.05)
    assert _task("chain_2").chance("", "exact_match") == pytest.approx(0.05 ** 2)
    for task in PROBES.values():
        names = [m.name for m in task.metrics]
        assert len(names) == len(set(names))
        if task.kind == GENERATE:
            assert {"exact_match", "edit_distance", "gold_logprob"} <= set(names)


@pytest.mark.parametrize("k", [2, 5])
def test_chain_composite_is_all_steps_right_so_p_to_the_k(k):
    """Steps right independently with p = 0.6: composite = AND of steps, its mean near p^k."""
    task, rng, p = _task(f"chain_{k}"), random.Random(0), 0.6
    exact, steps = [], []
    for ex in task.examples(0):
        said = [g if rng.random() < p else str(int(g) + 1) for g in ex.parts]
        s = task.score(ex, _gen(" " + " ".join(said)))
        step_ok = [s[(f"step_{j}", "acc")] for j in range(1, k + 1)]
        assert s[("", "exact_match")] == float(all(step_ok))
        assert s[("", "step_acc")] == pytest.approx(sum(step_ok) / k)
        exact.append(s[("", "exact_match")])
        steps.append(sum(step_ok) / k)
    n = len(exact)
    assert sum(steps) / n == pytest.approx(p, abs=0.03)
    assert sum(exact) / n == pytest.approx(p ** k, abs=4 * math.sqrt(p ** k * (1 - p ** k) / n))


def test_sums_ask_independent_one_digit_sums_and_score_each_one():
    task = _task("sums")
    examples = list(task.examples(0))
    for ex in examples[:200]:
        pairs = re.findall(r"(\d) plus (\d)", ex.prompt)
        assert len(pairs) == C.SUMS and ex.parts == tuple(str(int(a) + int(b)) for a, b in pairs)
        assert ex.target == " " + " ".join(ex.parts)
    ex = examples[0]
    assert task.score(ex, _gen(ex.target))[("", "exact_match")] == 1
    s = task.score(ex, _gen(f" {ex.parts[0]} 99"))
    assert (s[("step_1", "acc")], s[("step_2", "acc")], s[("", "exact_match")]) == (1, 0, 0)
    assert s[("", "step_acc")] == 0.5
    # 10,000 questions: a held-out one shares each of its facts, in its position, with others
    def first_fact(ex):
        return re.search(r"(\d) plus (\d)", ex.prompt).groups()

    trained = {first_fact(ex) for ex in examples[100:]}
    assert all(first_fact(ex) in trained for ex in examples[:100])


def test_walk_follows_its_table_and_scores_each_step_from_the_models_own_node():
    task = _task("walk")
    examples = list(task.examples(0))
    for ex in examples:
        name, start, *path = ex.parts
        assert ex.prompt.endswith(f"A: {start}") and ex.target == " " + " ".join(path)
        table = C.SUCCESSORS[name]
        assert all(table[a] == b for a, b in zip([start, *path], path))
        assert len(set(path)) == len(path)   # one cycle through every node: no early repeat
    assert {ex.parts[1] for ex in examples} == set(C.WALK_NODES)
    ex = examples[0]
    name, start, *path = ex.parts
    s = task.score(ex, _gen(ex.target))
    assert s[("", "exact_match")] == 1 and s[("", "step_acc")] == 1
    # Step 2 wrong; step 3 follows the table from the model's wrong node, so it counts as right.
    wrong = next(n for n in C.WALK_NODES if n not in (path[1], start))
    said = [path[0], wrong, C.SUCCESSORS[name][wrong], *path[3:]]
    s = task.score(ex, _gen(" " + " ".join(said)))
    steps = [s[(f"step_{j}", "acc")] for j in range(1, C.WALK_STEPS + 1)]
    assert steps == [1, 0, 1, 0, 1, 1] and s[("", "exact_match")] == 0
    assert s[("", "step_acc")] == pytest.approx(4 / 6)
    s = task.score(ex, _gen(f" {path[0]}"))
    assert [s[(f"step_{j}", "acc")] for j in range(1, 4)] == [1, 0, 0]


def test_chain_scores_missing_steps_as_wrong():
    task = _task("chain_3")
    ex = next(iter(task.examples(0)))
    s = task.score(ex, _gen(" " + ex.parts[0]))
    assert (s[("step_1", "acc")], s[("step_2", "acc")], s[("step_3", "acc")]) == (1.0, 0.0, 0.0)


def test_word_and_copy_scoring():
    task = _task("reverse_word")
    ex = next(e for e in task.examples(0) if e.subtask == "len_4")
    gold = ex.target.strip()
    s = task.score(ex, _gen(" " + gold))
    assert s[("", "exact_match")] == s[("len_4", "exact_match")] == s[("", "char_acc")] == 1.0
    s = task.score(ex, _gen(" " + gold[:2] + "zz"))
    assert s[("", "exact_match")] == 0.0 and s[("len_4", "char_acc")] == 0.5
    assert ("len_6", "exact_match") not in s
    copy = _task("copy")
    ex = next(iter(copy.examples(0)))
    items = list(ex.parts)
    s = copy.score(ex, _gen(" " + " ".join(items[:3] + ["?"] * 3)))
    assert s[("", "item_acc")] == 0.5 and s[("", "exact_match")] == 0.0


def test_multiple_choice_scoring():
    task = _task("mc_arith")
    ex = next(iter(task.examples(0)))
    logprobs = [math.log(0.1)] * 4
    logprobs[ex.gold] = math.log(0.7)
    s = task.score(ex, Output(choice_logprobs=tuple(logprobs), gold_logprob=logprobs[ex.gold],
                              gold_bytes=len(ex.choices[ex.gold])))
    assert s[("", "acc")] == 1.0 and s[(ex.subtask, "acc")] == 1.0
    assert s[("", "prob_correct")] == pytest.approx(0.7)
    assert s[("", "brier")] == pytest.approx(0.3 ** 2 + 3 * 0.1 ** 2)
    assert s[("", "gold_logprob")] == pytest.approx(math.log(0.7))
    wrong = list(logprobs)
    wrong[(ex.gold + 1) % 4] = math.log(0.8)
    assert task.score(ex, Output(choice_logprobs=tuple(wrong)))[("", "acc")] == 0.0


# ---------------------------------------------------------------- registration
def test_registration_through_a_fresh_manager():
    from emergence.plugins import collect, plugin_manager

    import emergence_tasks.heldout_loss as heldout
    import emergence_tasks.probes as probes

    pm = plugin_manager(entrypoints=False)
    pm.register(probes)
    pm.register(heldout)
    reg = collect(pm)
    assert set(reg.tasks) == set(PROBES) | {"heldout_loss"}
    assert reg.task("heldout_loss").kind == ROLLING
    for task in reg.tasks.values():
        assert task.version == "1" and task.description and task.metrics


# ---------------------------------------------------------------- held-out loss
def test_shipped_corpus_is_what_the_generator_writes():
    # If this fails, the generator or a probe format changed: regenerate the file with
    # `python -m emergence_tasks.heldout_loss` and bump heldout_loss's version.
    assert H.DEFAULT_CORPUS.read_text(encoding="utf-8") == H.generate_corpus()
    assert 20_000 < H.DEFAULT_CORPUS.stat().st_size < 100_000


def test_a_new_probe_does_not_change_the_heldout_corpus(monkeypatch):
    from emergence_tasks import probes as P

    before = H.generate_corpus(seed=3, n_documents=10)
    extra = dataclasses.replace(C.chain_task(2), name="chain_new")   # a probe registered later
    monkeypatch.setattr(P, "all_probes", lambda original=P.all_probes: [extra, *original()])
    assert H.generate_corpus(seed=3, n_documents=10) == before


def test_heldout_chunks_are_stable_and_bounded():
    task = H.default_task()
    chunks = list(task.examples(0))
    assert chunks == list(task.examples(99))   # the seed does not change the text
    assert len(chunks) >= 20 and len({c.id for c in chunks}) == len(chunks)
    assert all(0 < len(c.text) <= task.chunk_chars for c in chunks)
    assert chunks[0].id == "heldout.txt:0"


def test_heldout_on_local_files(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("one para\n\n\n" + "x" * 50 + "\n\nlast")
    b.write_text("only one")
    task = H.HeldoutLoss(name="mine", paths=(str(a), str(b)), chunk_chars=20)
    assert [(e.id, e.text) for e in task.examples(0)] == [
        ("a.txt:0", "one para"), ("a.txt:1", "x" * 50), ("a.txt:2", "last"), ("b.txt:0", "only one")]
    with pytest.raises(FileNotFoundError, match="mine"):
        list(H.HeldoutLoss(name="mine", paths=(str(tmp_path / "nope.txt"),)).examples(0))


def test_heldout_rejects_ambiguous_configs(tmp_path):
    with pytest.raises(ValueError, match="exactly one"):
        H.HeldoutLoss(name="x")
    with pytest.raises(ValueError, match="exactly one"):
        H.HeldoutLoss(name="x", paths=("a.txt",), dataset="wikitext")
    with pytest.raises(ValueError, match="unique"):
        H.HeldoutLoss(name="x", paths=("d1/a.txt", "d2/a.txt"))


def test_heldout_from_a_dataset_loads_lazily(monkeypatch):
    calls = []

    def load_dataset(name, config, split):
        calls.append((name, config, split))
        return [{"text": "first row"}, {"text": "second row"}]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    task = H.HeldoutLoss(name="wiki", dataset="wikitext", dataset_config="raw", split="test")
    assert calls == []   # nothing is loaded at registration time
    assert [e.text for e in task.examples(0)] == ["first row\n\nsecond row"]
    assert calls == [("wikitext", "raw", "test")]


# ---------------------------------------------------------------- end to end on a tiny model
@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from emergence.run.engine import HFEngine

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    return HFEngine(model, tok, batch_size=4, max_length=128)   # a short window keeps this fast


@pytest.mark.parametrize("name", ["add_3d", "mc_arith", "heldout_loss"])   # one task per kind
def test_end_to_end_on_a_tiny_model(engine, name):
    from emergence.run.evaluate import evaluate

    task = PROBES.get(name) or H.default_task()
    scores, samples = evaluate(task, engine, seed=0, limit=8)
    assert len(samples) == 8
    by_key = {(s.subtask, s.metric): s for s in scores}
    headline = {GENERATE: "exact_match", MULTIPLE_CHOICE: "acc", ROLLING: "bits_per_byte"}[task.kind]
    assert by_key[("", headline)].n == 8
    for s in scores:
        assert math.isfinite(s.value) and s.n_nonfinite == 0, s
        if s.subtask == "":
            assert s.n == 8, s
        if task.kind != ROLLING and s.metric in ("exact_match", "acc", "digit_acc", "step_acc", "item_acc"):
            assert s.chance is not None, s
    subtasks = {s.subtask for s in scores} - {""}
    assert subtasks <= set(task.subtasks)
    if name == "add_3d":   # every 3-digit sum has these digits; the carry digit only some
        assert {"digit_1", "digit_2", "digit_3"} <= subtasks
