"""The task checker (`emergence check-task`) and the checks the harness repeats on every cell."""

import json
import random
from dataclasses import dataclass

import pytest

from emergence.cli import main
from emergence.run.evaluate import TaskError, evaluate
from emergence.task_checks import ERROR, WARNING, check_task
from emergence.tasks import CONTINUOUS, DISCONTINUOUS, GENERATE_METRICS, Example, Metric, TaskBase
from helpers import FakeLM


@dataclass(frozen=True)
class Sums(TaskBase):
    """A small task with a switch for each mistake a plugin author makes."""

    count: int = 20
    global_random: bool = False     # draws from the global generator: other examples per call
    same_id: bool = False
    step_acc: float | None = None   # scored as ("", "step_acc")
    extra: bool = False             # scores ("", "undeclared")

    def examples(self, seed):
        rng = random if self.global_random else random.Random(f"{self.name}:{seed}")
        for i in range(self.count):
            a = rng.randint(0, 9)
            yield Example(id="0" if self.same_id else str(i), prompt=f"{a} + 0 =", target=f" {a}",
                          subtask="small" if a < 5 else "large")

    def score(self, example, output):
        s = super().score(example, output)
        if self.step_acc is not None:
            s[("", "step_acc")] = self.step_acc
        if self.extra:
            s[("", "undeclared")] = 1.0
        return s


STEP_ACC = Metric("step_acc", CONTINUOUS, 0.1)


def errors(problems):
    return [p.message for p in problems if p.level == ERROR]


def test_a_correct_task_and_every_built_in_one_pass():
    from emergence.plugins import collect, plugin_manager

    assert check_task(Sums(name="sums", metrics=GENERATE_METRICS)) == []
    for name, task in collect(plugin_manager()).tasks.items():
        assert errors(check_task(task, limit=100)) == [], name


def test_non_deterministic_examples_are_an_error_naming_the_fix():
    (problem,) = check_task(Sums(name="noisy", metrics=GENERATE_METRICS, global_random=True))
    assert problem.level == ERROR and "task 'noisy': examples(0) gives different examples each time" in problem.message
    assert "has prompt" in problem.message and 'random.Random(f"{self.name}:{seed}")' in problem.message


def test_duplicate_ids_are_named():
    assert any("example id(s) '0' occur more than once" in m
               for m in errors(check_task(Sums(name="dup", metrics=GENERATE_METRICS, same_id=True))))


def test_scored_keys_must_be_declared_and_declared_ones_scored():
    undeclared = errors(check_task(Sums(name="extra", metrics=GENERATE_METRICS, extra=True)))
    assert any("scores metric(s) 'undeclared' that it does not declare" in m and "add a Metric" in m
               for m in undeclared)
    never = errors(check_task(Sums(name="never", metrics=GENERATE_METRICS + (STEP_ACC,))))
    assert any("declares metric(s) 'step_acc' that score() never returns" in m for m in never)
    subtasks = errors(check_task(Sums(name="subs", metrics=GENERATE_METRICS, subtasks=("small", "large"))))
    assert any("declares sub-task(s) 'small', 'large' but score() returns no (subtask, metric) key" in m
               and "Example.subtask alone creates no rows" in m for m in subtasks)


def test_proportion_outside_unit_interval_is_named():
    bad = errors(check_task(Sums(name="steps", metrics=GENERATE_METRICS + (STEP_ACC,), step_acc=3)))
    assert any("metric 'step_acc' is a proportion but scored 3 for example '0'" in m for m in bad)


def test_accuracy_without_chance_is_a_warning():
    metrics = tuple(m for m in GENERATE_METRICS if m.name != "exact_match") + (Metric("exact_match", DISCONTINUOUS),)
    (problem,) = check_task(Sums(name="nochance", metrics=metrics))
    assert problem.level == WARNING and "metric 'exact_match' is an accuracy without a chance level" in problem.message


def test_the_harness_refuses_non_deterministic_examples():
    with pytest.raises(TaskError, match="task 'noisy': examples.0. gives different examples"):
        evaluate(Sums(name="noisy", metrics=GENERATE_METRICS, global_random=True), FakeLM(), seed=0)


def test_the_harness_refuses_a_proportion_outside_unit_interval():
    task = Sums(name="steps", metrics=GENERATE_METRICS + (STEP_ACC,), step_acc=3)
    with pytest.raises(TaskError, match="Task 'steps' scored metric 'step_acc' = 3 for example '0', outside"):
        evaluate(task, FakeLM(), seed=0)


class WindowLM(FakeLM):
    """A backend with a tokenizer (one token per word) and a small context window."""

    max_length = 16

    @staticmethod
    def tokenizer(texts):
        return {"input_ids": [t.split() for t in texts]}


def test_context_longer_than_the_window_names_the_task_example_and_fix():
    task = Sums(name="long", metrics=GENERATE_METRICS, max_gen_toks=4)
    evaluate(task, WindowLM(), seed=0)  # 4 words + 4 tokens fit in 16; 3 shots of 5 words do not
    with pytest.raises(TaskError, match=r"Task 'long': example '0' needs 23 tokens \(prompt with 3 few-shot "
                                        r"example\(s\) and max_gen_toks 4\) but the model's context window is 16 "
                                        r"tokens.*--num-fewshot"):
        evaluate(task, WindowLM(), seed=0, num_fewshot=3)


def test_check_task_command(capsys):
    assert main(["check-task", "add_2d", "unscramble"]) == 0
    out = capsys.readouterr().out
    assert "add_2d (v1, plugin probes from emergence " in out and "): ok" in out
    assert "unscramble" in out and "0 error(s), 1 warning(s)" in out and "'char_acc' is an accuracy" in out
    assert main(["check-task", "add_2dd"]) == 1
    assert "Did you mean 'add_2d'" in capsys.readouterr().err


def _run_dir_with_a_bad_metric(path):
    """A run directory as an older emergence left it: task 'chain' stored step_acc = 3."""
    from emergence.families import Checkpoint
    from emergence.store import Score, Store

    with Store(path) as store:
        for i, params in enumerate((1e6, 3e6, 1e7, 3e7, 1e8, 3e8)):
            ck = Checkpoint(family="fam", name=f"m{i}", repo=f"/m{i}", model=f"m{i}", size=str(i), params=int(params))
            store.put_checkpoint(ck)
            acc = min(1.0, 0.1 + 0.15 * i)
            store.write_cell(ck.name, "chain", "1", "bad_tasks", [
                Score("", "exact_match", acc, 0.01, 100, chance=0.0, kind=DISCONTINUOUS, higher_is_better=True),
                Score("", "step_acc", 3.0 if i == 2 else acc, 0.01, 100, chance=0.05, kind=CONTINUOUS,
                      higher_is_better=True)], [], 1.0)
            store.write_cell(ck.name, "copy", "1", "probes", [
                Score("", "exact_match", acc / 2, 0.01, 100, chance=0.0, kind=DISCONTINUOUS, higher_is_better=True)],
                [], 1.0)
    (path / "run.json").write_text(json.dumps({"tasks": {"chain": "1", "copy": "1"}, "plugins": [
        {"name": "bad_tasks", "distribution": "emergence-bad-tasks", "version": "0.3.0"},
        {"name": "probes", "distribution": "emergence", "version": "0.1.0"}]}))
    return path


def test_one_bad_metric_does_not_sink_analyze_or_report(tmp_path):
    import sqlite3

    import pandas as pd

    from emergence.report.build import ReportConfig, build_report

    run = _run_dir_with_a_bad_metric(tmp_path / "run")
    with pytest.warns(UserWarning, match="metric 'step_acc' of task 'chain' skipped"):
        assert main(["analyze", str(run), "--n-boot", "0", "--workers", "1"]) == 0
    notes = (run / "analysis" / "notes.txt").read_text()
    assert "metric 'step_acc' of task 'chain' skipped: 1 value(s) outside [0, 1] (e.g. 3 at row" in notes
    assert "`emergence check-task chain`" in notes
    verdicts = pd.read_csv(run / "analysis" / "verdicts.csv")
    curves = set(zip(verdicts["task"], verdicts["metric"]))
    assert ("chain", "exact_match") in curves and ("copy", "exact_match") in curves
    assert ("chain", "step_acc") not in curves
    with pytest.warns(UserWarning):
        report = build_report([run], tmp_path / "report", config=ReportConfig(n_boot=0, workers=1))
    assert "metric &#39;step_acc&#39; of task &#39;chain&#39; skipped" in report.html.read_text()
    assert "metric 'step_acc' of task 'chain' skipped" in report.summary.read_text()
    # the provenance names the third-party plugin that made the task, not emergence's own
    html = report.html.read_text()
    assert "<td>bad_tasks</td><td>emergence-bad-tasks</td><td>0.3.0</td>" in html and "<td>probes</td>" not in html
    assert "Third-party plugins: bad_tasks (emergence-bad-tasks 0.3.0)." in report.summary.read_text()
    db = sqlite3.connect(run / "results.sqlite")  # nothing stored is lost
    assert db.execute("SELECT COUNT(*) FROM scores WHERE metric = 'step_acc'").fetchone() == (6,)
    db.close()
