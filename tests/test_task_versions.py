"""A task's version is part of what a cell is: never reused across versions, carried in the
tidy table, and never mixed within a curve."""

import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from emergence import schema as S
from emergence.cli import main
from emergence.export import tidy_table
from emergence.hookspecs import hookimpl
from emergence.run.config import BackendOptions, RunConfig
from emergence.run.importers import import_lmeval
from emergence.run.runner import TaskVersionChanged, run
from emergence.store import Store
from emergence.tasks import GENERATE_METRICS
from emergence.tidy import TidyError, check_tidy

from helpers import AddTask

FIXTURE = Path(__file__).parent / "fixtures" / "pythia_lmeval" / "pythia-v1"


def _manager(version):
    from emergence.plugins import plugin_manager

    class Versioned:
        @staticmethod
        @hookimpl
        def register_tasks(register):
            register(AddTask(name="t_add", version=version, metrics=GENERATE_METRICS, max_gen_toks=4))

    pm = plugin_manager()
    pm.register(Versioned, name="versioned_tasks")
    return pm


def _config(family_dir, out, **kw):
    return RunConfig(family=str(family_dir), tasks=("t_add",), out=str(out), limit=3,
                     backend=BackendOptions(batch_size=4), **kw)


def test_a_new_task_version_is_refused_then_reevaluated_on_request(tiny_family_dir, tmp_path):
    config = _config(tiny_family_dir, tmp_path / "run")
    first = run(config, pm=_manager("1"), progress=False)
    assert first.evaluated == 6
    before = tidy_table(config.out)
    assert set(before[S.TASK_VERSION]) == {"1"}

    with pytest.raises(TaskVersionChanged, match=r"task 't_add' is version 2 now; 6 finished cell\(s\) hold "
                                                 r"version\(s\) 1(.|\n)*--reevaluate-changed"):
        run(config, pm=_manager("2"), progress=False)
    pd.testing.assert_frame_equal(tidy_table(config.out), before)   # nothing stored was touched

    again = run(dataclasses.replace(config, reevaluate_changed=True), pm=_manager("2"), progress=False)
    assert again.evaluated == 6 and again.skipped == 0 and len(again.changed_versions) == 6
    after = tidy_table(config.out)
    assert set(after[S.TASK_VERSION]) == {"2"} and len(after) == len(before)   # replaced, not added
    with Store(config.out, lock=False) as store:
        assert set(store.done_versions().values()) == {"2"}
    assert run(config, pm=_manager("2"), progress=False).skipped == 6     # the same version is reused


def test_the_command_line_names_the_versions(tiny_family_dir, tmp_path, capsys, monkeypatch):
    config = _config(tiny_family_dir, tmp_path / "run")
    run(config, pm=_manager("1"), progress=False)
    import emergence.run.runner as runner

    monkeypatch.setattr(runner, "plugin_manager", lambda: _manager("2"))
    code = main(["run", "--family", str(tiny_family_dir), "--tasks", "t_add", "--out", str(tmp_path / "run"),
                 "--limit", "3", "--batch-size", "4", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and "version 2 now" in err and "version(s) 1" in err


def _table(versions):
    return pd.DataFrame({S.FAMILY: "f", S.MODEL: ["a", "b", "c"], S.PARAMS: [1e6, 1e7, 1e8],
                         S.TASK: "t", S.METRIC: "acc", S.VALUE: [0.3, 0.4, 0.5], S.TASK_VERSION: versions})


def test_a_curve_never_mixes_task_versions():
    with pytest.raises(TidyError, match=r"task 't' of family 'f' has rows of versions 1, 2"):
        check_tidy(_table(["1", "1", "2"]))
    # Numbers as a CSV reader may give them: 1.0 and "1" are one version.
    assert set(check_tidy(_table([1.0, "1", 1]))[S.TASK_VERSION]) == {"1"}
    # Old tables have no column: read as before, with the column empty.
    old = check_tidy(_table(["1", "1", "1"]).drop(columns=[S.TASK_VERSION]))
    assert old[S.TASK_VERSION].isna().all()


def test_lm_eval_files_give_their_task_versions():
    df = import_lmeval(sorted(FIXTURE.glob("*/zero-shot/*.json")))
    assert df[S.TASK_VERSION].notna().all() and set(df[S.TASK_VERSION]) <= {"0", "1", "2"}
