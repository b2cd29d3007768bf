"""The built-in Hugging Face loader: hub revisions offline, safety defaults, clear errors."""

import shutil
import time

import pytest
import torch

from emergence.run.config import BackendOptions
from emergence.families import Checkpoint
from emergence.testing import add_to_hub_cache, build_model
from emergence.run.devices import resolve_dtype
from emergence_plugins.huggingface import CheckpointError, load

OPTIONS = BackendOptions(batch_size=4)


def _ck(repo, revision=None):
    return Checkpoint(family="t", name="t@x", repo=str(repo), revision=revision)


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_local_folder_loads_on_cpu_in_float32(tiny_model_dir):
    lm = load(_ck(tiny_model_dir), OPTIONS)
    assert lm.device.type == "cpu" and next(lm.model.parameters()).dtype == torch.float32
    assert lm.score_pairs([("1 + 1 =", " 2")])[0].total < 0


def test_hub_revisions_load_offline_from_the_cache(tmp_path, tokenizer, monkeypatch):
    import huggingface_hub.constants as hub

    cache = tmp_path / "hub"
    for step, seed in (("step100", 1), ("step200", 2)):
        add_to_hub_cache(build_model(tmp_path / step, seed=seed, tokenizer=tokenizer), "tiny-org/tiny", step, cache)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(cache))
    pair = [("the cat", " sat")]
    by_revision = {rev: load(_ck("tiny-org/tiny", rev), OPTIONS).score_pairs(pair)[0].total
                   for rev in ("step100", "step200")}
    direct = load(_ck(tmp_path / "step200"), OPTIONS).score_pairs(pair)[0].total
    assert by_revision["step200"] == pytest.approx(direct, abs=1e-6)
    assert by_revision["step100"] != pytest.approx(by_revision["step200"], abs=1e-4)
    with pytest.raises(CheckpointError, match="step999"):
        load(_ck("tiny-org/tiny", "step999"), OPTIONS)


def test_a_revision_missing_from_the_offline_cache_names_checkpoint_and_revision(tmp_path, tokenizer, monkeypatch):
    import huggingface_hub.constants as hub

    cache = tmp_path / "hub"
    add_to_hub_cache(build_model(tmp_path / "m", tokenizer=tokenizer), "tiny-org/tiny", "step100", cache)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(cache))
    with pytest.raises(CheckpointError, match=r"checkpoint 't@x' \(tiny-org/tiny@step999\)"):
        load(_ck("tiny-org/tiny", "step999"), OPTIONS)


def test_a_model_over_its_memory_cap_is_split_and_scores_the_same(tiny_model_dir, tmp_path):
    # 600KB holds the embeddings and the first layer of this ~660KB model; the rest goes to disk.
    capped = BackendOptions(batch_size=4, device_map="auto", max_memory={"cpu": "600KB"})
    split, whole = load(_ck(tiny_model_dir), capped, tmp_path), load(_ck(tiny_model_dir), OPTIONS)
    placements = split.model.hf_device_map
    assert {"cpu", "disk"} <= set(placements.values()), placements
    assert split.split is None and whole.split is not None   # a dispatched model runs whole
    offload = tmp_path / "offload" / "t@x"
    assert offload.is_dir()
    pairs = [("the cat", " sat"), ("the cat", " ran on"), ("1 + 1 =", " 2"), ("", " a b c d")]
    for a, b in zip(split.score_pairs(pairs), whole.score_pairs(pairs)):
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-5) and a.greedy == b.greedy
    text = ["the big red cat sat on the mat. 12 + 30 = 42"]
    assert split.score_rolling(text)[0].logprob == pytest.approx(whole.score_rolling(text)[0].logprob, abs=1e-5)
    assert split.generate(["the cat", "1 + 2 ="], max_gen_toks=5) == whole.generate(["the cat", "1 + 2 ="], max_gen_toks=5)
    split.close()
    assert not offload.exists()  # offloaded weights leave with the model


def test_a_memory_cap_that_leaves_the_embeddings_nowhere_is_refused(tiny_model_dir, tmp_path):
    capped = BackendOptions(device_map="auto", max_memory={"cpu": "100KB"})
    with pytest.raises(CheckpointError, match="t@x.*no room on any device for the input embeddings"):
        load(_ck(tiny_model_dir), capped, tmp_path)


def test_unreachable_hub_fails_fast_with_the_checkpoint_named(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(CheckpointError, match="EleutherAI/pythia-70m@step1000"):
        load(_ck("EleutherAI/pythia-70m", "step1000"), OPTIONS)
    assert time.monotonic() - start < 20


def test_missing_path(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load(_ck(tmp_path / "nope" / "model"), OPTIONS)


def test_truncated_safetensors(tiny_model_dir, tmp_path):
    broken = _copy(tiny_model_dir, tmp_path / "broken")
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="t@x"):
        load(_ck(broken), OPTIONS)


def test_missing_tokenizer(tiny_model_dir, tmp_path):
    bare = _copy(tiny_model_dir, tmp_path / "bare")
    for f in bare.glob("tokenizer*"):
        f.unlink()
    with pytest.raises(CheckpointError, match="tokenizer"):
        load(_ck(bare), OPTIONS)


def test_non_causal_model_is_refused(tmp_path, tokenizer):
    from transformers import T5Config, T5ForConditionalGeneration

    path = tmp_path / "t5"
    T5ForConditionalGeneration(T5Config(vocab_size=len(tokenizer), d_model=16, d_ff=32, d_kv=8,
                                        num_layers=1, num_heads=2)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    with pytest.raises(CheckpointError, match="not a causal language model"):
        load(_ck(path), OPTIONS)


def test_pickle_weights_need_opt_in(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    pickled = _copy(tiny_model_dir, tmp_path / "pickled")
    state = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    torch.save(state, pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="safetensors"):
        load(_ck(pickled), OPTIONS)
    lm = load(_ck(pickled), BackendOptions(allow_pickle=True))
    assert lm.score_pairs([("a", " b")])[0].total < 0


def test_dtype_resolution():
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("bfloat16", "cpu") == torch.bfloat16
    with pytest.raises(ValueError, match="float64x"):
        resolve_dtype("float64x", "cpu")


def _rewrite_weights(folder, change):
    """Apply ``change(state_dict)`` to the folder's safetensors file in place."""
    from safetensors.torch import load_file, save_file

    weights = folder / "model.safetensors"
    state = load_file(weights)
    change(state)
    save_file(state, weights, metadata={"format": "pt"})


def test_a_checkpoint_missing_a_tensor_is_refused_naming_checkpoint_and_key(tiny_model_dir, tmp_path):
    holed = _copy(tiny_model_dir, tmp_path / "holed")
    _rewrite_weights(holed, lambda state: state.pop("gpt_neox.layers.1.mlp.dense_4h_to_h.weight"))
    with pytest.raises(CheckpointError, match=r"t@x.*holed.*1 weight\(s\).*not in the checkpoint.*"
                                              r"gpt_neox\.layers\.1\.mlp\.dense_4h_to_h\.weight"):
        load(_ck(holed), OPTIONS)


def test_a_checkpoint_missing_a_tensor_is_refused_when_split_over_devices_too(tiny_model_dir, tmp_path):
    holed = _copy(tiny_model_dir, tmp_path / "holed")
    _rewrite_weights(holed, lambda state: state.pop("embed_out.weight"))
    capped = BackendOptions(device_map="auto", max_memory={"cpu": "600KB"})
    # transformers names the output layer lm_head (the file calls it embed_out)
    with pytest.raises(CheckpointError, match=r"t@x.*not in the checkpoint.*lm_head\.weight"):
        load(_ck(holed), capped, tmp_path)
    assert not (tmp_path / "offload" / "t@x").exists()  # nothing left behind on disk


def test_a_checkpoint_with_tensors_the_model_has_no_place_for_is_refused(tiny_model_dir, tmp_path):
    extra = _copy(tiny_model_dir, tmp_path / "extra")
    _rewrite_weights(extra, lambda state: state.update({"gpt_neox.adapter.weight": torch.zeros(2, 2)}))
    with pytest.raises(CheckpointError, match=r"t@x.*no place in GPTNeoXForCausalLM.*gpt_neox\.adapter\.weight"):
        load(_ck(extra), OPTIONS)


def test_a_bert_encoder_is_refused_naming_its_architecture(tmp_path, tokenizer):
    from transformers import BertConfig, BertModel

    path = tmp_path / "bert"
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    with pytest.raises(CheckpointError, match="t@x.*architecture BertModel is not a causal language model"):
        load(_ck(path), OPTIONS)


def test_a_checkpoint_without_its_head_is_refused_even_when_its_config_says_causal(tmp_path, tokenizer):
    from transformers import BertConfig, BertModel

    path = tmp_path / "bert"
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32)
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    # A config that claims a causal head the weights do not hold: the missing head is what fails.
    (path / "config.json").write_text((path / "config.json").read_text().replace('"BertModel"', '"BertLMHeadModel"'))
    with pytest.raises(CheckpointError, match=r"t@x.*not in the checkpoint.*cls\.predictions"):
        load(_ck(path), OPTIONS)


def test_tied_embeddings_and_lab_models_still_load(tmp_path, tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM

    from emergence.lab.training import LabConfig, build_model as build_lab_model

    gpt2 = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=16, n_layer=1, n_head=2,
                               bos_token_id=0, eos_token_id=0)).save_pretrained(gpt2)
    neox = tmp_path / "neox-tied"
    GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32, bos_token_id=0, eos_token_id=0,
                                     tie_word_embeddings=True)).save_pretrained(neox)
    lab = tmp_path / "lab"
    build_lab_model(LabConfig(), d_model=32, layers=1, vocab=len(tokenizer)).save_pretrained(lab)
    for folder in (gpt2, neox, lab):
        tokenizer.save_pretrained(folder)
        assert load(_ck(folder), OPTIONS).score_pairs([("the cat", " sat")])[0].total < 0, folder.name
