"""Decoding on CPU: oneDNN's packed linear layers and the blockwise first maximum give the same
greedy tokens as the model's own layers and ``argmax``."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoModelForCausalLM, AutoTokenizer

from emergence.run import cpu_linear
from emergence.run.engine import HFEngine, first_max

CONTEXTS = ["the cat", "1 + 2 =", "Q: what is the answer? A:", "red blue " * 20]
needs_onednn = pytest.mark.skipif(not cpu_linear.available(), reason="this torch build has no oneDNN")


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 5), width=st.integers(1, 700), levels=st.integers(1, 4), block=st.sampled_from([1, 3, 256]),
       seed=st.integers(0, 2**16))
def test_first_max_is_argmax(rows, width, levels, block, seed):
    # Few distinct values: ties within a block and across blocks, the maximum in the last partial block.
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randint(levels, (rows, width), generator=gen).float()
    assert torch.equal(first_max(logits, block), logits.argmax(dim=-1))


def test_first_max_of_a_strided_view():
    logits = torch.randn(3, 2, 1000)[:, -1]   # as out.logits[:, -1]: not contiguous
    assert torch.equal(first_max(logits), logits.argmax(dim=-1))


@needs_onednn
def test_packed_linear_matches_f_linear_and_follows_in_place_changes():
    layer = torch.nn.Linear(40, 300)
    packed = cpu_linear.PackedWeights()
    x = torch.randn(7, 5, 40)
    got = cpu_linear.linear(x, packed.get(layer.weight), layer.bias)
    assert torch.allclose(got, F.linear(x, layer.weight, layer.bias), rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        layer.weight.mul_(2)   # e.g. a fine-tuning step between evaluations
    got = cpu_linear.linear(x, packed.get(layer.weight), layer.bias)
    assert torch.allclose(got, F.linear(x, layer.weight, layer.bias), rtol=1e-5, atol=1e-5)


@needs_onednn
def test_patched_layers_get_their_own_forward_back_even_on_error():
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.GELU(), torch.nn.Linear(8, 3))
    hooked = torch.nn.Linear(3, 3)
    hooked.register_forward_hook(lambda *args: None)
    model.append(hooked)
    x = torch.randn(4, 8)
    expected = model(x)
    packed = cpu_linear.PackedWeights()
    with pytest.raises(RuntimeError, match="boom"), packed.patched(model):
        assert "forward" in vars(model[0]) and "forward" in vars(model[2])
        assert "forward" not in vars(hooked)   # a hook may change the weight: left alone
        assert torch.allclose(model(x), expected, atol=1e-6)
        raise RuntimeError("boom")
    assert not any("forward" in vars(m) for m in model.modules())


@needs_onednn
def test_packed_decoding_generates_what_the_model_own_layers_do(tiny_model_dir):
    """Same token ids, same stops (rows ending at different steps), with and without oneDNN; the
    model is left as it was (lm-eval may share it)."""
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    fast = HFEngine(model, tok, batch_size=2, max_length=128)
    plain = HFEngine(model, tok, batch_size=2, max_length=128)
    assert fast._packed is not None
    plain._packed = None
    for until in ([" ", "e"], ["\n"]):
        got = fast.generate_tokens(CONTEXTS, until=until, max_gen_toks=10)
        assert got == plain.generate_tokens(CONTEXTS, until=until, max_gen_toks=10)
    assert len({len(ids) for ids in fast.generate_tokens(CONTEXTS, until=[" ", "e"], max_gen_toks=10)}) > 1
    assert not any("forward" in vars(m) for m in model.modules())


@needs_onednn
@pytest.mark.parametrize("packed_rows", [True, False])
def test_scores_agree_with_and_without_onednn(tiny_model_dir, packed_rows):
    """Both scoring paths (packed rows under a 4-D mask, a shared KV cache) and rolling windows:
    the oneDNN layers move log-probabilities by float32 rounding only, and keep greedy flags."""
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    fast = HFEngine(model, tok, batch_size=2, max_length=64)
    plain = HFEngine(model, tok, batch_size=2, max_length=64)
    plain._packed = None
    fast.packed = plain.packed = packed_rows
    pairs = [(c, x) for c in CONTEXTS for x in (" a", " the cat sat", "e")]
    for a, b in zip(fast.score_pairs(pairs), plain.score_pairs(pairs)):
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-5)
        assert a.greedy == b.greedy
    texts = ["the cat sat on a mat. " * 30]
    assert fast.score_rolling(texts)[0].logprob == pytest.approx(plain.score_rolling(texts)[0].logprob, abs=1e-4)
    assert not any("forward" in vars(m) for m in model.modules())


def test_the_switch_turns_onednn_off(monkeypatch):
    from emergence.run import cpu_linear

    monkeypatch.setenv("EMERGENCE_ONEDNN", "0")
    assert not cpu_linear.available()
