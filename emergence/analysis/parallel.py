"""Process parallelism for the analysis' CPU-bound loops (curve verdicts, bootstrap draws).

One function, ``map_chunks``: results come back in input order and depend only on the items,
never on how many workers computed them, so seeds belong to the items (a curve's own seed, a
bootstrap draw's indices drawn up front), not to the workers. The workers (and ``Background``'s
process) exit when this process dies, killed or not (``emergence.workers``).
"""

import multiprocessing as mp
import os
from functools import partial

from emergence.workers import die_with_parent, process_pool


def cpus() -> int:
    """CPUs this process may run on (the affinity mask, e.g. under taskset), else all."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def map_chunks(fn, items, *, workers: int = 0, chunk: int = 64, min_items: int = 2) -> list:
    """``fn(list of items) -> list of results`` over ``items`` in ``workers`` processes (0: one
    per CPU; 1: here), flattened in input order. Runs here when there are fewer than
    ``min_items`` items (a pool costs ~0.1 s), when fork is unavailable, or inside a daemonic
    process (which may not start children)."""
    items = list(items)
    workers = min(workers or cpus(), max(1, len(items) // chunk))
    if (workers <= 1 or len(items) < min_items or "fork" not in mp.get_all_start_methods()
            or mp.current_process().daemon):
        return list(fn(items))
    # Interleaved chunks even out the cost: neighbouring items (one task's metrics, one
    # family's curves) tend to cost alike. Several chunks per worker absorb the rest.
    n = max(workers * 4, len(items) // chunk)
    # fork: the workers inherit the imported modules and the items themselves, so only each
    # chunk's place and its results are pickled (pickling 64k curves cost the parent ~1 s).
    global _FORKED_ITEMS
    outer, _FORKED_ITEMS = _FORKED_ITEMS, items
    try:
        with process_pool(workers, "fork") as pool:
            done = list(pool.map(partial(_run_part, fn), [range(i, len(items), n) for i in range(n)]))
    finally:
        _FORKED_ITEMS = outer
    out = [None] * len(items)
    for i, part in enumerate(done):
        out[i::n] = part
    return out


_FORKED_ITEMS = None   # map_chunks' items, as its forked workers see them


def _run_part(fn, where):
    return fn([_FORKED_ITEMS[i] for i in where])


class Background:
    """``fn(*args)`` in a forked process while this one goes on; ``result()`` waits for it and
    returns its value (or raises its exception). The arguments are inherited by the fork, not
    pickled; only the result travels back. Runs at ``result()`` time, here, when fork is
    unavailable or this process may not start children."""

    def __init__(self, fn, *args):
        self._call = (fn, args)
        self._proc = self._conn = None
        if "fork" in mp.get_all_start_methods() and not mp.current_process().daemon:
            ctx = mp.get_context("fork")
            self._conn, child = ctx.Pipe(duplex=False)
            self._proc = ctx.Process(target=_send_result, args=(os.getpid(), child, fn, args), daemon=True)
            self._proc.start()
            child.close()

    def result(self):
        if self._proc is None:
            fn, args = self._call
            return fn(*args)
        try:
            ok, value = self._conn.recv()
        except EOFError:
            raise RuntimeError(f"background process for {self._call[0].__name__} died "
                               f"(exit code {self._proc.exitcode})") from None
        finally:
            self._proc.join()
            self._conn.close()
        if not ok:
            raise value
        return value


def _send_result(parent, conn, fn, args):
    die_with_parent(parent)
    try:
        conn.send((True, fn(*args)))
    except BaseException as e:   # the parent re-raises it
        conn.send((False, e))
    finally:
        conn.close()
