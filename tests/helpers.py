"""Throwaway plugins for tests: a small deterministic task registered inline."""

import random
from dataclasses import dataclass

from emergence.hookspecs import hookimpl
from emergence.tasks import GENERATE_METRICS, Example, TaskBase, mc_metrics, MULTIPLE_CHOICE


@dataclass(frozen=True)
class AddTask(TaskBase):
    def examples(self, seed):
        rng = random.Random(f"{self.name}:{seed}")
        for i in range(200):
            a, b = rng.randint(0, 99), rng.randint(0, 99)
            yield Example(id=f"{i}", prompt=f"{a} + {b} =", target=f" {a + b}")


@dataclass(frozen=True)
class PickTask(TaskBase):
    def examples(self, seed):
        rng = random.Random(f"{self.name}:{seed}")
        for i in range(200):
            a = rng.randint(0, 9)
            choices = tuple(f" {x}" for x in (a, a + 1, a + 2, a + 3))
            yield Example(id=f"{i}", prompt=f"{a} + 0 =", choices=choices, gold=0)


@dataclass(frozen=True)
class BrokenTask(TaskBase):
    def examples(self, seed):
        raise RuntimeError("examples exploded")


class TestTasks:
    """Register with ``pm.register(TestTasks, name="test_tasks")``."""

    @staticmethod
    @hookimpl
    def register_tasks(register):
        register(AddTask(name="t_add", metrics=GENERATE_METRICS, num_fewshot=1, max_gen_toks=4))
        register(PickTask(name="t_pick", kind=MULTIPLE_CHOICE, metrics=mc_metrics(4)))
        register(BrokenTask(name="t_broken", metrics=GENERATE_METRICS))


def manager():
    from emergence.plugins import plugin_manager

    pm = plugin_manager()
    pm.register(TestTasks, name="test_tasks")
    return pm


class FakeLM:
    """Answers every request the same way: enough to exercise the harness without a model."""

    def score_pairs(self, pairs):
        from emergence.run.engine import TokenScores

        return [TokenScores((-1.0, -2.0), (True, False)) for _ in pairs]

    def generate(self, contexts, until=(), max_gen_toks=8):
        return [" 4"] * len(contexts)
