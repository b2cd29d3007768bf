"""The benchmarks' quick variants run and check correctness; times are never asserted."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "bench"))


def test_quick_benchmark_agrees_with_lmeval(tmp_path):
    import engine_vs_lmeval

    out = tmp_path / "bench.md"
    assert engine_vs_lmeval.main(["--sizes", "1m", "--reps", "1", "--quick", "--out", str(out)]) == 0
    table = out.read_text()
    assert table.count("| 1m |") == 3 and "identical" in table


def test_resume_and_one_more_checkpoint_evaluate_only_whats_missing(tmp_path):
    import run_scaling

    out = tmp_path / "scaling.md"
    # Non-zero unless: resuming evaluates nothing, adding a checkpoint evaluates just its cells.
    assert run_scaling.main(["--checkpoints", "1", "--limit", "2", "--out", str(out)]) == 0
    assert "| resume the finished run | 0 | 3 |" in out.read_text()


def test_quick_import_benchmark_imports_every_generated_file(tmp_path):
    import import_speed

    out = tmp_path / "import.md"
    assert import_speed.main(["--quick", "--out", str(out)]) == 0
    table = out.read_text()
    # 2 runs x 4 metrics; 2 tasks x 3 models x 26 rows per score file
    assert "| lm-eval-samples | 2 runs x 50 documents | 8 |" in table and "| bigbench | 2 tasks x 3 models | 156 |" in table


@pytest.mark.slow
def test_family_sweep_runs_both_sides_and_they_agree(tmp_path):
    import family_sweep

    out = tmp_path / "sweep.md"
    # Non-zero unless both sides scored every (checkpoint, task) with the same accuracies.
    assert family_sweep.main(["--checkpoints", "1", "--tasks", "add_2d,mc_arith", "--limit", "3",
                              "--reps", "1", "--out", str(out)]) == 0
    table = out.read_text()
    assert "| wall seconds |" in table and "| CPU seconds |" in table and "equal" in table
