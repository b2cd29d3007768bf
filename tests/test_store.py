"""The results store on its own: creating, locking, checking itself, salvaging what is readable.

Stores here are written with ``Store.write_cell`` directly (no model), so each test takes
milliseconds; test_kill.py and test_runner.py cover the store under a real run.
"""

import sqlite3
import struct
import threading

import pandas as pd
import pytest

from emergence import cli
from emergence.export import salvage_table, tidy_table
from emergence.families import Checkpoint
from emergence.store import LOCK_NAME, RunLocked, Sample, Score, Store, StoreDamaged


def test_a_reader_never_sees_a_store_half_created(tmp_path):
    """A reader polling a run directory while a writer creates its store sees either no store
    or a complete one, never one without its tables ("no such table: meta")."""
    errors = []
    for i in range(10):
        run_dir, go = tmp_path / f"run{i}", threading.Event()
        writer = threading.Thread(target=lambda d=run_dir: (go.wait(), Store(d).close()))
        writer.start()
        go.set()
        while True:
            try:
                tidy_table(run_dir)
                break
            except FileNotFoundError:
                if not writer.is_alive() and not (run_dir / "results.sqlite").exists():
                    errors.append("the writer ended without creating the store")
                    break
                continue  # not created yet
            except Exception as e:  # noqa: BLE001 - any other error is what this test looks for
                errors.append(repr(e))
                if not writer.is_alive():
                    break
        writer.join()
    assert errors == []


def test_a_deleted_lock_file_does_not_let_a_second_writer_in(tmp_path):
    with Store(tmp_path) as first:
        (tmp_path / LOCK_NAME).unlink()  # someone tidies the run directory mid-run
        with pytest.raises(RunLocked, match="in use by another"):
            Store(tmp_path)
        first.set_meta("still", "writable")
    Store(tmp_path).close()  # released on close


def test_a_reader_creates_nothing(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        Store(tmp_path / "missing", lock=False)
    assert not (tmp_path / "missing").exists()


# ---------------------------------------------------------------------- damaged stores
PAGE = 4096  # SQLite's default page size, which the store keeps
CHECKPOINTS = [f"fam-m{m}@step{s}" for m in (1, 2) for s in (10, 20)]
TASKS = ("t_a", "t_b")
SAMPLE_MARK = b"SAMPLE-MARK"  # in one prediction of the first cell: lands in a page of the samples table
WRONG = 0.123456789             # one score of the last cell: a page of the scores table


def _write_store(run_dir):
    with Store(run_dir) as store:
        for i, name in enumerate(CHECKPOINTS):
            store.put_checkpoint(Checkpoint(family="fam", name=name, repo="r", model=name.split("@")[0],
                                            params=10 ** (i + 3), tokens=1e6, step=i))
            for task in TASKS:
                last = (name, task) == (CHECKPOINTS[-1], TASKS[-1])
                scores = [Score("", "acc", WRONG if last else 0.5 + i / 10, 0.01, 30), Score("", "bits", 1.5, None, 30)]
                first = (name, task) == (CHECKPOINTS[0], TASKS[0])
                samples = [Sample(f"{k}", "", "h" * 16, ("SAMPLE-MARK" if first and k == 7 else "") + "x" * 150,
                                  " 4", -1.5, 2, True, {"acc": 1.0}) for k in range(30)]
                store.write_cell(name, task, "1", "p", scores, samples, 1.0)


def _flip(path, offset, n=8):
    data = bytearray(path.read_bytes())
    for i in range(offset, offset + n):
        data[i] ^= 0x01  # stays ASCII: a wrong character, not an unreadable one
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["sample text", "page structure"])
def test_a_store_with_flipped_bytes_is_refused_kept_as_it_is_and_salvaged(damage, tiny_family_dir, tmp_path, capsys):
    run_dir = tmp_path / "run"
    _write_store(run_dir)
    reference = tidy_table(run_dir)
    db = run_dir / "results.sqlite"
    data = db.read_bytes()
    mark = data.index(SAMPLE_MARK)
    # Inside a record, only the digests notice; in the page's cell pointers, quick_check does.
    _flip(db, mark if damage == "sample text" else mark // PAGE * PAGE + 8)
    _flip(db, db.read_bytes().index(struct.pack(">d", WRONG)) + 7, n=1)  # a silently wrong number
    damaged = db.read_bytes()

    rc = cli.main(["run", "--family", str(tiny_family_dir), "--tasks", "copy", "--out", str(run_dir), "--limit", "1",
                   "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and f"{db} is damaged" in err and f"emergence export {run_dir} --salvage" in err
    assert "cells evaluated" not in err and db.read_bytes() == damaged
    assert cli.main(["export", str(run_dir)]) == 1
    err = capsys.readouterr().err
    assert f"{db} is damaged" in err and "--salvage" in err and not (run_dir / "results.csv").exists()

    assert cli.main(["export", str(run_dir), "--salvage"]) == 0
    out = capsys.readouterr().out
    last, first = f"{CHECKPOINTS[-1]} / {TASKS[-1]}", f"{CHECKPOINTS[0]} / {TASKS[0]}"
    assert "salvaged 7 of 8 cells" in out and f"LOST {last}: its scores differ from what was written" in out
    if damage == "sample text":
        assert f"samples damaged (its scores are intact and kept) {first}" in out
    else:  # the page holds several cells' samples: each is named, its scores are kept
        assert "samples damaged" in out or "unreadable" in out
    salvaged = pd.read_csv(run_dir / "results.salvaged.csv", keep_default_na=False, na_values=[""])
    intact = reference[(reference.checkpoint != CHECKPOINTS[-1]) | (reference.task != TASKS[-1])]
    assert len(salvaged) == len(intact) == len(reference) - 2
    pd.testing.assert_frame_equal(salvage_table(run_dir).table, intact.reset_index(drop=True))
    assert db.read_bytes() == damaged  # salvage read it, changed nothing


def test_a_sound_store_passes_its_check_and_salvages_whole(tmp_path):
    _write_store(tmp_path)
    with Store(tmp_path, lock=False) as store:
        assert store.damage() == []
    salvage = salvage_table(tmp_path)
    assert salvage.lost == [] and salvage.damaged_samples == [] and salvage.unverified == 0
    pd.testing.assert_frame_equal(salvage.table, tidy_table(tmp_path))


def test_a_store_written_before_digests_opens_resumes_and_exports(tmp_path):
    _write_store(tmp_path)
    with sqlite3.connect(tmp_path / "results.sqlite") as db:
        db.execute("DROP TABLE cell_digests")
    with Store(tmp_path) as store:  # a writer adds the table; old cells stay done, unverified
        assert len(store.done_cells()) == 8
    assert len(tidy_table(tmp_path)) == 16 and salvage_table(tmp_path).unverified == 8


def test_a_file_that_is_not_a_store_is_refused_and_kept(tmp_path):
    db = tmp_path / "results.sqlite"
    db.write_bytes(b"not a database at all" * 300)
    with pytest.raises(StoreDamaged, match=r"results.sqlite is damaged: file is not a database.*--salvage"):
        Store(tmp_path)
    assert db.read_bytes() == b"not a database at all" * 300


def test_cells_discarded_with_their_checkpoint_take_their_digests_along(tmp_path):
    _write_store(tmp_path)
    with Store(tmp_path) as store:
        store.set_identities({CHECKPOINTS[0]: {"weights": "other"}}, discard=[CHECKPOINTS[0]])
    with Store(tmp_path) as store:  # no digest is left to look like a damaged cell
        assert len(store.done_cells()) == 6 and store.damage() == []
