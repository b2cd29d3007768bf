"""TOML configs: defaults, overrides, and errors that name the key and its line."""

import pytest

from emergence.run.config import ConfigError, RunConfig, load_config, with_overrides


def test_toml_overrides_defaults(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('family = "pythia"\ntasks = ["a", "b"]\nlimit = 50\n\n[select]\nsizes = ["70m"]\n'
                    'steps = "1000:3000"\n\n[backend]\ndtype = "bfloat16"\nbatch_size = 8\n')
    cfg = load_config(path)
    assert cfg.family == "pythia" and cfg.tasks == ("a", "b") and cfg.limit == 50
    assert cfg.select.sizes == ("70m",) and cfg.select.steps == "1000:3000"
    assert cfg.backend.dtype == "bfloat16" and cfg.backend.batch_size == 8
    assert cfg.backend.allow_pickle is False and cfg.seed == RunConfig().seed


@pytest.mark.parametrize("text, match", [
    ('family = "x"\nlimt = 5\n', r"line 2.*'limt'.*Did you mean 'limit'"),
    ('[backend]\ndevice = "cpu"\ndtyp = "float32"\n', r"line 3.*\[backend\] 'dtyp'.*'dtype'"),
    ('[selekt]\nsizes = ["70m"]\n', r"'selekt'.*'select'"),
    ('limit = "many"\n', r"line 1.*'limit' expects int"),
    ('[backend]\nbatch_size = -3\n', r"'batch_size'"),
    ('family = \n', r"malformed TOML"),
    ('[executor]\nkind = "rey"\n', r"Unknown executor 'rey'.*Did you mean 'ray'"),
    ('[executor]\nkind = "ray"\ngpu_per_worker = 1\n', r"line 3.*\[executor\] 'gpu_per_worker'.*'gpus_per_worker'"),
    ('[executor]\nkind = "ray"\ngpus_per_worker = "one"\n', r"line 3.*'gpus_per_worker' expects float"),
    ('[executor]\nkind = "ray"\nmax_retries = -1\n', r"must be >= 0"),
    ('[executor]\nkind = "ray"\ngpus_per_worker = 1.5\n', r"above 1 must be a whole number"),
    ('[executor]\naddress = "auto"\n', r"address only apply to the ray executor"),
    ('executor = "ray"\n', r"'executor' must be a table"),
    ('[backend]\nmax_memory = {cpu = "1GiB"}\n', r'max_memory only applies with device_map = "auto"'),
    ('[backend]\ndevice_map = "auto"\nmax_memory = "1GiB"\n', r"max_memory must be a table of device = size"),
    ('[backend]\ndevice_map = "auto"\nmax_memory = {gpu0 = "1GiB"}\n', r"'gpu0' = '1GiB' is not a device"),
    ('family = "x"\nlimit = 0\n', r"line 2.*limit must be a positive number"),
    ('limit = -1\n', r"line 1.*limit must be a positive number"),
    ('num_fewshot = -2\n', r"line 1.*num_fewshot must be 0 or more"),
    ('tasks = ["copy", "add_2d", "copy"]\n', r"line 1.*tasks lists 'copy' more than once"),
    ('[backend]\ndevice = "cpu"\ndtype = "float33"\n', r"line 3.*Unknown dtype 'float33'.*Did you mean 'float32'"),
    ('[backend]\nmax_length = -5\n', r"line 2.*max_length must be a positive"),
    ('[backend]\nmax_batch_size = 0\n', r"line 2.*max_batch_size must be a positive"),
])
def test_bad_config_is_rejected_with_location(tmp_path, text, match):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(path)


def test_max_memory_caps_devices_for_a_device_map(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[backend]\ndevice_map = "auto"\nmax_memory = {0 = "70GiB", "cuda:1" = "70GiB", cpu = "200GiB"}\n')
    assert load_config(path).backend.max_memory == {"0": "70GiB", "cuda:1": "70GiB", "cpu": "200GiB"}


def test_flags_override_only_what_was_given():
    cfg = RunConfig(family="a", limit=5)
    out = with_overrides(cfg, family=None, limit=7, backend_dtype="float16", select_steps=None)
    assert out.family == "a" and out.limit == 7 and out.backend.dtype == "float16"
    assert out.select.steps is None


def test_executor_settings_are_read_but_never_change_results_settings(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[executor]\nkind = "ray"\naddress = "auto"\ngpus_per_worker = 1\n')
    cfg = load_config(path)
    assert (cfg.executor.kind, cfg.executor.address, cfg.executor.gpus_per_worker) == ("ray", "auto", 1.0)
    assert cfg.results_settings() == RunConfig().results_settings()
    out = with_overrides(RunConfig(), executor_kind="ray", executor_gpus_per_worker=0.5, executor_address=None)
    assert out.executor.kind == "ray" and out.executor.gpus_per_worker == 0.5 and out.executor.address is None
    with pytest.raises(ConfigError, match="gpus_per_worker only apply"):
        with_overrides(RunConfig(), executor_gpus_per_worker=1.0)


def test_toml_is_read_without_tomllib_as_on_python_3_10(tmp_path, monkeypatch):
    """Python 3.10 has no tomllib: the tomli package (a dependency there) reads the same files."""
    import sys

    pytest.importorskip("tomli")
    monkeypatch.setitem(sys.modules, "tomllib", None)   # `import tomllib` now fails
    path = tmp_path / "run.toml"
    path.write_text('family = "tiny"\ntasks = ["copy"]\n[backend]\ndtype = "float32"\n')
    config = load_config(path)
    assert (config.family, config.tasks, config.backend.dtype) == ("tiny", ("copy",), "float32")
    path.write_text("family = \n")
    with pytest.raises(ConfigError, match="malformed TOML"):
        load_config(path)


@pytest.mark.parametrize("flags, message", [
    (["--limit", "0"], "limit must be a positive number"),
    (["--limit", "-1"], "limit must be a positive number"),
    (["--dtype", "float33"], "Unknown dtype 'float33'. Did you mean 'float32'"),
    (["--max-length", "-5"], "max_length must be a positive"),
    (["--tasks", "mc_arith,mc_arith"], "tasks lists 'mc_arith' more than once"),
])
def test_bad_settings_are_refused_before_anything_is_written_and_the_fixed_rerun_works(
        flags, message, tiny_family_dir, tmp_path, capsys):
    from emergence.cli import main

    out = tmp_path / "run"
    argv = ["run", "--family", str(tiny_family_dir), "--sizes", "tiny-h32-l2", "--steps", "200",
            "--tasks", "mc_arith", "--limit", "2", "--batch-size", "4", "--out", str(out), "--no-progress"]
    assert main(argv + flags) == 1
    assert message in capsys.readouterr().err
    assert not out.exists()   # nothing created, so nothing pinned
    assert main(argv) == 0
    assert "1 cells evaluated" in capsys.readouterr().out
