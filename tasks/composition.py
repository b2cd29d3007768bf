"""Multi-step composition probes ``chain_k``: k simple operations applied in turn to a small number.

The model answers with every intermediate value (" 10 3 6"), so each step is scored as its own
sub-task ``step_j`` while the composite is the strict exact match of the whole answer. If steps
succeed independently with probability p, exact match is p^k: the sub-task-composition account
of emergence (Schaeffer et al. 2023) made measurable. Values stay in 0..19, so a guesser that
writes a uniform value per step scores 1/20 per step.
"""

import random
from dataclasses import dataclass

from emergence.tasks import GENERATE_METRICS, Example, Output, Scores, standard_scores

from emergence_tasks.common import Probe, part_metric, with_chance

LARGEST = 19
STEP_CHANCE = 1 / (LARGEST + 1)


@dataclass(frozen=True)
class Chain(Probe):
    steps: int = 2

    def draw(self, rng):
        x = rng.randint(1, LARGEST)
        start, phrases, values = x, [], []
        for _ in range(self.steps):
            phrase, x = _step(rng, x)
            phrases.append(phrase)
            values.append(str(x))
        said = ", then ".join(phrases)
        return Example(id="", prompt=f"Q: Start with {start}. {said[0].upper()}{said[1:]}. "
                                     "Say the number after each step.\nA:",
                       target=" " + " ".join(values), parts=tuple(values))

    def score(self, example: Example, output: Output) -> Scores:
        s = standard_scores(self.kind, example, output)
        said = (output.generation or "").split()
        right = [j < len(said) and said[j] == gold for j, gold in enumerate(example.parts)]
        return _with_steps(s, right)


def _step_parts(steps: int, chance: float, step_right: str, share_right: str) -> dict:
    """The sub-tasks ``step_1..step_k`` and metrics of a task scored step by step (``_with_steps``):
    exact match at chance ** steps, each step's ``acc`` and their mean ``step_acc`` at ``chance``."""
    return {"subtasks": tuple(f"step_{j}" for j in range(1, steps + 1)),
            "metrics": with_chance(GENERATE_METRICS, "exact_match", chance ** steps) + (
                part_metric("acc", chance, step_right), part_metric("step_acc", chance, share_right))}


def _with_steps(scores: Scores, right: list[bool]) -> Scores:
    """``scores`` plus each step's accuracy as sub-task ``step_j`` and their mean ``step_acc``."""
    for j, ok in enumerate(right, 1):
        scores[(f"step_{j}", "acc")] = float(ok)
    scores[("", "step_acc")] = sum(right) / len(right)
    return scores


def chain_task(k: int) -> Chain:
    return Chain(
        name=f"chain_{k}", steps=k,
        description=f"{k} chained operations (add, subtract, double, halve) on numbers 0..{LARGEST}; "
                    "answer every intermediate value",
        **_step_parts(k, STEP_CHANCE, "step_j's value equals the gold intermediate value",
                      "share of the steps whose value is right"),
        # Three shots: the answer format (all intermediate values, space-separated) is not
        # guessable from the instruction alone for base models.
        num_fewshot=3,
        max_gen_toks=3 * k + 4,   # each value is at most two digits and a space
    )


def composition_tasks() -> list:
    return [chain_task(k) for k in range(2, 6)] + [walk_task(), sums_task()]


def _step(rng, x):
    """One operation that keeps the value in 0..LARGEST: (phrase, new value)."""
    options = [op for op, ok in (("add", x < LARGEST), ("subtract", x >= 1)) if ok]
    if 1 <= x and 2 * x <= LARGEST:
        options.append("double")
    if x >= 2 and x % 2 == 0:
        options.append("halve")
    op = rng.choice(options)
    if op == "add":
        a = rng.randint(1, min(9, LARGEST - x))
        return f"add {a}", x + a
    if op == "subtract":
        a = rng.randint(1, min(9, x))
        return f"subtract {a}", x - a
    if op == "double":
        return "double it", 2 * x
    return "halve it", x // 2


# ------------------------------------------------------------------ walk: independent parts

WALK_NODES = tuple(c + v for c in "BDGKLMNPRT" for v in "aeiou")   # 50 capitalised syllables
WALK_MAPS = ("red",)   # map names the prompt gives; see Walk on why there is one
WALK_STEPS = 6


def walk_successors(maps=WALK_MAPS, nodes=WALK_NODES) -> dict:
    """For each map, a fixed successor of every node: one cycle through all nodes in an order
    seeded by the map's name, so a walk never revisits a node within len(nodes) steps. The
    tables are the probe's definition: {map: {node: next node}}."""
    tables = {}
    for name in maps:
        order = list(nodes)
        random.Random(f"walk-cycle:{name}").shuffle(order)
        tables[name] = dict(zip(order, order[1:] + order[:1]))
    return tables


SUCCESSORS = walk_successors()


@dataclass(frozen=True)
class Walk(Probe):
    """Follow a fixed successor table (a "map") for ``steps`` steps from a start node that ends
    the prompt.

    Each step is a fact about the previous node alone (given the map), so the steps are
    independent parts: ``step_j`` is scored against the successor of the model's *own* previous
    node, not of the gold one, and an early error is not counted again later. Exact match (every
    step right) is then about the product of the step accuracies: the sub-task account of
    emergence (Schaeffer et al. 2023). The table is arbitrary: a model knows it only if it was
    trained on it (the lab is, docs/lab.md); a pretrained model is at chance. One map by
    default: with several, a model that cannot yet read the map's name gets whole walks wrong
    together, and the parts stop being independent.
    """
    steps: int = WALK_STEPS

    def draw(self, rng):
        name = rng.choice(WALK_MAPS)
        x = start = rng.choice(WALK_NODES)
        path = []
        for _ in range(self.steps):
            x = SUCCESSORS[name][x]
            path.append(x)
        return Example(id="", prompt=f"Q: Walk the {name} map from {start}.\nA: {start}",
                       target=" " + " ".join(path), parts=(name, start, *path))

    def score(self, example: Example, output: Output) -> Scores:
        s = standard_scores(self.kind, example, output)
        successor = SUCCESSORS[example.parts[0]]
        said = (output.generation or "").split()
        previous, right = example.parts[1], []
        for j in range(self.steps):
            node = said[j] if j < len(said) else None
            right.append(node is not None and successor.get(previous) == node)
            previous = node
        return _with_steps(s, right)


def walk_task() -> Walk:
    return Walk(
        name="walk",
        description=f"follow a fixed successor table over {len(WALK_NODES)} syllables for {WALK_STEPS} steps "
                    "(independent parts: exact match ~ product of step accuracies; learnable only by training)",
        **_step_parts(WALK_STEPS, 1 / len(WALK_NODES),
                      "step_j names the successor of the node before it (the model's own)",
                      "share of the steps that follow the table"),
        num_fewshot=0,   # the tables are learned in training or not at all; shots would reveal them
        max_gen_toks=3 * WALK_STEPS + 4,
        n_examples=len(WALK_MAPS) * len(WALK_NODES),   # one walk per (map, start): the whole space
    )


# ---------------------------------------------------- sums: shared facts, many questions

SUMS = 2


@dataclass(frozen=True)
class Sums(Probe):
    """``terms`` one-digit additions asked at once ("Q: What is 5 plus 2 and 3 plus 4?" ->
    " 7 7"), each answer its own part ``step_j``; exact match is every sum right.

    The parts are independent facts (the 100 one-digit sums), and the questions are their
    combinations (10,000 for two): questions held out from training share every fact, in every
    position, with the questions trained on. That is what a fine-tuning set disjoint from the
    evaluated questions needs in order to teach what the evaluation measures
    (docs/finetune-law.md); ``walk``'s 50 questions cannot (each start's first step is trained
    only by its own question).
    """
    terms: int = SUMS

    def draw(self, rng):
        pairs = [(rng.randint(0, 9), rng.randint(0, 9)) for _ in range(self.terms)]
        asked = " and ".join(f"{a} plus {b}" for a, b in pairs)
        sums = tuple(str(a + b) for a, b in pairs)
        return Example(id="", prompt=f"Q: What is {asked}?\nA:", target=" " + " ".join(sums), parts=sums)

    def score(self, example: Example, output: Output) -> Scores:
        s = standard_scores(self.kind, example, output)
        said = (output.generation or "").split()
        return _with_steps(s, [j < len(said) and said[j] == gold for j, gold in enumerate(example.parts)])


def sums_task() -> Sums:
    return Sums(
        name="sums",
        description=f"{SUMS} one-digit additions asked at once (independent parts: exact match ~ product of "
                    "the sums' accuracies; held-out questions share every fact with the others)",
        # a guesser that writes a uniform answer in 0..18 per sum
        **_step_parts(SUMS, 1 / 19, "the j-th sum is right", "share of the sums that are right"),
        num_fewshot=3,   # as add_1d: shots show the answer format
        max_gen_toks=3 * SUMS + 4,
    )
