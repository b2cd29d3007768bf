"""Outputs are written atomically: a write that fails half-way (a kill, a full disk) leaves the old
complete file and no temporary file, concurrent writers of one path do not collide, and an
analysis folder whose writing failed is not taken for a finished one."""

import errno
import multiprocessing as mp
import pathlib

import pandas as pd
import pytest

from emergence import schema as S
from emergence.analysis.analyze import UnusableAnalysis, analyze, read_analysis, write_analysis
from emergence.export import write_table
from emergence.files import write_atomic
from emergence.report.build import ReportConfig, build_report

FAST = ReportConfig(n_boot=5, workers=1, max_tasks=1)


@pytest.fixture
def disk_full(monkeypatch):
    """``disk_full("x.csv")``: from now on, writing a file whose name contains "x.csv" (through
    Path.write_text/write_bytes or DataFrame.to_csv) writes half its bytes and fails, as on a
    full disk or a kill mid-write."""
    def fail_on(name):
        def half(path, data):
            with open(path, "wb") as f:
                f.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device", str(path))

        write_bytes, write_text, to_csv = pathlib.Path.write_bytes, pathlib.Path.write_text, pd.DataFrame.to_csv
        monkeypatch.setattr(pathlib.Path, "write_bytes", lambda self, data: half(self, data) if name in self.name
                            else write_bytes(self, data))
        monkeypatch.setattr(pathlib.Path, "write_text", lambda self, text, *a, **k: half(self, text.encode())
                            if name in self.name else write_text(self, text, *a, **k))
        monkeypatch.setattr(pd.DataFrame, "to_csv", lambda self, path=None, *a, **k:
                            half(path, to_csv(self, None, *a, **k).encode())
                            if path is not None and name in pathlib.Path(path).name else to_csv(self, path, *a, **k))
    return fail_on


def _table(values=(0.1, 0.2, 0.4, 0.7, 0.8, 0.85)):
    return pd.DataFrame({S.FAMILY: "f", S.MODEL: [f"m{i}" for i in range(len(values))],
                         S.CHECKPOINT: [f"m{i}" for i in range(len(values))],
                         S.PARAMS: [1e6 * 4.0 ** min(i, 20) for i in range(len(values))], S.TASK: "t", S.SUBTASK: "",
                         S.METRIC: "acc", S.VALUE: list(values), S.N: 1000, S.CHANCE: 0.0})


def _leftovers(folder):
    return [p.name for p in pathlib.Path(folder).rglob("*") if ".tmp" in p.name]


def test_a_failed_write_keeps_the_old_file_and_no_temporary_one(tmp_path):
    path = tmp_path / "out.txt"
    write_atomic(path, "old, complete\n")

    def half_then_fail(tmp):
        tmp.write_text("new, trunc")
        raise KeyboardInterrupt   # a kill of the process is BaseException, not Exception

    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, half_then_fail)
    assert path.read_text() == "old, complete\n" and _leftovers(tmp_path) == []
    assert write_atomic(path, b"new\n").read_bytes() == b"new\n"


def test_export_that_fails_mid_write_keeps_the_old_table(tmp_path, disk_full):
    path = tmp_path / "results.csv"
    write_table(_table(), path)
    old = path.read_bytes()
    disk_full("results.csv")
    with pytest.raises(OSError, match="No space"):
        write_table(_table(values=(0.5,) * 6), path)
    assert path.read_bytes() == old and _leftovers(tmp_path) == []


def test_a_compressed_export_is_compressed(tmp_path):
    path = write_table(_table(), tmp_path / "results.csv.gz")
    assert path.read_bytes()[:2] == b"\x1f\x8b"   # gzip, as the name says (the .tmp name hid it)
    pd.testing.assert_frame_equal(pd.read_csv(path), pd.read_csv(write_table(_table(), tmp_path / "r.csv")))


def _write_many(path, values, start, errors):
    start.wait()
    try:
        for _ in range(20):
            write_table(_table(values), path)
    except Exception as e:   # the parent reports it
        errors.put(repr(e))


def test_concurrent_exports_to_one_path_do_not_collide(tmp_path):
    path = tmp_path / "results.csv"
    ctx = mp.get_context("fork")
    start, errors = ctx.Event(), ctx.Queue()
    tables = [tuple(x / 1000 for x in range(i, i + 6000)) for i in (0, 1)]   # ~100 kB each
    procs = [ctx.Process(target=_write_many, args=(path, t, start, errors)) for t in tables]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert errors.empty(), errors.get()
    assert path.read_text() in [_table(t).to_csv(index=False) for t in tables]
    assert _leftovers(tmp_path) == []


def test_an_analysis_whose_writing_failed_is_not_valid(tmp_path, disk_full):
    df = _table()
    write_analysis(analyze(df, n_boot=5, workers=1), tmp_path)
    verdicts = (tmp_path / "verdicts.csv").read_bytes()
    assert read_analysis(tmp_path).table_sha256
    disk_full("verdicts.csv")
    with pytest.raises(OSError, match="No space"):
        write_analysis(analyze(_table(values=(0.1,) * 6), n_boot=5, workers=1), tmp_path)
    assert (tmp_path / "verdicts.csv").read_bytes() == verdicts and _leftovers(tmp_path) == []
    with pytest.raises(UnusableAnalysis, match="no manifest.json"):
        read_analysis(tmp_path)


def test_a_report_rebuild_that_fails_keeps_the_old_report(tmp_path, disk_full):
    table = tmp_path / "t.csv"
    _table().to_csv(table, index=False)
    first = build_report([table], tmp_path / "out", config=FAST)
    old = {p: p.read_bytes() for p in (first.html, first.summary, *first.figures)}
    _table(values=(0.1, 0.1, 0.1, 0.9, 0.9, 0.9)).to_csv(table, index=False)
    disk_full("report.html")
    with pytest.raises(OSError, match="No space"):
        build_report([table], tmp_path / "out", config=FAST)
    assert first.html.read_bytes() == old[first.html] and first.summary.read_bytes() == old[first.summary]
    assert all(p.exists() for p in first.figures)   # the old report's figures stay with it
    assert _leftovers(tmp_path) == []
