"""The emergence lab's training data: a generated corpus that mixes probe skills with filler
text, its tokenizer, and the packing of documents into fixed-length training rows.

Skills are the task plugins themselves: a skill named after a registered task is that task's
own examples (``prompt + answer``, the exact format the evaluation asks for), drawn under
training seeds that the evaluation never uses. The skill ``filler`` is prose and arithmetic
lines from the same generator as the held-out corpus (``generate_corpus``, other seeds), so
the held-out loss measures the lab models on text like their training text but never in it.
Everything is deterministic in the seed.
"""

import random

FILLER = "filler"
FILLER_TASK = "heldout_loss"   # its training text (the held-out corpus's kind) is the filler
SEPARATOR = "\n\n"   # between documents, as between few-shot examples
SPECIAL = "<|endoftext|>"
# Training seeds start far above the evaluation's (RunConfig.seed = 1234, few-shot seed + 1).
TRAIN_SEED_BASE = 10_000_000


def documents(mix, n_chars: int, seed: int) -> list[str]:
    """Shuffled documents, about ``n_chars`` characters in all, drawn in the proportions of
    ``mix`` ((skill, share of characters) pairs)."""
    tasks = skill_tasks(mix)
    total = sum(w for _, w in mix)
    docs = []
    for skill, weight in mix:
        docs += _draw(tasks[skill], skill == FILLER, int(n_chars * weight / total), seed)
    random.Random(f"lab-shuffle:{seed}").shuffle(docs)
    return docs


def build_corpus(mix, n_chars: int, n_rows: int, context: int, vocab_size: int, split_digits: bool, seed: int):
    """(number of documents, tokenizer, rows, mask): ``n_chars`` characters of documents packed
    into rows of ``context + 1`` tokens, shuffled once by ``seed``; regenerated larger (same
    seed, so still deterministic) until there are at least ``n_rows`` rows."""
    import torch

    chars = n_chars
    while True:
        docs = documents(mix, chars, seed)
        tokenizer = train_tokenizer(docs[:20_000], vocab_size, split_digits)
        ids = tokenizer(docs, add_special_tokens=False)["input_ids"]
        sep = tokenizer(SEPARATOR, add_special_tokens=False)["input_ids"]
        rows, mask = pack(ids, context, sep, tokenizer.pad_token_id)
        if len(rows) >= n_rows:
            break
        chars = int(chars * 1.2 * n_rows / len(rows))
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed))
    return len(docs), tokenizer, rows[order], mask[order]


def skill_tasks(mix) -> dict:
    """The registered tasks behind the skills of ``mix``, by name (``filler``: the held-out loss task).

    Unknown skills are an error that says which names exist."""
    from emergence.names import unknown_message
    from emergence.plugins import collect, plugin_manager

    names = [s for s, _ in mix if s != FILLER]
    tasks = collect(plugin_manager()).tasks
    if FILLER_TASK not in tasks and any(s == FILLER for s, _ in mix):
        raise ValueError(f"skill {FILLER!r} is the text of task {FILLER_TASK!r}, which no plugin registers")
    for name in names:
        if name not in tasks:
            raise ValueError(unknown_message("skill", name, [FILLER, *tasks]))
        if tasks[name].kind != "generate":
            raise ValueError(f"skill {name!r}: only generation tasks (prompt + answer) can be "
                             f"trained on, and {name!r} is {tasks[name].kind}")
    chosen = {n: tasks[n] for n in names}
    if any(s == FILLER for s, _ in mix):
        chosen[FILLER] = tasks[FILLER_TASK]
    return chosen


def train_tokenizer(texts, vocab_size: int, split_digits: bool = False):
    """Byte-level BPE over printable ASCII (the alphabet of every probe and of the filler),
    trained on ``texts``; a transformers ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    # split_digits: every digit its own token (as in LLaMA), so digit sub-tasks are token-level.
    tok.pre_tokenizer = (pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
                         if split_digits else byte_level)
    tok.decoder = decoders.ByteLevel()
    # Byte-level symbols of the printable ASCII bytes, space (Ġ) and newline (Ċ): a small
    # alphabet keeps the embedding a small share of the smallest models.
    alphabet = [chr(c) for c in range(33, 127)] + ["Ġ", "Ċ"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[SPECIAL],
                                  initial_alphabet=alphabet, show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=SPECIAL, eos_token=SPECIAL,
                                   unk_token=SPECIAL, pad_token=SPECIAL, model_max_length=2048)


def pack(token_lists, context: int, sep_ids, pad_id: int):
    """Rows of ``context + 1`` token ids: whole documents, separated by ``sep_ids``, never cut
    unless one is longer than a row (then it is cut into row-sized pieces). The remainder of
    a row is ``pad_id``; returns (ids, mask) where mask is 1 on real tokens."""
    import torch

    width = context + 1
    rows, row = [], []
    for ids in token_lists:
        ids = list(ids) + list(sep_ids)
        pieces = [ids[i:i + width] for i in range(0, len(ids), width)]
        for piece in pieces:
            if len(row) + len(piece) > width:
                rows.append(row)
                row = []
            row = row + piece
    if row:
        rows.append(row)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        ids[r, :len(row)] = torch.tensor(row)
        mask[r, :len(row)] = 1
    return ids, mask


def _draw(task, filler: bool, n_chars: int, seed: int) -> list[str]:
    """Documents of one skill, ``n_chars`` characters in all."""
    docs, size, k = [], 0, 0
    while size < n_chars:
        stream_seed = TRAIN_SEED_BASE + 1000 * seed + k
        if filler:
            new = (ex.text for ex in task.train_examples(stream_seed))
        else:
            new = (ex.prompt + ex.target for ex in task.examples(stream_seed))
        for doc in new:
            if size >= n_chars:
                break
            docs.append(doc)
            size += len(doc) + len(SEPARATOR)
        k += 1
    return docs
