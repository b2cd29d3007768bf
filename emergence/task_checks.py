"""Checks of a task against its contract that need no model: what ``emergence check-task`` runs.

A task is asked for its examples twice (they must be the same), its ids are compared, and its
own ``score`` is called on synthetic outputs, a perfect answer and a wrong one for every
example, so that the scored ``(subtask, metric)`` keys can be compared with what the task
declares, and proportions checked to lie in [0, 1]. Each finding is a :class:`Problem` that
names the task and says what to change. The harness repeats the cheap checks on every cell it
evaluates (``emergence.run.evaluate``); the checks on the model's context window need its
tokenizer and live there too.
"""

import itertools
import math
from dataclasses import dataclass

from emergence import tasks as T
from emergence.metric_rules import looks_like_accuracy, metric_is_proportion

ERROR, WARNING = "error", "warning"
DEFAULT_LIMIT = 200  # examples checked: enough to meet rare sub-tasks, fast for generated tasks
_SHOWN = 5


@dataclass(frozen=True)
class Problem:
    task: str
    level: str      # ERROR: results would be wrong or lost; WARNING: the analysis may mislead
    message: str

    def __str__(self):
        return f"{self.level}: {self.message}"


def check_task(task, *, seed: int = 0, limit: int | None = DEFAULT_LIMIT) -> list[Problem]:
    """Every model-free check of ``task`` on the first ``limit`` examples of ``seed``."""
    name = getattr(task, "name", repr(task))
    try:
        first = list(itertools.islice(task.examples(seed), limit))
        second = list(itertools.islice(task.examples(seed), limit))
    except Exception as e:  # the task's own code: say whose it is
        return [Problem(name, ERROR, f"task {name!r}: examples({seed}) raised {type(e).__name__}: {e}")]
    if not first:
        return [Problem(name, ERROR, f"task {name!r}: examples({seed}) yielded no examples")]
    problems = []
    if (p := nondeterminism(task, first, second, seed)) is not None:
        problems.append(p)
    if (p := duplicate_ids(task, first)) is not None:
        problems.append(p)
    problems += _check_scores(task, first)
    return problems


def nondeterminism(task, first, second, seed) -> Problem | None:
    """Two calls of ``examples(seed)`` that differ: the first differing example, field by field."""
    if first == second:
        return None
    for i, (a, b) in enumerate(itertools.zip_longest(first, second)):
        if a != b:
            break
    if a is None or b is None:
        diff = f"{len(first)} examples, then {len(second)}"
    else:
        field = next((f for f in ("id", "prompt", "target", "choices", "gold", "text", "subtask", "parts")
                      if getattr(a, f, None) != getattr(b, f, None)), "id")
        diff = f"example {i} has {field} {_short(getattr(a, field))} then {_short(getattr(b, field))}"
    return Problem(task.name, ERROR,
                   f"task {task.name!r}: examples({seed}) gives different examples each time it is called "
                   f"({diff}), so every checkpoint would see other questions; draw from a private generator "
                   f"seeded by the task and the seed, random.Random(f\"{{self.name}}:{{seed}}\"), never the "
                   "global `random`, the clock or set order")


def duplicate_ids(task, examples) -> Problem | None:
    seen, dups = set(), []
    for ex in examples:
        if ex.id in seen and ex.id not in dups:
            dups.append(ex.id)
        seen.add(ex.id)
    if not dups:
        return None
    return Problem(task.name, ERROR, f"task {task.name!r}: example id(s) {_listed(dups)} occur more than once; "
                                     "ids must be unique within a seed (use the example's index)")


def out_of_range(task, metric: str, value: float) -> bool:
    """A score of a proportion (accuracies, exact match, probabilities) outside [0, 1]."""
    return is_proportion(task, metric) and math.isfinite(value) and not 0.0 <= value <= 1.0


def is_proportion(task, metric: str) -> bool:
    """Metrics whose values must lie in [0, 1]: all-or-nothing ones and the names the analysis
    reads as accuracies or shares (it refuses such values outside [0, 1])."""
    declared = next((m for m in getattr(task, "metrics", ()) if m.name == metric), None)
    return (declared is not None and declared.kind == T.DISCONTINUOUS) or looks_like_accuracy(metric) \
        or metric_is_proportion(metric)


# ----------------------------------------------------------------------------- helpers

def _check_scores(task, examples) -> list[Problem]:
    name = task.name
    scored: dict[tuple[str, str], list] = {}
    for ex in examples:
        try:
            outputs = _synthetic_outputs(task.kind, ex)
        except ValueError as e:
            return [Problem(name, ERROR, f"task {name!r}: example {ex.id!r} {e}")]
        for out in outputs:
            try:
                scores = task.score(ex, out)
            except Exception as e:
                return [Problem(name, ERROR, f"task {name!r}: score() raised {type(e).__name__}: {e} on example "
                                             f"{ex.id!r} (with a {'perfect' if out is outputs[0] else 'wrong'} answer)")]
            if not isinstance(scores, dict) or not all(isinstance(k, tuple) and len(k) == 2 and
                                                       isinstance(v, (int, float)) for k, v in scores.items()):
                return [Problem(name, ERROR, f"task {name!r}: score() returned {_short(scores)} for example "
                                             f"{ex.id!r}; expected {{(subtask, metric): number}}")]
            for key, value in scores.items():
                scored.setdefault(key, []).append((ex.id, float(value)))
    problems = []
    declared = [m.name for m in task.metrics]
    metrics = {m for _, m in scored}
    undeclared = sorted(metrics - set(declared))
    if undeclared:
        problems.append(Problem(name, ERROR, f"task {name!r} scores metric(s) {_listed(undeclared)} that it does not "
                                             "declare, so their kind, direction and chance would be guessed from "
                                             "the name; add a Metric(name, kind, chance) for each to `metrics`"))
    never = [m for m in dict.fromkeys(declared) if m not in metrics]
    if never:
        problems.append(Problem(name, ERROR, f"task {name!r} declares metric(s) {_listed(never)} that score() never "
                                             f"returns (on {len(examples)} examples, with perfect and wrong "
                                             "answers), so they would silently be missing from the results; "
                                             "score them or remove them from `metrics`"))
    subtasks = {s for s, _ in scored if s}
    declared_subs = tuple(getattr(task, "subtasks", ()) or ())
    if extra := sorted(subtasks - set(declared_subs)):
        problems.append(Problem(name, ERROR, f"task {name!r} scores sub-task(s) {_listed(extra)} that are not in "
                                             "its `subtasks`; list them there"))
    if missing := [s for s in declared_subs if s not in subtasks]:
        problems.append(Problem(name, ERROR, f"task {name!r} declares sub-task(s) {_listed(missing)} but score() "
                                             "returns no (subtask, metric) key for them; Example.subtask alone "
                                             "creates no rows: add keys such as (example.subtask, 'acc') in "
                                             "score(), or remove them from `subtasks`"))
    for (sub, metric), values in sorted(scored.items()):
        bad = [(i, v) for i, v in values if out_of_range(task, metric, v)]
        if bad:
            problems.append(Problem(name, ERROR, f"task {name!r}: metric {metric!r}{_sub(sub)} is a proportion but "
                                                 f"scored {bad[0][1]:g} for example {bad[0][0]!r} ({len(bad)} "
                                                 "value(s) outside [0, 1]); return a share (divide by the count) "
                                                 "or rename the metric if it is not one"))
    no_chance = {}
    for sub, metric in sorted(scored):
        if metric in declared and _accuracy_like(task, metric) and T.metric_chance(task, sub, metric) is None:
            no_chance.setdefault(metric, []).append(sub or "(whole task)")
    for metric, subs in no_chance.items():
        problems.append(Problem(name, WARNING, f"task {name!r}: metric {metric!r} is an accuracy without a chance "
                                               f"level (for {_listed(subs)}), so the analysis cannot tell 'at chance' "
                                               "from 'emerged'; declare Metric(..., chance=...) or override "
                                               "chance(subtask, metric) (docs/tasks.md, Chance levels)"))
    return problems


def _synthetic_outputs(kind, ex) -> tuple[T.Output, T.Output]:
    """A perfect and a wrong answer to ``ex``, with every field a rich backend fills."""
    if kind == T.GENERATE:
        n = max(1, len(ex.target.split()))
        right = T.Output(generation=ex.target, gold_logprob=-0.1 * n, gold_token_logprobs=(-0.1,) * n,
                         gold_greedy=True, gold_tokens=n, gold_bytes=len(ex.target.encode()))
        return right, T.Output(generation="", gold_logprob=-5.0 * n, gold_token_logprobs=(-5.0,) * n,
                               gold_greedy=False, gold_tokens=n, gold_bytes=len(ex.target.encode()))
    if kind == T.MULTIPLE_CHOICE:
        if not ex.choices or ex.gold is None or not 0 <= ex.gold < len(ex.choices):
            raise ValueError("needs choices and a valid gold index")
        wrong = (ex.gold + 1) % len(ex.choices)

        def answer(best):
            lps = tuple(-0.1 if i == best else -3.0 for i in range(len(ex.choices)))
            return T.Output(choice_logprobs=lps, choice_greedy=tuple(i == best for i in range(len(lps))),
                            choice_tokens=(1,) * len(lps), gold_logprob=lps[ex.gold], gold_greedy=best == ex.gold,
                            gold_token_logprobs=(lps[ex.gold],), gold_tokens=1,
                            gold_bytes=len(ex.choices[ex.gold].encode()))
        return answer(ex.gold), answer(wrong)
    if kind == T.ROLLING:
        n_bytes = len(ex.text.encode())
        tokens = max(1, n_bytes // 4)
        return (T.Output(rolling_logprob=-1.0 * tokens, rolling_tokens=tokens, rolling_bytes=n_bytes),
                T.Output(rolling_logprob=-8.0 * tokens, rolling_tokens=tokens, rolling_bytes=n_bytes))
    raise ValueError(f"has a task of unknown kind {kind!r}; expected one of {T.KINDS}")


def _accuracy_like(task, metric):
    """All-or-nothing metrics and accuracies by name; probabilities and shares such as
    gold_token_prob have no guesser's level."""
    declared = next((m for m in task.metrics if m.name == metric), None)
    base = metric.split("[")[0].lower()
    return (declared is not None and declared.kind == T.DISCONTINUOUS) or base.startswith("acc") \
        or base.endswith(("_acc", "accuracy")) or base in ("exact_match", "em")


def _sub(sub):
    return f" (sub-task {sub!r})" if sub else ""


def _listed(items):
    shown = ", ".join(repr(x) for x in items[:_SHOWN])
    return shown + (f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else "")


def _short(value, n=60):
    text = repr(value)
    return text if len(text) <= n else text[: n - 3] + "..."
