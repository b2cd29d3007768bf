"""Metric metadata (kind, direction) from a task plugin through the store and the tidy table to a
verdict; old stores and old tables without it still read, and then the name rules decide."""

import json
import sqlite3
from dataclasses import dataclass

import pandas as pd
import pytest

from emergence import schema as S
from emergence.analysis.analyze import analyze, load_tables
from emergence.analysis.decompose import metric_audit
from emergence.analysis.verdicts import classify
from emergence.export import tidy_table, write_table
from emergence.families import Checkpoint, Family
from emergence.hookspecs import hookimpl
from emergence.run.config import RunConfig
from emergence.run.importers import import_lmeval
from emergence.run.runner import run
from emergence.store import DB_NAME, Score, Store
from emergence.tasks import CONTINUOUS, DISCONTINUOUS, Example, Metric, TaskBase
from emergence.tidy import TidyError, check_tidy, read_tidy

SIZES = [10 ** k for k in range(6, 12)]


@dataclass(frozen=True)
class RegretTask(TaskBase):
    """Each example's regret: what the backend answers, plus the example's own jitter (the same
    in every checkpoint, so the curve is exact and its noise is measured)."""

    def examples(self, seed):
        for i in range(20):
            yield Example(id=str(i), prompt=f"{i} ?", target=" x")

    def score(self, example, output):
        return {("", "regret"): float(output.generation) + 0.01 * (int(example.id) % 5 - 2)}


class RegretBackend:
    """Answers with its model's regret, which falls as a power law of size."""

    def __init__(self, params):
        self.regret = 2.0 * (params / SIZES[0]) ** -0.3

    def score_pairs(self, pairs):
        from emergence.run.engine import TokenScores

        return [TokenScores((-1.0,), (True,)) for _ in pairs]

    def generate(self, contexts, until=(), max_gen_toks=8):
        return [repr(self.regret)] * len(contexts)


class RegretPlugin:
    @staticmethod
    @hookimpl
    def register_tasks(register):
        register(RegretTask(name="t_regret", metrics=(
            Metric("regret", CONTINUOUS, None, higher_is_better=False, description="lower is better"),)))

    @staticmethod
    @hookimpl
    def register_families(register):
        register(Family("regretfam", tuple(
            Checkpoint("regretfam", f"m{n}@step1", repo=f"fake/m{n}", model=f"m{n}", params=n,
                       params_nonembed=n // 2, tokens=1e9, step=1) for n in SIZES)))

    @staticmethod
    @hookimpl(tryfirst=True)
    def load_model(checkpoint):
        return RegretBackend(checkpoint.params)


@pytest.fixture(scope="module")
def regret_run(tmp_path_factory):
    from emergence.plugins import plugin_manager

    pm = plugin_manager(entrypoints=False)  # the throwaway plugin alone: its family, task and backend
    pm.register(RegretPlugin, name="regret_plugin")
    out = tmp_path_factory.mktemp("regret") / "run"
    summary = run(RunConfig(family="regretfam", tasks=("t_regret",), out=str(out), seed=0), pm=pm, progress=False)
    assert summary.ok and summary.evaluated == len(SIZES)
    return out


def test_a_lower_is_better_plugin_metric_falling_with_size_is_an_improvement(regret_run, tmp_path):
    df = tidy_table(regret_run)
    assert set(df[S.METRIC_KIND]) == {CONTINUOUS} and set(df[S.HIGHER_IS_BETTER]) == {False}
    assert df.sort_values(S.PARAMS)[S.VALUE].is_monotonic_decreasing
    table = write_table(df, tmp_path / "regret.csv")
    for source in (regret_run, table):  # a run directory, and its exported table
        v = analyze(load_tables([source]), axes=[S.PARAMS], workers=1).verdicts
        row = v[v[S.METRIC] == "regret"].iloc[0]
        assert row["label"] == "smooth", row["reason"]
        assert row[S.HIGHER_IS_BETTER] == False and row[S.METRIC_KIND] == CONTINUOUS  # noqa: E712


def test_without_the_columns_the_name_rule_decides_and_a_note_says_so(regret_run, tmp_path):
    old = tidy_table(regret_run).drop(columns=[S.METRIC_KIND, S.HIGHER_IS_BETTER])
    old.to_csv(tmp_path / "old.csv", index=False)
    df = read_tidy([tmp_path / "old.csv"])
    assert df[S.METRIC_KIND].isna().all() and df[S.HIGHER_IS_BETTER].isna().all()
    result = analyze(df, axes=[S.PARAMS], workers=1)
    assert any("guessed from its name" in n for n in result.notes)
    assert result.verdicts["label"].iloc[0] == "inverse"  # "regret" is no name the rules know


def test_a_store_written_before_metric_metadata_exports_and_takes_new_cells(tmp_path):
    db = sqlite3.connect(tmp_path / DB_NAME)
    db.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE checkpoints (name TEXT PRIMARY KEY, family TEXT, model TEXT, size TEXT, repo TEXT,
            revision TEXT, params INTEGER, params_nonembed INTEGER, tokens REAL, step INTEGER, flops REAL);
        CREATE TABLE cells (checkpoint TEXT NOT NULL, task TEXT NOT NULL, task_version TEXT, plugin TEXT,
            status TEXT NOT NULL CHECK (status IN ('done', 'failed')), error TEXT, seconds REAL,
            finished_at REAL, PRIMARY KEY (checkpoint, task));
        CREATE TABLE scores (checkpoint TEXT NOT NULL, task TEXT NOT NULL, subtask TEXT NOT NULL,
            metric TEXT NOT NULL, value REAL, stderr REAL, n INTEGER, n_nonfinite INTEGER, chance REAL,
            PRIMARY KEY (checkpoint, task, subtask, metric));
        CREATE TABLE samples (checkpoint TEXT NOT NULL, task TEXT NOT NULL, example_id TEXT NOT NULL,
            subtask TEXT, prompt_hash TEXT, prediction TEXT, gold TEXT, gold_logprob REAL, gold_tokens INTEGER,
            greedy INTEGER, metrics TEXT, PRIMARY KEY (checkpoint, task, example_id));
        INSERT INTO meta VALUES ('schema_version', '1');
        INSERT INTO checkpoints VALUES ('a@step1', 'f', 'a', '', 'org/a', 'step1', 100, 50, 1e6, 1, NULL);
        INSERT INTO cells VALUES ('a@step1', 't', '1', 'p', 'done', NULL, 1.0, 0.0);
        INSERT INTO scores VALUES ('a@step1', 't', '', 'acc', 0.5, 0.1, 10, 0, 0.25);
    """)
    db.close()
    old = tidy_table(tmp_path)  # a reader changes nothing
    assert old[S.VALUE].tolist() == [0.5] and old[S.METRIC_KIND].isna().all() and old[S.HIGHER_IS_BETTER].isna().all()
    with Store(tmp_path) as store:  # a writer adds the columns and keeps what is there
        assert {"kind", "higher_is_better"} <= store.score_columns()
        assert store.get_meta("schema_version") == 2
        store.write_cell("a@step1", "u", "1", "p", [Score("", "regret", 0.3, 0.01, 10, 0, None, CONTINUOUS, False)],
                         [], 1.0)
    df = tidy_table(tmp_path).set_index(S.TASK)
    assert df.loc["t", S.VALUE] == 0.5 and pd.isna(df.loc["t", S.HIGHER_IS_BETTER])
    assert df.loc["u", S.METRIC_KIND] == CONTINUOUS and df.loc["u", S.HIGHER_IS_BETTER] == False  # noqa: E712


def test_lm_eval_files_give_their_direction_and_the_kind_of_all_or_nothing_metrics(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({
        "results": {"mytask": {"acc,none": 0.6, "acc_stderr,none": 0.01, "regret,none": 3.0, "f1,none": 0.4}},
        "higher_is_better": {"mytask": {"acc": True, "regret": False}},
        "config": {"model_args": "pretrained=org/m,revision=step5"}}))
    df = import_lmeval([path]).set_index(S.METRIC)
    assert df.loc["acc", S.HIGHER_IS_BETTER] == True and df.loc["regret", S.HIGHER_IS_BETTER] == False  # noqa: E712
    assert pd.isna(df.loc["f1", S.HIGHER_IS_BETTER])  # the file does not say
    assert df.loc["acc", S.METRIC_KIND] == DISCONTINUOUS and pd.isna(df.loc["regret", S.METRIC_KIND])
    assert df[S.HIGHER_IS_BETTER].dtype == "boolean"


@pytest.mark.parametrize("column, value, match", [
    (S.METRIC_KIND, "discrete", r"'metric_kind' has unknown kind\(s\) 'discrete' at row 2 of .*discontinuous"),
    (S.HIGHER_IS_BETTER, "maybe", r"'higher_is_better' has value\(s\) 'maybe' at row 2 of .*True or False"),
])
def test_bad_metadata_is_refused_naming_column_and_row(tmp_path, column, value, match):
    path = tmp_path / "t.csv"
    pd.DataFrame({S.FAMILY: "f", S.MODEL: ["a", "b"], S.TASK: "t", S.METRIC: "m", S.VALUE: [0.1, 0.2],
                  column: ["", value]}).to_csv(path, index=False)
    with pytest.raises(TidyError, match=match):
        read_tidy([path])


def test_a_metric_with_two_directions_is_refused(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame({S.FAMILY: "f", S.MODEL: ["a", "b", "c"], S.TASK: "t", S.METRIC: "m", S.VALUE: [0.1, 0.2, 0.3],
                  S.HIGHER_IS_BETTER: ["true", "", "False"]}).to_csv(path, index=False)
    with pytest.raises(TidyError, match=r"says both False and True for task 't', metric 'm' at rows 1, 3"):
        read_tidy([path])


def test_declared_kinds_beat_the_name_rule_in_the_audit():
    rows = []
    grade = (0.02, 0.01, 0.02, 0.01, 0.3, 0.6, 0.7, 0.75)
    for i, value in enumerate(grade):  # names the rules do not know: "grade" jumps, "score" rises smoothly
        base = {S.FAMILY: "f", S.MODEL: f"m{i}", S.PARAMS: 10 ** (6 + i), S.TASK: "t", S.STDERR: 0.01}
        rows.append({**base, S.METRIC: "grade", S.VALUE: value, S.CHANCE: 0.0, S.METRIC_KIND: DISCONTINUOUS})
        rows.append({**base, S.METRIC: "score", S.VALUE: 0.1 + 0.1 * i, S.METRIC_KIND: CONTINUOUS})
    df = check_tidy(pd.DataFrame(rows))
    audit = metric_audit(df, S.PARAMS)
    assert list(audit["label"]) == ["metric-induced"], audit.to_dict("records")
    assert metric_audit(df.assign(**{S.METRIC_KIND: None}), S.PARAMS).empty  # the name rule knows neither


def test_classify_reads_the_direction_of_a_table():
    curve = pd.DataFrame({S.PARAMS: SIZES, S.VALUE: [2.0 * (n / SIZES[0]) ** -0.3 for n in SIZES],
                          S.STDERR: 0.003, S.METRIC: "regret"})
    assert classify(curve).label == "inverse"
    assert classify(curve.assign(**{S.HIGHER_IS_BETTER: False})).label == "smooth"


def test_a_metric_must_declare_a_known_kind_and_a_boolean_direction():
    with pytest.raises(ValueError, match="Metric 'x': kind 'discrete'"):
        Metric("x", "discrete")
    with pytest.raises(ValueError, match="Metric 'x': higher_is_better must be True or False"):
        Metric("x", CONTINUOUS, higher_is_better="no")
