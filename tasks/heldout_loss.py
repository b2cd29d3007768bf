"""The held-out loss plugin: a rolling log-likelihood task over a reference corpus.

``HeldoutLoss`` reads local text files (default: the small corpus shipped in ``data/``) or,
only when asked, a Hugging Face dataset. Text is split into paragraphs at blank lines and
packed into chunks of about ``chunk_chars`` characters; each chunk is one example, scored as
nats/token and bits/byte (``ROLLING_METRICS``). Chunks never span two files, and their ids
(``<file>:<n>``) do not depend on the seed: every checkpoint sees the same text.

The shipped corpus is generated, not collected: ``generate_corpus()`` below writes it
deterministically (run ``python -m emergence_tasks.heldout_loss`` to regenerate), so it carries
no third-party licence. It is a toy for offline runs and tests; for scaling-law work point
``paths`` or ``dataset`` at a real held-out set (the loss threshold depends on the corpus).
"""

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from emergence.hookspecs import hookimpl
from emergence.tasks import ROLLING, ROLLING_METRICS, Example, TaskBase

DEFAULT_CORPUS = Path(__file__).parent / "data" / "heldout.txt"


@dataclass(frozen=True)
class HeldoutLoss(TaskBase):
    """Rolling loss over local files (``paths``) or a Hugging Face dataset (``dataset``)."""

    kind: str = ROLLING
    metrics: tuple = ROLLING_METRICS
    paths: tuple[str, ...] = ()
    dataset: str | None = None         # e.g. "wikitext"; downloaded only when examples are asked for
    dataset_config: str | None = None  # e.g. "wikitext-103-raw-v1"
    split: str = "validation"
    text_column: str = "text"
    chunk_chars: int = 2000            # ~500 tokens: long enough that most tokens have context

    def __post_init__(self):
        if bool(self.paths) == bool(self.dataset):
            raise ValueError(f"Task {self.name!r}: give exactly one of paths=... or dataset=...")
        names = [Path(p).name for p in self.paths]
        if len(set(names)) != len(names):
            raise ValueError(f"Task {self.name!r}: file names must be unique (they make example ids): {names}")
        if self.chunk_chars <= 0:
            raise ValueError(f"Task {self.name!r}: chunk_chars must be positive, got {self.chunk_chars}")

    def examples(self, seed: int) -> Iterator[Example]:
        # The seed is ignored on purpose: a loss is comparable only on the same text.
        for source, text in self._sources():
            for k, chunk in enumerate(pack(paragraphs(text), self.chunk_chars)):
                yield Example(id=f"{source}:{k}", text=chunk)

    def train_examples(self, seed: int) -> Iterator[Example]:
        """Paragraphs of the generated corpus under ``seed``: text of the shipped corpus's kind
        (which is seed 0), for training on (the lab's filler). Only the default task has it."""
        if self.paths != (str(DEFAULT_CORPUS),):
            raise NotImplementedError(f"Task {self.name!r}: training text exists only for the generated "
                                      "default corpus")
        for k, text in enumerate(paragraphs(generate_corpus(seed=seed, n_documents=90))):
            yield Example(id=f"train-{seed}:{k}", text=text)

    def _sources(self) -> Iterator[tuple[str, str]]:
        if self.dataset:
            import datasets  # heavy, and it may download: only when a dataset was asked for

            rows = datasets.load_dataset(self.dataset, self.dataset_config, split=self.split)
            # Rows are often lines or short documents: join them and let pack() cut chunks.
            yield self.dataset, "\n\n".join(row[self.text_column] for row in rows)
            return
        for path in self.paths:
            path = Path(path)
            if not path.is_file():
                raise FileNotFoundError(f"Task {self.name!r}: corpus file {path} does not exist")
            yield path.name, path.read_text(encoding="utf-8")


def paragraphs(text: str) -> list[str]:
    """Non-empty blocks of ``text`` separated by blank lines, stripped."""
    blocks, current = [], []
    for line in text.splitlines():
        if line.strip():
            current.append(line.rstrip())
        elif current:
            blocks.append("\n".join(current))
            current = []
    if current:
        blocks.append("\n".join(current))
    return blocks


def pack(blocks: Iterable[str], size: int) -> Iterator[str]:
    """Join consecutive blocks with blank lines into chunks of at most ``size`` characters.

    A block longer than ``size`` becomes a chunk of its own rather than being cut mid-text.
    """
    chunk, length = [], 0
    for block in blocks:
        if chunk and length + 2 + len(block) > size:
            yield "\n\n".join(chunk)
            chunk, length = [], 0
        length += len(block) + (2 if chunk else 0)
        chunk.append(block)
    if chunk:
        yield "\n\n".join(chunk)


def default_task() -> HeldoutLoss:
    return HeldoutLoss(
        name="heldout_loss",
        description="nats/token and bits/byte on the small generated corpus shipped with emergence",
        paths=(str(DEFAULT_CORPUS),),
    )


@hookimpl
def register_tasks(register):
    register(default_task())


# ---------------------------------------------------------------- the shipped corpus
# Three kinds of documents in a fixed rotation: prose from a small grammar written for this
# project, arithmetic lines, and question/answer pairs in the probes' own formats.

NAMES = ("Ada Bram Cora Dev Elin Farid Greta Hugo Ines Jonah Kira Luca Mira Nils Oona Pavel "
         "Rosa Sami Tova Yusuf").split()
PLACES = ("the harbour", "the mill", "the library", "the orchard", "the station", "the market",
          "the workshop", "the river bank", "the school", "the bakery", "the hill farm",
          "the lighthouse")
THINGS = ("a lantern", "a ledger", "a basket of pears", "a broken clock", "a map of the valley",
          "a jar of honey", "a wooden boat", "a letter", "a bicycle", "a kettle", "a coil of rope",
          "a box of seeds")
ADJECTIVES = "quiet crowded narrow bright cold old muddy warm empty busy".split()
TIMES = ("In the morning", "Before dawn", "After the rain", "On Tuesday", "Late in the evening",
         "At noon", "During the winter", "Every spring")
DID = "carried repaired found sold painted counted borrowed wrapped measured lost".split()
ACTED = ("waited", "laughed", "walked home", "fell asleep", "kept working", "sang softly")
STATES = ("had been there for years", "was heavier than it looked", "would be needed by Friday",
          "smelled of smoke", "was not for sale")
PLURALS = "gulls carts lamps fences bridges goats trees windows".split()
WHEN = ("tomorrow", "after lunch", "on Sunday", "before the festival")


CORPUS_PROBES = ("add_1d", "add_2d", "add_3d", "add_4d", "add_5d", "mul_1d", "mul_2d", "mul_3d", "mod_arith",
                 "mc_arith", "chain_2", "chain_3", "chain_4", "chain_5", "unscramble", "reverse_word", "copy")


def generate_corpus(seed: int = 0, n_documents: int = 90) -> str:
    """The default held-out corpus, deterministic in ``seed``; documents separated by blank lines."""
    from emergence_tasks.probes import all_probes

    rng = random.Random(f"heldout-corpus:{seed}")
    # A fixed list, not every registered probe: a new probe must not change the held-out text (and
    # with it the loss axis and every lab family). Not walk: its successor table is an arbitrary
    # fact of the lab's, not text a model should know.
    by_name = {p.name: p for p in all_probes()}
    probes = [by_name[name] for name in CORPUS_PROBES]
    documents = []
    for i in range(n_documents):
        kind = ("prose", "prose", "arithmetic", "prose", "probes")[i % 5]
        if kind == "prose":
            documents.append("\n\n".join(_prose_paragraph(rng) for _ in range(rng.randint(2, 3))))
        elif kind == "arithmetic":
            documents.append("\n".join(_arithmetic_line(rng) for _ in range(rng.randint(18, 30))))
        else:
            documents.append("\n\n".join(_probe_item(rng, probes, seed) for _ in range(rng.randint(6, 9))))
    return "\n\n".join(documents) + "\n"


def write_default_corpus(path: Path = DEFAULT_CORPUS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(generate_corpus(), encoding="utf-8")
    return path


def _prose_paragraph(rng) -> str:
    frames = (
        lambda: f"{rng.choice(TIMES)}, {rng.choice(NAMES)} {rng.choice(DID)} {rng.choice(THINGS)} at {rng.choice(PLACES)}.",
        lambda: f"{_cap(rng.choice(PLACES))} was {rng.choice(ADJECTIVES)}, so {rng.choice(NAMES)} {rng.choice(ACTED)}.",
        lambda: f"{rng.choice(NAMES)} said that {rng.choice(THINGS)} {rng.choice(STATES)}.",
        lambda: f"Nobody at {rng.choice(PLACES)} knew why {rng.choice(NAMES)} {rng.choice(DID)} {rng.choice(THINGS)}.",
        lambda: "{} and {} walked to {} together.".format(*rng.sample(NAMES, 2), rng.choice(PLACES)),
        lambda: (f"It took {rng.randint(5, 50)} minutes to reach {rng.choice(PLACES)}, and "
                 f"{rng.choice(NAMES)} counted {rng.randint(2, 40)} {rng.choice(PLURALS)} on the way."),
        lambda: f"{rng.choice(NAMES)} asked whether {rng.choice(PLACES)} would be open {rng.choice(WHEN)}.",
        lambda: "The road past {} was {} and {}.".format(rng.choice(PLACES), *rng.sample(ADJECTIVES, 2)),
    )
    return " ".join(rng.choice(frames)() for _ in range(rng.randint(4, 7)))


def _arithmetic_line(rng) -> str:
    a, b = rng.randint(0, 999), rng.randint(0, 999)
    op = rng.choice("+-*%")
    if op == "+":
        return f"{a} + {b} = {a + b}"
    if op == "-":
        return f"{max(a, b)} - {min(a, b)} = {max(a, b) - min(a, b)}"
    if op == "*":
        a, b = a % 100, b % 100
        return f"{a} * {b} = {a * b}"
    m = rng.randint(2, 13)
    return f"{a} mod {m} = {a % m}"


def _probe_item(rng, probes, seed) -> str:
    task = rng.choice(probes)
    pick = rng.randrange(50)
    ex = next(e for i, e in enumerate(task.examples(seed)) if i == pick)
    answer = ex.choices[ex.gold] if ex.choices else ex.target
    return ex.prompt + answer


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


if __name__ == "__main__":
    print(f"wrote {write_default_corpus()}")
