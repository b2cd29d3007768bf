"""The native evaluation engine: a loaded Hugging Face causal LM behind lm-eval's ``LM`` seam.

Beyond lm-eval's three methods it returns per-token log-probabilities and greedy flags, which
the continuous metrics need. Where the work goes:
- continuations that share a context longer than themselves (the choices of a multiple-choice
  item) run the context once: packed after it in one row under a 4-D mask, or, for models that
  take no custom mask, reusing its KV cache; a packed row never outgrows the context window;
- the output layer runs only at scored positions where the logits are just that layer on the
  last hidden states (otherwise from the first scored position on), a slice of positions at a
  time into one reused buffer; log-probabilities are a logsumexp and a gather, greedy flags
  only where asked for (rolling log-likelihood needs none);
- requests are tokenised in one batch call and sorted by width; a batch holds ``batch_size``
  full windows' worth of tokens, so short rows share a pass (on CPU, passes stay small);
- generation is batched greedy decoding: every prompt of a length bucket in one batch, a KV
  cache preallocated for the batch's window, the output layer only at each row's last
  position, the greedy token found blockwise (``first_max``), one tokenizer call per step for
  the stop strings; finished rows leave the batch and the cache;
- on CPU every linear layer of a scoring or decoding pass, the output layer included, runs
  through oneDNN on a copy of its weight packed once per model (``cpu_linear``);
- a batch that runs out of memory is halved and retried.
Tokenisation, truncation and rolling windows follow lm-eval's ``HFLM`` so that results agree.
"""

import contextlib
import gc
from dataclasses import dataclass
from functools import partial
from itertools import chain

import torch
from lm_eval.api.model import LM
from lm_eval.models.utils import resolve_max_length
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

from emergence.run import cpu_linear


@dataclass(frozen=True)
class TokenScores:
    """Log-probabilities (nats) and greedy flags of each continuation token (flags None where
    the caller did not ask for them)."""

    logprobs: tuple[float, ...]
    greedy: tuple[bool, ...] | None

    @property
    def total(self) -> float:
        return float(sum(self.logprobs))

    @property
    def is_greedy(self) -> bool | None:
        return None if self.greedy is None else all(self.greedy)


@dataclass(frozen=True)
class RollingScore:
    logprob: float   # sum over every token of the text, nats
    tokens: int


class HFEngine(LM):
    def __init__(self, model, tokenizer, *, batch_size="auto", max_batch_size=64, max_length=None):
        super().__init__()
        self.model = model.eval()
        self.tokenizer = tokenizer
        self._device = model.get_input_embeddings().weight.device
        self.max_length = max_length or resolve_max_length(model.config, tokenizer)
        # "auto" starts at max_batch_size; any OOM halves the size for the rest of the run.
        self.batch_size = max_batch_size if batch_size == "auto" else int(batch_size)
        eos = tokenizer.eos_token_id
        self.eos_token_id = eos
        self.prefix_token_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos or 0)
        # Packing a context and all its continuations into one row needs a custom attention
        # mask, which architectures built on transformers' mask utilities accept as given.
        self.packed = supports_custom_masks(model)
        self._cache_arg = cache_argument(model)
        # Where the logits are just the output layer on the last hidden states, a scoring pass
        # applies that layer only at the scored positions (with a 50k vocabulary it is half the
        # FLOPs of a small model, and the context positions of a row need none of it).
        self.split = split_head(model)
        # On CPU a scoring pass over more tokens is no faster per token, slower once its
        # activations leave the cache (15-20% at 8k vs 1k tokens, GPT-NeoX 1M-30M); GPUs want
        # the widest pass that fits.
        self.pass_tokens = 1024 if self._device.type == "cpu" else None
        # Greedy decoding writes each step's keys and values into a cache preallocated for the
        # batch's whole window (transformers' StaticCache) where the model is built for one;
        # growing a cache concatenates every layer's tensors at every step.
        self.static_cache = bool(getattr(model, "_can_compile_fullgraph", False)) and _layered_caches()
        self._step_buffer = None   # the output layer's logits of one decoding step (not on CPU)
        # On CPU, scoring and decoding run every linear layer through oneDNN on a copy of its
        # weight packed once per loaded model (see cpu_linear); elsewhere the model's own layers.
        self._packed = cpu_linear.PackedWeights() if self._device.type == "cpu" and cpu_linear.available() else None

    # ---------------------------------------------------------------- lm-eval's LM interface
    def loglikelihood(self, requests, disable_tqdm: bool = False):
        return [(s.total, s.is_greedy) for s in self.score_pairs([r.args for r in requests])]

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        return [s.logprob for s in self.score_rolling([r.args[0] for r in requests])]

    def generate_until(self, requests, disable_tqdm: bool = False):
        results = [None] * len(requests)
        by_kwargs = {}
        for i, r in enumerate(requests):
            context, kwargs = r.args
            kwargs = dict(kwargs or {})
            until = kwargs.pop("until", None) or []
            until = [until] if isinstance(until, str) else list(until)
            max_gen = kwargs.pop("max_gen_toks", 256)
            if kwargs.pop("do_sample", False) or kwargs.pop("temperature", 0.0):
                raise ValueError("The native engine decodes greedily; sampling is not supported")
            by_kwargs.setdefault((tuple(until), max_gen), []).append((i, context))
        for (until, max_gen), items in by_kwargs.items():
            texts = self.generate([c for _, c in items], until=until, max_gen_toks=max_gen)
            for (i, _), text in zip(items, texts):
                results[i] = text
        return results

    # ---------------------------------------------------------------- tokenisation (as HFLM)
    def tok_encode(self, text: str, add_special_tokens: bool | None = None) -> list[int]:
        kwargs = {} if add_special_tokens is None else {"add_special_tokens": add_special_tokens}
        return self.tokenizer.encode(text, **kwargs)

    def encode_pairs(self, pairs) -> list[tuple[list[int], list[int]]]:
        """(context ids, continuation ids) per pair, split the way lm-eval splits them."""
        out, joint, where = [None] * len(pairs), [], []
        for i, (context, continuation) in enumerate(pairs):
            if context == "":
                cont = self.tok_encode(continuation, add_special_tokens=False)
                out[i] = ([self.prefix_token_id], cont) if cont[:1] != [self.prefix_token_id] else (cont[:1], cont[1:])
                continue
            # Trailing spaces of the context belong to the continuation (word-boundary tokens).
            n_spaces = len(context) - len(context.rstrip())
            if n_spaces:
                context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
            joint += [context + continuation, context]
            where.append(i)
        if joint:
            ids = self.tokenizer(joint)["input_ids"]
            for k, i in enumerate(where):
                whole, ctx = ids[2 * k], ids[2 * k + 1]
                out[i] = (ctx, whole[len(ctx):])
        return out

    # ---------------------------------------------------------------- scoring
    def score_pairs(self, pairs) -> list[TokenScores]:
        """Per-token scores of each continuation given its context."""
        return self.score_tokens(self.encode_pairs(pairs))

    def score_tokens(self, encoded, greedy: bool = True) -> list[TokenScores]:
        # Keep the last max_length + 1 tokens, as lm-eval does; continuations stay whole
        # unless they alone are longer than the window.
        groups = {}
        for i, (ctx, cont) in enumerate(encoded):
            if not cont:
                raise ValueError("Empty continuation: nothing to score")
            whole = (list(ctx) + list(cont))[-(self.max_length + 1):]
            cont = cont[-(len(whole) - 1):] if len(cont) >= len(whole) else cont
            groups.setdefault(tuple(whole[: len(whole) - len(cont)]), []).append((i, tuple(cont)))
        rows, shared = [], []   # rows: (context, members) in one sequence; shared: via a KV cache
        for ctx, members in groups.items():
            if len(members) == 1 or not _worth_sharing(ctx, members):
                rows += [(ctx, [m]) for m in members]
            elif self.packed:
                rows += [(ctx, chunk) for chunk in _chunks(ctx, members, self.max_length)]
            else:
                shared.append((ctx, members))
        # Widest first: the largest batch runs first, so an OOM shows at once; similar widths
        # batch together, so little is padding.
        rows.sort(key=lambda r: -_row_width(r))
        shared.sort(key=lambda g: -_shared_width(g))
        results = [None] * len(encoded)
        with self._cpu_layers():
            for batch_out in chain(
                    self._batched(rows, partial(self._score_rows, greedy=greedy), _row_width, self.pass_tokens),
                    self._batched(shared, partial(self._score_shared, greedy=greedy), _shared_width, self.pass_tokens)):
                for i, scores in batch_out:
                    results[i] = scores
        return results

    def score_rolling(self, texts) -> list[RollingScore]:
        """Log-likelihood of whole texts in disjoint windows of the model's context length."""
        windows, owner = [], []
        for t, text in enumerate(texts):
            ids = self.tok_encode(text)
            for ctx, cont in map(make_disjoint_window, get_rolling_token_windows(
                    token_list=ids, prefix_token=self.prefix_token_id,
                    max_seq_len=self.max_length, context_len=1)):
                windows.append((ctx, cont))
                owner.append(t)
        totals = [0.0] * len(texts)
        counts = [0] * len(texts)
        for t, scores in zip(owner, self.score_tokens(windows, greedy=False)):
            totals[t] += scores.total
            counts[t] += len(scores.logprobs)
        return [RollingScore(lp, n) for lp, n in zip(totals, counts)]

    @torch.inference_mode()
    def _score_rows(self, rows, greedy=True):
        """One pass over right-padded rows, each a context then its continuations; where a row
        holds several, a 4-D mask lets each see only the context and positions restart after it."""
        width = max(_row_width(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        packed = any(len(members) > 1 for _, members in rows)
        seg = torch.full((len(rows), width), -1, dtype=torch.long)
        pos = torch.zeros((len(rows), width), dtype=torch.long)
        at_row, at_pos, target, spans = [], [], [], []
        for r, (ctx, members) in enumerate(rows):
            n = len(ctx)
            ids[r, :n], seg[r, :n], pos[r, :n] = torch.tensor(ctx), 0, torch.arange(n)
            end = n
            for k, (i, cont) in enumerate(members, 1):
                # Continuation token j is predicted at the position of token j-1 (the last
                # context token for j = 0).
                m = len(cont) - 1
                ids[r, end: end + m], seg[r, end: end + m] = torch.tensor(cont[:-1]), k
                pos[r, end: end + m] = torch.arange(n, n + m)
                spans.append((i, len(target), len(cont)))
                at_row += [r] * len(cont)
                at_pos += [n - 1] + list(range(end, end + m))
                target += cont
                end += m
        first = min(at_pos)
        kwargs = {}
        if packed:
            # Causal, and a key is visible if it is context or in the query's own segment; every
            # query sees itself, so padding never turns into NaN.
            causal = torch.ones(width, width, dtype=torch.bool).tril()
            visible = (seg[:, None, :] == 0) | (seg[:, None, :] == seg[:, :, None])
            mask = (causal & visible) | torch.eye(width, dtype=torch.bool)
            kwargs = {"attention_mask": mask[:, None].to(self._device), "position_ids": pos.to(self._device)}
        # Unpacked rows need no mask: padding sits at the right, after every scored position.
        at = (torch.tensor(at_row, device=self._device), torch.tensor(at_pos, device=self._device))
        target = torch.tensor(target, device=self._device)
        if self.split is not None:   # the output layer at the scored positions only
            decoder, head = self.split
            hidden = decoder(input_ids=ids.to(self._device), use_cache=False, **kwargs).last_hidden_state
            token_lp, flags = _head_scores(hidden[at], head, target, greedy, self._packed_head(head, hidden))
        else:
            logits = self.model(input_ids=ids.to(self._device), logits_to_keep=width - first, use_cache=False,
                                **kwargs).logits
            token_lp, flags = _token_scores(logits, (at[0], at[1] - first), target, greedy)
        return [(i, _scores(token_lp, flags, s, size)) for i, s, size in spans]

    @torch.inference_mode()
    def _score_shared(self, groups, greedy=True):
        """Models that take no custom mask: each context runs once, its continuations reuse its KV cache."""
        contexts = [ctx for ctx, _ in groups]
        ids, mask = self._left_pad(contexts)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=_positions(mask),
                         use_cache=True, logits_to_keep=1)
        first_logits = out.logits[:, -1:, :]
        rows = [(g, i, cont) for g, (_, members) in enumerate(groups) for i, cont in members]
        row_group = torch.tensor([g for g, _, _ in rows], device=self._device)
        longest = max(len(cont) for _, _, cont in rows)
        # logits[r, j] predicts continuation token j of row r.
        logits = first_logits[row_group]
        if longest > 1:
            cache = _returned_cache(out)
            cache.batch_select_indices(row_group)
            cont_in = torch.full((len(rows), longest - 1), self.pad_token_id, dtype=torch.long)
            cont_mask = torch.zeros((len(rows), longest - 1), dtype=torch.long)
            for r, (_, _, cont) in enumerate(rows):
                cont_in[r, : len(cont) - 1] = torch.tensor(cont[:-1])
                cont_mask[r, : len(cont) - 1] = 1
            cont_in, cont_mask = cont_in.to(self._device), cont_mask.to(self._device)
            full_mask = torch.cat([mask[row_group], cont_mask], dim=1)
            pos = _positions(full_mask)[:, -(longest - 1):]
            more = self.model(input_ids=cont_in, attention_mask=full_mask, position_ids=pos,
                              **{self._cache_arg: cache}, use_cache=True).logits
            logits = torch.cat([logits, more], dim=1)
        at_row = [r for r, (_, _, cont) in enumerate(rows) for _ in cont]
        at_pos = [j for _, _, cont in rows for j in range(len(cont))]
        target = [t for _, _, cont in rows for t in cont]
        at = (torch.tensor(at_row, device=self._device), torch.tensor(at_pos, device=self._device))
        token_lp, flags = _token_scores(logits, at, torch.tensor(target, device=self._device), greedy)
        out, s = [], 0
        for _, i, cont in rows:
            out.append((i, _scores(token_lp, flags, s, len(cont))))
            s += len(cont)
        return out

    # ---------------------------------------------------------------- generation
    def generate(self, contexts, until=(), max_gen_toks: int = 32) -> list[str]:
        """Greedy continuations, cut at the first stop string or the end-of-text token."""
        until = self._stop_strings(until)
        texts = self.tokenizer.batch_decode(self.generate_tokens(contexts, until, max_gen_toks),
                                            skip_special_tokens=True)
        return [_cut(text, until) for text in texts]

    def generate_tokens(self, contexts, until=(), max_gen_toks: int = 32) -> list[list[int]]:
        """The greedy token ids of each context, up to the one that completes a stop string
        (included) or the end-of-text token (left out), at most ``max_gen_toks``."""
        until = self._stop_strings(until)
        keep = self.max_length - max_gen_toks
        if keep <= 0:
            raise ValueError(f"max_gen_toks={max_gen_toks} leaves no room in a {self.max_length}-token window")
        encoded = [ids[-keep:] for ids in self.tokenizer(list(contexts))["input_ids"]]
        # Longest first, and a batch holds batch_size windows' worth of tokens: prompts of one
        # length bucket decode together rather than in fixed groups.
        items = sorted(enumerate(encoded), key=lambda item: -len(item[1]))
        results = [None] * len(encoded)
        for batch_out in self._batched(items, lambda b: self._generate_batch(b, until, max_gen_toks),
                                       lambda item: len(item[1]) + max_gen_toks):
            for i, ids in batch_out:
                results[i] = ids
        return results

    def _stop_strings(self, until):
        until = [s for s in until if s]
        eos_text = self.tokenizer.decode([self.eos_token_id]) if self.eos_token_id is not None else None
        if eos_text and eos_text not in until:
            until.append(eos_text)
        return until

    def _generate_batch(self, items, until, max_gen_toks):
        with self._cpu_layers(), torch.inference_mode():
            return self._decode_batch(items, until, max_gen_toks)

    def _decode_batch(self, items, until, max_gen_toks):
        ids, mask = self._left_pad([ctx for _, ctx in items])
        width = ids.shape[1]
        # The mask and positions of every step, made once; each step takes a slice.
        mask = torch.cat([mask, mask.new_ones(len(items), max_gen_toks)], dim=1)
        pos = _positions(mask)
        cache = self._decode_cache(width + max_gen_toks)
        # A preallocated cache spans the batch's whole window from the first step on; a growing
        # one sees the mask up to the current position.
        view = (lambda at: mask) if cache is not None else (lambda at: mask[:, :at])
        next_ids, cache = self._greedy_step(ids, view(width), pos[:, :width], cache)
        generated = [[] for _ in items]
        active = list(range(len(items)))   # batch row -> item; finished rows leave the batch
        for step in range(max_gen_toks):
            live = []   # rows that did not end with the end-of-text token
            for row, tok in enumerate(next_ids.tolist()):
                if tok != self.eos_token_id:
                    generated[active[row]].append(tok)
                    live.append(row)
            # One tokenizer call per step for all rows, not one per row.
            texts = self.tokenizer.batch_decode([generated[active[row]] for row in live], skip_special_tokens=True)
            keep = [row for row, text in zip(live, texts) if not any(s in text for s in until)]
            if not keep or step == max_gen_toks - 1:
                break
            if len(keep) < len(active):
                rows = torch.tensor(keep, device=self._device)
                _keep_cache_rows(cache, rows)
                mask, pos, next_ids = mask[rows], pos[rows], next_ids[rows]
                active = [active[row] for row in keep]
            at = width + step
            next_ids, cache = self._greedy_step(next_ids[:, None], view(at + 1), pos[:, at: at + 1], cache)
        return [(i, toks) for (i, _), toks in zip(items, generated)]

    def _decode_cache(self, length):
        """A KV cache preallocated for ``length`` positions where the model takes one (no
        concatenation per step and layer), else None: the model grows its own."""
        if not self.static_cache:
            return None
        from transformers import StaticCache

        return StaticCache(config=self.model.config, max_cache_len=length)

    def _greedy_step(self, ids, mask, pos, cache):
        """One forward pass; the greedy next token of each row (the first maximum, as
        ``argmax``), and the cache to pass next."""
        kwargs = {"attention_mask": mask, "position_ids": pos, "use_cache": True}
        if cache is not None:
            kwargs[self._cache_arg] = cache
        if self.split is not None:
            decoder, head = self.split
            out = decoder(input_ids=ids, **kwargs)
            return self._greedy_tokens(out.last_hidden_state[:, -1], head), _returned_cache(out)
        out = self.model(input_ids=ids, logits_to_keep=1, **kwargs)
        return first_max(out.logits[:, -1]), _returned_cache(out)

    def _greedy_tokens(self, hidden, head):
        """The first maximum of the output layer on one position per row, a slice of rows at a
        time: on CPU through oneDNN on the packed weight, elsewhere into a buffer that every step
        reuses (a fresh one pays its page faults each time)."""
        packed = self._packed_head(head, hidden)
        if packed is not None:
            return torch.cat([first_max(logits) for logits in _head_slices(hidden, head, packed=packed)])
        buffer = weight = None
        if _plain_layer(head, hidden):
            rows = _slice_rows(hidden, head)
            buffer = self._step_buffer
            if (buffer is None or len(buffer) < rows or buffer.shape[1] != head.out_features
                    or buffer.device != hidden.device):
                buffer = self._step_buffer = hidden.new_empty((rows, head.out_features))
            weight = head.weight.t()
        return torch.cat([first_max(logits) for logits in _head_slices(hidden, head, buffer, weight)])

    # ---------------------------------------------------------------- plumbing
    def _cpu_layers(self):
        """On CPU, the model's linear layers through oneDNN on packed weights for the duration
        (scoring and decoding passes alike); elsewhere nothing changes."""
        return self._packed.patched(self.model) if self._packed is not None else contextlib.nullcontext()

    def _packed_head(self, head, hidden):
        """The output layer's packed weight where it runs through oneDNN, else None."""
        if self._packed is None or not cpu_linear.packable(head) or hidden.dtype != torch.float32:
            return None
        return self._packed.get(head.weight)

    def _left_pad(self, sequences):
        width = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for r, s in enumerate(sequences):
            if s:
                ids[r, width - len(s):] = torch.tensor(s)
                mask[r, width - len(s):] = 1
        return ids.to(self._device), mask.to(self._device)

    def _batched(self, items, run, width, tokens=None):
        """Run ``items`` (widest first) in batches of at most ``batch_size`` full windows' worth of
        tokens (and at most ``tokens``), so short rows share a pass; halve the size on out-of-memory."""
        start = 0
        while start < len(items):
            budget = min(self.batch_size * self.max_length, tokens or float("inf"))
            rows = max(1, int(budget // max(1, width(items[start]))))
            batch = items[start: start + rows]
            try:
                yield run(batch)
            except Exception as e:
                if not is_out_of_memory(e) or self.batch_size == 1:
                    raise
                self.batch_size = max(1, self.batch_size // 2)
                _free_accelerator_memory()
                continue
            start += len(batch)

    def close(self):
        """Release the model; the runner calls this before loading the next checkpoint."""
        self.model = self.split = self._step_buffer = None
        if self._packed is not None:
            self._packed.clear()
        gc.collect()
        _free_accelerator_memory()


def supports_custom_masks(model) -> bool:
    """Whether the model builds its attention mask with transformers' mask utilities, which
    pass a 4-D mask through unchanged (older or remote-code architectures may not)."""
    import inspect
    import sys

    module = sys.modules.get(type(model).__module__)
    try:
        return module is not None and "create_causal_mask" in inspect.getsource(module)
    except (OSError, TypeError):
        return False


def split_head(model):
    """(decoder, output layer) when ``model(x).logits`` is the output layer applied to
    ``model.base_model(x).last_hidden_state``, checked once on a short input; None where the
    logits are anything more (soft-capped or scaled logits, custom code) or the check fails."""
    decoder, head = getattr(model, "base_model", None), model.get_output_embeddings()
    if decoder is None or decoder is model or not isinstance(head, torch.nn.Linear):
        return None
    if len(set(getattr(model, "hf_device_map", {}).values())) > 1:
        return None   # dispatched over devices or disk: hidden states, output layer and targets would sit apart
    device = model.get_input_embeddings().weight.device
    ids = torch.arange(1, 6, device=device)[None] % model.get_input_embeddings().weight.shape[0]
    try:
        with torch.inference_mode():
            ref = model(input_ids=ids, use_cache=False).logits.float()
            got = head(decoder(input_ids=ids, use_cache=False).last_hidden_state).float()
    except Exception:   # any architecture this does not fit keeps the plain path
        return None
    if got.shape != ref.shape or not torch.isfinite(ref).all():   # broken weights: the plain path says so
        return None
    if not torch.allclose(got, ref, rtol=1e-3, atol=1e-3 * float(ref.abs().max()) + 1e-6):
        return None
    return decoder, head


def first_max(logits, block: int = 256):
    """``logits.argmax(dim=-1)`` of a 2-D tensor (the first maximum of each row), found through
    the maximum of each block of ``block`` columns: ``amax`` is vectorised where ``max`` and
    ``argmax`` with their indices are not (0.4 ms against 3.5 ms on 48 x 50,304 floats, CPU).
    The first block holding the row's maximum holds its first occurrence."""
    rows, width = logits.shape
    full = width - width % block
    blocks = logits[:, :full].reshape(rows, full // block, block).amax(dim=-1)
    if full < width:
        blocks = torch.cat([blocks, logits[:, full:].amax(dim=-1, keepdim=True)], dim=1)
    first = blocks.argmax(dim=-1)
    # The block's columns; past the last column, that column again (after it, so never first).
    cols = (first[:, None] * block + torch.arange(block, device=logits.device)).clamp_(max=width - 1)
    return first * block + logits.gather(1, cols).argmax(dim=-1)


def is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def _worth_sharing(ctx, members) -> bool:
    """Sharing a context saves (k - 1) * len(ctx) tokens but needs a wider row with a custom mask
    (or a second pass): worth it when the context is at least as long as an average continuation.
    Rolling windows (a 1-token context, 2048-token continuation) are not."""
    return len(ctx) * len(members) >= sum(len(cont) for _, cont in members)


def _chunks(ctx, members, max_length):
    """Split members so that each packed row, context plus continuations, fits the window:
    attention cost grows with the square of a row's width."""
    chunk, width = [], len(ctx)
    for member in members:
        grow = len(member[1]) - 1
        if chunk and width + grow > max_length:
            yield chunk
            chunk, width = [], len(ctx)
        chunk.append(member)
        width += grow
    yield chunk


def _row_width(row) -> int:
    ctx, members = row
    return len(ctx) + sum(len(cont) - 1 for _, cont in members)


def _shared_width(group) -> int:
    """Tokens a KV-cache group holds: its context and longest continuation, per continuation."""
    ctx, members = group
    return len(members) * (len(ctx) + max(len(cont) for _, cont in members))


def _token_scores(logits, at, target, greedy=True):
    """Log-probability (and greedy flag) of each target token; ``at`` = (rows, positions) of the
    logits that predict it."""
    rows, cols = at
    flat = logits.reshape(-1, logits.shape[-1])
    return _reduce(_gathered_slices(flat, rows * logits.shape[1] + cols), target, greedy)


def _head_scores(hidden, head, target, greedy=True, packed=None):
    """As _token_scores, from the last hidden states of the scored positions and the output layer."""
    return _reduce(_head_slices(hidden, head, packed=packed), target, greedy)


# Logits are made and reduced a slice of positions at a time, 64 MB of float32, so that no
# (positions x vocabulary) tensor is ever built: with a 128k vocabulary a wide GPU pass would
# need gigabytes. In float32 every slice is written into one buffer: a fresh 64 MB tensor per
# slice costs its page faults again each time (on CPU, about a fifth of the output layer's time).
_SLICE_FLOATS = 1 << 24
# glibc maps allocations above 32 MB afresh every time; 16 MB ones come back from its heap.
_FRESH_FLOATS = 1 << 22


def _head_slices(hidden, head, buffer=None, weight=None, packed=None):
    """The output layer's float32 logits, a slice of rows at a time. With ``packed`` (its weight
    packed for oneDNN, CPU) through oneDNN. Otherwise a caller that reuses them from call to
    call passes the buffer (a plain layer only, at least a slice's rows) and the weight as
    (hidden, vocabulary); a plain layer gets a fresh buffer and the weight's transposed view."""
    rows = _slice_rows(hidden, head)
    if packed is not None:
        # oneDNN writes a fresh tensor per slice: small enough slices that the allocator reuses
        # its memory rather than mapping (and faulting in) new pages for each.
        rows = _slice_rows(hidden, head, min(_SLICE_FLOATS, _FRESH_FLOATS))
        yield from (cpu_linear.linear(h, packed, head.bias) for h in hidden.split(rows))
        return
    if buffer is None and _plain_layer(head, hidden):
        buffer = hidden.new_empty((rows, head.out_features))
    weight = head.weight.t() if weight is None else weight
    for h in hidden.split(rows):
        if buffer is None:
            yield head(h).float()
            continue
        part = torch.mm(h, weight, out=buffer[: len(h)])
        yield part if head.bias is None else part.add_(head.bias)


def _slice_rows(hidden, head, floats=None) -> int:
    """Rows of ``hidden`` per slice of at most ``floats`` logits (default ``_SLICE_FLOATS``, read
    at call time)."""
    return max(1, min(len(hidden), (_SLICE_FLOATS if floats is None else floats) // head.out_features))


def _plain_layer(layer, hidden) -> bool:
    """Whether a linear layer can be run as a float32 matmul by hand. Not where its weights are
    elsewhere (still on the meta device, awaiting a hook that loads them) or where any hook
    watches its calls."""
    return (layer.weight.dtype == torch.float32 and hidden.dtype == torch.float32
            and layer.weight.device == hidden.device
            and not layer._forward_hooks and not layer._forward_pre_hooks)


def _gathered_slices(flat, where):
    rows = max(1, min(len(where), _SLICE_FLOATS // flat.shape[-1]))
    buffer = flat.new_empty((rows, flat.shape[-1])) if flat.dtype == torch.float32 else None
    for w in where.split(rows):
        yield flat[w].float() if buffer is None else torch.index_select(flat, 0, w, out=buffer[: len(w)])


def _reduce(slices, target, greedy):
    """Log-softmax at each target, as logsumexp and a gather, never written out over the
    vocabulary; each slice of float32 logits is overwritten in place. The greedy flag is whether
    the target is the first maximum, as ``argmax`` has it; argmax runs only on the rows where the
    target logit is the maximum. Returns (log-probs, flags), flags None unless ``greedy``."""
    lps, flags, start = [], [], 0
    for part in slices:
        t = target[start: start + len(part)]
        start += len(part)
        picked = part.gather(1, t[:, None])[:, 0]
        top = part.amax(dim=-1)
        if greedy:
            flag = picked == top
            at_max = flag.nonzero()[:, 0]   # only a tie can make these differ from argmax
            if len(at_max):
                flag[at_max] = part[at_max].argmax(dim=-1) == t[at_max]
            flags.append(flag)
        shift = top.masked_fill(top.isinf(), 0)   # as torch.logsumexp: an infinite max stays infinite
        lse = part.sub_(shift[:, None]).exp_().sum(dim=-1).log_().add_(shift)
        lps.append(picked - lse)
    token_lp = torch.cat(lps).tolist()
    return token_lp, torch.cat(flags).tolist() if greedy else None


def _scores(token_lp, flags, start, size) -> TokenScores:
    end = start + size
    return TokenScores(tuple(token_lp[start:end]), None if flags is None else tuple(flags[start:end]))


def _cut(text, until):
    for stop in until:
        text = text.split(stop)[0]
    return text


def _layered_caches() -> bool:
    """Whether transformers' caches are made of layers that allocate themselves on first use
    (``StaticCache(config=..., max_cache_len=...)``, as in 5.x); older releases allocate in the
    constructor and want the batch size, dtype and device there."""
    import transformers.cache_utils as cache_utils

    return hasattr(cache_utils, "StaticLayer")


def _keep_cache_rows(cache, rows):
    """Drop finished rows from every layer of a KV cache, grown or preallocated (transformers'
    static layers have no batch selection of their own)."""
    if not hasattr(cache, "layers"):   # transformers before layered caches
        cache.batch_select_indices(rows)
        return
    for layer in cache.layers:
        if getattr(layer, "is_initialized", True) and getattr(layer, "keys", None) is not None:
            layer.keys, layer.values = layer.keys[rows], layer.values[rows]
            if hasattr(layer, "batch_size"):
                layer.batch_size = len(rows)


def _positions(mask):
    return (mask.cumsum(dim=-1) - 1).clamp(min=0)


def _free_accelerator_memory():
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    mps = getattr(torch, "mps", None)
    if mps is not None and torch.backends.mps.is_available():
        mps.empty_cache()


def cache_argument(model) -> str:
    """The name the model's forward takes its KV cache by: ``cache`` in transformers 5.x
    (``past_key_values`` is deprecated there and goes in 5.40), ``past_key_values`` before."""
    import inspect

    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


def _returned_cache(out):
    """The KV cache a forward pass returned, under its transformers 5.x name or the older one."""
    return out["cache"] if "cache" in out else out["past_key_values"]
