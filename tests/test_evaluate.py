"""The harness: bad tasks fail with the task named; non-finite values are counted, not averaged."""

import math
from dataclasses import dataclass

import pytest

from emergence.run.evaluate import NonFiniteLogprobs, TaskError, evaluate
from emergence.tasks import GENERATE, GENERATE_METRICS, Example, Output, TaskBase

from helpers import FakeLM


@dataclass(frozen=True)
class Numbers(TaskBase):
    count: int = 6
    bad_scores: bool = False
    nan_every: int = 0

    def examples(self, seed):
        for i in range(self.count):
            yield Example(id=str(i), prompt=f"{i} + 0 =", target=" 4")

    def score(self, example, output: Output):
        if self.bad_scores:
            return {"exact_match": 1.0}  # keys must be (subtask, metric)
        s = super().score(example, output)
        if self.nan_every and int(example.id) % self.nan_every == 0:
            s[("", "gold_logprob")] = math.nan
        return s


def test_task_without_examples_names_the_task():
    with pytest.raises(TaskError, match="'empty' yielded no examples"):
        evaluate(Numbers(name="empty", count=0, kind=GENERATE, metrics=GENERATE_METRICS), FakeLM(), seed=0)


def test_duplicate_example_ids_name_the_task():
    @dataclass(frozen=True)
    class Twice(Numbers):
        def examples(self, seed):
            yield from (Example(id="same", prompt="1 + 0 =", target=" 1") for _ in range(2))

    with pytest.raises(TaskError, match="'twice' yielded duplicate example ids"):
        evaluate(Twice(name="twice", metrics=GENERATE_METRICS), FakeLM(), seed=0)


def test_malformed_scores_name_the_task_and_example():
    with pytest.raises(TaskError, match="'bad' returned malformed scores for example '0'"):
        evaluate(Numbers(name="bad", bad_scores=True, metrics=GENERATE_METRICS), FakeLM(), seed=0)


def test_non_finite_values_are_reported_not_averaged():
    scores, samples = evaluate(Numbers(name="nan", nan_every=3, metrics=GENERATE_METRICS), FakeLM(), seed=0)
    lp = next(s for s in scores if s.metric == "gold_logprob")
    assert lp.n == 4 and lp.n_nonfinite == 2 and lp.value == pytest.approx(-3.0)
    em = next(s for s in scores if s.metric == "exact_match")
    assert em.value == 1.0 and em.n == 6 and em.chance == 0.0
    assert len(samples) == 6 and samples[0].prediction == " 4"


class NaNLM(FakeLM):
    def score_rolling(self, texts):
        from emergence.run.engine import RollingScore

        return [RollingScore(math.nan if i == 1 else -5.0, 3) for i in range(len(texts))]


def test_non_finite_log_probabilities_from_the_model_fail_the_task():
    from emergence.tasks import ROLLING, Metric

    rolling = Numbers(name="text", kind=ROLLING, metrics=(Metric("nats_per_token", "continuous", None),))
    with pytest.raises(NonFiniteLogprobs, match="non-finite log-probabilities .* 1 of 6 values on task 'text'"):
        evaluate(rolling, NaNLM(), seed=0)
