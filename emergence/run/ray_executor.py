"""The Ray executor: one Ray task per checkpoint; the driver alone writes the results store.

A Ray task loads its checkpoint once, evaluates the pending tasks with the same
:func:`~emergence.run.executors.evaluate_checkpoint` the local executor runs, frees the model and
returns the cells; workers never open the store. A task whose worker process dies (killed, out
of host memory, node lost) is rerun on another worker up to ``max_retries`` times. An exception
inside evaluation is already a failed cell when it reaches Ray, so it is recorded, not retried.

Ray is imported here only, and only when this executor is asked for (docs/ray.md).
"""

from collections.abc import Iterator

from tqdm.auto import tqdm

from emergence.run.config import RunConfig
from emergence.run.executors import CellResult, evaluate_checkpoint, quiet_libraries

INSTALL_HINT = "pip install 'emergence[ray]' (or pip install 'ray[default]')"


def import_ray():
    """The ray module, or an ImportError that says how to install it."""
    try:
        import ray
    except ImportError as e:
        raise ImportError(f"The Ray executor needs Ray, which is not installed ({e}). "
                          f"Install it with: {INSTALL_HINT}") from None
    return ray


class RayExecutor:
    """Joins a Ray cluster on enter, or uses the connection this process already has, and
    leaves on exit only a connection it made. ``results`` yields cells as checkpoints finish."""

    def __init__(self, config: RunConfig):
        self.config = config
        self.options = config.executor
        self.ray = import_ray()
        if self.ray.is_initialized() and self.options.address is not None:
            raise ValueError(f"This process is already connected to Ray; leave the executor address "
                             f"unset to use that connection (got {self.options.address!r})")
        self.address = None           # the cluster actually joined
        self._connected_here = False

    def __enter__(self):
        if not self.ray.is_initialized():
            # No address: RAY_ADDRESS, else a cluster `ray start` began on this machine, else a new one.
            self.ray.init(address=self.options.address)
            self._connected_here = True
        self.address = self.ray.get_runtime_context().gcs_address
        return self

    def __exit__(self, *exc):
        if self._connected_here:
            self.ray.shutdown()
            self._connected_here = False

    def describe(self) -> dict:
        """What the provenance records: the cluster joined (None when there was nothing to run)."""
        out = {"kind": "ray", "address": self.address, "requested_address": self.options.address,
               "ray": self.ray.__version__}
        if self.address is not None:
            out["nodes"] = sum(1 for node in self.ray.nodes() if node.get("Alive"))
            out["resources"] = {k: v for k, v in self.ray.cluster_resources().items() if k in ("CPU", "GPU")}
        return out

    def results(self, plan, pm, progress: bool) -> Iterator[CellResult]:
        """Submit one Ray task per (checkpoint, pending tasks) of ``plan``; yield their cells in
        the order the checkpoints finish."""
        if not plan:
            return
        self._check_gpus()
        ray = self.ray
        # As a decorator argument (not .options) num_gpus > 0 also gets Ray's max_calls=1 for GPU
        # tasks: a fresh worker process per checkpoint, so GPU memory is surely released.
        evaluate = ray.remote(num_cpus=1, num_gpus=self.options.gpus_per_worker,
                              max_retries=self.options.max_retries,
                              retry_exceptions=False)(_evaluate_on_worker)  # a raised error is a result
        tasks = {t.name: t for _, todo in plan for t in todo}
        shared = ray.put((self.config, pm, tasks))  # serialised once, not once per checkpoint
        pending = {evaluate.remote(shared, ck, [t.name for t in todo]): (ck, todo) for ck, todo in plan}
        try:
            with tqdm(total=len(pending), desc="checkpoints", unit="ckpt", disable=not progress) as bar:
                while pending:
                    (ref,), _ = ray.wait(list(pending), num_returns=1)
                    ck, todo = pending.pop(ref)
                    yield from self._cells(ref, ck, todo)
                    bar.update()
        finally:
            for ref in pending:  # the driver stopped early (interrupt, store error): stop the rest
                ray.cancel(ref, force=True)

    def _check_gpus(self):
        """Recent Ray leaves every GPU visible to a task that reserved none: on a GPU cluster such
        tasks would all pile onto the first GPU, unseen by the scheduler."""
        gpus = self.ray.cluster_resources().get("GPU", 0)
        if gpus and not self.options.gpus_per_worker and self.config.backend.device != "cpu":
            raise ValueError(f"The Ray cluster has {gpus:g} GPUs but gpus_per_worker is 0, so Ray would "
                             "reserve none for the checkpoints it runs: pass --gpus-per-worker 1 (or a "
                             "fraction to share a GPU), or --device cpu to evaluate on CPUs")

    def _cells(self, ref, ck, todo) -> list[CellResult]:
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayError as e:
            error = _ray_failure(e, self.options.max_retries)
            return [CellResult(ck, task.name, error=error) for task in todo]


def _evaluate_on_worker(shared, checkpoint, task_names) -> list[CellResult]:
    """Runs in a Ray worker: one checkpoint, its pending tasks, the model freed before returning."""
    quiet_libraries()  # worker output reaches the driver interleaved; per-file bars there are noise
    config, pm, tasks = shared
    return list(evaluate_checkpoint(checkpoint, [tasks[name] for name in task_names], config, pm))


def _ray_failure(error, max_retries: int) -> str:
    cause = getattr(error, "cause", None)  # an exception raised in the task itself, not retried
    if cause is not None:
        return f"on a Ray worker: {type(cause).__name__}: {_first_line(cause)}"
    return (f"Ray could not finish this checkpoint (a dead worker is retried {max_retries} times): "
            f"{type(error).__name__}: {_first_line(error)}")


def _first_line(error) -> str:
    return next((line for line in str(error).splitlines() if line.strip()), "")
