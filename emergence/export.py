"""Export a run directory as one tidy long table (schema in schema.py and the README), and
salvage the intact cells of a damaged one."""

import bz2
import gzip
import lzma
import sqlite3
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pandas as pd

from emergence import schema as S
from emergence.files import write_atomic
from emergence.store import Store

LOSS_METRIC = "nats_per_token"
SALVAGED_NAME = "results.salvaged"
_COMPRESS = {".gz": partial(gzip.compress, mtime=0), ".bz2": bz2.compress, ".xz": lzma.compress}  # by suffix
_ROWS = """SELECT c.family, c.model, s.checkpoint, c.params, c.params_nonembed, c.tokens, c.step,
                  c.flops, s.task, s.subtask, s.metric, s.value, s.stderr, s.n, s.chance,
                  {kind} AS {metric_kind}, {better} AS {higher_is_better}, k.task_version AS {task_version}
           FROM scores s
           JOIN cells k ON k.checkpoint = s.checkpoint AND k.task = s.task AND k.status = 'done'
           JOIN checkpoints c ON c.name = s.checkpoint
           {where}
           ORDER BY c.family, c.model, c.step, s.checkpoint, s.task, s.subtask, s.metric"""
_ORDER = [S.FAMILY, S.MODEL, S.STEP, S.CHECKPOINT, S.TASK, S.SUBTASK, S.METRIC]


@dataclass
class Salvage:
    """What ``salvage_table`` recovered, and what it could not."""
    table: pd.DataFrame
    cells: int                                      # done cells the store lists
    lost: list = field(default_factory=list)        # (checkpoint, task, why): not in the table
    damaged_samples: list = field(default_factory=list)  # (checkpoint, task, why): scores kept
    unverified: int = 0                             # kept, but written before cells had digests

    def summary(self) -> str:
        kept = self.cells - len(self.lost)
        lines = [f"salvaged {kept} of {self.cells} cells ({len(self.table)} rows); lost {len(self.lost)}"]
        lines += [f"  LOST {ck} / {task}: {why}" for ck, task, why in self.lost]
        lines += [f"  samples damaged (its scores are intact and kept) {ck} / {task}: {why}"
                  for ck, task, why in self.damaged_samples]
        if self.unverified:
            lines.append(f"  {self.unverified} cells were written before cells had digests: kept, unverified")
        return "\n".join(lines)


def tidy_table(run_dir, loss_task: str | None = None) -> pd.DataFrame:
    """One row per (checkpoint, task, subtask, metric) of the finished cells of ``run_dir``.

    ``loss`` is the checkpoint's held-out loss in nats/token from ``loss_task`` (by default the
    run's configured loss task), empty where that task was not run. A damaged store raises
    ``StoreDamaged`` (what is damaged, and how to salvage the rest) rather than give numbers.
    """
    with Store(run_dir, lock=False) as store:
        store.check(tables=("scores",))  # what the table is made of; a run checks the samples too
        loss_task = loss_task or _loss_task(store)
        df = pd.read_sql_query(_rows_sql(store, where=""), store.db)
        shots = task_shots(store)
    return _tidy(df, loss_task, shots)


def salvage_table(run_dir, loss_task: str | None = None) -> Salvage:
    """The tidy table of the cells of ``run_dir`` that are still intact, read cell by cell: a
    cell whose scores cannot be read, or differ from what was written, is left out and listed.
    Writes nothing; the damaged store stays as it is."""
    with Store(run_dir, lock=False) as store:
        try:
            cells = list(store.db.execute("SELECT checkpoint, task FROM cells WHERE status = 'done'"))
        except sqlite3.DatabaseError as e:
            raise RuntimeError(f"{store.path}: even its list of cells is unreadable ({e}); what SQLite can still "
                               f"read is recovered by `sqlite3 {store.path} .recover` (docs/store.md)") from e
        try:
            loss_task = loss_task or _loss_task(store)
        except (sqlite3.DatabaseError, ValueError):
            loss_task = "heldout_loss"
        salvage, frames = Salvage(table=pd.DataFrame(), cells=len(cells)), []
        for ck, task in cells:
            try:
                damage = store.cell_damage(ck, task)
                has_digest = store.has_digest(ck, task)
                rows = pd.read_sql_query(_rows_sql(store, where="WHERE s.checkpoint = ? AND s.task = ?"),
                                         store.db, params=(ck, task))
            except (sqlite3.DatabaseError, pd.errors.DatabaseError, UnicodeDecodeError) as e:
                salvage.lost.append((ck, task, f"unreadable ({e})"))
                continue
            if "scores" in damage:
                salvage.lost.append((ck, task, f"its scores {damage['scores']}"))
                continue
            if "samples" in damage:
                salvage.damaged_samples.append((ck, task, f"its samples {damage['samples']}"))
            salvage.unverified += not has_digest
            frames.append(rows)
        if not frames:
            frames.append(pd.read_sql_query(_rows_sql(store, where="WHERE 0"), store.db))
        try:
            shots = task_shots(store)
        except (sqlite3.DatabaseError, ValueError):
            shots = {}
    # Cell by cell, then in the order tidy_table gives (SQLite sorts NULLs first).
    df = pd.concat(frames, ignore_index=True).sort_values(_ORDER, na_position="first", kind="mergesort")
    salvage.table = _tidy(df, loss_task, shots)
    return salvage


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


def task_shots(store: Store) -> dict:
    """task -> the few-shot count its cells were run with, from the runs' provenance: each run
    records it per task; a run that predates that gives its --num-fewshot where it set one."""
    shots = {}
    for record in store.get_meta("invocations", []) or []:
        fixed = (record.get("config") or {}).get("num_fewshot")
        for task in record.get("tasks") or {}:
            value = (record.get("task_shots") or {}).get(task, fixed)
            if value is not None:
                shots[task] = value
    return shots


def _loss_task(store: Store) -> str:
    return (store.get_meta("provenance") or {}).get("config", {}).get("loss_task", "heldout_loss")


def _rows_sql(store: Store, where: str) -> str:
    # A store written before metric metadata was stored has no such columns: empty = unknown.
    have = store.score_columns()
    kind, better = (f"s.{c}" if c in have else "NULL" for c in ("kind", "higher_is_better"))
    return _ROWS.format(kind=kind, better=better, metric_kind=S.METRIC_KIND, higher_is_better=S.HIGHER_IS_BETTER,
                        task_version=S.TASK_VERSION, where=where)


def _tidy(df: pd.DataFrame, loss_task: str, shots: dict | None = None) -> pd.DataFrame:
    df = df.copy()
    df[S.N_SHOT] = df[S.TASK].map(shots or {})
    df[S.SETTING] = ""   # our runs have one prompt per task: its default
    loss = df[(df[S.TASK] == loss_task) & (df[S.SUBTASK] == "") & (df[S.METRIC] == LOSS_METRIC)]
    df[S.LOSS] = df[S.CHECKPOINT].map(loss.set_index(S.CHECKPOINT)[S.VALUE])
    df = df[list(S.TIDY_COLUMNS)]
    for col in (S.PARAMS, S.PARAMS_NONEMBED, S.STEP, S.N, S.N_SHOT):
        df[col] = pd.to_numeric(df[col]).astype("Int64")
    for col in (S.TOKENS, S.FLOPS, S.VALUE, S.STDERR, S.CHANCE, S.LOSS):
        df[col] = pd.to_numeric(df[col]).astype("float64")
    df[S.METRIC_KIND] = df[S.METRIC_KIND].astype(object).where(df[S.METRIC_KIND].notna(), None)
    df[S.HIGHER_IS_BETTER] = pd.to_numeric(df[S.HIGHER_IS_BETTER]).astype("boolean")
    return df.reset_index(drop=True)
