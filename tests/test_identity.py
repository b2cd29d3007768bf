"""A run directory knows what it evaluated: each checkpoint's identity is recorded with its cells,
and a checkpoint that shares a name with stored cells but not their weights is never reused."""

import shutil

import pytest

from emergence import schema as S
from emergence.export import tidy_table
from emergence.families import Checkpoint
from emergence.run import identity as ident
from emergence.run.config import BackendOptions, RunConfig
from emergence.run.runner import CheckpointChanged, run
from emergence.store import Store
from emergence.testing import add_to_hub_cache, build_model

from helpers import manager


def _family(root, tokenizer, seed):
    """A one-checkpoint family folder ``root/m@step1``; the seed picks its weights."""
    build_model(root / "m@step1", hidden=32, layers=2, seed=seed, tokenizer=tokenizer)
    return root


def _config(family, out, **kw):
    return RunConfig(family=str(family), tasks=("t_pick",), out=str(out), limit=3,
                     backend=BackendOptions(batch_size=4), **kw)


def _gold_logprob(out):
    df = tidy_table(out)
    return df[df[S.METRIC] == "gold_logprob"][S.VALUE].tolist()


def test_a_second_family_with_the_same_names_is_refused_then_reevaluated_on_request(tokenizer, tmp_path):
    first, second = _family(tmp_path / "a" / "fam", tokenizer, 1), _family(tmp_path / "b" / "fam", tokenizer, 2)
    out = tmp_path / "run"
    assert run(_config(first, out), pm=manager(), progress=False).evaluated == 1
    before = _gold_logprob(out)
    with pytest.raises(CheckpointChanged) as err:
        run(_config(second, out), pm=manager(), progress=False)
    message = str(err.value)
    assert "'m@step1' (weights differ)" in message and "--reevaluate-changed" in message
    assert str(first / "m@step1") in message and str(second / "m@step1") in message   # both named
    assert _gold_logprob(out) == before   # nothing stored was touched

    again = run(_config(second, out, reevaluate_changed=True), pm=manager(), progress=False)
    assert again.evaluated == 1 and again.skipped == 0 and again.changed == ["m@step1"]
    assert _gold_logprob(out) != before
    with Store(out) as store:   # the new weights are what the run directory now knows
        assert store.identities()["m@step1"]["path"] == str(second / "m@step1")


def test_a_moved_folder_is_the_same_checkpoint_but_another_family_name_is_not(tokenizer, tmp_path):
    fam = _family(tmp_path / "fam", tokenizer, 1)
    out = tmp_path / "run"
    run(_config(fam, out), pm=manager(), progress=False)
    moved = shutil.copytree(fam, tmp_path / "elsewhere" / "fam")   # same bytes, same family name
    assert run(_config(moved, out), pm=manager(), progress=False).skipped == 1
    renamed = shutil.copytree(fam, tmp_path / "other")
    with pytest.raises(CheckpointChanged, match=r"\(family differ\).*family 'fam'.*now family 'other'"):
        run(_config(renamed, out), pm=manager(), progress=False)


def test_a_store_without_identities_opens_and_records_them_from_now_on(tokenizer, tmp_path):
    fam = _family(tmp_path / "fam", tokenizer, 1)
    out = tmp_path / "run"
    run(_config(fam, out), pm=manager(), progress=False)
    with Store(out) as store:   # as a run directory made before identities were recorded
        store.db.execute("DROP TABLE checkpoint_identity")
        assert store.identities() == {}
    assert run(_config(fam, out), pm=manager(), progress=False).skipped == 1   # not recorded: reused
    with Store(out) as store:
        assert store.identities()["m@step1"]["weights"]
    build_model(fam / "m@step1", hidden=32, layers=2, seed=9, tokenizer=tokenizer)  # weights replaced
    with pytest.raises(CheckpointChanged, match="weights differ"):
        run(_config(fam, out), pm=manager(), progress=False)


def test_a_checkpoint_with_only_failed_cells_may_change(tokenizer, tmp_path):
    fam = _family(tmp_path / "fam", tokenizer, 1)
    weights = fam / "m@step1" / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[:100])   # truncated: every cell fails, no numbers stored
    out = tmp_path / "run"
    assert not run(_config(fam, out), pm=manager(), progress=False).ok
    weights.write_bytes(good)         # repaired
    assert run(_config(fam, out), pm=manager(), progress=False).evaluated == 1


def test_hub_identity_is_the_cached_commit_and_never_needs_the_network(tokenizer, tmp_path, monkeypatch):
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "empty"))
    ck = Checkpoint(family="f", name="t@step100", repo="tiny-org/tiny", revision="step100")
    assert ident.checkpoint_identity(ck) == {"family": "f", "kind": "hub", "repo": "tiny-org/tiny",
                                             "revision": "step100", "sha": None}
    cache = tmp_path / "hub"
    sha = add_to_hub_cache(build_model(tmp_path / "m", tokenizer=tokenizer), "tiny-org/tiny", "step100", cache)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(cache))
    known = ident.checkpoint_identity(ck)
    assert known["sha"] == sha
    assert ident.differences({**known, "sha": None}, known) == []     # not recorded is no difference
    assert ident.differences({**known, "sha": "0" * 40}, known) == ["sha"]
    assert ident.differences({**known, "revision": None}, known) == ["revision"]  # main is not step100


def test_a_hub_checkpoint_records_its_commit_with_its_cells(tokenizer, tmp_path, monkeypatch):
    import huggingface_hub.constants as hub

    cache = tmp_path / "hub"
    sha = add_to_hub_cache(build_model(tmp_path / "m", tokenizer=tokenizer), "tiny-org/tiny", "step100", cache)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(cache))
    family = tmp_path / "family.toml"
    family.write_text('[[checkpoint]]\nrepo = "tiny-org/tiny"\nrevision = "step100"\nstep = 100\nmodel = "t"\n')
    run(_config(family, tmp_path / "run"), pm=manager(), progress=False)
    with Store(tmp_path / "run") as store:
        assert store.identities()["t@step100"]["sha"] == sha


def test_large_files_are_sampled_and_unchanged_files_are_not_read_again(tmp_path, monkeypatch):
    folder = tmp_path / "ck"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"x" * 5000)
    (folder / "README.md").write_text("not part of the identity")
    ck = Checkpoint(family="f", name="ck", repo=str(folder))
    monkeypatch.setattr(ident, "FULL_HASH_LIMIT", 1000)
    monkeypatch.setattr(ident, "SAMPLE", 100)
    first = ident.checkpoint_identity(ck)
    assert list(first["files"]) == ["model.safetensors"]
    assert first["files"]["model.safetensors"]["sha256"].startswith("sampled:")

    def no_reading(*_):
        raise AssertionError("an unchanged file was hashed again")

    monkeypatch.setattr(ident, "_file_hash", no_reading)
    assert ident.checkpoint_identity(ck, previous=first) == first


def test_the_command_line_refuses_a_changed_checkpoint_and_reevaluates_it_when_asked(tokenizer, tmp_path, capsys):
    from emergence.cli import main

    out = tmp_path / "run"
    argv = ["run", "--tasks", "mc_arith", "--limit", "2", "--batch-size", "4", "--out", str(out), "--no-progress"]
    first, second = _family(tmp_path / "a" / "fam", tokenizer, 1), _family(tmp_path / "b" / "fam", tokenizer, 2)
    assert main(argv + ["--family", str(first)]) == 0
    capsys.readouterr()
    assert main(argv + ["--family", str(second)]) == 1
    assert "'m@step1' (weights differ)" in capsys.readouterr().err
    assert main(argv + ["--family", str(second), "--reevaluate-changed"]) == 0
    printed = capsys.readouterr().out
    assert "1 changed checkpoint(s) evaluated again: m@step1" in printed and "1 cells evaluated" in printed
