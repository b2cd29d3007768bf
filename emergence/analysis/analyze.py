"""``emergence analyze``: tidy tables in; verdicts, metric audits, sub-task decompositions and
scaling-law fits out, as DataFrames (Python) or CSV files plus a printed summary (CLI).

Pure CPU, no plotting. Whatever a table cannot support (no loss, no sizes, no noise) is
skipped and said in ``Analysis.notes`` rather than guessed. Curves with no shape to judge (fewer
than 3 points or distinct x, a constant axis, an axis that duplicates another) are not verdicts:
they go to ``Analysis.not_judged`` (not_judged.csv) with the reason, and counts leave them out.
Where a row has params and tokens but no flops, flops is derived as 6 N D (Kaplan et al. 2020).

The ``analysis/`` folder is valid only as a whole: each file is written atomically and
``manifest.json`` (the analysed table's content hash, each file's hash, the versions) last;
``read_analysis`` refuses a folder whose manifest is missing or does not match, so that a
killed ``analyze`` or a changed table never passes for a finished analysis of this table.
"""

import hashlib
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from emergence import schema as S
from emergence.files import write_atomic
from emergence.analysis.decompose import decompose, metric_audit, sibling_audit
from emergence.analysis.onset import onset_backtest
from emergence.analysis.parallel import Background
from emergence.analysis.predict import backtest_loss
from emergence.analysis.scaling import fit_scaling_laws
from emergence.analysis.significance import SignificanceConfig, add_significance
from emergence.tidy import fill_chance, limitations, read_tidy, setting_labels
from emergence.analysis.verdicts import verdicts_by_axis

AXES = (S.PARAMS, S.TOKENS, S.FLOPS, S.LOSS)
ANALYSIS_DIR = "analysis"  # the folder `emergence analyze` writes beside its input
MANIFEST = "manifest.json"  # written last: the folder is valid only with it
TABLES = ("verdicts", "audit", "composites", "fits", "backtest", "onset", "not_judged")  # the CSVs it may hold


class UnusableAnalysis(ValueError):
    """An analysis folder that is not a complete analysis of the table at hand; says why."""


@dataclass
class Analysis:
    verdicts: pd.DataFrame          # one row per (family, task, subtask, metric, axis)
    audit: pd.DataFrame             # per (family, task): metric-induced, genuine, none, undetermined
    composites: pd.DataFrame        # composite predicted from sub-tasks, with errors
    fits: pd.DataFrame              # scaling-law parameters with intervals, per family and form
    notes: list = field(default_factory=list)
    seconds: dict = field(default_factory=dict)   # wall-clock time of each stage
    backtest: pd.DataFrame = field(default_factory=pd.DataFrame)  # with a cutoff: loss law, held-out models
    onset: pd.DataFrame = field(default_factory=pd.DataFrame)     # with a cutoff: where tasks emerge
    table_sha256: str = ""          # table_hash of the table analysed: the manifest ties the folder to it
    not_judged: pd.DataFrame = field(default_factory=pd.DataFrame)  # curves with no shape to judge, and why
    settings: dict = field(default_factory=dict)  # n_boot, seed, cutoff: what a reader may reuse it for

    def tables(self) -> dict:
        backtests = {"backtest": self.backtest, "onset": self.onset} if not self.onset.empty else {}
        return {"verdicts": self.verdicts, "audit": self.audit, "composites": self.composites,
                "fits": self.fits, "not_judged": self.not_judged, **backtests}


def load_tables(sources, *, duplicates: str = "error", setting_is_note: bool = False) -> pd.DataFrame:
    """Tidy files, or run directories (exported on the fly), as one checked table.
    ``duplicates="first"`` keeps the first of rows sharing a key (``read_tidy``); a task's metric
    with accuracies outside [0, 1] is skipped with a note, so the rest can be analysed."""
    from emergence.export import tidy_table
    from emergence.tidy import check_tidy

    files, frames = [], []
    for src in map(Path, sources):
        if src.is_dir():
            frames.append(check_tidy(tidy_table(src), source=str(src), duplicates=duplicates, invalid="skip"))
        else:
            files.append(src)
    if files:
        frames.append(read_tidy(files, duplicates=duplicates, invalid="skip", setting_is_note=setting_is_note))
    notes = [n for f in frames for n in f.attrs.get("notes", [])]
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    df.attrs["notes"] = notes
    return df


def analyze(df: pd.DataFrame, axes=None, *, n_boot: int = 100, seed: int = 0, workers: int = 0,
            cutoff: float | None = None) -> Analysis:
    """Every analysis the table supports, on each usable axis (default: all of them). Emergent
    verdicts carry p_emergent, p_value and q_value (``significance``) and need q < 0.05.
    ``workers``: processes fitting curves and bootstrap draws (0: one per CPU, 1: none); the
    result does not depend on it. ``cutoff``: also backtest, fitting on models with fewer
    parameters and predicting the rest: their loss (``backtest``) and where tasks emerge (``onset``)."""
    sha256 = table_hash(df)
    df = fill_chance(df)
    df, derived = derive_flops(df)
    notes = list(dict.fromkeys(list(df.attrs.get("notes", [])) + limitations(df)))
    if derived:
        notes.append(f"flops derived as 6 x params x tokens for {derived} rows without flops")
    estimated = int((df.get("chance_source") == "estimated").sum())
    if estimated:
        notes.append(f"chance estimated from step-0 checkpoints for {estimated} rows")
    usable = [a for a in AXES if _has(df, a)]
    for axis in axes or ():
        if axis not in AXES:
            raise ValueError(f"Unknown axis {axis!r}: use one of {', '.join(AXES)}")
        if axis not in usable:
            notes.append(f"axis {axis!r} skipped: the table has no {axis} values")
    axes = [a for a in (axes or AXES) if a in usable]
    if not axes:
        notes.append("no axis to analyse against: the table has no params, tokens, flops or loss")

    clock = [time.perf_counter()]

    def lap():
        clock.append(time.perf_counter())
        return round(clock[-1] - clock[-2], 3)

    # The scaling-law fits (a few seconds, unevenly parallel) run beside the verdicts, which keep
    # every CPU busy; their process is one more than the workers asked for.
    fits_job = Background(_fits, df, n_boot, seed, 1) if workers != 1 else None
    per_axis = verdicts_by_axis(df, axes, workers=workers)
    per_axis, skipped = split_judged(per_axis)
    not_judged = _concat(skipped.values())
    seconds = {"verdicts": lap()}
    # P(emergent), p-value and q-value of the emergent curves; q >= 0.05 turns emergent into smooth
    verdict_table = add_significance(_concat(per_axis.values()), df, config=SignificanceConfig(seed=seed),
                                     workers=workers)
    if not verdict_table.empty:
        per_axis = {a: verdict_table[verdict_table["axis"] == a].reset_index(drop=True) if not t.empty else t
                    for a, t in per_axis.items()}
    seconds["significance"] = lap()
    audit = _concat([metric_audit(df, axis=a, verdict_table=per_axis[a]).assign(axis=a) for a in axes
                     if not per_axis[a].empty] + [sibling_audit(verdict_table)])
    seconds["audit"] = lap()
    composites = decompose(df)
    seconds["decompose"] = lap()
    fits, fit_notes = fits_job.result() if fits_job else _fits(df, n_boot, seed, workers)
    seconds["fits"] = lap()   # what is left of them after the verdicts
    backtest, onset = pd.DataFrame(), pd.DataFrame()
    if cutoff is not None:
        if not (_has(df, S.LOSS) and _has(df, S.PARAMS)):
            fit_notes.append("backtest skipped: it needs loss and params")
        else:
            forms = ("size", "chinchilla") if _has(df, S.TOKENS) else ("size",)
            backtest = _concat(backtest_loss(df, cutoff, form=f, n_boot=n_boot, seed=seed).assign(form=f)
                               for f in forms)
            onset = onset_backtest(df, cutoff, n_boot=n_boot, seed=seed)
            fit_notes += [f"backtest for {r[S.FAMILY]}: {r['reason']}" for r in onset.to_dict("records")
                          if r.get("status") == "undetermined"]
        seconds["backtest"] = lap()
    return Analysis(verdict_table, audit, composites, fits, notes + fit_notes, seconds, backtest, onset,
                    table_sha256=sha256, not_judged=not_judged,
                    settings={"n_boot": n_boot, "seed": seed, "cutoff": cutoff})


def derive_flops(df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The table with flops = 6 N D (training compute, Kaplan et al. 2020) filled in where a row
    has params and tokens but no flops, and how many rows were filled."""
    if not (_has(df, S.PARAMS) and _has(df, S.TOKENS)):
        return df, 0
    n, d = pd.to_numeric(df[S.PARAMS], errors="coerce"), pd.to_numeric(df[S.TOKENS], errors="coerce")
    flops = pd.to_numeric(df[S.FLOPS], errors="coerce") if S.FLOPS in df.columns else pd.Series(float("nan"), df.index)
    fill = flops.isna() & (n > 0) & (d > 0)
    if not fill.any():
        return df, 0
    out = df.copy()
    out[S.FLOPS] = flops.mask(fill, 6.0 * n * d)
    return out, int(fill.sum())


def split_judged(per_axis: dict) -> tuple[dict, dict]:
    """({axis: verdicts}, {axis: not-judged rows}): rows with judged=False have no curve to judge."""
    judged, skipped = {}, {}
    for axis, v in per_axis.items():
        keep = v["judged"].astype(bool) if "judged" in v else pd.Series(True, index=v.index)
        judged[axis], skipped[axis] = v[keep].reset_index(drop=True), v[~keep].reset_index(drop=True)
    return judged, skipped


def write_analysis(analysis: Analysis, out_dir) -> list[Path]:
    """The tables as CSV files, notes.txt and, last, manifest.json into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = out_dir / MANIFEST
    manifest.unlink(missing_ok=True)  # from here until the new one is written, the folder is invalid
    files = {f"{name}.csv": table.to_csv(index=False).encode("utf-8") for name, table in analysis.tables().items()}
    files["notes.txt"] = ("\n".join(analysis.notes) + ("\n" if analysis.notes else "")).encode("utf-8")
    written = [write_atomic(out_dir / name, data) for name, data in files.items()]
    for name in TABLES:  # an earlier analysis' tables that this one has not (a backtest)
        if f"{name}.csv" not in files:
            (out_dir / f"{name}.csv").unlink(missing_ok=True)
    record = {"table_sha256": analysis.table_sha256, "versions": _versions(), "settings": analysis.settings,
              "files": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}}
    return written + [write_atomic(manifest, json.dumps(record, indent=2) + "\n")]


def read_analysis(folder, table_sha256: str | None = None) -> Analysis:
    """The files of ``write_analysis`` back as an ``Analysis``. Raises ``UnusableAnalysis`` when
    the folder has no manifest, a file is missing or differs from the manifest, another version
    of emergence wrote it, or (given ``table_sha256``) it was computed from another table."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        raise UnusableAnalysis(f"it has no {MANIFEST}: written by an older emergence, or its "
                               "analysis did not finish") from None
    except ValueError as e:
        raise UnusableAnalysis(f"its {MANIFEST} is unreadable ({e})") from None
    written_by, ours = manifest.get("versions", {}).get("emergence"), _versions()["emergence"]
    if written_by != ours:
        raise UnusableAnalysis(f"emergence {written_by} wrote it, this is emergence {ours}")
    if table_sha256 is not None and manifest.get("table_sha256") != table_sha256:
        raise UnusableAnalysis(f"it was computed from another table (sha256 {str(manifest.get('table_sha256'))[:12]}, "
                               f"this table's {table_sha256[:12]})")
    data = {}
    for name, digest in manifest.get("files", {}).items():
        try:
            data[name] = (folder / name).read_bytes()
        except FileNotFoundError:
            raise UnusableAnalysis(f"its {name} is missing") from None
        if hashlib.sha256(data[name]).hexdigest() != digest:
            raise UnusableAnalysis(f"its {name} is not the one its manifest lists (changed since)")
    tables = {name: _read_csv(data.get(f"{name}.csv")) for name in TABLES}
    notes = [n for n in data.get("notes.txt", b"").decode("utf-8").splitlines() if n]
    return Analysis(tables["verdicts"], tables["audit"], tables["composites"], tables["fits"], notes,
                    backtest=tables["backtest"], onset=tables["onset"], table_sha256=manifest.get("table_sha256", ""),
                    not_judged=tables["not_judged"], settings=manifest.get("settings", {}))


def find_analysis(sources) -> Path | None:
    """The analysis/ folder `emergence analyze` writes for these sources, if there is one
    (finished or not: ``read_analysis`` says whether it can be used)."""
    first = Path(next(iter(sources)))
    folder = (first if first.is_dir() else first.parent) / ANALYSIS_DIR
    names = [MANIFEST, "notes.txt"] + [f"{name}.csv" for name in TABLES]
    return folder if any((folder / name).exists() for name in names) else None


def table_hash(df: pd.DataFrame) -> str:
    """sha256 of a table's content, the same however it was read (CSV, parquet, a run
    directory) and in whatever order: columns by name, rows sorted, a column whose values are
    all numbers as float64, other values as text, missing values and "" alike."""
    cols = sorted(map(str, df.columns))
    canon = {c: _canonical(df[c]) for c in cols}
    keys = [c for c in (S.FAMILY, S.CHECKPOINT, S.MODEL, S.TASK, S.SUBTASK, S.METRIC) if c in cols]
    by = keys + [c for c in cols if c not in keys]
    order = np.lexsort([canon[c][0] for c in reversed(by)]) if by else np.arange(len(df))
    h = hashlib.sha256(f"{len(df)} rows\0".encode())
    for c in cols:
        key, words = canon[c]
        h.update(c.encode("utf-8") + b"\0")
        if words is None:
            h.update(b"f" + key[order].tobytes())
        else:  # the distinct texts in order, then each row's place among them
            h.update(b"s" + "\0".join(words).encode("utf-8", "surrogatepass") + b"\0")
            h.update(key[order].astype(np.int64).tobytes())
    return h.hexdigest()


def summary(analysis: Analysis) -> str:
    """A few lines a person reads in the terminal."""
    lines = []
    v = analysis.verdicts
    if not v.empty:
        counts = v.groupby(["axis", "label"]).size().unstack(fill_value=0)
        lines.append("Verdicts (curves per axis):")
        lines += ["  " + line for line in counts.to_string().splitlines()]
        emergent = v[v["label"] == "emergent"]
        for _, r in emergent.head(15).iterrows():
            where = f"eta {r['eta']:.4g} [{r['eta_lo']:.4g}, {r['eta_hi']:.4g}]" if pd.notna(r["eta"]) else ""
            model = f" ({r[S.MODEL]})" if S.MODEL in r and pd.notna(r[S.MODEL]) else ""
            sig = (f", P(emergent) {r['p_emergent']:.2f}, q {r['q_value']:.2g}"
                   if pd.notna(r.get("q_value")) and pd.notna(r.get("p_emergent")) else "")
            lines.append(f"  emergent: {r[S.FAMILY]}{model} / {r[S.TASK]} / {r[S.SUBTASK] or '-'} / "
                         f"{r[S.METRIC]} vs {r['axis']} {where}{sig}")
        if len(emergent) > 15:
            lines.append(f"  ... and {len(emergent) - 15} more emergent curves (verdicts.csv)")
    if not analysis.not_judged.empty:
        reasons = analysis.not_judged["reason"].str.split(":").str[0].str.split(";").str[0].value_counts()
        lines.append(f"Not judged (no curve to judge, not_judged.csv): {len(analysis.not_judged)} curves, "
                     + ", ".join(f"{n} {k}" for k, n in reasons.head(4).items()))
    if not analysis.audit.empty:
        counts = analysis.audit["label"].value_counts()
        lines.append("Metric audit (family x task x axis): " + ", ".join(f"{n} {k}" for k, n in counts.items()))
        shown = analysis.audit[analysis.audit["label"].isin(["metric-induced", "genuine"])]
        for r, setting in zip(shown.to_dict("records"), setting_labels(shown)):
            sub = f" / {r[S.SUBTASK]}" if isinstance(r.get(S.SUBTASK), str) and r[S.SUBTASK] else ""
            where = f" ({setting})" if setting else ""
            lines.append(f"  {r[S.FAMILY]} / {r[S.TASK]}{sub}{where} vs {r['axis']}: {r['label']} - {r['reason']}")
    if not analysis.fits.empty:
        ok = analysis.fits[analysis.fits["status"] == "ok"]
        for (fam, form), g in ok.groupby([S.FAMILY, "form"]):
            params = ", ".join(f"{p}={e:.4g} [{lo:.3g}, {hi:.3g}]"
                               for p, e, lo, hi in zip(g["param"], g["estimate"], g["ci_low"], g["ci_high"]))
            lines.append(f"Scaling law {form} for {fam}: {params}")
    onset = analysis.onset
    if not onset.empty and "status" in onset:
        counts = onset["status"].value_counts()
        lines.append("Where tasks emerge, fitted below the cutoff: " + ", ".join(f"{n} {k}" for k, n in counts.items()))
        for r in onset[onset["status"] == "predicted"].head(15).to_dict("records"):
            lines.append(f"  {r[S.FAMILY]} / {r[S.TASK]} / {r[S.METRIC]}: eta {r['eta_pred']:.4g} "
                         f"(all models {r['eta_full']:.4g}), N_c {r['nc_pred']:.3g} [{r['nc_pred_lo']:.3g}, "
                         f"{r['nc_pred_hi']:.3g}] (all models {r['nc_full']:.3g})")
    for note in dict.fromkeys(analysis.notes):
        lines.append(f"note: {note}")
    return "\n".join(lines)


def _fits(df, n_boot, seed, workers):
    """Scaling-law fits and the notes on those that could not be made."""
    if not (_has(df, S.LOSS) and _has(df, S.PARAMS)):
        return pd.DataFrame(), []
    frames = [fit_scaling_laws(df, form="size", n_boot=n_boot, seed=seed, workers=workers)]
    if _has(df, S.TOKENS):
        frames.append(fit_scaling_laws(df, form="chinchilla", n_boot=n_boot, seed=seed, workers=workers))
    fits = _concat(frames)
    return fits, [f"{form} law for {fam} not fitted: {g['reason'].iloc[0]}"
                  for (fam, form), g in fits[fits["status"] != "ok"].groupby([S.FAMILY, "form"])]


def _read_csv(data) -> pd.DataFrame:
    if not data:
        return pd.DataFrame()
    text = (S.FAMILY, S.MODEL, S.TASK, S.SUBTASK, S.METRIC, "reason", "note", "label", "axis")
    try:
        t = pd.read_csv(io.BytesIO(data), dtype={c: str for c in text})
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    for col in (S.SUBTASK, S.MODEL, "reason", "note"):
        if col in t.columns:
            t[col] = t[col].fillna("")
    return t


def _canonical(col: pd.Series):
    """(sort key, distinct texts) of a column: its values as float64 (-0.0 as 0.0, one NaN) and
    None if every value present is a number, else each value's rank among the sorted distinct
    texts and those texts. Parsed per distinct value: a table has few of them per column."""
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        num = col.to_numpy("float64", na_value=np.nan)
    else:
        codes, uniques = pd.factorize(col)   # missing: -1, the "" appended below
        text = np.array([str(u) for u in uniques] + [""], dtype=object)
        present = text != ""
        parsed = pd.to_numeric(pd.Series(np.where(present, text, None), dtype=object),
                               errors="coerce").to_numpy("float64", na_value=np.nan)
        if (np.isnan(parsed) & present).any():
            words, rank = np.unique(text, return_inverse=True)
            return rank[codes], list(words)
        num = parsed[codes]
    num = num + 0.0
    num[np.isnan(num)] = np.nan
    return num, None


def _versions() -> dict:
    import platform

    import numpy
    import scipy

    import emergence

    return {"emergence": emergence.__version__, "python": platform.python_version(),
            "numpy": numpy.__version__, "pandas": pd.__version__, "scipy": scipy.__version__}


def _has(df, col) -> bool:
    return col in df.columns and pd.to_numeric(df[col], errors="coerce").notna().any()


def _concat(frames) -> pd.DataFrame:
    frames = [f for f in frames if f is not None and not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
