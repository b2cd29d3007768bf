"""Run configuration: documented defaults in dataclasses, small TOML overrides, strict keys.

Defaults live once, here. A TOML file and command-line flags override them; an unknown key
is an error that names the key, its line and the closest known key.
"""

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

from emergence.families import Selection
from emergence.names import at_line, read_toml, unknown_message

EXECUTORS = ("local", "pool", "ray")
# What resolve_dtype (run/devices.py) accepts, listed here so a typo is refused before torch loads.
DTYPES = ("auto", "float32", "bfloat16", "float16", "float64", "float", "half", "double")


class ConfigError(ValueError):
    """A bad setting; ``key`` names it, so that a TOML file's error can give its line."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class BackendOptions:
    device: str = "auto"           # cuda > mps > cpu
    dtype: str = "auto"            # bfloat16 on GPUs that support it, float32 on CPU
    batch_size: int | str = "auto"  # full context windows of tokens per forward pass; "auto" starts high and halves on OOM
    max_batch_size: int = 64       # where "auto" starts
    device_map: str | None = None  # "auto": shard a model too big for one GPU (accelerate)
    max_length: int | None = None  # context window; None = the model's own
    allow_pickle: bool = False     # safetensors only: pickle weights can run code when loaded
    trust_remote_code: bool = False  # never run a repository's Python unless asked
    # With device_map: the most each device may hold, {0 = "70GiB", 1 = "70GiB", cpu = "200GiB"};
    # what does not fit is offloaded to disk inside the run directory. None = all free memory.
    max_memory: dict | None = None

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ConfigError(f"[backend] {unknown_message('dtype', self.dtype, DTYPES)}", key="dtype")
        for key in ("max_length", "max_batch_size"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ConfigError(f"[backend] {key} must be a positive number of tokens/rows, got {value!r}", key=key)
        if self.max_memory is None:
            return
        if not isinstance(self.max_memory, dict):
            raise ConfigError(f"[backend] max_memory must be a table of device = size, e.g. "
                              f'{{0 = "70GiB", cpu = "200GiB"}}; got {self.max_memory!r}')
        if not self.device_map:  # without a device map accelerate never sees the caps
            raise ConfigError('[backend] max_memory only applies with device_map = "auto": set both or remove it')
        for device, size in self.max_memory.items():
            if not re.fullmatch(r"(cuda:)?\d+|cpu|mps|disk", str(device)) or not isinstance(size, (str, int)):
                raise ConfigError(f"[backend] max_memory: {device!r} = {size!r} is not a device (a GPU index, "
                                  'cpu, mps or disk) with a size ("70GiB" or bytes)')


@dataclass(frozen=True)
class ExecutorOptions:
    """Where checkpoints are evaluated; never changes the numbers (docs/ray.md)."""

    kind: str = "local"            # "local": in this process; "pool": worker processes on this
                                   # machine; "ray": one Ray task per checkpoint
    workers: int = 0               # pool processes; 0 = one per CPU
    address: str | None = None     # Ray cluster to join ("auto", "10.0.0.1:6379"); None = find or start one
    gpus_per_worker: float = 0.0   # GPUs a Ray task reserves; 0 = CPU only, 0.5 = two per GPU
    max_retries: int = 3           # reruns of a checkpoint whose Ray worker process died

    def __post_init__(self):
        if self.kind not in EXECUTORS:
            raise ConfigError(unknown_message("executor", self.kind, EXECUTORS))
        if self.gpus_per_worker < 0 or self.max_retries < 0:
            raise ConfigError(f"[executor] gpus_per_worker and max_retries must be >= 0, got "
                              f"{self.gpus_per_worker!r} and {self.max_retries!r}")
        if self.gpus_per_worker > 1 and self.gpus_per_worker != int(self.gpus_per_worker):
            raise ConfigError(f"[executor] gpus_per_worker above 1 must be a whole number (Ray's rule), "
                              f"got {self.gpus_per_worker!r}")
        if self.workers < 0:
            raise ConfigError(f"[executor] workers must be >= 0, got {self.workers!r}")
        # A setting of another executor would be silently ignored: refuse it.
        foreign = [f.name for f in dataclasses.fields(self)
                   if f.name not in _EXECUTOR_KEYS[self.kind] and getattr(self, f.name) != f.default]
        if foreign:
            owners = sorted({k for k, keys in _EXECUTOR_KEYS.items() for f in foreign if f in keys})
            raise ConfigError(f"[executor] {', '.join(foreign)} only apply to the {' or '.join(owners)} "
                              f"executor: set kind accordingly (--executor) or remove them")


_EXECUTOR_KEYS = {"local": {"kind"}, "pool": {"kind", "workers"},
                  "ray": {"kind", "address", "gpus_per_worker", "max_retries"}}


@dataclass(frozen=True)
class RunConfig:
    family: str = ""               # registered name, a folder of checkpoints, or a family TOML
    tasks: tuple[str, ...] = ()
    out: str = "runs/default"      # run directory: results store, resolved config, provenance
    select: Selection = field(default_factory=Selection)
    seed: int = 1234               # example generation and few-shot sampling
    limit: int | None = None       # examples per task; None = every example the task has
    num_fewshot: int | None = None  # None = each task's own default
    loss_task: str = "heldout_loss"  # its nats/token fill the tidy table's `loss` column
    backend: BackendOptions = field(default_factory=BackendOptions)
    executor: ExecutorOptions = field(default_factory=ExecutorOptions)
    # A checkpoint whose weights (or family) are not the ones its stored cells were made from is
    # refused; true evaluates it again instead, replacing those cells. Never changes the numbers.
    reevaluate_changed: bool = False

    def __post_init__(self):
        # Checked here, before any run directory exists: a bad value must not be pinned by a run.
        if self.limit is not None and (not isinstance(self.limit, int) or isinstance(self.limit, bool)
                                       or self.limit < 1):
            raise ConfigError(f"limit must be a positive number of examples per task (leave it unset for "
                              f"all of them), got {self.limit!r}", key="limit")
        if self.num_fewshot is not None and (not isinstance(self.num_fewshot, int) or self.num_fewshot < 0):
            raise ConfigError(f"num_fewshot must be 0 or more, got {self.num_fewshot!r}", key="num_fewshot")
        twice = sorted({t for t in self.tasks if self.tasks.count(t) > 1})
        if twice:
            raise ConfigError(f"tasks lists {', '.join(map(repr, twice))} more than once", key="tasks")

    def results_settings(self) -> dict:
        """Settings that change the numbers; a run directory keeps one value of each.
        Execution-only settings (the executor) stay out, so one run may mix executors."""
        return {"seed": self.seed, "limit": self.limit, "num_fewshot": self.num_fewshot,
                "dtype": self.backend.dtype, "max_length": self.backend.max_length}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def load_config(path: str | Path) -> RunConfig:
    """Read a TOML run config; every key is checked against the dataclass fields."""
    path = Path(path)
    data, text = read_toml(path, ConfigError)
    return from_dict(data, source=path, text=text)


SECTIONS = {"select": Selection, "backend": BackendOptions, "executor": ExecutorOptions}


def from_dict(data: dict, source="config", text: str = "") -> RunConfig:
    top = {}
    for key, value in data.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: {key!r} must be a table ([{key}])")
            top[key] = _build(SECTIONS[key], value, f"[{key}]", source, text)
        else:
            top[key] = value
    return _build(RunConfig, top, "top level", source, text)


def with_overrides(config: RunConfig, **changes) -> RunConfig:
    """Apply flags that were given (None = not given) on top of a config; ``backend_dtype``
    sets ``dtype`` in [backend], and likewise for every section."""
    given = {k: v for k, v in changes.items() if v is not None}
    prefixes = tuple(f"{name}_" for name in SECTIONS)
    top = {k: v for k, v in given.items() if not k.startswith(prefixes)}
    for name in SECTIONS:
        fields = {k[len(name) + 1:]: v for k, v in given.items() if k.startswith(f"{name}_")}
        top[name] = dataclasses.replace(getattr(config, name), **fields)
    return dataclasses.replace(config, **top)


def _build(cls, values: dict, where: str, source, text: str):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"{source}{at_line(text, key)}: {unknown_message(f'key in {where}', key, fields)}")
        kwargs[key] = _coerce(key, value, fields[key].type, source, text)
    try:
        return cls(**kwargs)
    except ConfigError as e:  # a value check in __post_init__; say where the values came from
        line = at_line(text, e.key) if e.key in values else ""
        raise ConfigError(f"{source}{line}: {e}", key=e.key) from None


def _coerce(key, value, annotation, source, text):
    if isinstance(value, dataclasses.Field) or dataclasses.is_dataclass(value):
        return value
    ann = annotation.__name__ if isinstance(annotation, type) else str(annotation)
    ok = True
    if ann.startswith("tuple"):
        if isinstance(value, str):
            value = [value]
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        value = tuple(value) if ok else value
    elif ann == "bool":
        ok = isinstance(value, bool)
    elif ann.startswith("int | str"):
        ok = (isinstance(value, int) and not isinstance(value, bool) and value > 0) or value == "auto"
    elif ann.startswith("float"):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif ann.startswith("int"):
        ok = (isinstance(value, int) and not isinstance(value, bool)) or (value is None and "None" in ann)
    elif ann.startswith("str"):
        ok = isinstance(value, str) or (value is None and "None" in ann)
    if not ok:
        raise ConfigError(f"{source}{at_line(text, key)}: key {key!r} expects {ann}, got {value!r}")
    return value
