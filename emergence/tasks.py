"""The task contract that built-in and third-party tasks follow.

A task generates deterministic examples from a seed, says which request the model must answer
(multiple-choice log-likelihood, generation, or rolling log-likelihood), and scores each
example's :class:`Output` under several metrics, each with its kind and chance level.
Scores are keyed ``(subtask, metric)``; subtask ``""`` is the example as a whole.
"""

from dataclasses import dataclass, field
from typing import Iterable, Protocol, runtime_checkable

from emergence import metrics as M

MULTIPLE_CHOICE = "multiple_choice"
GENERATE = "generate"
ROLLING = "rolling"
KINDS = (MULTIPLE_CHOICE, GENERATE, ROLLING)

DISCONTINUOUS = "discontinuous"
CONTINUOUS = "continuous"
METRIC_KINDS = (DISCONTINUOUS, CONTINUOUS)


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str                      # DISCONTINUOUS (exact match, MC grade) or CONTINUOUS
    chance: float | None = None    # expected value of a guesser; None = not meaningful
    higher_is_better: bool = True
    description: str = ""

    def __post_init__(self):
        # These travel into the tidy table and decide verdicts: refuse a misspelt one here.
        if self.kind not in METRIC_KINDS:
            raise ValueError(f"Metric {self.name!r}: kind {self.kind!r} is not one of {METRIC_KINDS}")
        if not isinstance(self.higher_is_better, bool):
            raise ValueError(f"Metric {self.name!r}: higher_is_better must be True or False, "
                             f"not {self.higher_is_better!r}")


@dataclass(frozen=True)
class Example:
    id: str
    prompt: str = ""               # context, without few-shot examples
    target: str = ""               # gold continuation
    choices: tuple[str, ...] = ()  # multiple choice: continuations to rank
    gold: int | None = None        # index of the right choice
    subtask: str = ""
    parts: tuple[str, ...] = ()    # sub-step answers the task scores separately
    text: str = ""                 # rolling: the document to score


@dataclass(frozen=True)
class Output:
    """What the model produced for one example; fields depend on the request kind."""

    generation: str | None = None
    choice_logprobs: tuple[float, ...] = ()     # sum log P(choice | context), nats
    choice_tokens: tuple[int, ...] = ()
    choice_greedy: tuple[bool, ...] = ()
    gold_logprob: float | None = None           # log P(target | context), nats
    gold_token_logprobs: tuple[float, ...] = ()  # per token; empty when the backend lacks them
    gold_greedy: bool | None = None
    gold_tokens: int | None = None
    gold_bytes: int = 0
    rolling_logprob: float | None = None
    rolling_tokens: int | None = None
    rolling_bytes: int = 0


Scores = dict[tuple[str, str], float]


@runtime_checkable
class Task(Protocol):
    name: str
    version: str                   # bump when prompt, data or scoring change
    kind: str
    description: str
    subtasks: tuple[str, ...]
    metrics: tuple[Metric, ...]
    num_fewshot: int
    until: tuple[str, ...]         # generation stop strings
    max_gen_toks: int

    def examples(self, seed: int) -> Iterable[Example]: ...

    def score(self, example: Example, output: Output) -> Scores: ...


@dataclass(frozen=True)
class TaskBase:
    """Defaults and standard scoring; subclasses supply examples() and may extend score()."""

    name: str
    version: str = "1"
    kind: str = GENERATE
    description: str = ""
    subtasks: tuple[str, ...] = ()
    metrics: tuple[Metric, ...] = field(default_factory=tuple)
    num_fewshot: int = 0
    fewshot_separator: str = "\n\n"
    until: tuple[str, ...] = ("\n",)
    max_gen_toks: int = 32

    def examples(self, seed: int) -> Iterable[Example]:
        raise NotImplementedError

    def train_examples(self, seed: int) -> Iterable[Example]:
        """Examples to train on: by default the evaluation generator under ``seed`` (choose one
        the evaluation does not use); a task whose examples ignore the seed overrides this."""
        return self.examples(seed)

    def score(self, example: Example, output: Output) -> Scores:
        return standard_scores(self.kind, example, output)

    def chance(self, subtask: str, metric: str) -> float | None:
        for m in self.metrics:
            if m.name == metric:
                return m.chance
        return None


GENERATE_METRICS = (
    Metric("exact_match", DISCONTINUOUS, 0.0, description="generation equals the answer"),
    Metric("edit_distance", CONTINUOUS, None, higher_is_better=False,
           description="character edit distance between generation and answer"),
    Metric("token_edit_similarity", CONTINUOUS, 0.0,
           description="1 - token edit distance / max length, on whitespace tokens"),
    Metric("gold_logprob", CONTINUOUS, None, description="log P(answer | prompt), nats"),
    Metric("gold_bpb", CONTINUOUS, None, higher_is_better=False,
           description="bits per byte of the answer"),
    Metric("gold_token_prob", CONTINUOUS, None,
           description="geometric-mean probability per answer token, exp(-CE)"),
    Metric("gold_greedy", DISCONTINUOUS, 0.0, description="answer is the greedy continuation"),
)


def mc_metrics(n_choices: int) -> tuple[Metric, ...]:
    return (
        Metric("acc", DISCONTINUOUS, 1.0 / n_choices, description="highest log-likelihood choice is right"),
        Metric("prob_correct", CONTINUOUS, 1.0 / n_choices,
               description="probability of the right choice, normalised over choices"),
        Metric("brier", CONTINUOUS, (n_choices - 1) / n_choices, higher_is_better=False,
               description="Brier score of the normalised choice distribution"),
        Metric("gold_logprob", CONTINUOUS, None, description="log P(right choice | prompt), nats"),
        Metric("gold_bpb", CONTINUOUS, None, higher_is_better=False,
               description="bits per byte of the right choice"),
    )


ROLLING_METRICS = (
    Metric("nats_per_token", CONTINUOUS, None, higher_is_better=False),
    Metric("bits_per_byte", CONTINUOUS, None, higher_is_better=False),
)


def standard_scores(kind: str, example: Example, out: Output) -> Scores:
    """Discontinuous and continuous metrics of the same output, for the whole example."""
    s: Scores = {}
    if kind == GENERATE:
        gen = (out.generation or "").strip()
        s[("", "exact_match")] = float(gen == example.target.strip())
        s[("", "edit_distance")] = float(M.edit_distance(gen, example.target.strip()))
        s[("", "token_edit_similarity")] = M.token_edit_similarity(gen, example.target.strip())
    if kind in (GENERATE, MULTIPLE_CHOICE) and out.gold_logprob is not None:
        s[("", "gold_logprob")] = out.gold_logprob
        if out.gold_bytes:
            s[("", "gold_bpb")] = M.bits_per_byte(out.gold_logprob, out.gold_bytes)
        if kind == GENERATE and out.gold_tokens:
            s[("", "gold_token_prob")] = M.per_token_prob(out.gold_logprob, out.gold_tokens)
        if kind == GENERATE and out.gold_greedy is not None:
            s[("", "gold_greedy")] = float(out.gold_greedy)
    if kind == MULTIPLE_CHOICE:
        probs = M.normalised_choice_probs(out.choice_logprobs)
        s[("", "acc")] = float(M.argmax(out.choice_logprobs) == example.gold)
        s[("", "prob_correct")] = probs[example.gold]
        s[("", "brier")] = M.brier(probs, example.gold)
    if kind == ROLLING and out.rolling_logprob is not None:
        if out.rolling_tokens:
            s[("", "nats_per_token")] = -out.rolling_logprob / out.rolling_tokens
        if out.rolling_bytes:
            s[("", "bits_per_byte")] = M.bits_per_byte(out.rolling_logprob, out.rolling_bytes)
    return s


def metric_chance(task, subtask: str, metric: str) -> float | None:
    """The chance level ``task`` declares for ``metric`` (of ``subtask``): its ``chance`` method
    where it has one (``TaskBase``'s reads the declared ``Metric``), else the declared ``Metric``."""
    fn = getattr(task, "chance", None)
    if callable(fn):
        return fn(subtask, metric)
    return next((m.chance for m in task.metrics if m.name == metric), None)
