"""No orphans: SIGKILL a process while its workers run (the analysis' fork pool and background
fit, the report's figure pool, the pool executor's and the lab's spawned workers) and every worker is gone
within seconds, instead of waiting forever on a queue nobody writes to."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

CHILD = Path(__file__).parent / "orphan_child.py"
WORKERS = {"map_chunks": 2, "watchdog": 2, "background": 1, "figures": 2, "pool": 2, "lab": 2}


@pytest.mark.parametrize("kind", list(WORKERS))
def test_workers_die_with_their_killed_parent(kind, tmp_path):
    parent = subprocess.Popen([sys.executable, str(CHILD), str(tmp_path), kind])
    try:
        _wait(lambda: len(list(tmp_path.glob("ready-*"))) >= WORKERS[kind] or parent.poll() is not None, 120)
        assert parent.poll() is None, f"the {kind} script exited with {parent.returncode}"
        workers = _descendants(parent.pid)
        assert {int(p.name.split("-")[1]) for p in tmp_path.glob("ready-*")} <= set(workers)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        _wait(lambda: not [p for p in workers if _alive(p)], 5)
        orphans = [p for p in workers if _alive(p)]
        assert not orphans, f"{kind}: workers {orphans} outlived their killed parent"
    finally:
        parent.kill()
        for pid in _descendants(parent.pid) if parent.poll() is None else []:
            os.kill(pid, signal.SIGKILL)
        for pid in [int(p.name.split("-")[1]) for p in tmp_path.glob("ready-*")]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)   # an orphan of a failed test: ours, by its pid


def _wait(done, seconds):
    end = time.monotonic() + seconds
    while not done() and time.monotonic() < end:
        time.sleep(0.05)


def _descendants(pid) -> list[int]:
    """Every process below ``pid`` (psutil when installed, else /proc)."""
    try:
        import psutil

        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except ImportError:
        children = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        out, todo = [], [pid]
        while todo:
            kids = children.get(todo.pop(), [])
            out += kids
            todo += kids
        return out


def _alive(pid) -> bool:
    """Running, not a zombie waiting to be reaped by whoever adopted it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
