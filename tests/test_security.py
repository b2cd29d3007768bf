"""Safety of what users and data hand us: config values stay data (never code, never a shell);
names from configs and tables cannot place files outside the run or report directory; a
repository's own code runs only when the user opts in, and the opt-in is in the provenance."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emergence import schema as S
from emergence.cli import main
from emergence.run.config import BackendOptions, ConfigError, RunConfig, load_config
from emergence.hookspecs import hookimpl
from emergence.names import file_name
from emergence.run.runner import run
from emergence.store import Store

from helpers import manager

HOSTILE = ("../../evil", "/tmp/evil", "..", ".", "", "a/../../b", "evil\x00.txt", "~/evil")


def _files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*")}


def test_config_values_are_plain_data_never_code_or_shell(tiny_family_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # a relative `touch` would land here too
    shell, python = "$(touch pwned-shell); `touch pwned-tick`", "__import__('os').system('touch pwned-python')"
    path = tmp_path / "run.toml"
    path.write_text(f'family = {json.dumps(str(tiny_family_dir))}\ntasks = [{json.dumps(shell)}, {json.dumps(python)}]\n'
                    f'out = "run"\n[select]\nglob = {json.dumps(shell)}\n')
    config = load_config(path)
    assert config.tasks == (shell, python) and config.select.glob == shell

    assert main(["run", "--config", str(path)]) == 1
    assert f"No checkpoint of family 'tinyfam' matches Selection(sizes=(), steps=None, glob={shell!r})" in \
        capsys.readouterr().err
    assert main(["run", "--config", str(path), "--glob", "*"]) == 1
    assert f"Unknown task {shell!r}" in capsys.readouterr().err
    assert main(["run", "--family", shell, "--tasks", "t_pick", "--out", "run"]) == 1
    assert "Unknown family" in capsys.readouterr().err
    # A value meant for the model loader is only compared with known names, before any run starts.
    path.write_text(f'[backend]\ndtype = {json.dumps(python)}\n')
    with pytest.raises(ConfigError, match="line 2.*Unknown dtype"):
        load_config(path)
    with pytest.raises(ConfigError, match="Unknown dtype"):
        RunConfig(family=str(tiny_family_dir), tasks=("t_pick",), out="run", backend=BackendOptions(dtype=python))
    assert not (tmp_path / "run").exists()
    assert not list(tmp_path.rglob("pwned*"))


@pytest.mark.parametrize("name", HOSTILE)
def test_file_names_from_data_are_one_safe_component(name, tmp_path):
    safe = file_name(name)
    assert "/" not in safe and "\x00" not in safe and not safe.startswith(".")
    assert (tmp_path / safe).resolve().parent == tmp_path.resolve()
    assert file_name("pythia-410m@step143000") == "pythia-410m@step143000"
    assert len({file_name(n) for n in HOSTILE}) == len(HOSTILE)  # distinct names, distinct files


def test_hostile_checkpoint_names_keep_offloaded_weights_in_the_run_directory(tiny_model_dir, tmp_path):
    outside = tmp_path / "outside" / "evil"
    family = tmp_path / "family.toml"
    entries = "".join(f'[[checkpoint]]\nname = {json.dumps(name)}\npath = {json.dumps(str(tiny_model_dir))}\n'
                      for name in ("../../evil", str(outside)))
    family.write_text(f'name = "../../evil-family"\n{entries}')
    run_dir = tmp_path / "deep" / "run"
    during = []

    class Watch:  # what the disk holds while each checkpoint is loaded, its offloaded weights included
        @staticmethod
        @hookimpl(wrapper=True)
        def load_model():
            lm = yield
            during.append(_files(tmp_path))
            return lm

    pm = manager()
    pm.register(Watch, name="watch")
    backend = BackendOptions(batch_size=4, device_map="auto", max_memory={"cpu": "600KB"})
    summary = run(RunConfig(family=str(family), tasks=("t_pick",), out=str(run_dir), limit=2, backend=backend),
                  pm=pm, progress=False)
    assert summary.ok and summary.evaluated == 2
    offload = Path("deep", "run", "offload")
    for files in during:
        assert {f for f in files if offload in f.parents} and all(
            f == Path("family.toml") or run_dir.relative_to(tmp_path) in (f, *f.parents) or f == Path("deep")
            for f in files), sorted(map(str, files))
    assert not outside.parent.exists() and not (tmp_path / "evil").exists()
    assert list((run_dir / "offload").iterdir()) == []  # each checkpoint's offload left with its model


def test_hostile_names_in_a_table_keep_report_files_in_the_report_directory(tmp_path):
    from emergence.report.build import ReportConfig, build_report

    params = np.geomspace(1e7, 1e9, 5)
    rows = [{S.FAMILY: family, S.MODEL: f"m{i}", S.CHECKPOINT: f"../m{i}", S.PARAMS: p, S.TASK: task,
             S.SUBTASK: "", S.METRIC: "acc", S.VALUE: v, S.CHANCE: 0.25, S.N: 500}
            for family in ("../../evil", str(tmp_path / "evil-family"))
            for task in ("../../evil", str(tmp_path / "evil"), "/tmp/evil")
            for i, (p, v) in enumerate(zip(params, (0.25, 0.26, 0.25, 0.6, 0.9)))]
    table = tmp_path / "table.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    report = build_report([table], tmp_path / "deep" / "report", config=ReportConfig(n_boot=10, workers=1))
    assert report.figures
    outside = {f for f in _files(tmp_path) if Path("deep", "report") not in (f, *f.parents)}
    assert outside == {Path("table.csv"), Path("deep")}


@pytest.fixture
def remote_code_family(tiny_model_dir, tmp_path, monkeypatch):
    """A checkpoint whose config names Python in its own folder; the code leaves a marker when it runs."""
    import transformers.dynamic_module_utils as dynamic

    monkeypatch.setattr(dynamic, "HF_MODULES_CACHE", str(tmp_path / "modules"))  # not the user's cache
    folder = shutil.copytree(tiny_model_dir, tmp_path / "family" / "custom@step1")
    marker = tmp_path / "remote-code-ran"
    (folder / "custom_model.py").write_text(
        "from pathlib import Path\n"
        "from transformers import GPTNeoXConfig, GPTNeoXForCausalLM\n\n"
        f"Path({str(marker)!r}).touch()\n\n\n"
        "class CustomConfig(GPTNeoXConfig):\n    model_type = 'custom_neox'\n\n\n"
        "class CustomModel(GPTNeoXForCausalLM):\n    config_class = CustomConfig\n")
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="custom_neox", architectures=["CustomModel"],
                  auto_map={"AutoConfig": "custom_model.CustomConfig",
                            "AutoModelForCausalLM": "custom_model.CustomModel"})
    (folder / "config.json").write_text(json.dumps(config))
    # transformers renames the file's embed_out to lm_head for GPTNeoXForCausalLM only, not for a
    # subclass: without this the custom model's head would be missing (and refused).
    from safetensors.torch import load_file, save_file

    state = load_file(folder / "model.safetensors")
    state["lm_head.weight"] = state.pop("embed_out.weight")
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    return folder.parent, marker


def test_repository_code_runs_only_when_opted_in_and_the_opt_in_is_recorded(remote_code_family, tmp_path):
    family, marker = remote_code_family
    out = tmp_path / "run"
    refused = run(RunConfig(family=str(family), tasks=("t_pick",), out=str(out), limit=2), pm=manager(),
                  progress=False)
    assert not marker.exists()
    assert "ships its own Python code" in refused.failed[0][2] and "trust_remote_code" in refused.failed[0][2]
    assert json.loads((out / "run.json").read_text())["config"]["backend"]["trust_remote_code"] is False

    trusted = run(RunConfig(family=str(family), tasks=("t_pick",), out=str(out), limit=2,
                            backend=BackendOptions(trust_remote_code=True)), pm=manager(), progress=False)
    assert trusted.ok and marker.exists()
    assert json.loads((out / "run.json").read_text())["config"]["backend"]["trust_remote_code"] is True
    with Store(out, lock=False) as store:
        history = [i["config"]["backend"]["trust_remote_code"] for i in store.get_meta("invocations")]
    assert history == [False, True]
