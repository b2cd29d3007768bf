"""Worker processes that die with their parent: a pool (or a process) started by ``analyze``,
``report``, the lab or the pool executor must not outlive a parent that was killed (``kill -9``
gives it no chance to stop them), where it would wait forever on a queue nobody writes to."""

import multiprocessing as mp
import os
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor

PR_SET_PDEATHSIG = 1   # linux/prctl.h


def process_pool(workers: int, method: str, initializer=None, initargs=()) -> ProcessPoolExecutor:
    """A ``ProcessPoolExecutor`` of ``workers`` processes started by ``method`` ("fork",
    "spawn") whose workers exit when this process does, then run ``initializer(*initargs)``."""
    return ProcessPoolExecutor(workers, mp_context=mp.get_context(method), initializer=_start_worker,
                               initargs=(os.getpid(), initializer, initargs))


def die_with_parent(parent: int) -> None:
    """Make this process exit when process ``parent`` (its parent) does. Call it first thing
    in a child. Linux: the kernel sends SIGKILL (PR_SET_PDEATHSIG); elsewhere a thread watches
    the parent's pid."""
    if not _kill_me_with_parent():
        threading.Thread(target=_watch, args=(parent,), daemon=True, name="die-with-parent").start()
    if os.getppid() != parent:   # it died before we asked: nobody will send the signal
        os._exit(1)


def _start_worker(parent, initializer, initargs):
    die_with_parent(parent)
    if initializer is not None:
        initializer(*initargs)


def _kill_me_with_parent() -> bool:
    # The signal comes when the *thread* that started this process ends; pools here are started
    # and used by one thread that waits for them, so that is when the parent is done with them.
    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent):
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)
