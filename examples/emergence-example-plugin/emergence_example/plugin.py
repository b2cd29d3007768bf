"""The ``example`` plugin: registers ``example_parity``, is a number even or odd?

A complete third-party task in a few lines: a frozen dataclass on ``TaskBase`` that yields
seeded examples and scores each sub-task it declares; the standard metrics, their chance levels
and few-shot prompts come from the harness. It also resolves specs: ``example_parity:<digits>``
is the same task on numbers with that many digits. Check it with
``emergence check-task example_parity example_parity:3``.
"""

import random
from dataclasses import dataclass

from emergence.hookspecs import hookimpl
from emergence.tasks import MULTIPLE_CHOICE, Example, TaskBase, mc_metrics, standard_scores

PREFIX = "example_parity:"
SUBTASK_METRICS = ("acc", "prob_correct", "brier")  # repeated per sub-task; chance is the same


@dataclass(frozen=True)
class Parity(TaskBase):
    """`Q: Is 37 even or odd?\\nA:` -> ` odd`; two-way multiple choice."""

    n_examples: int = 500
    digits: int | None = None   # None: 0..999, split into one-digit and longer numbers

    def examples(self, seed):
        rng = random.Random(f"{self.name}:{seed}")
        lo, hi = (0, 999) if self.digits is None else (10 ** (self.digits - 1) * (self.digits > 1), 10 ** self.digits - 1)
        for i in range(self.n_examples):
            x = rng.randint(lo, hi)
            sub = "" if self.digits else "one_digit" if x < 10 else "more_digits"
            yield Example(id=str(i), prompt=f"Q: Is {x} even or odd?\nA:", choices=(" even", " odd"),
                          gold=x % 2, subtask=sub)

    def score(self, example, output):
        # Example.subtask is only recorded with each sample: the sub-task's rows come from
        # the (subtask, metric) keys returned here.
        s = standard_scores(self.kind, example, output)
        if example.subtask:
            s.update({(example.subtask, m): s[("", m)] for m in SUBTASK_METRICS})
        return s


@hookimpl
def register_tasks(register):
    # Version 2: the sub-tasks are scored (version 1 declared them but stored no rows for them).
    register(Parity(name="example_parity", version="2", kind=MULTIPLE_CHOICE, metrics=mc_metrics(2),
                    num_fewshot=2, subtasks=("one_digit", "more_digits"),
                    description="is a number even or odd (example plugin)"))


@hookimpl
def resolve_task(spec):
    if not spec.startswith(PREFIX):
        return None  # not ours: the next plugin tries
    digits = spec[len(PREFIX):]
    if not (digits.isdigit() and 1 <= int(digits) <= 9):
        raise ValueError(f"Task {spec!r}: write {PREFIX}<digits>, digits from 1 to 9")
    return Parity(name=spec, kind=MULTIPLE_CHOICE, metrics=mc_metrics(2), num_fewshot=2, digits=int(digits),
                  description=f"is a {digits}-digit number even or odd (example plugin)")
