"""The emergence lab: deterministic training, loadable checkpoints registered like a local
family, config validation, and one reduced end-to-end demo that checks the designed verdicts."""

import dataclasses
import itertools
import json

import pytest

from emergence.lab.training import (
    RECORD_FILE,
    LabConfig,
    LabConfigError,
    checkpoint_steps,
    config_from_dict,
    family_dir,
    load_lab_config,
    param_count,
    train_family,
)

# Two tiny sizes, a few dozen steps: enough to exercise every code path in seconds.
MICRO = LabConfig(sizes=((8, 1), (16, 1)), tokens=16 * 64 * 6, batch_size=16, checkpoints=3,
                  mix=(("copy", 0.5), ("filler", 0.5)), workers=1)


@pytest.fixture(scope="module")
def micro_family(tmp_path_factory):
    return train_family(MICRO, tmp_path_factory.mktemp("lab") / "micro", progress=False, log=lambda *_: None)


def test_training_is_deterministic_from_the_seed(micro_family, tmp_path):
    import torch
    from safetensors.torch import load_file

    again = train_family(MICRO, tmp_path / "again", progress=False, log=lambda *_: None)
    other = train_family(dataclasses.replace(MICRO, seed=1), tmp_path / "other", progress=False,
                         log=lambda *_: None)
    folders = sorted(p.parent.name for p in micro_family.parent.glob("*/model.safetensors"))
    assert len(folders) == 2 * MICRO.checkpoints
    for name in folders:
        a = load_file(micro_family.parent / name / "model.safetensors")
        b = load_file(again.parent / name / "model.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    last = folders[-1]
    c = load_file(other.parent / last / "model.safetensors")
    a = load_file(micro_family.parent / last / "model.safetensors")
    assert not all(torch.equal(a[k], c[k]) for k in a), "another seed must give other weights"


def test_a_finished_family_is_reused_not_retrained(micro_family):
    before = micro_family.stat().st_mtime_ns
    messages = []
    assert train_family(MICRO, micro_family.parent, progress=False, log=messages.append) == micro_family
    assert micro_family.stat().st_mtime_ns == before and "Reusing" in messages[0]
    with pytest.raises(LabConfigError, match="another config"):
        train_family(dataclasses.replace(MICRO, seed=7), micro_family.parent, progress=False)


def test_a_family_trained_on_an_older_skill_version_is_retrained(micro_family, tmp_path):
    import shutil

    stale = tmp_path / "stale"
    shutil.copytree(micro_family.parent, stale)
    record = json.loads((stale / RECORD_FILE).read_text())
    assert record["skill_versions"] == {"copy": "1"}
    record["skill_versions"] = {"copy": "0"}
    (stale / RECORD_FILE).write_text(json.dumps(record))
    messages = []
    train_family(MICRO, stale, progress=False, log=messages.append)
    assert "Retraining" in messages[0]
    assert json.loads((stale / RECORD_FILE).read_text())["skill_versions"] == {"copy": "1"}


def test_checkpoints_load_and_carry_metadata_like_a_local_family(micro_family):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from emergence.families import count_parameters
    from emergence.plugins import collect, plugin_manager
    from emergence.run.runner import resolve_family

    pm = plugin_manager()
    family = resolve_family(str(micro_family), pm, collect(pm))   # the local_families TOML reader
    assert family.name == "lab" and len(family.checkpoints) == 2 * MICRO.checkpoints
    by_model = {}
    for ck in family.checkpoints:
        by_model.setdefault(ck.model, []).append(ck)
        assert ck.params and ck.params_nonembed and ck.tokens and ck.step and ck.flops
        assert ck.flops == pytest.approx(6 * ck.params * ck.tokens)
    assert set(by_model) == {"lab-d8-l1", "lab-d16-l1"}
    for cks in by_model.values():
        steps = [ck.step for ck in cks]
        assert steps == sorted(steps) and len(set(steps)) == MICRO.checkpoints
        assert [ck.tokens for ck in cks] == sorted(ck.tokens for ck in cks)
    ck = family.checkpoints[-1]
    model = AutoModelForCausalLM.from_pretrained(ck.repo, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(ck.repo)
    assert count_parameters(model) == (ck.params, ck.params_nonembed)
    assert ck.params == param_count(MICRO, *map(int, ck.model.split("-d")[1].split("-l")), vocab=len(tokenizer))
    assert tokenizer.decode(tokenizer("Q: Repeat exactly: ko 7\nA:")["input_ids"]) == "Q: Repeat exactly: ko 7\nA:"
    record = json.loads((micro_family.parent / RECORD_FILE).read_text())
    assert record["digest"] == MICRO.digest() and record["timing"]["tokens_per_s"] > 0
    assert {s["model"] for s in record["sizes"]} == set(by_model)


def test_lab_plugin_registers_the_default_family_once_trained(micro_family, monkeypatch, tmp_path):
    import shutil

    from emergence.plugins import collect, plugin_manager

    monkeypatch.setenv("EMERGENCE_LAB_CACHE", str(tmp_path / "cache"))
    assert "lab" not in collect(plugin_manager()).families
    # Stand the micro family in for the default config's cache folder.
    shutil.copytree(micro_family.parent, family_dir(LabConfig()))
    family = collect(plugin_manager()).families["lab"]
    assert len(family.checkpoints) == 2 * MICRO.checkpoints and "lab" in family.tags


@pytest.mark.parametrize("changes, message", [
    ({"sizes": ()}, "at least one"),
    ({"sizes": ((8, 2), (8, 2))}, "listed twice"),
    ({"sizes": ((10, 2),)}, "multiple of head_dim"),
    ({"sizes": ((8, 0),)}, "positive integers"),
    ({"tokens": 0}, "tokens must be a positive integer"),
    ({"schedule": "cosin"}, "Did you mean 'cosine'"),
    ({"mix": (("copy", 0),)}, "positive share"),
    ({"mix": (("copy", 1), ("copy", 2))}, "listed twice"),
    ({"vocab_size": 64}, "vocab_size"),
    ({"first_checkpoint": 0}, "first_checkpoint"),
    ({"tokens_per_param": -1.0}, "tokens_per_param"),
    ({"warmup": 1.0}, "warmup"),
])
def test_config_validation(changes, message):
    with pytest.raises(LabConfigError, match=message):
        dataclasses.replace(LabConfig(), **changes)


def test_unknown_keys_and_skills_are_named(tmp_path):
    path = tmp_path / "lab.toml"
    path.write_text('tokens = 1000\nsize = [[8, 2]]\n')
    with pytest.raises(LabConfigError, match=r"lab.toml \(line 2\).*Did you mean 'sizes'"):
        load_lab_config(path)
    path.write_text('sizes = [[8, 2], [16, 2]]\ntokens = 5000\nmix = [["copy", 1.0]]\n')
    config = load_lab_config(path, seed=3)
    assert config.sizes == ((8, 2), (16, 2)) and config.mix == (("copy", 1.0),) and config.seed == 3
    with pytest.raises(ValueError, match="Did you mean 'copy'"):
        train_family(config_from_dict({"mix": [["coppy", 1.0]]}), tmp_path / "x", progress=False)
    assert not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match="only generation tasks"):
        train_family(config_from_dict({"mix": [["heldout_loss", 1.0]]}), tmp_path / "y", progress=False)


def test_digest_ignores_execution_settings_only():
    base = LabConfig()
    assert dataclasses.replace(base, workers=2, threads=4, device="cpu").digest() == base.digest()
    assert dataclasses.replace(base, seed=1).digest() != base.digest()
    assert dataclasses.replace(base, lr=2e-2).digest() != base.digest()


@pytest.mark.parametrize("total, n, first", [(488, 8, 1 / 8), (10, 8, 1 / 8), (3, 8, 1 / 2), (1, 8, 1 / 8),
                                              (1000, 8, 1 / 32), (50, 20, 0.1)])
def test_checkpoint_steps_are_distinct_log_spaced_and_end_at_the_last_step(total, n, first):
    config = dataclasses.replace(LabConfig(), checkpoints=n, first_checkpoint=first)
    steps = checkpoint_steps(config, total)
    assert steps == sorted(set(steps)) and steps[-1] == total and steps[0] >= 1
    assert len(steps) == min(n, total - max(1, round(first * total)) + 1)
    if len(steps) >= 3 and total >= 100:   # log-spaced: ratios, not differences, are even
        ratios = [b / a for a, b in itertools.pairwise(steps)]
        assert max(ratios) / min(ratios) < 1.3


def test_chinchilla_style_tokens_scale_with_size():
    config = dataclasses.replace(LabConfig(), tokens_per_param=20.0)
    small, large = (param_count(config, *s) for s in (config.sizes[0], config.sizes[-1]))
    assert config.tokens_for(large) / config.tokens_for(small) == pytest.approx(large / small, rel=1e-3)


# The reduced demo: the default family with two checkpoints per size instead of eight. Saving
# checkpoints does not change training, so the final checkpoints, and the size-axis verdicts the
# ground truth is about, are those of the full demo; evaluation is a quarter of the work.
REDUCED = dataclasses.replace(LabConfig(), checkpoints=2)


@pytest.mark.slow
def test_reduced_demo_gives_the_designed_verdicts(tmp_path):
    from emergence.lab.demo import demo

    result = demo(tmp_path / "demo", lab=REDUCED, cache=tmp_path / "cache", progress=False,
                  log=lambda *_: None)
    assert not result.failed
    bad = result.checks[~result.checks["ok"]]
    assert bad.empty, "\n" + bad.to_string()
    assert (tmp_path / "demo" / "results.csv").exists() and (tmp_path / "demo" / "analysis" / "verdicts.csv").exists()
    assert (tmp_path / "demo" / "run" / "results.sqlite").exists()   # one run directory, via the pool executor
    assert result.report is not None and result.report.exists()      # the report is part of the demo
    assert {"train", "evaluate", "analyze", "report"} <= set(result.seconds)
