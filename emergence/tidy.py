"""Reading tidy tables from any CSV / CSV.GZ / Parquet file, and the checks every analysis relies on.

Owns: required and optional columns, numeric coercion (errors name file, column and rows; a file
with a header and no rows is an error naming it), the metric metadata columns (``metric_kind``,
``higher_is_better``: checked, one value per metric), task versions (one per task and family),
duplicate keys, dropping non-finite values (counted, warned, recorded in ``df.attrs["notes"]``),
the accuracy-range check (an error, or the metric skipped with a note), the chance-level fill,
and a plain list of what a table cannot support.
Row numbers in messages are 1-based data rows (the header is not counted).
"""

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from emergence import schema as S
from emergence.metric_rules import METRIC_KINDS, looks_like_accuracy, task_chance  # noqa: F401 (re-exported)

# Columns the reference tables carry beyond the core schema; kept when present.
LOSS_NAME, CHANCE_SOURCE, SOURCE_NOTE = "loss_name", "chance_source", "source_note"
N_SHOT, SETTING = S.N_SHOT, S.SETTING  # in the schema now; these names stay for existing callers

REQUIRED = (S.FAMILY, S.MODEL, S.TASK, S.METRIC, S.VALUE)
NUMERIC = (S.PARAMS, S.PARAMS_NONEMBED, S.TOKENS, S.STEP, S.FLOPS, S.LOSS, S.VALUE, S.STDERR, S.N,
           S.CHANCE, N_SHOT)
_TEXT = (S.FAMILY, S.MODEL, S.CHECKPOINT, S.TASK, S.SUBTASK, S.METRIC, LOSS_NAME, SETTING, S.METRIC_KIND,
         S.HIGHER_IS_BETTER, S.TASK_VERSION)
_NA_TEXT = {"", "nan", "na", "n/a", "null", "none", "<na>"}
_MAX_LISTED = 5
_DIRECTIONS = {"true": True, "1": True, "1.0": True, "yes": True, "false": False, "0": False, "0.0": False,
               "no": False}
_BAD = object()


class TidyError(ValueError):
    """The table cannot be used as given; the message names the file, column and rows."""


class TidyWarning(UserWarning):
    """Rows were changed or dropped; the same text is kept in ``df.attrs["notes"]``."""


def read_tidy(paths, *, duplicates: str = "error", check_accuracy: bool = True, invalid: str = "error",
              where=None, setting_is_note: bool = False) -> pd.DataFrame:
    """Read and check one or more tidy files (.csv, .csv.gz, .parquet) into one DataFrame.

    Requires family, model, task, metric, value; adds missing optional schema columns as empty;
    keeps extra columns (loss_name, ...); ``setting`` is text, empty = the default setting. ``duplicates="first"`` keeps the first
    of rows sharing a key instead of raising. ``invalid="skip"`` drops every row of a task's
    metric that has an accuracy outside [0, 1], with a note, instead of raising (one bad metric
    does not sink the rest of a run). ``where(df) -> bool mask`` keeps only some rows
    before the checks (large files); row numbers in messages still count from the file's top.
    ``setting_is_note``: the files' ``setting`` column describes where rows come from ("ladder
    rung, token budget 10xC", as in the reference tables), not how a task was evaluated; it is
    kept as ``source_note`` and ``setting`` left at the default, so that curves pool as the
    source meant (a setting splits curves).
    """
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not paths:
        raise TidyError("no files given")
    frames = []
    for path in map(Path, paths):
        if not path.exists():
            raise TidyError(f"{path}: no such file")
        frame = _read_one(path).assign(_file=str(path))
        if frame.empty:  # an export that wrote its header and then failed, say
            raise TidyError(f"{path}: no data rows (only a header)")
        frames.append(frame[np.asarray(where(frame), dtype=bool)] if where is not None else frame)
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if setting_is_note and S.SETTING in df.columns:
        df = df.rename(columns={S.SETTING: SOURCE_NOTE})
    return check_tidy(df, source=", ".join(map(str, paths)), duplicates=duplicates, check_accuracy=check_accuracy,
                      invalid=invalid)


def check_tidy(df: pd.DataFrame, *, source: str = "<DataFrame>", duplicates: str = "error",
               check_accuracy: bool = True, invalid: str = "error") -> pd.DataFrame:
    """The checks of read_tidy for a table already in memory; returns a cleaned copy."""
    if invalid not in ("error", "skip"):
        raise ValueError("invalid must be 'error' or 'skip'")
    df = df.copy()
    if "_file" not in df.columns:
        df["_file"] = source
    if "_row" not in df.columns:
        df["_row"] = np.arange(1, len(df) + 1)
    notes = list(df.attrs.get("notes", []))
    src = _sources(df) or source
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise TidyError(f"{src}: missing required column(s) {missing}; found {_user_cols(df)}")
    for col in NUMERIC:
        if col in df.columns:
            df[col] = _coerce(df, col)
    for col in (S.FAMILY, S.MODEL, S.TASK, S.METRIC):
        empty = df[col].isna() | (df[col].astype("string").str.strip() == "")
        if empty.any():
            raise TidyError(f"column {col!r} is empty at {_where(df, empty)}")
        df[col] = df[col].astype(str)
    added = [c for c in S.TIDY_COLUMNS if c not in df.columns]
    for col in added:
        df[col] = np.nan if col in NUMERIC else pd.NA
    if added:
        notes.append(f"optional column(s) absent, left empty: {added}")
    df[S.SUBTASK] = df[S.SUBTASK].fillna("").astype(str)
    df[S.SETTING] = df[S.SETTING].fillna("").astype(str).str.strip()
    _check_n_shot(df)
    df[S.METRIC_KIND] = _coerce_kind(df)
    df[S.HIGHER_IS_BETTER] = _coerce_direction(df)
    _check_one_per_metric(df)
    df[S.TASK_VERSION] = _coerce_version(df[S.TASK_VERSION])
    _check_one_version(df)
    df = _drop_nonfinite(df, notes)
    if df.empty:
        raise TidyError(f"{src}: no rows with a finite value")
    _derive_checkpoint(df)
    df = _drop_duplicates(df, duplicates, notes)
    if check_accuracy and invalid == "skip":
        df = _skip_invalid_metrics(df, notes)
    elif check_accuracy:
        bad = validate_accuracy(df)
        if len(bad):
            metrics = sorted(bad[S.METRIC].unique())
            raise TidyError(
                f"metric(s) {metrics} look like accuracies but have values outside [0, 1] at "
                f"{_where(df, df.index.isin(bad.index))} (e.g. {bad[S.VALUE].iloc[0]:g}); percentages "
                "should be divided by 100, and a metric that is not an accuracy can be read with "
                "check_accuracy=False")
    notes += limitations(df)
    extras = [c for c in df.columns if c not in S.TIDY_COLUMNS and not c.startswith("_")]
    out = df[list(S.TIDY_COLUMNS) + extras].reset_index(drop=True)
    out.attrs["notes"] = notes
    return out


def validate_accuracy(df: pd.DataFrame) -> pd.DataFrame:
    """Rows whose metric looks like an accuracy (see looks_like_accuracy) but lies outside [0, 1]."""
    acc = _is_accuracy(df[S.METRIC])
    value = pd.to_numeric(df[S.VALUE], errors="coerce")
    return df[acc & ((value < 0) | (value > 1))]


def fill_chance(df: pd.DataFrame, declared: dict | None = None) -> pd.DataFrame:
    """Fill missing ``chance`` for accuracy-like metrics and say where each value came from.

    ``chance_source``: 'declared' (in the table already, or in ``declared`` = {task: chance}),
    'table' (``emergence.metric_rules.CHANCE_TABLE``, by task name or its prefix), 'estimated'
    (median score of the step-0, untrained checkpoints of that task and metric) or 'unknown'.
    """
    out = df.copy()
    chance = pd.to_numeric(out[S.CHANCE], errors="coerce") if S.CHANCE in out.columns \
        else pd.Series(np.nan, index=out.index)
    source = pd.Series(np.where(chance.notna(), "declared", "unknown"), index=out.index, dtype=object)
    todo = chance.isna() & _is_accuracy(out[S.METRIC])
    declared = declared or {}
    candidates = [("declared", _per_value(out[S.TASK], lambda t: declared.get(t, np.nan))),
                  ("table", _per_value(out[S.TASK], _table_chance))]
    if S.STEP in out.columns:
        keys = [S.FAMILY, S.TASK, S.SUBTASK, S.METRIC]
        at0 = out[todo & (pd.to_numeric(out[S.STEP], errors="coerce") == 0)]
        est = at0.groupby(keys, dropna=False)[S.VALUE].median().rename("_est")
        candidates.append(("estimated", out[keys].join(est, on=keys)["_est"]))
    for name, values in candidates:
        hit = todo & pd.to_numeric(values, errors="coerce").notna()
        chance = chance.mask(hit, pd.to_numeric(values, errors="coerce"))
        source = source.mask(hit, name)
        todo &= ~hit
    out[S.CHANCE] = chance.astype(float)
    out[CHANCE_SOURCE] = source
    return out


def limitations(df: pd.DataFrame) -> list[str]:
    """What this table cannot support, and why (one sentence each)."""
    def empty(col):
        return col not in df.columns or pd.to_numeric(df[col], errors="coerce").isna().all()
    out = []
    if empty(S.LOSS):
        out.append("no loss values: loss-based fits (scaling laws, loss thresholds) cannot run")
    if empty(S.PARAMS) and empty(S.PARAMS_NONEMBED):
        out.append("no parameter counts: size laws and critical sizes cannot be fitted")
    if empty(S.TOKENS):
        out.append("no token counts: the L(N, D) law and compute-optimal allocation cannot be fitted")
    if empty(S.STEP):
        out.append("no steps: checkpoints of one model are ordered by tokens, if any")
    if empty(S.STDERR) and empty(S.N):
        out.append("no stderr or n: noise levels must be assumed, not measured")
    if empty(S.CHANCE):
        out.append("no chance levels: use fill_chance (task table or step-0 estimate)")
    if df.get(S.METRIC_KIND, pd.Series(dtype=object)).isna().all() and \
            df.get(S.HIGHER_IS_BETTER, pd.Series(dtype=object)).isna().all():
        out.append("no metric_kind or higher_is_better: each metric's kind and direction are guessed from its "
                   "name (emergence.metric_rules), so a metric the rules do not know counts as higher-is-better")
    return out


# ----------------------------------------------------------------------------- helpers

def _read_one(path: Path) -> pd.DataFrame:
    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            df = pd.read_parquet(path)
        elif name.endswith((".csv", ".csv.gz", ".csv.bz2", ".csv.xz", ".csv.zst")):
            # Text columns stay text ("007" is a name, not 7); numbers are parsed, then checked.
            df = pd.read_csv(path, dtype={c: str for c in _TEXT}, low_memory=False)
        else:
            raise TidyError(f"{path}: unknown format (use .csv, .csv.gz or .parquet)")
    except (TidyError, ImportError):
        raise
    except Exception as e:  # parser errors: say which file
        raise TidyError(f"{path}: cannot be read as a table: {e}") from e
    df.columns = [str(c).strip() for c in df.columns]
    dup = sorted({c for c in df.columns if list(df.columns).count(c) > 1})
    if dup:
        raise TidyError(f"{path}: duplicate column name(s) {dup}")
    df["_row"] = np.arange(1, len(df) + 1)
    return df


def _coerce(df, col):
    raw = df[col]
    if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        return raw.astype(float)
    text = raw.astype("string").str.strip()
    num = pd.to_numeric(text, errors="coerce")
    bad = num.isna() & text.notna() & ~text.str.lower().isin(_NA_TEXT)
    if bad.any():
        examples = ", ".join(repr(v) for v in text[bad].unique()[:3])
        raise TidyError(f"column {col!r} has non-numeric values ({examples}) at {_where(df, bad)}")
    return num.astype(float)


def _derive_checkpoint(df):
    have = df[S.CHECKPOINT].notna() & (df[S.CHECKPOINT].astype("string").str.strip() != "")
    if have.all():
        df[S.CHECKPOINT] = df[S.CHECKPOINT].astype(str)
        return
    step = df[S.STEP]
    label = step.map({s: "" if pd.isna(s) else f"@step{int(s)}" if float(s).is_integer() else f"@step{s}"
                      for s in step.unique()})
    derived = df[S.MODEL] + label.astype(str)
    df[S.CHECKPOINT] = df[S.CHECKPOINT].where(have, derived).astype(str)


def _key(df):
    return [S.FAMILY, S.MODEL, S.CHECKPOINT, S.TASK, S.SUBTASK, S.METRIC, S.STEP] + \
        [c for c in (N_SHOT, SETTING) if c in df.columns]


def _drop_duplicates(df, how, notes):
    if how not in ("error", "first"):
        raise ValueError("duplicates must be 'error' or 'first'")
    key = _key(df)
    extra = df.duplicated(key, keep="first")
    if not extra.any():
        return df
    dup = df.duplicated(key, keep=False)
    groups = df[dup].groupby(key, dropna=False, sort=False).groups
    n_extra = int(extra.sum())
    first_key, first_idx = next(iter(groups.items()))
    example = ", ".join(f"{k}={v!r}" for k, v in zip(key, first_key) if not pd.isna(v) and v != "")
    msg = (f"{len(groups)} key(s) appear more than once ({n_extra} extra row(s)); e.g. "
           f"{_where(df, df.index.isin(first_idx))} share ({example})")
    if how == "error":
        raise TidyError(msg + "; pass duplicates='first' to keep the first of each")
    notes.append("dropped duplicates: " + msg)
    warnings.warn(notes[-1], TidyWarning, stacklevel=3)
    return _keep_rows(df, ~extra.to_numpy())


def _skip_invalid_metrics(df, notes):
    """Drop each (task, metric) with an accuracy outside [0, 1]: its curves would be nonsense,
    the other metrics are fine. Each one skipped gets a note naming it and the fix."""
    bad = validate_accuracy(df)
    if bad.empty:
        return df
    drop = np.zeros(len(df), dtype=bool)
    for (task, metric), rows in bad.groupby([S.TASK, S.METRIC], sort=True):
        mask = ((df[S.TASK] == task) & (df[S.METRIC] == metric)).to_numpy()
        drop |= mask
        notes.append(f"metric {metric!r} of task {task!r} skipped: {len(rows)} value(s) outside [0, 1] (e.g. "
                     f"{rows[S.VALUE].iloc[0]:g} at {_where(df, df.index.isin(rows.index[:1]))}), though it looks "
                     f"like an accuracy; its {int(mask.sum())} row(s) are left out and the rest is analysed. Fix "
                     f"the task's score() (`emergence check-task {task}`) and rerun it, or divide percentages by 100")
        warnings.warn(notes[-1], TidyWarning, stacklevel=3)
    out = _keep_rows(df, ~drop)
    if out.empty:
        raise TidyError("every metric was skipped: " + "; ".join(notes[-3:]))
    return out


def _keep_rows(df, keep):
    """df[keep], as the concatenation of the kept stretches when there are few of them: a
    boolean filter copies every text column (~1 s for 450k rows), slices of it copy nothing."""
    keep = np.asarray(keep, dtype=bool)
    runs = np.flatnonzero(np.diff(np.r_[0, keep.astype(np.int8), 0])).reshape(-1, 2)
    if len(runs) > 1000:
        return df[keep]
    return pd.concat([df.iloc[a:b] for a, b in runs]) if len(runs) else df.iloc[:0]


def _drop_nonfinite(df, notes):
    bad = ~np.isfinite(df[S.VALUE].to_numpy(dtype=float))
    if bad.any():
        notes.append(f"dropped {int(bad.sum())} row(s) with missing or non-finite value: {_where(df, bad)}")
        warnings.warn(notes[-1], TidyWarning, stacklevel=3)
        df = _keep_rows(df, ~bad)
    for col in (c for c in NUMERIC if c in df.columns and c != S.VALUE):
        inf = np.isinf(df[col].to_numpy(dtype=float))
        if inf.any():
            notes.append(f"column {col!r}: {int(inf.sum())} infinite value(s) treated as missing: {_where(df, inf)}")
            warnings.warn(notes[-1], TidyWarning, stacklevel=3)
            df[col] = df[col].mask(inf)
    return df


def _where(df, mask) -> str:
    """'rows 3, 7 of a.csv' for the first few flagged rows (1-based data rows)."""
    hit = df.loc[np.asarray(mask, dtype=bool), ["_file", "_row"]]
    parts = []
    for file, rows in hit.groupby("_file", sort=False)["_row"]:
        listed = ", ".join(str(int(r)) for r in rows.iloc[:_MAX_LISTED])
        more = f" and {len(rows) - _MAX_LISTED} more" if len(rows) > _MAX_LISTED else ""
        parts.append(f"row{'s' if len(rows) > 1 else ''} {listed}{more} of {file}")
    return "; ".join(parts)


def _sources(df):
    return ", ".join(df["_file"].astype(str).unique()[:3])


def _user_cols(df):
    return [c for c in df.columns if not c.startswith("_")]


def _is_accuracy(metrics: pd.Series) -> pd.Series:
    return _per_value(metrics, looks_like_accuracy, missing=False).astype(bool)


def _per_value(series: pd.Series, fn, missing=np.nan) -> pd.Series:
    """fn of each row's value, computed once per distinct value (Series.map is per row);
    ``missing`` where the value is missing (factorize codes it -1: the last entry)."""
    codes, values = pd.factorize(series)
    out = np.array([fn(str(v)) for v in values] + [missing])
    return pd.Series(out[codes], index=series.index)


def _table_chance(task):
    chance = task_chance(task)
    return np.nan if chance is None else chance


def _coerce_kind(df) -> pd.Series:
    """``metric_kind`` as 'discontinuous', 'continuous' or None (empty)."""
    def kind(v):
        text = str(v).strip().lower()
        return None if text in _NA_TEXT else text if text in METRIC_KINDS else _BAD
    return _per_distinct(df, S.METRIC_KIND, kind, "unknown kind(s)",
                         f"use one of {', '.join(METRIC_KINDS)}, or leave it empty (unknown)")


def _coerce_direction(df) -> pd.Series:
    """``higher_is_better`` as a nullable boolean: True/False, 1/0, yes/no; empty = unknown."""
    def direction(v):
        text = str(v).strip().lower()
        return None if text in _NA_TEXT else _DIRECTIONS.get(text, _BAD)
    values = _per_distinct(df, S.HIGHER_IS_BETTER, direction, "value(s)",
                           "use True or False, or leave it empty (unknown)")
    return pd.Series(pd.array(values.to_numpy(object), dtype="boolean"), index=df.index)


def _per_distinct(df, col, fn, what, fix) -> pd.Series:
    """fn of each value of ``col`` (computed once per distinct value), None where it is missing;
    a value fn calls _BAD stops with the column, the values and their rows."""
    codes, values = pd.factorize(df[col])
    out = np.empty(len(values) + 1, dtype=object)  # the last entry: missing (code -1)
    out[:-1] = [fn(v) for v in values]
    bad = [i for i, v in enumerate(out[:-1]) if v is _BAD]
    if bad:
        rows = np.isin(codes, bad)
        examples = ", ".join(repr(values[i]) for i in bad[:3])
        raise TidyError(f"column {col!r} has {what} {examples} at {_where(df, rows)}; {fix}")
    return pd.Series(out[codes], index=df.index)


def _coerce_version(col: pd.Series) -> pd.Series:
    """Versions as text ("1", not 1.0 as a CSV reader may make of it); empty = not recorded."""
    def text(v):
        if isinstance(v, float) and not np.isfinite(v):
            return None
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        s = str(v).strip()
        return None if s.lower() in _NA_TEXT else s

    values = col.astype(object)
    known = values.notna()
    out = pd.Series(None, index=col.index, dtype=object)
    if known.any():   # once per distinct value: tables have a handful of versions in 10^5 rows
        out[known] = values[known].map({v: text(v) for v in values[known].unique()})
    return out


def _check_n_shot(df):
    """``n_shot`` counts examples: a whole number, 0 or more (empty = unknown)."""
    shots = df[S.N_SHOT].to_numpy(float)
    bad = np.isfinite(shots) & ((shots < 0) | (shots != np.round(shots)))
    if bad.any():
        raise TidyError(f"column {S.N_SHOT!r} has {shots[bad][0]:g} at {_where(df, bad)}; it counts few-shot "
                        "examples (0 or more), empty = unknown")


def _check_one_version(df):
    """A curve never mixes task versions: a new version may measure something else."""
    have = df[S.TASK_VERSION].notna().to_numpy(bool)
    if not have.any():
        return
    pairs = df.loc[have, [S.FAMILY, S.TASK, S.TASK_VERSION]].drop_duplicates()
    twice = pairs.duplicated([S.FAMILY, S.TASK], keep=False)
    if twice.any():
        family, task = pairs[twice].iloc[0][[S.FAMILY, S.TASK]]
        versions = sorted(pairs.loc[twice & (pairs[S.FAMILY] == family) & (pairs[S.TASK] == task), S.TASK_VERSION])
        rows = (df[S.FAMILY] == family) & (df[S.TASK] == task) & have
        raise TidyError(f"task {task!r} of family {family!r} has rows of versions {', '.join(versions)} at "
                        f"{_where(df, rows)}: a curve never mixes task versions; analyse each version on its own "
                        "(filter the table) or re-evaluate the old cells")


def _check_one_per_metric(df):
    """A metric of a task has one kind and one direction: two would make its curves ambiguous."""
    keys = [S.TASK, S.SUBTASK, S.METRIC]
    for col in (S.METRIC_KIND, S.HIGHER_IS_BETTER):
        have = df[col].notna().to_numpy(bool)
        if not have.any():
            continue
        pairs = df.loc[have, keys + [col]].drop_duplicates()
        twice = pairs.duplicated(keys, keep=False)
        if twice.any():
            task, sub, metric = pairs[twice].iloc[0][keys]
            rows = (df[S.TASK] == task) & (df[S.SUBTASK] == sub) & (df[S.METRIC] == metric) & have
            values = sorted(map(str, df.loc[rows, col].unique()))
            raise TidyError(f"column {col!r} says both {' and '.join(values)} for task {task!r}"
                            f"{f' / {sub}' if sub else ''}, metric {metric!r} at {_where(df, rows)}; "
                            "a metric has one value")


def setting_label(row, columns=S.SETTING_KEYS) -> str:
    """'5-shot, mc' for a curve's n_shot and setting (``columns`` of ``row``); '' for an unknown
    count and the default."""
    return ", ".join(t for t in (setting_text(c, row.get(c)) for c in columns) if t)


def setting_text(column, value) -> str:
    """One setting value as text: n_shot 5 (or 5.0) as "5-shot", empty values as ""."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value == "":
        return ""
    number = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
    return f"{number:g}-shot" if column == "n_shot" and pd.notna(number) else str(value)


def setting_labels(df: pd.DataFrame, columns=S.SETTING_KEYS) -> pd.Series:
    """Each row's evaluation setting as text ("5-shot, mc"), "" where the table has none of
    ``columns``; built once per distinct combination (a table has few)."""
    columns = [c for c in columns if c in df.columns]
    if not columns:
        return pd.Series("", index=df.index, dtype=object)
    codes, _ = pd.factorize(pd.MultiIndex.from_frame(df[columns].astype(str)))
    first = df[columns].iloc[pd.Series(codes).drop_duplicates().index]   # each code where first seen, in code order
    text = [setting_label(r, columns) for r in first.to_dict("records")]
    return pd.Series(np.asarray(text, dtype=object)[codes], index=df.index)
