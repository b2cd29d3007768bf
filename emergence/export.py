"""Export a run directory as one tidy long table (schema in schema.py and the README)."""

import bz2
import gzip
import lzma
from functools import partial
from pathlib import Path

import pandas as pd

from emergence import schema as S
from emergence.files import write_atomic
from emergence.store import DB_NAME, Store

LOSS_METRIC = "nats_per_token"
_COMPRESS = {".gz": partial(gzip.compress, mtime=0), ".bz2": bz2.compress, ".xz": lzma.compress}  # by suffix


def tidy_table(run_dir, loss_task: str | None = None) -> pd.DataFrame:
    """One row per (checkpoint, task, subtask, metric) of the finished cells of ``run_dir``.

    ``loss`` is the checkpoint's held-out loss in nats/token from ``loss_task`` (by default the
    run's configured loss task), empty where that task was not run.
    """
    run_dir = Path(run_dir)
    if not (run_dir / DB_NAME).exists():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no {DB_NAME})")
    with Store(run_dir, lock=False) as store:
        if loss_task is None:
            loss_task = (store.get_meta("provenance") or {}).get("config", {}).get("loss_task", "heldout_loss")
        # A store written before metric metadata was stored has no such columns: empty = unknown.
        have = store.score_columns()
        kind, better = (f"s.{c}" if c in have else "NULL" for c in ("kind", "higher_is_better"))
        df = pd.read_sql_query(
            f"""SELECT c.family, c.model, s.checkpoint, c.params, c.params_nonembed, c.tokens, c.step,
                      c.flops, s.task, s.subtask, s.metric, s.value, s.stderr, s.n, s.chance,
                      {kind} AS {S.METRIC_KIND}, {better} AS {S.HIGHER_IS_BETTER},
                      k.task_version AS {S.TASK_VERSION}
               FROM scores s
               JOIN cells k ON k.checkpoint = s.checkpoint AND k.task = s.task AND k.status = 'done'
               JOIN checkpoints c ON c.name = s.checkpoint
               ORDER BY c.family, c.model, c.step, s.checkpoint, s.task, s.subtask, s.metric""",
            store.db)
    loss = df[(df[S.TASK] == loss_task) & (df[S.SUBTASK] == "") & (df[S.METRIC] == LOSS_METRIC)]
    df[S.LOSS] = df[S.CHECKPOINT].map(loss.set_index(S.CHECKPOINT)[S.VALUE])
    df = df[list(S.TIDY_COLUMNS)]
    for col in (S.PARAMS, S.PARAMS_NONEMBED, S.STEP, S.N):
        df[col] = pd.to_numeric(df[col]).astype("Int64")
    for col in (S.TOKENS, S.FLOPS, S.VALUE, S.STDERR, S.CHANCE, S.LOSS):
        df[col] = pd.to_numeric(df[col]).astype("float64")
    df[S.METRIC_KIND] = df[S.METRIC_KIND].astype(object).where(df[S.METRIC_KIND].notna(), None)
    df[S.HIGHER_IS_BETTER] = pd.to_numeric(df[S.HIGHER_IS_BETTER]).astype("boolean")
    return df


def write_table(df: pd.DataFrame, path, fmt: str | None = None) -> Path:
    """Write atomically as csv or parquet (by ``fmt`` or the file suffix)."""
    path = Path(path)
    fmt = fmt or ("parquet" if path.suffix == ".parquet" else "csv")
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"Unknown format {fmt!r}: use csv or parquet")
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        # Compressed here: pandas would infer none from the temporary name (or put it in a gzip header).
        write_atomic(path, _COMPRESS.get(path.suffix, bytes)(df.to_csv(index=False).encode("utf-8")))
        return path

    def write_parquet(tmp):
        try:
            df.to_parquet(tmp, index=False)
        except ImportError as e:
            raise ImportError("Parquet needs pyarrow: pip install 'emergence[parquet]'") from e

    write_atomic(path, write_parquet)
    return path
