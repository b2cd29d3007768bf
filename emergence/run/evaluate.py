"""Evaluate one task on one loaded backend: build requests, query the model, score, aggregate.

Works with any backend behind lm-eval's ``LM`` interface. The native engine's extra methods
(per-token log-probabilities, token counts) are used when present; with another backend the
metrics that need them are left out rather than guessed.
"""

import collections
import hashlib
import itertools
import math

from emergence import tasks as T
from emergence.metrics import mean_stderr
from emergence.store import Sample, Score
from emergence.task_checks import is_proportion, nondeterminism


class TaskError(RuntimeError):
    """A task that misbehaves; the message names the task."""


class NonFiniteLogprobs(RuntimeError):
    """The model returned NaN or infinite log-probabilities: its weights or dtype are broken."""


def evaluate(task, lm, *, seed: int, limit: int | None = None, num_fewshot: int | None = None):
    """Return (scores, samples) of ``task`` on ``lm``."""
    examples = checked_examples(task, seed, limit)
    shots = num_fewshot if num_fewshot is not None else task.num_fewshot
    contexts = build_contexts(task, examples, seed, shots)
    check_context_window(task, lm, examples, contexts, shots)
    outputs = _query(task, lm, examples, contexts)
    _check_finite(task, outputs)
    samples, per_key = [], {}
    proportion = {}   # metric -> whether its values must lie in [0, 1], decided once per cell
    for ex, ctx, out in zip(examples, contexts, outputs):
        scores = task.score(ex, out)
        if not isinstance(scores, dict) or not all(
                isinstance(k, tuple) and len(k) == 2 and isinstance(v, (int, float)) for k, v in scores.items()):
            raise TaskError(f"Task {task.name!r} returned malformed scores for example {ex.id!r}: "
                            "expected {(subtask, metric): number}")
        for key, value in scores.items():
            if key[1] not in proportion:
                proportion[key[1]] = is_proportion(task, key[1])
            value = float(value)
            if proportion[key[1]] and math.isfinite(value) and not 0.0 <= value <= 1.0:  # analyze would refuse it
                raise TaskError(f"Task {task.name!r} scored metric {key[1]!r}"
                                f"{f' (sub-task {key[0]!r})' if key[0] else ''} = {value:g} for example "
                                f"{ex.id!r}, outside [0, 1] where proportions live; return a share from score() "
                                "(divide by the count), or rename the metric if it is not one "
                                f"(`emergence check-task {task.name}`)")
            per_key.setdefault(key, []).append(value)
        samples.append(_sample(task, ex, ctx, out, scores))
    aggregates = []
    declared = {m.name: m for m in reversed(task.metrics)}  # the first declaration of a name wins
    for (subtask, metric), values in sorted(per_key.items()):
        mean, stderr, n, n_bad = mean_stderr(values)
        m = declared.get(metric)  # a score the task does not declare: kind and direction unknown
        aggregates.append(Score(subtask, metric, mean, stderr, n, n_bad, T.metric_chance(task, subtask, metric),
                                m and m.kind, m and m.higher_is_better))
    return aggregates, samples


def checked_examples(task, seed: int, limit: int | None) -> list:
    """The first ``limit`` examples of ``task`` under ``seed``, checked: some, with unique ids, and
    the same on a second call (a task that draws other examples on each call would give each
    checkpoint other questions). Checked once per process and task: the checkpoints that follow
    reuse the list."""
    key = _cache_key(task, seed, limit)
    if key is not None and key in _CHECKED:
        _CHECKED.move_to_end(key)
        return _CHECKED[key]
    examples = list(itertools.islice(task.examples(seed), limit))
    if not examples:
        raise TaskError(f"Task {task.name!r} yielded no examples")
    ids = [ex.id for ex in examples]
    if len(set(ids)) != len(ids):
        raise TaskError(f"Task {task.name!r} yielded duplicate example ids")
    if (problem := nondeterminism(task, examples, list(itertools.islice(task.examples(seed), limit)), seed)):
        raise TaskError(problem.message)
    if key is not None:
        _CHECKED[key] = examples
        while len(_CHECKED) > _MAX_CHECKED:
            _CHECKED.popitem(last=False)
    return examples


_CHECKED = collections.OrderedDict()   # (task, seed, limit) -> its checked examples
_MAX_CHECKED = 32                      # tasks of a sweep; the oldest are dropped past that


def _cache_key(task, seed, limit):
    """A frozen task is its own key (equal tasks give equal examples); others are not cached."""
    key = (type(task), task, seed, limit)
    try:
        hash(key)
    except TypeError:
        return None
    return key


def build_contexts(task, examples, seed, shots) -> list[str]:
    """The prompt of each example with its few-shot examples in front (the text for rolling)."""
    if task.kind == T.ROLLING:
        return [ex.text for ex in examples]
    if shots <= 0:
        return [ex.prompt for ex in examples]
    # Few-shot examples come from the same generator under another seed, so they are never
    # the evaluated examples; each example gets its own rotation of the pool.
    pool = list(itertools.islice(task.examples(seed + 1), max(shots * 8, 64)))
    if len(pool) < shots:
        raise TaskError(f"Task {task.name!r} has {len(pool)} examples, fewer than {shots} shots")
    sep = getattr(task, "fewshot_separator", "\n\n")
    out = []
    for i, ex in enumerate(examples):
        chosen = [pool[(i * shots + j) % len(pool)] for j in range(shots)]
        prefix = "".join(s.prompt + _answer(s) + sep for s in chosen)
        out.append(prefix + ex.prompt)
    return out


def check_context_window(task, lm, examples, contexts, shots):
    """Refuse an example whose context (prompt and few-shot examples) and answer do not fit the
    model's window: the backend would silently cut the start of the context off. Needs a backend
    with ``tokenizer`` and ``max_length`` (the built-in engine, lm-eval's HFLM); rolling texts
    are scored in windows by design."""
    tokenizer, window = getattr(lm, "tokenizer", None), getattr(lm, "max_length", None)
    if task.kind == T.ROLLING or tokenizer is None or not isinstance(window, int):
        return
    ids = tokenizer(list(contexts))["input_ids"]
    choices = [c for ex in examples for c in ex.choices] if task.kind == T.MULTIPLE_CHOICE else []
    choice_lengths = iter(len(c) for c in tokenizer(choices)["input_ids"]) if choices else iter(())
    for ex, ctx_ids in zip(examples, ids):
        if task.kind == T.GENERATE:
            need, room = len(ctx_ids) + task.max_gen_toks, window
            answer = f"max_gen_toks {task.max_gen_toks}"
        else:
            longest = max((next(choice_lengths) for _ in ex.choices), default=0)
            need, room, answer = len(ctx_ids) + longest, window + 1, "the longest choice"
        if need > room:
            raise TaskError(f"Task {task.name!r}: example {ex.id!r} needs {need} tokens (prompt with {shots} "
                            f"few-shot example(s) and {answer}) but the model's context window is {window} tokens, "
                            "so the start of its prompt would be cut off; use fewer shots (--num-fewshot), a "
                            "larger --max-length if the model allows it, or shorter prompts")


def _answer(ex):
    return ex.choices[ex.gold] if ex.choices else ex.target


def _query(task, lm, examples, contexts) -> list[T.Output]:
    rich = hasattr(lm, "score_pairs")
    if task.kind == T.MULTIPLE_CHOICE:
        pairs = [(ctx, ch) for ex, ctx in zip(examples, contexts) for ch in ex.choices]
        flat = _loglikelihood(lm, pairs, rich)
        outs, k = [], 0
        for ex in examples:
            if not ex.choices or ex.gold is None or not 0 <= ex.gold < len(ex.choices):
                raise TaskError(f"Task {task.name!r}: example {ex.id!r} needs choices and a valid gold index")
            res = flat[k: k + len(ex.choices)]
            k += len(ex.choices)
            gold = res[ex.gold]
            outs.append(T.Output(
                choice_logprobs=tuple(r[0] for r in res), choice_greedy=tuple(r[1] for r in res),
                choice_tokens=tuple(r[3] or 0 for r in res), gold_logprob=gold[0], gold_greedy=gold[1],
                gold_token_logprobs=gold[2], gold_tokens=gold[3],
                gold_bytes=len(ex.choices[ex.gold].encode())))
        return outs
    if task.kind == T.GENERATE:
        generations = _generate(lm, contexts, task)
        gold = _loglikelihood(lm, [(c, ex.target) for ex, c in zip(examples, contexts)], rich)
        return [T.Output(generation=g, gold_logprob=lp, gold_greedy=gr, gold_token_logprobs=tl,
                         gold_tokens=nt, gold_bytes=len(ex.target.encode()))
                for ex, g, (lp, gr, tl, nt) in zip(examples, generations, gold)]
    if task.kind == T.ROLLING:
        if hasattr(lm, "score_rolling"):
            rolled = [(r.logprob, r.tokens) for r in lm.score_rolling(contexts)]
        else:
            rolled = [(lp, None) for lp in lm.loglikelihood_rolling(_instances("loglikelihood_rolling",
                                                                              [(c,) for c in contexts]))]
        return [T.Output(rolling_logprob=lp, rolling_tokens=n, rolling_bytes=len(c.encode()))
                for (lp, n), c in zip(rolled, contexts)]
    raise TaskError(f"Task {task.name!r} has unknown kind {task.kind!r}; expected one of {T.KINDS}")


def _loglikelihood(lm, pairs, rich):
    """(total logprob, greedy, per-token logprobs, n tokens) per pair."""
    if rich:
        return [(s.total, s.is_greedy, s.logprobs, len(s.logprobs)) for s in lm.score_pairs(pairs)]
    return [(lp, g, (), None) for lp, g in lm.loglikelihood(_instances("loglikelihood", pairs))]


def _generate(lm, contexts, task):
    if hasattr(lm, "generate"):
        return lm.generate(contexts, until=task.until, max_gen_toks=task.max_gen_toks)
    kwargs = {"until": list(task.until), "max_gen_toks": task.max_gen_toks, "do_sample": False}
    return lm.generate_until(_instances("generate_until", [(c, dict(kwargs)) for c in contexts]))


def _check_finite(task, outputs):
    """Refuse what a broken model says: scores built on NaN log-probabilities would be stored as
    ordinary numbers (or quietly left out as non-finite) and look like a real, bad result."""
    values = [v for out in outputs for v in (*out.choice_logprobs, out.gold_logprob, *out.gold_token_logprobs,
                                             out.rolling_logprob) if v is not None]
    bad = sum(not math.isfinite(v) for v in values)
    if bad:
        raise NonFiniteLogprobs(f"the model produced non-finite log-probabilities (NaN or inf) for {bad} of "
                                f"{len(values)} values on task {task.name!r}; are its weights corrupt or its "
                                "dtype overflowing (try dtype = float32)?")


def _instances(kind, args_list):
    from lm_eval.api.instance import Instance

    return [Instance(request_type=kind, doc={}, arguments=a, idx=i) for i, a in enumerate(args_list)]


def _sample(task, ex, ctx, out: T.Output, scores) -> Sample:
    if task.kind == T.MULTIPLE_CHOICE:
        best = max(range(len(out.choice_logprobs)), key=lambda i: out.choice_logprobs[i])
        prediction, gold = ex.choices[best], ex.choices[ex.gold]
    else:
        prediction, gold = out.generation, ex.target or None
    logprob = out.rolling_logprob if task.kind == T.ROLLING else out.gold_logprob
    tokens = out.rolling_tokens if task.kind == T.ROLLING else out.gold_tokens
    return Sample(
        example_id=ex.id, subtask=ex.subtask, prompt_hash=hashlib.sha256(ctx.encode()).hexdigest()[:16],
        prediction=prediction, gold=gold, gold_logprob=_finite_or_none(logprob), gold_tokens=tokens,
        greedy=out.gold_greedy, metrics={f"{s}/{m}" if s else m: v for (s, m), v in scores.items()},
    )


def _finite_or_none(x):
    return x if x is not None and math.isfinite(x) else None
