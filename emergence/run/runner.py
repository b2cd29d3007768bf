"""Run a family x tasks sweep into a run directory, resumably.

The plan loads each checkpoint once, runs every task still missing for it, writes each
finished cell in one transaction and frees the model before the next checkpoint. A cell that
fails (a checkpoint that will not load, a task that raises) is recorded with its error and
the sweep goes on; a rerun retries failed cells and skips finished ones.

An executor (:mod:`emergence.run.executors`: here, a process pool, or Ray) evaluates the
checkpoints and yields their cells; this process alone writes them to the store.

Cells are keyed by checkpoint name, so each checkpoint's identity (:mod:`emergence.run.identity`)
is recorded with them: a checkpoint whose weights are not the ones its stored cells were made
from is refused, naming both, or with ``reevaluate_changed`` evaluated again; never reused.
"""

import contextlib
import json
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from emergence.run.config import RunConfig
from emergence.run.executors import CellResult, LocalExecutor, PoolExecutor
from emergence.run.identity import cached_commit, checkpoint_identity, describe, differences, merge
from emergence.families import Family, select
from emergence.plugins import collect, plugin_info, plugin_manager
from emergence.files import write_atomic
from emergence.store import Store

PACKAGES = ("emergence", "torch", "transformers", "accelerate", "lm_eval", "tokenizers", "pandas",
            "pluggy", "numpy", "scipy", "ray")


class CheckpointChanged(ValueError):
    """A checkpoint's stored cells were made from other weights (or another family) than it has now."""


@dataclass
class RunSummary:
    run_dir: Path
    cells: int = 0
    evaluated: int = 0
    skipped: int = 0
    failed: list = field(default_factory=list)   # (checkpoint, task, error)
    changed: list = field(default_factory=list)  # checkpoints whose old cells were dropped (reevaluate_changed)
    changed_versions: list = field(default_factory=list)  # (checkpoint, task) cells of an older task version, dropped

    @property
    def ok(self) -> bool:
        return not self.failed


def resolve_family(spec: str, pm, registry) -> Family:
    """A registered family name, or whatever a ``resolve_family`` plugin makes of the spec."""
    return _resolve(spec, registry.families, pm.hook.resolve_family, registry.family)


def resolve_task(spec: str, pm, registry):
    """A registered task name, or whatever a ``resolve_task`` plugin makes of the spec
    (the built-in ``lmeval`` plugin takes ``lm-eval:<name>``)."""
    return _resolve(spec, registry.tasks, pm.hook.resolve_task, registry.task)


def run(config: RunConfig, pm=None, progress: bool = True) -> RunSummary:
    pm = pm or plugin_manager()
    registry = collect(pm)
    if not config.family:
        raise ValueError("No family given: pass --family or set `family` in the config")
    if not config.tasks:
        raise ValueError("No tasks given: pass --tasks or set `tasks` in the config")
    family = resolve_family(config.family, pm, registry)
    checkpoints = select(family, config.select)
    tasks = [resolve_task(name, pm, registry) for name in config.tasks]
    executor = make_executor(config)  # before the store: a missing Ray fails here

    summary = RunSummary(Path(config.out))
    with Store(config.out) as store:
        identities = _check_identities(store, checkpoints, config.reevaluate_changed)
        if not store.done_cells():  # no numbers yet to agree with, e.g. a bad value pinned by an older version
            store.set_meta("results_settings", config.results_settings())
        store.check_settings(config.results_settings())
        summary.changed = _record_identities(store, identities)
        summary.changed_versions = _check_task_versions(store, tasks, config.reevaluate_changed)
        done = store.done_cells()
        plan = [(ck, [t for t in tasks if (ck.name, t.name) not in done]) for ck in checkpoints]
        summary.cells = len(checkpoints) * len(tasks)
        summary.skipped = sum(len(tasks) - len(todo) for _, todo in plan)
        plan = [(ck, todo) for ck, todo in plan if todo]
        by_name = {t.name: t for t in tasks}
        with executor if plan else contextlib.nullcontext():  # nothing to do: connect to nothing
            _write_provenance(store, config, pm, tasks, family, executor.describe())
            stored = None
            for cell in executor.results(plan, pm, progress):
                if cell.checkpoint != stored:
                    store.put_checkpoint(cell.checkpoint)
                    _add_resolved_commit(store, cell.checkpoint.name, identities)
                    stored = cell.checkpoint
                _record(store, summary, registry, by_name[cell.task], cell)
    return summary


def make_executor(config: RunConfig):
    """The executor ``config.executor`` names; Ray is imported only when it is the one asked for."""
    if config.executor.kind == "ray":
        from emergence.run.ray_executor import RayExecutor

        return RayExecutor(config)
    if config.executor.kind == "pool":
        return PoolExecutor(config)
    return LocalExecutor(config)


def _resolve(spec, registered: dict, hook, unknown):
    """The registered object of that name, else the first plugin answer, else ``unknown(spec)``
    (which raises with "did you mean")."""
    if spec in registered:
        return registered[spec]
    found = hook(spec=spec)
    return found if found is not None else unknown(spec)


class TaskVersionChanged(ValueError):
    """Finished cells of a task were computed by another version of it."""


def _check_task_versions(store: Store, tasks, reevaluate: bool) -> list:
    """A task's version says what it measures: finished cells of another version are never
    reused. Refused, naming the versions, unless ``reevaluate``: then they are dropped (in one
    transaction) and evaluated again. Returns the dropped cells."""
    current = {t.name: str(t.version) for t in tasks}
    stale = {cell: v for cell, v in store.done_versions().items()
             if cell[1] in current and v is not None and v != current[cell[1]]}
    if stale and not reevaluate:
        lines = []
        for task in sorted({task for _, task in stale}):
            old = sorted({v for (_, t), v in stale.items() if t == task})
            n = sum(1 for _, t in stale if t == task)
            lines.append(f"  task {task!r} is version {current[task]} now; {n} finished cell(s) hold version(s) "
                         f"{', '.join(old)}")
        raise TaskVersionChanged(
            f"{store.run_dir} holds results of other versions of its tasks:\n" + "\n".join(lines)
            + "\nA new version may measure something else, so they are not reused. Use another --out, or "
              "pass --reevaluate-changed to evaluate those cells again (their stored rows are replaced).")
    if stale:
        store.discard_cells(sorted(stale))
    return sorted(stale)


def _check_identities(store: Store, checkpoints, reevaluate: bool) -> dict:
    """{name: (identity to record, whether its stored cells are another checkpoint's, stored
    identity)}; refuses, naming both identities, a checkpoint with finished cells whose identity
    changed, unless ``reevaluate``."""
    stored = store.identities()
    with_cells = {ck for ck, _ in store.done_cells()}
    out, changed = {}, []
    for ck in checkpoints:
        old = stored.get(ck.name)
        current = checkpoint_identity(ck, previous=old)
        diff = differences(old, current) if old and ck.name in with_cells else []
        if diff:
            changed.append(f"  {ck.name!r} ({', '.join(diff)} differ): stored cells from {describe(old)}; "
                           f"now {describe(current)}")
        # Unchanged: keep what only the stored identity knew. Changed, or no cells: the current one.
        out[ck.name] = (current if diff or ck.name not in with_cells else merge(old, current), bool(diff), old)
    if changed and not reevaluate:
        raise CheckpointChanged(
            f"Run directory {store.run_dir} holds cells of {len(changed)} checkpoint(s) that are not the ones "
            "now given under the same name:\n" + "\n".join(changed[:10]) + ("\n  ..." if len(changed) > 10 else "")
            + "\nUse another --out, or pass --reevaluate-changed to evaluate them again (their stored cells "
            "are replaced).")
    return out


def _record_identities(store: Store, identities: dict) -> list[str]:
    """Write the identities that are new or changed; drop the cells of changed checkpoints."""
    new = {name: identity for name, (identity, changed, old) in identities.items() if changed or identity != old}
    discard = [name for name, (_, changed, _) in identities.items() if changed]
    if new:
        store.set_identities(new, discard=discard)
    return discard


def _add_resolved_commit(store: Store, name: str, identities: dict):
    """A hub checkpoint evaluated for the first time is in the cache now: record its commit."""
    identity = identities[name][0]
    if identity.get("kind") == "hub" and identity.get("sha") is None:
        sha = cached_commit(identity["repo"], identity.get("revision"))
        if sha:
            identities[name] = ({**identity, "sha": sha}, False, identity)
            store.set_identities({name: identities[name][0]})


def _record(store, summary, registry, task, cell: CellResult):
    """Write one finished cell, done or failed; every executor's cells go through here."""
    plugin = registry.owner.get(("task", task.name))
    if cell.error is None:
        store.write_cell(cell.checkpoint.name, task.name, str(task.version), plugin,
                         cell.scores, cell.samples, cell.seconds)
        summary.evaluated += 1
    else:
        store.write_failure(cell.checkpoint.name, task.name, str(task.version), plugin, cell.error)
        summary.failed.append((cell.checkpoint.name, task.name, cell.error))


def _write_provenance(store: Store, config: RunConfig, pm, tasks, family: Family, executor: dict):
    """Everything needed to reproduce the run, in the store and as run.json beside it."""
    record = {
        "config": config.to_dict(),
        "executor": executor,
        "family": {"name": family.name, "checkpoints": len(family.checkpoints)},
        "tasks": {t.name: str(t.version) for t in tasks},
        # The few-shot count each task was run with: the run's --num-fewshot, else the task's own.
        "task_shots": {t.name: _shots(config, t) for t in tasks},
        "packages": package_versions(),
        "plugins": [{"name": p.name, "distribution": p.distribution, "version": p.version}
                    for p in plugin_info(pm)],
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "git_sha": _git_sha(),
        "command": sys.argv,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    history = store.get_meta("invocations", [])
    history.append(record)
    store.set_meta("invocations", history)
    store.set_meta("provenance", record)
    write_atomic(store.run_dir / "run.json", json.dumps(record, indent=2, default=str))


def _shots(config: RunConfig, task) -> int | None:
    if config.num_fewshot is not None:
        return config.num_fewshot
    shots = getattr(task, "num_fewshot", None)
    return shots if isinstance(shots, int) and not isinstance(shots, bool) else None


def package_versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name.replace("_", "-") if name == "lm_eval" else name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _git_sha() -> str | None:
    """The sha of the emergence source tree, when it is a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None
