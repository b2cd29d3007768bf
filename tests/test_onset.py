"""Where a task emerges: eta and N_c predicted from small models, scored on synthetic families
with known answers, plus the Chinchilla-law critical size and the CLI's --cutoff."""

import re

import numpy as np
import pandas as pd
import pytest

from emergence import schema as S
from emergence.cli import main
from emergence.analysis.onset import onset_backtest, onset_summary
from emergence.analysis.scaling import critical_size, fit_chinchilla, fit_size_law
from emergence.analysis.synthetic import onset_benchmark, onset_score, synthetic_family

TRUE = {"E": 1.8, "A": 400.0, "B": 410.0, "alpha": 0.34, "beta": 0.28}


def chinchilla_loss(n, d, p=TRUE):
    return p["E"] + p["A"] / np.asarray(n, float) ** p["alpha"] + p["B"] / np.asarray(d, float) ** p["beta"]


@pytest.fixture(scope="module")
def chinchilla_fit():
    n = np.repeat(np.geomspace(1e7, 1e9, 6), 4)
    d = n * np.tile([5, 20, 80, 320], 6)
    return fit_chinchilla(n, d, chinchilla_loss(n, d), n_boot=20, workers=1)


def test_critical_size_on_a_chinchilla_law_solves_the_recipe(chinchilla_fit):
    p = chinchilla_fit.params
    at_ratio = critical_size(2.6, chinchilla_fit, tokens_per_param=20)
    assert chinchilla_loss(at_ratio.n_c, 20 * at_ratio.n_c, p) == pytest.approx(2.6, rel=1e-9)
    low, high = at_ratio.intervals["n_c"]
    assert low <= at_ratio.n_c <= high and at_ratio.status == "ok"
    fixed = critical_size(2.6, chinchilla_fit, tokens=3e11)   # closed form at a fixed D
    floor = p["E"] + p["B"] / 3e11 ** p["beta"]
    assert fixed.n_c == pytest.approx((p["A"] / (2.6 - floor)) ** (1 / p["alpha"]), rel=1e-6)
    never = critical_size(p["E"] - 0.1, chinchilla_fit, tokens_per_param=20)
    assert np.isinf(never.n_c) and never.status == "undetermined" and "never reached" in never.reason
    with pytest.raises(ValueError, match="exactly one"):
        critical_size(2.6, chinchilla_fit, tokens_per_param=20, tokens=1e11)
    size_law = fit_size_law(np.geomspace(1e7, 1e9, 6), chinchilla_loss(np.geomspace(1e7, 1e9, 6), 3e11), n_boot=0)
    with pytest.raises(ValueError, match="has no tokens"):
        critical_size(2.6, size_law, tokens_per_param=20)


def _threshold_row(fam, n_boot=20):
    out = onset_backtest(fam.table, fam.cutoff, tokens_per_param=fam.tokens_per_param, n_boot=n_boot,
                         seed=0, include_all=True)
    return out[out[S.TASK] == "threshold"].iloc[0], out[out[S.TASK] == "smooth"].iloc[0]


@pytest.mark.parametrize("seed", [1, 8])   # over-trained families whose N_c lies beyond every small size
def test_eta_and_critical_size_are_predicted_beyond_the_small_models(seed):
    fam = synthetic_family(seed, "overtrained")
    assert fam.situation == "beyond"
    largest_small = fam.table.loc[fam.table[S.PARAMS] < fam.cutoff, S.PARAMS].max()
    assert fam.n_c > largest_small
    row, control = _threshold_row(fam)
    assert row["status"] == "predicted" and row["law"] == "chinchilla" and row["tokens_per_param"] == 20
    assert abs(row["eta_pred"] - fam.eta) < 0.05
    assert row["eta_pred_lo"] <= fam.eta <= row["eta_pred_hi"]
    assert abs(np.log10(row["nc_pred"] / fam.n_c)) < np.log10(1.25)
    assert row["nc_pred_lo"] <= fam.n_c <= row["nc_pred_hi"]
    # the threshold model at the predicted loss beats extrapolating the best smooth model
    assert row["mae_threshold"] < row["mae_smooth"]
    assert control["label_small"] != "emergent" and control["status"] == "neither"


def test_a_threshold_out_of_reach_gets_a_valid_bound_not_a_location():
    fam = synthetic_family(0, "overtrained")
    assert fam.situation == "out of reach"
    row, _ = _threshold_row(fam)
    assert row["status"] == "bound" and pd.isna(row["eta_pred"]) and pd.isna(row.get("nc_pred"))
    assert row["nc_bound"] <= fam.n_c
    assert row["label_full"] == "emergent"


def test_a_fixed_token_family_uses_the_size_law():
    fam = synthetic_family(3, "fixed_tokens")
    row, _ = _threshold_row(fam)
    assert row["law"] == "size" and pd.isna(row["tokens_per_param"])
    assert row["status"] == "predicted" and abs(np.log10(row["nc_pred"] / fam.n_c)) < np.log10(1.25)


def test_families_that_cannot_be_backtested_say_why():
    fam = synthetic_family(1, "overtrained")
    sizes = np.sort(fam.table[S.PARAMS].unique())
    below_all = onset_backtest(fam.table, sizes[1], n_boot=0)
    assert below_all["status"].tolist() == ["undetermined"]
    assert "fewer than 3 sizes below the cutoff" in below_all["reason"].iloc[0]
    above_all = onset_backtest(fam.table, sizes[-1] * 2, n_boot=0)
    assert "no model with params >=" in above_all["reason"].iloc[0]
    no_loss = onset_backtest(fam.table.drop(columns=[S.LOSS]), fam.cutoff, n_boot=0)
    assert "no values in 'loss'" in no_loss["reason"].iloc[0]
    assert onset_summary(below_all)["predicted"].tolist() == [0]


def test_the_benchmark_scores_every_situation():
    table = onset_benchmark(6, seed=0, n_boot=10, workers=1)
    score = onset_score(table)
    assert set(table["situation"]) <= {"within", "beyond", "out of reach"}
    assert len(table) == 6 and score["families"].sum() == 6
    out_of_reach = table[table["situation"] == "out of reach"]
    assert not out_of_reach["status"].isin(["predicted", "not confirmed"]).any()


def test_cli_analyze_cutoff_writes_the_backtests(tmp_path):
    fam = synthetic_family(1, "overtrained")
    table = tmp_path / "family.csv"
    fam.table.to_csv(table, index=False)
    out = tmp_path / "analysis"
    assert main(["analyze", str(table), "--x", "loss", "--cutoff", f"{fam.cutoff:.6g}", "--n-boot", "10",
                 "--workers", "1", "-o", str(out)]) == 0
    onset = pd.read_csv(out / "onset.csv")
    assert onset.loc[onset[S.TASK] == "threshold", "status"].tolist() == ["predicted"]
    backtest = pd.read_csv(out / "backtest.csv")
    assert set(backtest["form"]) == {"size", "chinchilla"}
    chin = backtest[(backtest["form"] == "chinchilla") & (backtest["status"] == "ok")]
    assert len(chin) == 3 and chin["rel_err"].abs().max() < 0.05     # held-out: 2 + 1 runs
    assert main(["analyze", str(table), "--x", "loss", "--workers", "1", "-o", str(tmp_path / "plain")]) == 0
    assert not (tmp_path / "plain" / "onset.csv").exists()


def test_validate_writes_every_section_and_skips_missing_reference_data(tmp_path, monkeypatch):
    monkeypatch.delenv("EMERGENCE_REFERENCE_DATA", raising=False)
    monkeypatch.chdir(tmp_path)                  # no ../shared/reference-data from here
    out = tmp_path / "VALIDATION.md"
    assert main(["validate", "--reference-data", str(tmp_path / "nowhere"), "-o", str(out)]) == 1
    assert not out.exists()                      # a wrong folder is an error, not a silent skip
    assert main(["validate", "--curves", "30", "--families", "3", "--ladders", "4", "-o", str(out)]) == 0
    text = out.read_text()
    assert text.count("Skipped: ") == 8 and "Reference data: `not found`" in text
    for title in ("Synthetic curves with known verdicts", "Where a task emerges: synthetic families",
                  "Where a task emerges: synthetic families with run-level offsets",
                  "False emergent on re-simulated real smooth curves", "The floor rule, chosen on development ladders",
                  "Where a task emerges: Gadre", "Where a task emerges: OLMo", "Chinchilla refit", "OLMo ladder", "Pythia"):
        assert f"## {title}" in text
    assert "| overtrained |" in text and "3 generated families" in text


def test_report_shows_where_tasks_emerge(tmp_path):
    from emergence.report.build import ReportConfig, build_report

    fam = synthetic_family(1, "overtrained")
    table = tmp_path / "family.csv"
    fam.table.to_csv(table, index=False)
    config = ReportConfig(cutoff=fam.cutoff, n_boot=10, workers=1, max_tasks=1)
    report = build_report(table, tmp_path / "report", config=config)
    html = report.html.read_text()
    assert 'id="onset"' in html and "Where tasks emerge" in html and "predicted" in html
    assert any(f.name.endswith("-onset.png") for f in report.figures)
    assert "## Where tasks emerge" in report.summary.read_text()
    assert "--cutoff" in html                         # the rebuild command keeps the backtest
    # Each emergent verdict shows its run-level P(emergent) and q-value, in the HTML and the summary.
    assert "<th>P(emergent)</th><th>q</th>" in html
    emergent = [line for line in report.summary.read_text().splitlines()
                if line.startswith("- synthetic") and "vs loss" in line and "/ threshold /" in line]
    assert emergent and all(re.search(r"P\(emergent\) [01](\.\d+)?, q 0\.0\d*", line) for line in emergent), emergent
    # An analysis folder without the backtest is not reused when one is asked for.
    assert main(["analyze", str(table), "--workers", "1", "--n-boot", "0"]) == 0
    again = build_report(table, tmp_path / "again", config=config)
    assert "analysed without --cutoff" in again.analysis_source and 'id="onset"' in again.html.read_text()


def test_warm_up_checkpoints_change_nothing_in_the_backtest():
    fam = synthetic_family(3, "fixed_tokens")
    t = fam.table
    first = t.loc[t.groupby([S.MODEL, S.TASK])[S.STEP].idxmin()]
    # before 1% of each run's tokens: the initial loss plateau, answers at chance
    warm = pd.concat([first.assign(**{S.STEP: s, S.TOKENS: first[S.TOKENS] * s / first[S.STEP] / 100,
                                      S.LOSS: 9.0 - s / 10, S.VALUE: first[S.CHANCE], S.CHECKPOINT: f"step{s}"})
                      for s in (1, 2, 4)], ignore_index=True)
    cols = [S.TASK, "status", "label_small", "label_full", "n_train_points", "eta_pred", "eta_full"]
    plain = onset_backtest(t, fam.cutoff, n_boot=0, include_all=True)[cols]
    warmed = onset_backtest(pd.concat([t, warm], ignore_index=True), fam.cutoff, n_boot=0, include_all=True)[cols]
    pd.testing.assert_frame_equal(plain, warmed)


def test_report_reuses_an_analysis_made_with_its_cutoff_even_when_nothing_emerged(tmp_path, capsys):
    fam = synthetic_family(1, "overtrained")
    table = tmp_path / "smooth.csv"
    fam.table[fam.table[S.TASK] == "smooth"].to_csv(table, index=False)   # the control: no onset to find
    cutoff = f"{fam.cutoff:.6g}"
    assert main(["analyze", str(table), "--x", "loss", "--cutoff", cutoff, "--n-boot", "5", "--workers", "1"]) == 0
    capsys.readouterr()
    report = ["report", str(table), "--max-tasks", "0", "--n-boot", "5"]
    assert main(report + ["-o", str(tmp_path / "same"), "--cutoff", cutoff]) == 0
    assert "re-used from" in capsys.readouterr().out
    assert main(report + ["-o", str(tmp_path / "other"), "--cutoff", f"{fam.cutoff * 2:.6g}"]) == 0
    assert f"analysed with --cutoff {fam.cutoff:g}" in capsys.readouterr().out
