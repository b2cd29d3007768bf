"""The command line: listings, did-you-mean errors, run -> export end to end, exit codes."""

import pandas as pd
import pytest

from emergence import schema as S
from emergence.cli import main


def test_unknown_command_suggests(capsys):
    assert main(["rn"]) == 2
    assert "Did you mean 'run'" in capsys.readouterr().err


def test_unknown_option_is_rejected_not_ignored(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--familly", "x"])
    assert "unrecognized arguments: --familly" in capsys.readouterr().err


def test_listings(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "huggingface" in out and "load_model" in out and "register_tasks" in out
    assert main(["families"]) == 0
    out = capsys.readouterr().out
    assert "pythia " in out and "154" in out
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert "add_3d" in out and "digit_1" in out and "chance 0.1" in out and "heldout_loss" in out


@pytest.mark.parametrize("argv, message", [
    (["run", "--family", "pythya", "--tasks", "add_2d"], "Did you mean 'pythia'"),
    (["run", "--family", "pythia", "--tasks", "add_2dd"], "Did you mean 'add_2d'"),
    (["run", "--family", "pythia", "--tasks", "add_2d", "--sizes", "71m"], "size in family 'pythia'"),
    (["run", "--family", "pythia", "--tasks", "add_2d", "--steps", "ten"], "Bad step selection"),
    (["run", "--family", "pythia", "--tasks", "add_2d", "--batch-size", "lots"], "--batch-size"),
    (["run", "--tasks", "add_2d"], "No family given"),
    (["export", "/nonexistent/run"], "not a run directory"),
])
def test_bad_input_exits_with_a_message(argv, message, capsys, tmp_path):
    if argv[0] == "run":
        argv = argv + ["--out", str(tmp_path / "r")]
    assert main(argv) == 1
    assert message in capsys.readouterr().err


def test_run_and_export_end_to_end(tiny_family_dir, tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text(f'family = "{tiny_family_dir}"\ntasks = ["mc_arith", "heldout_loss"]\n'
                      f'out = "{tmp_path / "run"}"\nlimit = 4\n[select]\nsizes = ["tiny-h32-l2"]\n'
                      '[backend]\nbatch_size = 4\n')
    assert main(["run", "--config", str(config), "--steps", "200", "--no-progress"]) == 0
    assert "2 cells evaluated" in capsys.readouterr().out
    assert main(["run", "--config", str(config), "--steps", "200", "--no-progress"]) == 0
    assert "0 cells evaluated, 2 already done" in capsys.readouterr().out
    assert main(["export", str(tmp_path / "run")]) == 0
    df = pd.read_csv(tmp_path / "run" / "results.csv")
    assert list(df.columns) == list(S.TIDY_COLUMNS)
    assert set(df[S.CHECKPOINT]) == {"tiny-h32-l2@step200"}
    loss = df[(df[S.TASK] == "heldout_loss") & (df[S.METRIC] == "nats_per_token")][S.VALUE].iloc[0]
    assert (df[S.LOSS] == loss).all() and 3 < loss < 10   # random init: about ln(vocab) nats


def test_failed_cells_make_the_command_fail(tiny_family_dir, tmp_path, capsys):
    import shutil

    fam = tmp_path / "fam"
    shutil.copytree(tiny_family_dir / "tiny-h32-l2@step100", fam / "tiny-h32-l2@step100")
    (fam / "tiny-h32-l2@step100" / "model.safetensors").write_bytes(b"not safetensors")
    code = main(["run", "--family", str(fam), "--tasks", "mc_arith", "--limit", "2", "--no-progress",
                 "--out", str(tmp_path / "run")])
    assert code == 1
    err = capsys.readouterr().err
    assert "FAILED tiny-h32-l2@step100 / mc_arith" in err and "loading failed" in err


def test_demo_runs_the_whole_pipeline(tmp_path, capsys, monkeypatch):
    # A micro lab (two sizes, two checkpoints, a few steps) through the demo's own flags: the
    # designed verdicts need the full budget and are checked in test_lab.py.
    monkeypatch.setenv("EMERGENCE_LAB_CACHE", str(tmp_path / "cache"))
    args = ["demo", "--out", str(tmp_path / "demo"), "--limit", "2", "--sizes", "8x1,16x1", "--tokens", "3072",
            "--batch-size", "16", "--checkpoints", "2", "--mix", "copy=0.5,filler=0.5", "--workers", "1",
            "--eval-workers", "1", "--no-report", "--no-progress"]
    assert main(args) == 0
    df = pd.read_csv(tmp_path / "demo" / "results.csv")
    assert df[S.CHECKPOINT].nunique() == 4
    assert set(df[S.TASK]) == {"copy", "heldout_loss"}
    assert df[S.LOSS].notna().all()
    assert (tmp_path / "demo" / "analysis" / "verdicts.csv").exists()
    capsys.readouterr()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Reusing the lab family" in out


def test_families_says_when_the_lab_family_is_not_trained(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("EMERGENCE_LAB_CACHE", str(tmp_path / "empty-cache"))
    assert main(["families"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("lab "))
    assert "not trained yet" in line and "emergence lab train" in line and str(tmp_path) in line
