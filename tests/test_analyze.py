"""`emergence analyze`: the whole analysis on tidy tables, from Python and from the CLI."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emergence import schema as S
from emergence.analysis.analyze import analyze, load_tables, summary
from emergence.cli import main
from emergence.export import tidy_table, write_table
from emergence.analysis.synthetic import composite
from emergence.tidy import read_tidy

FIXTURES = Path(__file__).parent / "fixtures"


def _composite_table(k=5, n=1000):
    """A p^k task: sub-tasks improve smoothly 40% -> 60%, exact match 1% -> 8% (the brief's case)."""
    x, subs, comp = composite(k=k, points=8, n=n, seed=3)
    rows = []
    for i, params in enumerate(x):
        base = {S.FAMILY: "synthetic", S.MODEL: f"m{i}", S.CHECKPOINT: f"m{i}", S.PARAMS: params,
                S.TASK: "chain", S.N: n}
        rows.append({**base, S.SUBTASK: "", S.METRIC: "exact_match", S.VALUE: comp[i], S.CHANCE: 0.0})
        for j in range(k):
            rows.append({**base, S.SUBTASK: f"step_{j + 1}", S.METRIC: "acc", S.VALUE: subs[j, i],
                         S.CHANCE: 0.0})
    return pd.DataFrame(rows)


def test_composite_threshold_is_called_metric_induced(tmp_path):
    path = tmp_path / "t.csv"
    _composite_table().to_csv(path, index=False)
    result = analyze(load_tables([path]))
    audit = result.audit
    assert list(audit["label"]) == ["metric-induced"]
    subs = result.verdicts[result.verdicts[S.SUBTASK] != ""]
    assert set(subs["label"]) == {"smooth"}
    comp = result.composites.iloc[0]
    assert comp["k"] == 5 and comp["rmse_independent"] < 0.01
    assert any("no loss values" in n for n in result.notes)
    assert "metric-induced" in summary(result)


def test_audit_summary_names_the_setting_of_each_line(tmp_path):
    """The same task audited in two few-shot settings: two summary lines, each saying which."""
    path = tmp_path / "t.csv"
    pd.concat([_composite_table().assign(**{S.N_SHOT: shots}) for shots in (0, 5)]).to_csv(path, index=False)
    lines = [ln for ln in summary(analyze(load_tables([path]))).splitlines() if "metric-induced -" in ln]
    assert [ln.split(" vs ")[0].strip() for ln in lines] == ["synthetic / chain (0-shot)", "synthetic / chain (5-shot)"]


def test_missing_optional_columns_are_reported_not_fatal(tmp_path):
    df = _composite_table().drop(columns=[S.N, S.CHANCE])
    path = tmp_path / "bare.csv"
    df.to_csv(path, index=False)
    result = analyze(load_tables([path]), axes=["params", "loss"])
    assert not result.verdicts.empty
    assert any("axis 'loss' skipped" in n for n in result.notes)
    assert any("no stderr or n" in n for n in result.notes)


def test_bad_table_names_the_rows(tmp_path):
    df = _composite_table()
    df[S.VALUE] = df[S.VALUE].astype(object)
    df.loc[3, S.VALUE] = "high"
    path = tmp_path / "bad.csv"
    df.to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"value.*row.*4"):
        load_tables([path])


def test_cli_writes_csvs_and_a_summary(tmp_path, capsys):
    path = tmp_path / "t.csv"
    _composite_table().to_csv(path, index=False)
    assert main(["analyze", str(path), "-o", str(tmp_path / "out"), "--x", "params"]) == 0
    out = capsys.readouterr().out
    assert "Verdicts" in out and "metric-induced" in out
    verdicts = pd.read_csv(tmp_path / "out" / "verdicts.csv")
    assert set(verdicts["axis"]) == {"params"} and len(verdicts) == 6
    assert np.isfinite(verdicts["breakthroughness"]).any()
    assert main(["analyze", str(path), "--x", "size"]) == 1
    assert "Unknown axis 'size'" in capsys.readouterr().err


def test_run_directory_is_analysed_directly(tiny_family_dir, tmp_path):
    from emergence.run.config import BackendOptions, RunConfig
    from emergence.run.runner import run

    cfg = RunConfig(family=str(tiny_family_dir), tasks=("mc_arith", "heldout_loss"), out=str(tmp_path / "run"),
                    limit=4, backend=BackendOptions(batch_size=4))
    run(cfg, progress=False)
    table = load_tables([tmp_path / "run"])
    result = analyze(table, n_boot=10)
    assert set(result.verdicts["axis"]) == {"params", "loss"}
    # Every curve of the run is judged, on each axis ...
    curves = {tuple(k) for k in table[["task", "subtask", "metric"]].drop_duplicates().itertuples(index=False)}
    for axis, v in result.verdicts.groupby("axis"):
        assert {tuple(k) for k in v[["task", "subtask", "metric"]].itertuples(index=False)} == curves, axis
    # ... exactly as the table `emergence export` writes of the same run directory.
    exported = write_table(tidy_table(tmp_path / "run"), tmp_path / "results.csv")
    from_file = analyze(read_tidy([exported]), n_boot=10)
    pd.testing.assert_frame_equal(result.verdicts, from_file.verdicts)


def test_background_work_returns_its_value_or_raises_its_error():
    from emergence.analysis.parallel import Background

    def boom():
        raise ValueError("bad family")

    assert Background(sum, [1, 2, 3]).result() == 6
    with pytest.raises(ValueError, match="bad family"):
        Background(boom).result()


def test_analysis_does_not_depend_on_the_workers(tmp_path):
    """Fits beside the verdicts (workers 0), or everything in this process (workers 1)."""
    df = read_tidy([FIXTURES / "olmo_ladder_small.csv.gz"])
    df = df[df[S.TASK].isin(df[S.TASK].unique()[:3])]
    one, many = analyze(df, workers=1, n_boot=10), analyze(df, workers=0, n_boot=10)
    for name, table in one.tables().items():
        pd.testing.assert_frame_equal(table, many.tables()[name], check_dtype=False)


def test_table_hash_is_the_content_not_the_file(tmp_path):
    """The hash the analysis/ manifest keeps: the same whichever way the table was stored and
    read back, in any row or column order; another value anywhere, another hash."""
    import importlib.util

    from emergence.analysis.analyze import table_hash
    from emergence.export import write_table

    df = read_tidy([FIXTURES / "pythia_small.csv.gz"])
    h = table_hash(df)
    again = [read_tidy([write_table(df, tmp_path / "t.csv")]), df.sample(frac=1, random_state=0)[df.columns[::-1]]]
    if importlib.util.find_spec("pyarrow"):
        again.append(read_tidy([write_table(df, tmp_path / "t.parquet")]))
    assert [table_hash(d) for d in again] == [h] * len(again)
    assert table_hash(df.assign(subtask=df[S.SUBTASK].replace("", None))) == h   # missing text is ""
    changed = df.copy()
    changed.loc[changed.index[7], S.VALUE] += 1e-9
    assert table_hash(changed) != h
    assert table_hash(df.iloc[1:]) != h
    small = df[df[S.TASK] == df[S.TASK].iloc[0]].head(40)
    assert analyze(small, n_boot=2, workers=1).table_sha256 == table_hash(small)   # what analyze saw


def test_curves_with_no_shape_go_to_not_judged_and_flops_is_derived(tmp_path):
    from emergence.analysis.analyze import read_analysis, write_analysis

    sizes = np.geomspace(1e8, 1e10, 6)
    rows = [{S.FAMILY: "f", S.MODEL: f"m{i}", S.CHECKPOINT: f"m{i}", S.PARAMS: n, S.TOKENS: 2e11,
             S.TASK: "qa", S.SUBTASK: "", S.METRIC: "acc", S.VALUE: 0.3 + 0.05 * i, S.N: 1000, S.CHANCE: 0.25}
            for i, n in enumerate(sizes)]
    rows += [{**rows[0], S.MODEL: "solo", S.CHECKPOINT: "solo", S.TASK: "rare"}]      # one point
    result = analyze(pd.DataFrame(rows), axes=["params", "flops"], workers=1)
    assert any("flops derived as 6 x params x tokens for 7 rows" in n for n in result.notes)
    nj = result.not_judged
    reasons = dict(zip(zip(nj[S.TASK], nj["axis"]), nj["reason"]))
    assert "duplicate axis" in reasons[("qa", "flops")]                # tokens constant: flops = c x params
    assert reasons[("rare", "params")].startswith("only 1 point")
    assert list(zip(result.verdicts[S.TASK], result.verdicts["axis"])) == [("qa", "params")]
    assert result.verdicts["judged"].all() and "Not judged" in summary(result)
    write_analysis(result, tmp_path / "a")
    assert len(read_analysis(tmp_path / "a").not_judged) == len(nj)


def test_sibling_metrics_that_disagree_are_flagged_in_the_audit():
    from emergence.analysis.decompose import sibling_audit

    v = pd.DataFrame({S.FAMILY: "f", S.TASK: ["a", "a", "b", "b", "c", "c"], S.SUBTASK: "", "axis": "params",
                      S.METRIC: ["acc", "acc_norm", "acc[rc]", "acc_len_norm[rc]", "acc[rc]", "acc_len_norm[mc]"],
                      "label": ["emergent", "smooth", "flat", "flat", "smooth", "flat"]})
    audit = sibling_audit(v)
    assert list(audit[S.TASK]) == ["a"] and audit["label"][0] == "siblings disagree"   # [rc] vs [mc]: not siblings
    assert audit["discontinuous"][0] == "acc: 1 emergent; acc_norm: 1 smooth"
    runs = pd.concat([v[v[S.TASK] == "a"].assign(**{S.MODEL: m, "axis": "tokens"}) for m in ("m1", "m2", "m3")])
    runs.loc[(runs[S.MODEL] != "m1") & (runs[S.METRIC] == "acc_norm"), "label"] = "emergent"
    assert "for 1 of 3 models" in sibling_audit(runs)["reason"][0]
