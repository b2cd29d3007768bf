"""The native engine agrees with lm-eval's HFLM on the same requests and checkpoint."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lm_eval.api.instance import Instance
from transformers import AutoModelForCausalLM, AutoTokenizer

from emergence.run.engine import HFEngine, split_head

PAIRS = [
    ("Q: what is 3 + 4? A:", " 7"),
    ("Q: what is 3 + 4? A:", " seven"),
    ("Q: what is 3 + 4? A:", " 12 plus two"),
    ("the cat sat on a ", "mat big red"),
    ("", "hello world"),
    ("one two three four five six seven eight nine ten " * 8, " answer"),
]
CONTEXTS = ["the cat", "1 + 2 =", "Q: what is the answer? A:", "red blue " * 20]
TEXTS = ["the cat sat on a mat. " * 60, "1 + 2 = 3. " * 7]


def _instances(kind, args_list):
    return [Instance(request_type=kind, doc={}, arguments=args, idx=i) for i, args in enumerate(args_list)]


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    return model, tok


@pytest.fixture(scope="module")
def hflm(loaded):
    from lm_eval.models.huggingface import HFLM

    model, tok = loaded
    return HFLM(pretrained=model, tokenizer=tok, batch_size=3, max_length=128)


@pytest.fixture(scope="module", params=["packed", "kv-cache"])
def engine(loaded, request):
    """Both scoring paths: context and continuations packed in one row, or a reused KV cache."""
    model, tok = loaded
    engine = HFEngine(model, tok, batch_size=2, max_length=128)
    assert engine.packed  # GPT-NeoX accepts custom attention masks
    engine.packed = request.param == "packed"
    return engine


def test_loglikelihood_matches_hflm(engine, hflm):
    ours = engine.loglikelihood(_instances("loglikelihood", PAIRS))
    theirs = hflm.loglikelihood(_instances("loglikelihood", PAIRS))
    for (a, ga), (b, gb) in zip(ours, theirs):
        assert abs(a - b) < 1e-4
        assert ga == gb


def test_rolling_matches_hflm(engine, hflm):
    ours = engine.loglikelihood_rolling(_instances("loglikelihood_rolling", [(t,) for t in TEXTS]))
    theirs = hflm.loglikelihood_rolling(_instances("loglikelihood_rolling", [(t,) for t in TEXTS]))
    assert ours == pytest.approx(theirs, abs=1e-4)
    # The first text spans several 128-token windows: the rolling path really was exercised.
    assert engine.score_rolling(TEXTS[:1])[0].tokens > 3 * 128


@pytest.mark.parametrize("until", [["\n", "."], [" ", "e", "1"]])
def test_generation_matches_hflm(engine, hflm, until):
    # The second set of stop strings ends rows at different steps, so finished rows leave the batch.
    kwargs = {"until": until, "max_gen_toks": 12, "do_sample": False}
    args = [(c, dict(kwargs)) for c in CONTEXTS]
    ours = engine.generate_until(_instances("generate_until", args))
    theirs = hflm.generate_until(_instances("generate_until", [(c, dict(kwargs)) for c in CONTEXTS]))
    assert ours == theirs
    assert any(ours)  # something was generated, not only empty strings


@pytest.mark.parametrize("static_cache", [True, False])
def test_generated_tokens_are_a_plain_greedy_loop(loaded, static_cache):
    """Both caches (preallocated and grown), rows of different lengths finishing at different
    steps: every token is the argmax of a full forward pass over the text so far."""
    model, tok = loaded
    engine = HFEngine(model, tok, batch_size=2, max_length=128)
    assert engine.static_cache   # GPT-NeoX is built for a preallocated cache
    engine.static_cache = static_cache
    until = [" ", "e"]
    got = engine.generate_tokens(CONTEXTS, until=until, max_gen_toks=6)
    assert len({len(ids) for ids in got}) > 1   # rows ended at different steps
    for context, ids in zip(CONTEXTS, got):
        seq, expected = tok(context)["input_ids"], []
        for _ in range(6):
            with torch.no_grad():
                nxt = int(model(torch.tensor([seq])).logits[0, -1].argmax())
            if nxt == tok.eos_token_id:
                break
            expected.append(nxt)
            seq.append(nxt)
            if any(s in tok.decode(expected, skip_special_tokens=True) for s in until):
                break
        assert ids == expected
    texts = engine.generate(CONTEXTS, until=until, max_gen_toks=6)
    assert texts == [tok.decode(ids, skip_special_tokens=True).split(" ")[0].split("e")[0] for ids in got]


def test_per_token_scores_match_a_plain_forward_pass(engine, loaded):
    model, _ = loaded
    scores = engine.score_pairs(PAIRS[:4])
    for (ctx, cont), s in zip(engine.encode_pairs(PAIRS[:4]), scores):
        with torch.no_grad():
            lp = model(torch.tensor([ctx + cont])).logits.log_softmax(-1)[0]
        expected = [lp[len(ctx) - 1 + j, t].item() for j, t in enumerate(cont)]
        greedy = [lp[len(ctx) - 1 + j].argmax().item() == t for j, t in enumerate(cont)]
        assert s.logprobs == pytest.approx(expected, abs=1e-5)
        assert list(s.greedy) == greedy
        assert len(s.logprobs) == len(cont)


@pytest.mark.parametrize("packed", [True, False])
def test_out_of_memory_halves_the_batch_and_retries(loaded, monkeypatch, packed):
    model, tok = loaded
    engine = HFEngine(model, tok, batch_size=8, max_length=128)
    engine.packed = packed
    reference = HFEngine(model, tok, batch_size=1, max_length=128).score_pairs(PAIRS)
    scorer = engine.split[0] if engine.split else model   # what a scoring pass calls
    real_forward = scorer.forward
    calls = []

    def forward(*args, **kwargs):
        ids = kwargs.get("input_ids")
        tokens = (ids if ids is not None else args[0] if args else kwargs["inputs_embeds"][..., 0]).numel()
        calls.append(tokens)
        if tokens > 128:  # more than one full window in a pass
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(scorer, "forward", forward)
    got = engine.score_pairs(PAIRS)
    assert engine.batch_size == 1
    assert max(calls) > 128  # the large batch was tried first
    assert [s.total for s in got] == pytest.approx([s.total for s in reference], abs=1e-5)


def test_packed_rows_stay_within_the_window(loaded, monkeypatch):
    """Continuations of one context share a row only while it fits the window, and only when the
    context is long next to them: rolling windows all share a 1-token context and must not pack."""
    model, tok = loaded
    engine = HFEngine(model, tok, batch_size=64, max_length=128)
    context = "one two three four five six seven eight nine ten " * 4
    pairs = [(context, f" {w} plus {w} is" * 3) for w in ("one", "two", "three", "red", "blue", "cat")] * 4
    texts = TEXTS * 4
    alone = [engine.score_pairs([p])[0].total for p in pairs]   # one request per pass: no packing
    rolled = [engine.score_rolling([t])[0].logprob for t in texts]
    scorer = engine.split[0] if engine.split else model   # what a scoring pass calls
    real_forward = scorer.forward
    passes = []

    def forward(*args, **kwargs):
        ids = kwargs.get("input_ids")
        passes.append(((ids if ids is not None else args[0]).shape[1], kwargs.get("attention_mask") is not None))
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(scorer, "forward", forward)
    got = engine.score_pairs(pairs)
    assert sum(len(engine.encode_pairs([p])[0][1]) for p in pairs) > 2 * 128  # more than one row's worth
    assert any(packed for _, packed in passes)  # the shared context was packed ...
    assert max(width for width, _ in passes) <= 128  # ... into rows no wider than the window
    assert [s.total for s in got] == pytest.approx(alone, abs=1e-4)
    passes.clear()
    assert [s.logprob for s in engine.score_rolling(texts)] == pytest.approx(rolled, abs=1e-3)
    assert max(width for width, _ in passes) <= 128 and not any(packed for _, packed in passes)


# Contexts (by length) each with the lengths of its continuations; token ids drawn at random.
GROUPS = st.lists(st.tuples(st.integers(1, 40), st.lists(st.integers(1, 30), min_size=1, max_size=6)),
                  min_size=1, max_size=4)


@pytest.mark.parametrize("packed", [True, False])
@settings(max_examples=8, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(groups=GROUPS, seed=st.integers(0, 2 ** 16))
def test_any_grouping_scores_as_each_request_alone(loaded, packed, groups, seed):
    """However requests share contexts (packed, split, KV-shared, trimmed to the window), each
    scores as it would alone, and no pass is wider than the window."""
    model, tok = loaded
    engine = HFEngine(model, tok, batch_size=2, max_length=64)
    engine.packed = packed
    gen = torch.Generator().manual_seed(seed)
    encoded = []
    for n_ctx, conts in groups:
        ctx = torch.randint(len(tok), (n_ctx,), generator=gen).tolist()
        encoded += [(ctx, torch.randint(len(tok), (n,), generator=gen).tolist()) for n in conts]
    widths = []
    scorer = engine.split[0] if engine.split else model   # every pass goes through it

    def width(_, args, kwargs):
        ids = kwargs.get("input_ids")
        widths.append((ids if ids is not None else args[0]).shape[1])

    hook = scorer.register_forward_pre_hook(width, with_kwargs=True)
    try:
        together = engine.score_tokens(encoded)
    finally:
        hook.remove()
    assert max(widths) <= 64
    for pair, got in zip(encoded, together):
        alone = engine.score_tokens([pair])[0]
        assert got.logprobs == pytest.approx(alone.logprobs, abs=1e-4)
        assert got.greedy == alone.greedy


def test_output_layer_runs_only_at_scored_positions_where_that_is_exact(loaded, monkeypatch):
    model, tok = loaded
    split = HFEngine(model, tok, batch_size=8, max_length=32)   # short windows: rolling ones overlap
    plain = HFEngine(model, tok, batch_size=8, max_length=32)
    plain.split = None                                   # the whole-model path
    assert split.split is not None
    whole_model, decoder = [], []
    hooks = [model.register_forward_pre_hook(lambda *_: whole_model.append(1)),
             split.split[0].register_forward_pre_hook(lambda *_: decoder.append(1))]
    try:
        rolled = [s.logprob for s in split.score_rolling(TEXTS)]
        split.score_pairs(PAIRS)
    finally:
        for hook in hooks:
            hook.remove()
    assert decoder and not whole_model   # the output layer ran apart, on the scored positions
    assert rolled == pytest.approx([s.logprob for s in plain.score_rolling(TEXTS)], abs=1e-4)
    for a, b in zip(split.score_pairs(PAIRS), plain.score_pairs(PAIRS)):
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-5) and a.greedy == b.greedy
    real = model.forward

    def scaled(*args, **kwargs):                         # logits that are more than the output layer
        out = real(*args, **kwargs)
        out.logits = out.logits / 2.0
        return out

    monkeypatch.setattr(model, "forward", scaled)
    assert split_head(model) is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("bias", [False, True])
def test_logits_reduced_slice_by_slice_match_log_softmax_and_argmax(monkeypatch, dtype, bias):
    """Slices reuse one buffer and are overwritten in place; the result is still log_softmax and
    argmax, ties included (argmax takes the first maximum), in either scoring path."""
    from emergence.run import engine as engine_module

    monkeypatch.setattr(engine_module, "_SLICE_FLOATS", 3 * 50)   # 3 positions a slice
    gen = torch.Generator().manual_seed(0)
    head = torch.nn.Linear(8, 50, bias=bias).to(dtype)
    hidden = torch.randn(10, 8, generator=gen).to(dtype)
    head.weight.data[7] = head.weight.data[3]   # tokens 3 and 7 always tie
    if bias:
        head.bias.data[7] = head.bias.data[3]
    with torch.no_grad():
        logits = head(hidden).float()
    target = logits.argmax(dim=-1)
    target[::3] = torch.randint(50, (4,), generator=gen)   # some targets are not the maximum
    target[1], target[2] = 3, 7
    logits[1:3] = torch.where(torch.arange(50) == 3, 99.0, logits[1:3])   # make 3 (and 7) the maxima
    logits[1:3, 7] = 99.0
    logits = logits.to(dtype).float()   # values the model's dtype holds exactly
    expected_lp = logits.log_softmax(-1).gather(1, target[:, None])[:, 0].tolist()
    expected_greedy = (logits.argmax(-1) == target).tolist()
    assert expected_greedy[1] and not expected_greedy[2]   # a tie: only the first maximum is greedy

    at = (torch.zeros(10, dtype=torch.long), torch.arange(10))
    lp, greedy = engine_module._token_scores(logits[None].to(dtype), at, target)
    assert lp == pytest.approx(expected_lp, abs=1e-5) and greedy == expected_greedy
    assert engine_module._token_scores(logits[None].to(dtype), at, target, greedy=False)[1] is None
    with torch.no_grad():
        lp, greedy = engine_module._head_scores(hidden[3:], head, target[3:])
    assert lp == pytest.approx(expected_lp[3:], abs=1e-5) and greedy == expected_greedy[3:]
    calls = []   # a hook on the output layer (activation capture, offloading) sees every call
    head.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        hooked = engine_module._head_scores(hidden[3:], head, target[3:])
    assert len(calls) == 3 and hooked[0] == pytest.approx(lp, abs=1e-6) and hooked[1] == greedy
