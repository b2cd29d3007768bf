"""read_tidy / check_tidy: formats, required columns, bad values named by row, duplicates, chance."""

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emergence import schema as S
from emergence.tidy import (CHANCE_SOURCE, TidyError, TidyWarning, check_tidy, fill_chance, limitations,
                            looks_like_accuracy, read_tidy, validate_accuracy)

FIXTURES = Path(__file__).parent / "fixtures"
REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference-data" / "tidy"

# The reference tables' columns: no checkpoint, n or chance; extra loss_name, n_shot, setting.
REF_COLUMNS = ["family", "model", "params", "params_nonembed", "tokens", "flops", "step", "loss", "loss_name",
               "task", "subtask", "n_shot", "metric", "value", "stderr", "setting", "source_file"]


def ref_rows(n=4):
    return pd.DataFrame({
        "family": "fam", "model": [f"m{i % 2}" for i in range(n)], "params": [1e8 * (1 + i % 2) for i in range(n)],
        "params_nonembed": np.nan, "tokens": [1e9 * (1 + i // 2) for i in range(n)], "flops": np.nan,
        "step": [1000 * (1 + i // 2) for i in range(n)], "loss": [3.0 - 0.1 * i for i in range(n)],
        "loss_name": "c4", "task": "arc_easy", "subtask": "", "n_shot": 0, "metric": "acc",
        "value": [0.3 + 0.05 * i for i in range(n)], "stderr": 0.01, "setting": "zero-shot", "source_file": "x",
    })[REF_COLUMNS]


def write(df, tmp_path, name="t.csv"):
    path = tmp_path / name
    if name.endswith(".parquet"):
        df.to_parquet(path, index=False)
    else:
        df.to_csv(path, index=False)
    return path


def test_reads_reference_format_and_derives_checkpoint(tmp_path):
    df = read_tidy(write(ref_rows(), tmp_path, "t.csv.gz"))
    assert list(df.columns[:len(S.TIDY_COLUMNS)]) == list(S.TIDY_COLUMNS)
    assert {"loss_name", "n_shot", "setting", "source_file"} <= set(df.columns)
    assert df[S.CHECKPOINT].tolist() == ["m0@step1000", "m1@step1000", "m0@step2000", "m1@step2000"]
    assert df[S.N].isna().all() and df[S.CHANCE].isna().all()
    assert any("absent" in note for note in df.attrs["notes"])


def test_parquet_and_several_files(tmp_path):
    a = write(ref_rows(), tmp_path, "a.parquet")
    b = write(ref_rows().assign(family="other"), tmp_path, "b.csv")
    df = read_tidy([a, b])
    assert len(df) == 8 and set(df[S.FAMILY]) == {"fam", "other"}


def test_minimal_table_says_what_it_cannot_do(tmp_path):
    df = read_tidy(write(ref_rows()[["family", "model", "task", "metric", "value"]].iloc[:1], tmp_path))
    notes = " ".join(limitations(df))
    for word in ("no loss", "no parameter counts", "no token counts", "no steps", "no stderr"):
        assert word in notes
    assert df[S.CHECKPOINT].tolist() == ["m0"]


def test_missing_required_column_is_named(tmp_path):
    with pytest.raises(TidyError, match=r"t\.csv: missing required column\(s\) \['metric'\]"):
        read_tidy(write(ref_rows().drop(columns="metric"), tmp_path))


def test_text_in_numeric_column_names_file_column_and_rows(tmp_path):
    df = ref_rows(8).astype({"value": object, "params": object})
    df.loc[[1, 3], "value"] = "oops"
    with pytest.raises(TidyError) as e:
        read_tidy(write(df, tmp_path))
    msg = str(e.value)
    assert "'value'" in msg and "rows 2, 4 of" in msg and "t.csv" in msg and "'oops'" in msg


def test_long_lists_of_bad_rows_are_cut(tmp_path):
    df = ref_rows(12).astype({"params": object})
    df["params"] = "n/a-ish"
    with pytest.raises(TidyError, match=r"'params'.*rows 1, 2, 3, 4, 5 and 7 more"):
        read_tidy(write(df, tmp_path))


def test_empty_required_text_is_an_error(tmp_path):
    df = ref_rows()
    df.loc[2, "task"] = ""
    with pytest.raises(TidyError, match=r"column 'task' is empty at row 3 of"):
        read_tidy(write(df, tmp_path))


def test_duplicate_keys_are_named_or_dropped_on_request(tmp_path):
    df = pd.concat([ref_rows(), ref_rows().iloc[[1]]], ignore_index=True)
    path = write(df, tmp_path)
    with pytest.raises(TidyError, match=r"1 key\(s\) appear more than once.*rows 2, 5 of"):
        read_tidy(path)
    with pytest.warns(TidyWarning, match="dropped duplicates"):
        kept = read_tidy(path, duplicates="first")
    assert len(kept) == 4 and any("duplicates" in n for n in kept.attrs["notes"])


def test_n_shot_and_setting_are_part_of_the_key(tmp_path):
    df = pd.concat([ref_rows(), ref_rows().assign(n_shot=5)], ignore_index=True)
    assert len(read_tidy(write(df, tmp_path))) == 8


def test_nonfinite_values_are_dropped_with_a_count(tmp_path):
    df = ref_rows(6).astype({"value": object})
    df.loc[0, "value"], df.loc[3, "value"], df.loc[4, "value"] = "inf", np.nan, "-inf"
    with pytest.warns(TidyWarning, match=r"dropped 3 row\(s\) with missing or non-finite value: rows 1, 4, 5"):
        out = read_tidy(write(df, tmp_path))
    assert len(out) == 3 and np.isfinite(out[S.VALUE]).all()
    assert any("dropped 3" in n for n in out.attrs["notes"])


def test_accuracy_outside_unit_interval_is_an_error(tmp_path):
    df = ref_rows()
    df.loc[1, "value"] = 63.0  # a percentage
    path = write(df, tmp_path)
    with pytest.raises(TidyError, match=r"\['acc'\] look like accuracies.*row 2 of.*divided by 100"):
        read_tidy(path)
    out = read_tidy(path, check_accuracy=False)
    assert validate_accuracy(out).index.tolist() == [1]


@pytest.mark.parametrize("metric,expected", [
    ("acc", True), ("acc_norm", True), ("exact_match", True), ("acc_len_norm[rc]", True),
    ("prob_correct[rc]", True), ("pass@1", True), ("em", True), ("exact_match,strict-match", True),
    ("bert_score_accuracy", True), ("logprob_correct[rc]", False), ("bpb[rc]", False), ("ppl", False),
    ("bleu", False), ("ce_loss", False), ("exact_match,strict-match,norm", False), ("edit_distance", False),
    ("temperature", False), ("nats_per_token", False),
])
def test_looks_like_accuracy(metric, expected):
    assert looks_like_accuracy(metric) is expected


def test_fill_chance_sources():
    df = pd.DataFrame({
        S.FAMILY: "f", S.MODEL: "m", S.SUBTASK: "",
        S.TASK: ["arc_easy", "mmlu_stem", "piqa", "mytask", "mytask", "weird", "arc_easy", "lambada_openai"],
        S.METRIC: ["acc", "acc", "acc_norm", "acc", "acc", "acc", "bpb", "acc"],
        S.STEP: [10, 10, 10, 0, 10, 10, 10, 10],
        S.VALUE: [0.3, 0.3, 0.6, 0.11, 0.4, 0.5, 1.2, 0.2],
        S.CHANCE: [np.nan, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan],
    })
    df.loc[0, S.CHANCE] = 0.2  # declared by the task already: kept
    out = fill_chance(df, declared={"weird": 0.1})
    assert out[S.CHANCE].tolist()[:6] == [0.2, 0.25, 0.5, 0.11, 0.11, 0.1]
    assert math.isnan(out[S.CHANCE].iloc[6]) and out[S.CHANCE].iloc[7] == 0.0
    assert out[CHANCE_SOURCE].tolist() == ["declared", "table", "table", "estimated", "estimated", "declared",
                                           "unknown", "table"]


def test_fixture_reads_with_extra_columns():
    df = read_tidy(FIXTURES / "olmo_ladder_small.csv.gz")
    assert "split" in df.columns and df[S.LOSS].notna().all()
    assert not any("no loss" in n for n in df.attrs["notes"])


@pytest.mark.skipif(not REFERENCE.exists(), reason="../shared/reference-data not present")
@pytest.mark.parametrize("name", ["chinchilla_epoch.csv", "gadre_overtraining.csv", "obsscaling.csv.gz"])
def test_reference_tables_read(name):
    df = read_tidy(REFERENCE / name)
    assert len(df) > 100 and df[S.CHECKPOINT].notna().all()


cell = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=4), st.none(),
                 st.integers(-10, 10))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(cell, min_size=1, max_size=8), steps=st.lists(cell, min_size=8, max_size=8),
       metric=st.sampled_from(["acc", "bpb", "exact_match", "x"]))
def test_any_table_reads_or_fails_clearly(values, steps, metric):
    n = len(values)
    df = pd.DataFrame({S.FAMILY: "f", S.MODEL: [f"m{i}" for i in range(n)], S.TASK: "t", S.METRIC: metric,
                       S.VALUE: pd.Series(values, dtype=object), S.STEP: pd.Series(steps[:n], dtype=object)})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TidyWarning)  # dropped non-finite rows are expected here
            out = check_tidy(df)
    except TidyError as e:
        assert "row" in str(e) or "column" in str(e)
        return
    assert np.isfinite(out[S.VALUE]).all()
    assert all(isinstance(c, str) and c for c in out[S.CHECKPOINT])



@pytest.mark.parametrize("name", ["t.csv", "t.parquet"])
def test_a_table_with_a_header_and_no_rows_names_the_file(tmp_path, name):
    empty = write(ref_rows(0), tmp_path, name)
    with pytest.raises(TidyError, match=rf"{name}: no data rows \(only a header\)"):
        read_tidy(empty)
    with pytest.raises(TidyError, match=rf"{name}: no data rows"):  # among good files too
        read_tidy([write(ref_rows(), tmp_path, "good.csv"), empty])


def test_a_where_that_keeps_no_rows_names_the_file(tmp_path):
    path = write(ref_rows(), tmp_path)
    with pytest.raises(TidyError, match=r"t\.csv: no rows with a finite value"):
        read_tidy(path, where=lambda df: df["task"] == "nope")
