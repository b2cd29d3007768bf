"""The results store: one SQLite file per run directory, one transaction per finished cell.

A cell is (checkpoint, task). Its aggregate scores, per-sample records and status are written
together or not at all, so a process killed at any moment leaves either the whole cell or
none of it; a rerun finishes what is missing. One process at a time owns a run directory
(an exclusive lock on the directory itself, so deleting ``.lock`` lets no one in); a second
one is refused with a clear message. A new store is built under a temporary name and renamed
into place, so a reader sees no store or a whole one.
"""

import contextlib
import fcntl
import hashlib
import json
import os
import sqlite3
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from emergence.families import Checkpoint

DB_NAME = "results.sqlite"
LOCK_NAME = ".lock"
SCHEMA_VERSION = 2  # 2: scores carry each metric's kind and direction (added to older stores on open)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints (
    name TEXT PRIMARY KEY, family TEXT, model TEXT, size TEXT, repo TEXT, revision TEXT,
    params INTEGER, params_nonembed INTEGER, tokens REAL, step INTEGER, flops REAL);
CREATE TABLE IF NOT EXISTS cells (
    checkpoint TEXT NOT NULL, task TEXT NOT NULL, task_version TEXT, plugin TEXT,
    status TEXT NOT NULL CHECK (status IN ('done', 'failed')), error TEXT,
    seconds REAL, finished_at REAL, PRIMARY KEY (checkpoint, task));
CREATE TABLE IF NOT EXISTS scores (
    checkpoint TEXT NOT NULL, task TEXT NOT NULL, subtask TEXT NOT NULL, metric TEXT NOT NULL,
    value REAL, stderr REAL, n INTEGER, n_nonfinite INTEGER, chance REAL,
    kind TEXT, higher_is_better INTEGER,
    PRIMARY KEY (checkpoint, task, subtask, metric));
CREATE TABLE IF NOT EXISTS samples (
    checkpoint TEXT NOT NULL, task TEXT NOT NULL, example_id TEXT NOT NULL, subtask TEXT,
    prompt_hash TEXT, prediction TEXT, gold TEXT, gold_logprob REAL, gold_tokens INTEGER,
    greedy INTEGER, metrics TEXT, PRIMARY KEY (checkpoint, task, example_id));
CREATE TABLE IF NOT EXISTS cell_digests (
    checkpoint TEXT NOT NULL, task TEXT NOT NULL, scores TEXT NOT NULL, samples TEXT NOT NULL,
    PRIMARY KEY (checkpoint, task));
"""
# What each checkpoint's cells were computed from (emergence.run.identity). Stores made before it
# lack the table: their checkpoints read as "not recorded", and the writer adds it when needed.
IDENTITY_SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoint_identity (
    checkpoint TEXT PRIMARY KEY, identity TEXT NOT NULL, recorded_at REAL);
"""


# Columns added to the scores table since version 1: a writer adds them to an older store, and
# a reader of an older store (export) sees them as empty.
ADDED_SCORE_COLUMNS = {"kind": "TEXT", "higher_is_better": "INTEGER"}
SCORE_COLUMNS = ("checkpoint", "task", "subtask", "metric", "value", "stderr", "n", "n_nonfinite", "chance",
                 *ADDED_SCORE_COLUMNS)

# What a cell's digests cover: a fixed list, so that columns added later never make an old
# cell look damaged.
DIGESTED = {"scores": ("subtask, metric, value, stderr, n, n_nonfinite, chance, kind, higher_is_better",
                       "subtask, metric"),
            "samples": ("example_id, subtask, prompt_hash, prediction, gold, gold_logprob, gold_tokens, "
                        "greedy, metrics", "example_id")}
SALVAGE_HINT = "emergence export {run_dir} --salvage"
CELL_TABLES = ("scores", "samples", "cells", "cell_digests")  # every table holding a cell's rows


class RunLocked(RuntimeError):
    pass


class SettingsMismatch(ValueError):
    pass


class StoreDamaged(RuntimeError):
    """The store failed its check; the message says what is damaged and how to salvage the rest."""


@dataclass(frozen=True)
class Score:
    subtask: str
    metric: str
    value: float
    stderr: float | None
    n: int
    n_nonfinite: int = 0
    chance: float | None = None
    kind: str | None = None                # the task's Metric.kind; None = not declared
    higher_is_better: bool | None = None   # the task's Metric.higher_is_better; None = not declared


@dataclass(frozen=True)
class Sample:
    example_id: str
    subtask: str
    prompt_hash: str
    prediction: str | None
    gold: str | None
    gold_logprob: float | None
    gold_tokens: int | None
    greedy: bool | None
    metrics: dict


class Store:
    """Open (creating if needed) the store of ``run_dir``; use as a context manager. With
    ``lock=False`` it is a reader beside whichever process holds the lock: WAL lets it read
    the committed cells while a cell is being written."""

    def __init__(self, run_dir, lock: bool = True):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / DB_NAME
        self._locks = []
        if not lock:
            if not self.path.exists():  # a reader creates nothing, not even the directory
                raise FileNotFoundError(f"{self.run_dir} is not a run directory (no {DB_NAME})")
            self.db = _connect(self.path, create=False)
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._locks = _lock(self.run_dir)
        try:
            if not self.path.exists():
                _create(self.path)
            self.db = _connect(self.path)
            self.check()  # before anything is written: a damaged store is kept as it is
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")  # a finished cell survives power loss too
            self.db.executescript(SCHEMA)  # a store made by an older version gains new tables
            self._migrate()
        except BaseException:
            self.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if getattr(self, "db", None) is not None:
            self.db.close()
            self.db = None
        for fd in self._locks:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        self._locks = []

    # ------------------------------------------------------------------ integrity
    def check(self, tables=tuple(DIGESTED)):
        """Raise :class:`StoreDamaged` unless the file is sound (``PRAGMA quick_check``) and every
        done cell's rows in ``tables`` are the rows that were written (their digests). A writer
        checks everything on opening (samples take about 9 us a row); export checks the scores
        it exports."""
        damage = self.damage(tables)
        if damage:
            shown = "; ".join(damage[:5]) + (f"; and {len(damage) - 5} more" if len(damage) > 5 else "")
            raise StoreDamaged(
                f"{self.path} is damaged: {shown}. The file is left as it is and nothing is recomputed "
                f"over it. To export the cells that are still intact: "
                f"{SALVAGE_HINT.format(run_dir=self.run_dir)} (docs/store.md).")

    def damage(self, tables=tuple(DIGESTED)) -> list[str]:
        """What is damaged, in words; empty when the store is sound."""
        try:
            problems = [row[0] for row in self.db.execute("PRAGMA quick_check(20)") if row[0] != "ok"]
        except sqlite3.DatabaseError as e:  # too damaged to walk
            return [str(e)]
        if problems:
            return [p.replace("\n", " ") for p in problems]
        damage = []
        with _raw_text(self.db), _snapshot(self.db):  # a cell committed meanwhile is not half-seen
            try:
                digests = list(self.db.execute("SELECT * FROM cell_digests")) if self._has_digests() else []
            except sqlite3.DatabaseError as e:
                return [f"its cell digests are unreadable ({e})"]
            for ck, task, *stored in digests:
                damage += [f"the {table} of cell {_text(ck)} / {_text(task)} {why}"
                           for table, why in self._compare(ck, task, stored, tables).items()]
        return damage

    def cell_damage(self, checkpoint: str, task: str) -> dict[str, str]:
        """Per table, what is wrong with one cell's rows: ``{}`` when they are intact (or were
        written before cells had digests). Salvage reads a damaged store cell by cell with it."""
        if not self._has_digests():
            return {}
        with _raw_text(self.db):
            stored = self.db.execute("SELECT scores, samples FROM cell_digests WHERE checkpoint = ? AND task = ?",
                                     (checkpoint, task)).fetchone()
            return self._compare(checkpoint, task, stored) if stored else {}

    def has_digest(self, checkpoint: str, task: str) -> bool:
        return self._has_digests() and self.db.execute(
            "SELECT 1 FROM cell_digests WHERE checkpoint = ? AND task = ?", (checkpoint, task)).fetchone() is not None

    def _has_digests(self) -> bool:  # a store written by a version before digests has no such table
        return self.db.execute("SELECT 1 FROM sqlite_master WHERE name = 'cell_digests'").fetchone() is not None

    def _compare(self, checkpoint, task, stored, tables=tuple(DIGESTED)) -> dict[str, str]:
        damage = {}
        for table, digest in zip(DIGESTED, stored):
            if table not in tables:
                continue
            try:
                actual = self._digest(table, checkpoint, task)
            except sqlite3.DatabaseError as e:
                damage[table] = f"are unreadable ({e})"
                continue
            if actual != _text(digest):
                damage[table] = "differ from what was written"
        return damage

    def _digest(self, table, checkpoint, task) -> str:
        """SHA-256 of the cell's rows in ``table`` as stored (call inside ``_raw_text``). The key
        may be raw bytes: CAST makes it text again, so the primary-key index finds the rows."""
        cols, order = DIGESTED[table]
        rows = self.db.execute(f"SELECT {cols} FROM {table} WHERE checkpoint = CAST(? AS TEXT) "
                               f"AND task = CAST(? AS TEXT) ORDER BY {order}", (checkpoint, task)).fetchall()
        return hashlib.sha256(repr(rows).encode()).hexdigest()

    def _put_digests(self, checkpoint, task):
        with _raw_text(self.db):
            digests = [self._digest(table, checkpoint, task) for table in DIGESTED]
        self.db.execute("INSERT INTO cell_digests VALUES (?, ?, ?, ?)", (checkpoint, task, *digests))

    # ------------------------------------------------------------------ run metadata
    def check_settings(self, settings: dict):
        """Record the settings that change results; refuse a run directory made with others."""
        stored = self.get_meta("results_settings")
        if stored is None:
            self.set_meta("results_settings", settings)
            return
        diff = {k: (stored.get(k), v) for k, v in settings.items() if stored.get(k) != v}
        if diff:
            detail = ", ".join(f"{k}: stored {a!r}, now {b!r}" for k, (a, b) in diff.items())
            raise SettingsMismatch(f"Run directory {self.run_dir} holds results made with other settings "
                                   f"({detail}). Use another --out, or the stored settings.")

    def set_meta(self, key: str, value):
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value, default=str)))

    def get_meta(self, key: str, default=None):
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def score_columns(self) -> set[str]:
        return {row[1] for row in self.db.execute("PRAGMA table_info(scores)")}

    def _migrate(self):
        """Bring a store written by an older version up to this one; nothing stored is lost."""
        for name, sql_type in ADDED_SCORE_COLUMNS.items():
            if name not in self.score_columns():
                self.db.execute(f"ALTER TABLE scores ADD COLUMN {name} {sql_type}")
        if (self.get_meta("schema_version") or 0) < SCHEMA_VERSION:
            self.set_meta("schema_version", SCHEMA_VERSION)

    # ------------------------------------------------------------------ checkpoints and cells
    def put_checkpoint(self, ck: Checkpoint):
        cols = [f.name for f in fields(Checkpoint)]
        values = asdict(ck)
        values["flops"] = ck.training_flops
        self.db.execute(f"INSERT OR REPLACE INTO checkpoints ({', '.join(cols)}) VALUES "
                        f"({', '.join('?' * len(cols))})", [values[c] for c in cols])

    def identities(self) -> dict[str, dict]:
        """The recorded identity of each checkpoint; a checkpoint without one is not in it."""
        if not self.db.execute("SELECT 1 FROM sqlite_master WHERE name = 'checkpoint_identity'").fetchone():
            return {}
        return {name: json.loads(value) for name, value in
                self.db.execute("SELECT checkpoint, identity FROM checkpoint_identity")}

    def set_identities(self, identities: dict[str, dict], discard=()):
        """Record what each checkpoint's cells are computed from, in one transaction; the cells of
        the checkpoints in ``discard`` (made from other weights) go in it too, so none outlives
        the identity it was computed from."""
        self.db.executescript(IDENTITY_SCHEMA)
        with self._transaction():
            for checkpoint in discard:
                for table in CELL_TABLES:
                    self.db.execute(f"DELETE FROM {table} WHERE checkpoint = ?", (checkpoint,))
            self.db.executemany("INSERT OR REPLACE INTO checkpoint_identity VALUES (?, ?, ?)",
                                [(name, json.dumps(identity, sort_keys=True), time.time())
                                 for name, identity in identities.items()])

    def done_cells(self) -> set[tuple[str, str]]:
        return set(self.db.execute("SELECT checkpoint, task FROM cells WHERE status = 'done'"))

    def done_versions(self) -> dict[tuple[str, str], str | None]:
        """{(checkpoint, task): the task version its finished cell was computed with}."""
        return {(ck, task): version for ck, task, version in
                self.db.execute("SELECT checkpoint, task, task_version FROM cells WHERE status = 'done'")}

    def discard_cells(self, cells):
        """Delete the rows of these (checkpoint, task) cells, all in one transaction."""
        with self._transaction():
            for checkpoint, task in cells:
                self._clear(checkpoint, task)

    def write_cell(self, checkpoint: str, task: str, task_version: str, plugin: str,
                   scores: list[Score], samples: list[Sample], seconds: float):
        """Replace the cell's rows with these, atomically."""
        with self._transaction():
            self._clear(checkpoint, task)
            self.db.executemany(
                f"INSERT INTO scores ({', '.join(SCORE_COLUMNS)}) VALUES ({', '.join('?' * len(SCORE_COLUMNS))})",
                [(checkpoint, task, s.subtask, s.metric, s.value, s.stderr, s.n, s.n_nonfinite, s.chance, s.kind,
                  None if s.higher_is_better is None else int(s.higher_is_better)) for s in scores])
            self.db.executemany(
                "INSERT INTO samples VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(checkpoint, task, s.example_id, s.subtask, s.prompt_hash, s.prediction, s.gold,
                  s.gold_logprob, s.gold_tokens, None if s.greedy is None else int(s.greedy),
                  json.dumps(s.metrics)) for s in samples])
            self.db.execute("INSERT INTO cells VALUES (?, ?, ?, ?, 'done', NULL, ?, ?)",
                            (checkpoint, task, task_version, plugin, seconds, time.time()))
            self._put_digests(checkpoint, task)

    def write_failure(self, checkpoint: str, task: str, task_version: str | None, plugin: str | None,
                      error: str):
        """Record a failed cell; results a previous attempt stored are kept."""
        with self._transaction():
            row = self.db.execute("SELECT status FROM cells WHERE checkpoint = ? AND task = ?",
                                  (checkpoint, task)).fetchone()
            if row and row[0] == "done":
                return
            self.db.execute("INSERT OR REPLACE INTO cells VALUES (?, ?, ?, ?, 'failed', ?, NULL, ?)",
                            (checkpoint, task, task_version, plugin, error, time.time()))

    def failures(self) -> list[tuple[str, str, str]]:
        return list(self.db.execute(
            "SELECT checkpoint, task, error FROM cells WHERE status = 'failed' ORDER BY checkpoint, task"))

    def cells(self):
        return list(self.db.execute("SELECT checkpoint, task, task_version, status FROM cells"))

    def _clear(self, checkpoint, task):
        for table in CELL_TABLES:
            self.db.execute(f"DELETE FROM {table} WHERE checkpoint = ? AND task = ?", (checkpoint, task))

    def _transaction(self):
        return _Transaction(self.db)


class _Transaction:
    def __init__(self, db):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, *_):
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


def _lock(run_dir: Path) -> list[int]:
    """Exclusive locks on the run directory (the guard: it cannot be deleted from under a run)
    and on ``.lock`` (which older versions lock, and which names the owner's pid)."""
    fds = [os.open(run_dir, os.O_RDONLY), os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)]
    try:
        for fd in fds:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        for fd in fds:
            os.close(fd)
        raise RunLocked(f"Run directory {run_dir} is in use by another emergence process; "
                        "wait for it to finish or use another --out") from None
    os.ftruncate(fds[1], 0)
    os.pwrite(fds[1], str(os.getpid()).encode(), 0)
    return fds


def _create(path: Path):
    """Build an empty store beside ``path`` and rename it into place once its tables exist."""
    tmp = path.with_name(path.name + ".new")
    for leftover in (tmp, *(tmp.with_name(tmp.name + s) for s in ("-wal", "-shm", "-journal"))):
        leftover.unlink(missing_ok=True)  # from a run killed while creating its store
    db = _connect(tmp)
    try:
        db.execute("PRAGMA journal_mode=WAL")  # stored in the file: readers of the new store use WAL
        db.executescript(SCHEMA)
    finally:
        db.close()
    os.replace(tmp, path)


def _connect(path: Path, create: bool = True) -> sqlite3.Connection:
    uri = f"{Path(path).absolute().as_uri()}?mode={'rwc' if create else 'rw'}"
    return sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30)


@contextlib.contextmanager
def _snapshot(db):
    """One read transaction: every query inside sees the same committed cells."""
    db.execute("BEGIN")
    try:
        yield
    finally:
        db.execute("COMMIT")


@contextlib.contextmanager
def _raw_text(db):
    """Text as bytes: digests see exactly what is stored, and damaged UTF-8 reads without raising."""
    db.text_factory = bytes
    try:
        yield
    finally:
        db.text_factory = str


def _text(raw: bytes) -> str:
    return raw.decode(errors="replace")
