"""Process parallelism for the analysis' CPU-bound loops (curve verdicts, bootstrap draws).

One function, ``map_chunks``: results come back in input order and depend only on the items,
never on how many workers computed them, so seeds belong to the items (a curve's own seed, a
bootstrap draw's indices drawn up front), not to the workers.
"""

import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor


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
    parts = [items[i::n] for i in range(n)]
    # fork: workers inherit the imported modules; only each chunk's items are pickled
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
        done = list(pool.map(fn, parts))
    out = [None] * len(items)
    for i, part in enumerate(done):
        out[i::n] = part
    return out
