"""Real curves with published labels: the table, the curves it names, and the detector's score on them.

``data/labelled_curves.csv`` lists curves of the public reference data (one tidy file, family, task,
subtask, n_shot, metric, axis) with the label a published judgement implies and the source cited.
It holds labels and citations only, no copied numbers. Labels: emergent, smooth, flat, inverse
(scored); ambiguous (the literature disagrees or the mapping is loose: reported, not scored);
out_of_scope (the source judged another family or metric: listed, not scored). Family ``*`` pools
every family of the tidy file into one curve.

The labels were written from the sources before the detector was run on them; scoring calls the
public ``verdicts`` API with ``ClassifyConfig`` as it stands, so it scores whatever rules are current.
"""

import csv
from dataclasses import replace
from importlib import resources
from pathlib import Path

import pandas as pd

from emergence import schema as S

LABELS = ("emergent", "smooth", "flat", "inverse", "ambiguous", "out_of_scope")
SCORED = ("emergent", "smooth", "flat", "inverse")
COLUMNS = ("data", "family", "task", "subtask", "n_shot", "metric", "axis", "label", "source", "where", "note",
           "where_checked")   # "yes": the location was checked in the source's own files; "no": recalled
POOLED = "*"
SENSITIVITY = ("emergent_margin", "jump_se", "trend_margin", "min_floor_share", "floor_tolerance", "warmup_fraction")


def load_labels(path=None) -> pd.DataFrame:
    """The labelled-curves table (strings; empty cells as ''), checked for columns and labels."""
    if path is None:
        text = resources.files("emergence.analysis").joinpath("data/labelled_curves.csv").read_text("utf-8")
    else:
        text = Path(path).read_text("utf-8")
    rows = list(csv.DictReader(text.splitlines()))
    table = pd.DataFrame(rows, columns=list(rows[0]) if rows else COLUMNS).fillna("")
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"labelled curves table lacks column(s) {missing}")
    bad = table[~table["label"].isin(LABELS)]
    if len(bad):
        raise ValueError(f"unknown label(s) {sorted(set(bad['label']))}; allowed: {', '.join(LABELS)}")
    return table


def curve_rows(tidy: pd.DataFrame, label_row) -> pd.DataFrame:
    """The tidy rows of one listed curve (family relabelled '*' when pooled)."""
    r = label_row
    sub = tidy[S.SUBTASK].fillna("").astype(str) if S.SUBTASK in tidy else pd.Series("", index=tidy.index)
    mask = (tidy[S.TASK] == r["task"]) & (tidy[S.METRIC] == r["metric"]) & (sub == r["subtask"])
    if r["family"] != POOLED:
        mask &= tidy[S.FAMILY] == r["family"]
    if r["n_shot"] != "" and "n_shot" in tidy:
        mask &= pd.to_numeric(tidy["n_shot"], errors="coerce") == float(r["n_shot"])
    out = tidy[mask].copy()
    out[S.FAMILY] = r["family"]
    out[S.SUBTASK] = r["subtask"]
    if "n_shot" in out:
        out["n_shot"] = r["n_shot"]   # one curve per listed row, whatever the file's shot column says
    return out


def listed_curves(labels: pd.DataFrame, tables: dict) -> dict:
    """{axis: the tidy rows of every listed curve on it}, each curve its own family
    ('<family>#<label row>'). ``tables``: {data file name: tidy frame}."""
    out = {}
    for axis, group in labels.groupby("axis"):
        parts = [curve_rows(tables[r["data"]], r).assign(_row=i, **{S.FAMILY: f"{r['family']}#{i}"})
                 for i, r in group.iterrows()]
        out[axis] = pd.concat(parts, ignore_index=True)
    return out


def detector_verdicts(labels: pd.DataFrame, tables: dict, config=None, workers: int = 1,
                      curves: dict | None = None) -> pd.DataFrame:
    """``labels`` with the detector's 'verdict' (and 'reason', 'n_points'): one ``verdicts`` call
    per axis on exactly the listed curves. ``tables``: {data file name: tidy frame};
    ``curves``: ``listed_curves(labels, tables)`` when already selected (the sensitivity runs)."""
    from emergence.analysis.verdicts import ClassifyConfig, verdicts

    config = ClassifyConfig() if config is None else config
    curves = listed_curves(labels, tables) if curves is None else curves
    out = labels.copy()
    out["verdict"], out["reason"], out["n_points"] = "", "", 0
    for axis, rows in curves.items():
        found = verdicts(rows, axis=axis, config=config, workers=workers)
        for _, v in found.iterrows():
            i = int(str(v[S.FAMILY]).rsplit("#", 1)[1])
            out.loc[i, ["verdict", "reason", "n_points"]] = [v["label"], v["reason"], int(v["n_points"])]
    return out


def score(scored: pd.DataFrame) -> dict:
    """Accuracy, false-emergent rate (non-emergent labels called emergent), emergent recall and the
    confusion matrix (rows: published label, columns: verdict) of rows labelled emergent/smooth/flat/inverse."""
    s = scored[scored["label"].isin(SCORED)]
    non = s[s["label"] != "emergent"]
    emer = s[s["label"] == "emergent"]
    confusion = pd.crosstab(s["label"], s["verdict"]) if len(s) else pd.DataFrame()
    return dict(n=len(s), accuracy=float((s["label"] == s["verdict"]).mean()) if len(s) else float("nan"),
                false_emergent=float((non["verdict"] == "emergent").mean()) if len(non) else float("nan"),
                n_non_emergent=len(non),
                emergent_recall=float((emer["verdict"] == "emergent").mean()) if len(emer) else float("nan"),
                n_emergent=len(emer), confusion=confusion)


def sensitivity(labels: pd.DataFrame, tables: dict, factors=(0.5, 2.0), workers: int = 1) -> pd.DataFrame:
    """Scores with each of ``SENSITIVITY``'s thresholds of ``ClassifyConfig`` scaled by each factor."""
    from emergence.analysis.verdicts import ClassifyConfig

    base = ClassifyConfig()
    scored = labels[labels["label"].isin(SCORED)]
    curves = listed_curves(scored, tables)   # selected once for every threshold's rerun
    rows = []
    for name in SENSITIVITY:
        for f in factors:
            value = getattr(base, name) * f
            r = score(detector_verdicts(scored, tables, replace(base, **{name: value}), workers=workers, curves=curves))
            rows.append(dict(threshold=name, factor=f, value=value, accuracy=r["accuracy"],
                             false_emergent=r["false_emergent"], emergent_recall=r["emergent_recall"]))
    return pd.DataFrame(rows)


def report(labels: pd.DataFrame, found: pd.DataFrame, sens: pd.DataFrame) -> str:
    """The markdown of the 'Real curves with published labels' section."""
    from emergence.analysis.verdicts import ClassifyConfig

    r, base = score(found), ClassifyConfig()
    counts = labels["label"].value_counts()
    by_source = found[found["label"].isin(SCORED)].groupby("data").apply(
        lambda g: f"{(g['label'] == g['verdict']).mean():.0%} of {len(g)}", include_groups=False)

    def pct(v):
        return "" if pd.isna(v) else f"{v:.0%}"

    lines = [
        f"{len(labels)} curves of the reference data, each with the label a published judgement implies and the "
        "source cited (`emergence/analysis/data/labelled_curves.csv`: " + ", ".join(
            f"{counts.get(k, 0)} {k}" for k in LABELS) + "). The labels were written from the sources before the "
        "detector was run on them and are never taken from its output; the detector runs with the current "
        "`ClassifyConfig` defaults, not tuned on this set. `ambiguous` (the literature disagrees, or the mapping "
        "to the reference curve is loose) and `out_of_scope` rows are reported, not scored. "
        f"{(labels['where_checked'] == 'no').sum()} rows cite a figure or section not yet checked against the "
        "source's full text (`where_checked = no`); their scores are shown apart below.", "",
        "| measure | value |", "|---|---:|",
        f"| accuracy ({r['n']} scored curves) | {pct(r['accuracy'])} |",
        f"| false `emergent` (of {r['n_non_emergent']} curves labelled non-emergent) | {pct(r['false_emergent'])} |",
        f"| emergent recall (of {r['n_emergent']} curves labelled emergent) | {pct(r['emergent_recall'])} |",
        "| accuracy by reference table | " + "; ".join(f"{k}: {v}" for k, v in by_source.items()) + " |",
        "| accuracy, rows with a checked citation / with a recalled one | " + " / ".join(
            pct(score(found[found["where_checked"] == c])["accuracy"]) or "-" for c in ("yes", "no")) + " |",
        "", "Confusion matrix (rows: published label, columns: verdict):", "", "```",
        r["confusion"].to_string() if len(r["confusion"]) else "(none)", "```", "",
        "Sensitivity: each threshold of `ClassifyConfig` halved and doubled, the others at their defaults "
        "(" + ", ".join(f"{name} {getattr(base, name):g}" for name in SENSITIVITY) + ").", "",
        "| threshold | value | accuracy | false emergent | emergent recall |", "|---|---:|---:|---:|---:|",
        f"| (defaults) | | {pct(r['accuracy'])} | {pct(r['false_emergent'])} | {pct(r['emergent_recall'])} |"]
    for s in sens.itertuples():
        lines.append(f"| {s.threshold} x{s.factor:g} | {s.value:g} | {pct(s.accuracy)} | {pct(s.false_emergent)} | "
                     f"{pct(s.emergent_recall)} |")
    wrong = found[found["label"].isin(SCORED) & (found["label"] != found["verdict"])]
    lines += ["", "Disagreements (label, verdict, the detector's reason):", ""]
    lines += [f"- {_name(w)}: {w['label']} -> **{w['verdict']}** ({w['reason']}); source: {w['source']}"
              for _, w in wrong.iterrows()] or ["- none"]
    amb = found[~found["label"].isin(SCORED)]
    lines += ["", "Not scored: the detector's verdicts on the ambiguous and out-of-scope curves:", "",
              "| label | " + " | ".join(sorted(set(amb["verdict"]))) + " |",
              "|---|" + "---:|" * len(set(amb["verdict"]))]
    for label, g in amb.groupby("label"):
        vc = g["verdict"].value_counts()
        lines.append(f"| {label} | " + " | ".join(str(vc.get(v, 0)) for v in sorted(set(amb["verdict"]))) + " |")
    return "\n".join(lines)


def _name(r) -> str:
    sub = f"/{r['subtask']}" if r["subtask"] else ""
    return f"{r['family']} {r['task']}{sub} {r['metric']} vs {r['axis']}"
