"""The results store on its own: creating, locking, checking itself, salvaging what is readable.

Stores here are written with ``Store.write_cell`` directly (no model), so each test takes
milliseconds; test_kill.py and test_runner.py cover the store under a real run.
"""

import threading

import pytest

from emergence.export import tidy_table
from emergence.store import LOCK_NAME, RunLocked, Store


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
