"""The labelled real-curves table and its validate section."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emergence.analysis import labelled as L
from emergence.analysis.validate import default_reference_dir, labelled_section


def test_table_parses_cites_and_uses_allowed_labels():
    t = L.load_labels()
    assert len(t) >= 40
    assert set(t["label"]) <= set(L.LABELS)
    for col in ("source", "where", "note", "family", "task", "metric", "axis", "data"):
        assert (t[col].str.strip() != "").all(), f"a row has an empty {col!r}"
    assert set(t["axis"]) <= {"params", "tokens", "flops", "loss"}
    keys = ["data", "family", "task", "subtask", "n_shot", "metric", "axis"]
    assert not t.duplicated(keys).any(), "a curve is listed twice"
    assert {"emergent", "smooth"} <= set(t["label"])


def test_unknown_label_is_refused(tmp_path):
    t = L.load_labels().head(2).copy()
    t.loc[0, "label"] = "emergant"
    p = tmp_path / "bad.csv"
    t.to_csv(p, index=False)
    with pytest.raises(ValueError, match="emergant"):
        L.load_labels(p)


def test_listed_curves_exist_in_reference_data():
    beside = Path(__file__).resolve().parents[2] / "shared" / "reference-data"   # ../shared next to the checkout
    ref = default_reference_dir() or (beside if (beside / "tidy").is_dir() else None)
    if ref is None:
        pytest.skip("reference data not found")
    from emergence.tidy import read_tidy

    t = L.load_labels()
    for f, g in t.groupby("data"):
        tidy = read_tidy([ref / "tidy" / f], where=lambda d, k=set(g["task"]): d["task"].isin(k), setting_is_note=True)
        for _, r in g.iterrows():
            rows = L.curve_rows(tidy, r)
            assert rows[r["axis"]].notna().sum() >= 3, f"{f}: {r['family']} {r['task']} {r['metric']} vs {r['axis']}"


def _synthetic_table(tmp_path):
    """A tiny stand-in reference folder: one family, a threshold task and a smooth one against loss."""
    loss = np.linspace(4.0, 2.0, 12)
    rows = []
    for i, l in enumerate(loss):
        jump = 0.25 + (0.5 if l < 2.8 else 0.0) * min(1.0, (2.8 - l) / 0.3) if l < 2.8 else 0.25
        for task, v in (("jumpy", jump), ("steady", 0.25 + 0.3 * (4.0 - l) / 2.0)):
            rows.append(dict(family="fam", model=f"m{i}", params=1e8 * (i + 1), tokens=1e9, loss=l,
                             task=task, subtask="", metric="acc", value=v, stderr=0.005, chance=0.25))
    (tmp_path / "tidy").mkdir()
    pd.DataFrame(rows).to_csv(tmp_path / "tidy" / "tiny.csv", index=False)
    labels = pd.DataFrame([
        dict(data="tiny.csv", family="fam", task="jumpy", subtask="", n_shot="", metric="acc", axis="loss",
             label="emergent", source="test", where="here", note="synthetic", where_checked="yes"),
        dict(data="tiny.csv", family="fam", task="steady", subtask="", n_shot="", metric="acc", axis="loss",
             label="smooth", source="test", where="here", note="synthetic", where_checked="no"),
        dict(data="tiny.csv", family="fam", task="steady", subtask="", n_shot="", metric="acc", axis="params",
             label="ambiguous", source="test", where="here", note="synthetic", where_checked="yes")])
    return labels


def test_section_headings_on_a_synthetic_stand_in(tmp_path):
    labels = _synthetic_table(tmp_path)
    md = labelled_section(tmp_path, labels=labels)
    for heading in ("| accuracy (2 scored curves) |", "false `emergent`", "Confusion matrix", "Sensitivity",
                    "emergent_margin x0.5", "jump_se x2", "trend_margin x2", "Not scored",
                    "rows with a checked citation / with a recalled one", "1 rows cite a figure"):
        assert heading in md, heading


def test_section_is_skipped_without_reference_data(tmp_path):
    assert labelled_section(None).startswith("Skipped")
    assert labelled_section(tmp_path).startswith("Skipped")
