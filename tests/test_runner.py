"""Runner and store: resume without recomputation, failures recorded, one writer, tidy export."""

import sqlite3

import pandas as pd
import pytest

from emergence import schema as S
from emergence.run.config import BackendOptions, RunConfig
from emergence.export import tidy_table, write_table
from emergence.families import Selection
from emergence.hookspecs import hookimpl
from emergence.run.runner import run
from emergence.store import RunLocked, SettingsMismatch, Store

from helpers import manager


def _config(family_dir, out, tasks=("t_add", "t_pick"), **kw):
    return RunConfig(family=str(family_dir), tasks=tasks, out=str(out), limit=6,
                     backend=BackendOptions(batch_size=4), **kw)


def test_run_then_resume_recomputes_nothing(tiny_family_dir, tmp_path):
    cfg = _config(tiny_family_dir, tmp_path / "run")
    first = run(cfg, pm=manager(), progress=False)
    assert first.ok and first.evaluated == 12 and first.skipped == 0
    table = tidy_table(cfg.out)

    loads = []

    class Spy:  # sees every load request first, then lets the real loader run
        @staticmethod
        @hookimpl(tryfirst=True)
        def load_model(checkpoint):
            loads.append(checkpoint.name)

    pm = manager()
    pm.register(Spy, name="spy")
    second = run(cfg, pm=pm, progress=False)
    assert second.evaluated == 0 and second.skipped == 12 and loads == []
    # The spy does see loads when there is work to do.
    run(RunConfig(**{**cfg.__dict__, "seed": 1234, "tasks": ("t_add", "t_pick", "t_broken")}), pm=pm,
        progress=False)
    assert len(loads) == 6
    pd.testing.assert_frame_equal(tidy_table(cfg.out), table)


def test_tidy_table_schema_and_values(tiny_family_dir, tmp_path):
    cfg = _config(tiny_family_dir, tmp_path / "run", select=Selection(sizes=("tiny-h32-l2",)))
    run(cfg, pm=manager(), progress=False)
    df = tidy_table(cfg.out)
    assert tuple(df.columns) == S.TIDY_COLUMNS
    assert set(df[S.CHECKPOINT]) == {"tiny-h32-l2@step100", "tiny-h32-l2@step200"}
    assert set(df[S.STEP]) == {100, 200}
    assert (df[S.PARAMS] > df[S.PARAMS_NONEMBED]).all()
    acc = df[(df[S.TASK] == "t_pick") & (df[S.METRIC] == "acc")]
    assert (acc[S.CHANCE] == 0.25).all() and (acc[S.N] == 6).all()
    assert acc[S.VALUE].between(0, 1).all() and acc[S.STDERR].notna().all()
    assert not df.duplicated([S.CHECKPOINT, S.TASK, S.SUBTASK, S.METRIC]).any()
    # Each task's own few-shot count (the run sets none), and the default setting.
    assert df.groupby(S.TASK)[S.N_SHOT].unique().map(list).to_dict() == {"t_add": [1], "t_pick": [0]}
    assert set(df[S.SETTING]) == {""}
    out = write_table(df, tmp_path / "t.csv")
    back = pd.read_csv(out, keep_default_na=False)
    assert list(back.columns) == list(S.TIDY_COLUMNS) and len(back) == len(df)
    pytest.importorskip("pyarrow")
    pq = write_table(df, tmp_path / "t.parquet", "parquet")
    assert len(pd.read_parquet(pq)) == len(df)


def test_failing_cells_are_recorded_and_the_run_goes_on(tiny_family_dir, tmp_path):
    broken_ck = tmp_path / "fam"
    import shutil
    shutil.copytree(tiny_family_dir, broken_ck)
    weights = broken_ck / "tiny-h64-l2@step100" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    cfg = _config(broken_ck, tmp_path / "run", tasks=("t_add", "t_broken"))
    summary = run(cfg, pm=manager(), progress=False)
    assert not summary.ok and summary.evaluated == 5
    failed = {(ck, task) for ck, task, _ in summary.failed}
    assert ("tiny-h64-l2@step100", "t_add") in failed            # checkpoint would not load
    assert ("tiny-h32-l2@step100", "t_broken") in failed         # task raised
    assert any("examples exploded" in err for _, _, err in summary.failed)
    with Store(cfg.out) as store:
        assert len(store.failures()) == len(summary.failed) == 7
    assert set(tidy_table(cfg.out)[S.TASK]) == {"t_add"}


def test_a_model_with_nan_weights_fails_its_cells_and_stores_no_scores(tiny_model_dir, tmp_path):
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    checkpoint = shutil.copytree(tiny_model_dir, tmp_path / "fam" / "nan@step1")
    weights = load_file(checkpoint / "model.safetensors")
    weights["gpt_neox.layers.0.mlp.dense_h_to_4h.weight"][0, 0] = torch.nan  # spreads to every logit
    save_file(weights, checkpoint / "model.safetensors", metadata={"format": "pt"})
    cfg = _config(tmp_path / "fam", tmp_path / "run")
    summary = run(cfg, pm=manager(), progress=False)
    assert sorted(task for _, task, _ in summary.failed) == ["t_add", "t_pick"]
    for _, _, error in summary.failed:
        assert "checkpoint 'nan@step1'" in error and "non-finite log-probabilities" in error
    with Store(cfg.out) as store:
        assert [n for (n,) in store.db.execute(
            "SELECT COUNT(*) FROM scores UNION ALL SELECT COUNT(*) FROM samples")] == [0, 0]
        assert {status for _, _, _, status in store.cells()} == {"failed"}


@pytest.mark.parametrize("text, match", [
    ('[[checkpoint]]\npath = "m"\nstep = 1\nsteps = 2\n', r"line 4.*'steps'.*Did you mean 'step'"),
    ('name = "f"\n', r"no \[\[checkpoint\]\] entries"),
    ('[[checkpoint]]\npath = "m"\nrepo = "org/m"\n', r"exactly one of 'path' or 'repo'"),
    ('[[checkpoint]]\nrepo = "org/m"\nname = "a"\n[[checkpoint]]\nrepo = "org/n"\nname = "a"\n', r"'a' twice"),
    ('name = \n', r"malformed TOML"),
    ('[[checkpoint]]\npath = "m"\ntokens = "4.2e9"\n', r"line 3\): checkpoint #1: 'tokens' must be a number"),
    ('[[checkpoint]]\npath = "m"\nstep = "abc"\n', r"line 3\): checkpoint #1: 'step' must be a whole number"),
    ('[[checkpoint]]\npath = 5\n', r"line 2\): checkpoint #1: 'path' must be a non-empty string, got 5"),
    ('[[checkpoint]]\nrepo = "org/m"\nmodel = 5\n', r"line 3\): checkpoint #1: 'model' must be a non-empty string"),
    ('[[checkpoint]]\nrepo = "a"\nstep = 1\n\n[[checkpoint]]\nrepo = "b"\nstep = 2.5\n',
     r"line 7\): checkpoint #2: 'step' must be a whole number"),
    ('[checkpoint]\npath = "m"\n', r"line 1\): \[checkpoint\] is one table.*\[\[checkpoint\]\]"),
    ('name = 5\n[[checkpoint]]\npath = "m"\n', r"line 1\): 'name' must be a string"),
    ('[[checkpoint]]\nrepo = "a"\ntokens = nan\n', r"line 3\): checkpoint #1: 'tokens' must be a number"),
])
def test_bad_family_file_is_refused_with_location(text, match, tmp_path):
    family = tmp_path / "family.toml"
    family.write_text(text)
    with pytest.raises(ValueError, match=match):
        run(_config(family, tmp_path / "run"), pm=manager(), progress=False)
    assert not (tmp_path / "run").exists()  # refused before the run directory is made


def test_a_failed_retry_keeps_results_already_stored(tmp_path):
    from emergence.store import Score

    with Store(tmp_path) as store:
        store.write_cell("ck", "task", "1", "p", [Score("", "acc", 0.5, 0.1, 10)], [], 1.0)
        store.write_failure("ck", "task", "1", "p", "boom")
        assert store.done_cells() == {("ck", "task")}
        assert store.db.execute("SELECT value FROM scores").fetchall() == [(0.5,)]


def test_second_process_on_the_same_run_directory_is_refused(tmp_path):
    with Store(tmp_path):
        with pytest.raises(RunLocked, match="in use by another"):
            Store(tmp_path)
    Store(tmp_path).close()  # the lock is released on close


def test_results_settings_cannot_change_under_a_run(tiny_family_dir, tmp_path):
    cfg = _config(tiny_family_dir, tmp_path / "run", tasks=("t_pick",))
    run(cfg, pm=manager(), progress=False)
    with pytest.raises(SettingsMismatch, match="seed: stored 1234, now 7"):
        run(RunConfig(**{**cfg.__dict__, "seed": 7}), pm=manager(), progress=False)


def test_adding_a_task_evaluates_only_the_new_cells(tiny_family_dir, tmp_path):
    cfg = _config(tiny_family_dir, tmp_path / "run", tasks=("t_pick",))
    run(cfg, pm=manager(), progress=False)
    more = run(RunConfig(**{**cfg.__dict__, "tasks": ("t_pick", "t_add")}), pm=manager(), progress=False)
    assert more.evaluated == 6 and more.skipped == 6


def test_provenance_is_recorded(tiny_family_dir, tmp_path):
    import json

    cfg = _config(tiny_family_dir, tmp_path / "run", tasks=("t_pick",))
    run(cfg, pm=manager(), progress=False)
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["config"]["seed"] == 1234 and record["tasks"] == {"t_pick": "1"}
    assert record["executor"]["kind"] == "local" and record["config"]["executor"]["kind"] == "local"
    assert record["packages"]["torch"] and record["packages"]["transformers"]
    assert {p["name"] for p in record["plugins"]} >= {"huggingface", "test_tasks"}
    con = sqlite3.connect(tmp_path / "run" / "results.sqlite")
    versions = con.execute("SELECT DISTINCT task_version FROM cells").fetchall()
    assert versions == [("1",)]


def test_a_symlink_loop_in_a_family_folder_is_not_followed_twice(tmp_path):
    from emergence_plugins.local_families import family_from_folder

    root = tmp_path / "fam"
    for folder in ("m@step1", "big/step1", "big/step2"):
        (root / folder).mkdir(parents=True)
        (root / folder / "config.json").write_text("{}")
    (root / "loop").symlink_to(".")                # fam/loop/m@step1 is fam/m@step1
    (root / "alias").symlink_to("big")             # fam/alias/step1 is fam/big/step1, found first
    (root / "big" / "up").symlink_to("..")
    (root / "self").symlink_to("self")             # a link to itself: nothing to find, no error
    (root / "outside").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "config.json").write_text("{}")   # a linked-in checkpoint still counts
    family = family_from_folder(root)
    assert sorted(ck.name for ck in family.checkpoints) == ["big@step1", "big@step2", "m@step1", "outside"]
    assert {ck.repo for ck in family.checkpoints if ck.model == "big"} == {str(root / "big/step1"),
                                                                          str(root / "big/step2")}


def test_settings_pinned_by_a_run_that_finished_no_cell_can_be_corrected(tiny_family_dir, tmp_path):
    cfg = _config(tiny_family_dir, tmp_path / "run", tasks=("t_pick",), select=Selection(glob="*h32*"))
    with Store(cfg.out) as store:   # as older versions left it after `--limit 0`: every cell failed
        store.set_meta("results_settings", {**cfg.results_settings(), "limit": 0})
        store.write_failure("tiny-h32-l2@step100", "t_pick", "1", "test_tasks", "no examples")
    summary = run(cfg, pm=manager(), progress=False)
    assert summary.ok and summary.evaluated == 2
    with pytest.raises(SettingsMismatch, match="limit: stored 6, now 5"):   # once there are numbers, never
        run(RunConfig(**{**cfg.__dict__, "limit": 5}), pm=manager(), progress=False)


def test_family_file_counts_may_be_written_as_whole_floats(tmp_path):
    from emergence_plugins.local_families import family_from_toml

    path = tmp_path / "family.toml"
    path.write_text('[[checkpoint]]\nrepo = "org/m"\nstep = 2000\nparams = 1.4e9\ntokens = 4.2e9\n')
    (ck,) = family_from_toml(path).checkpoints
    assert (ck.params, ck.step, ck.tokens, ck.name) == (1_400_000_000, 2000, 4.2e9, "m@step2000")
    assert isinstance(ck.params, int)
