"""Tiny GPT-NeoX checkpoints built locally: for tests, benchmarks and the offline demo.

Nothing here touches the network: the tokenizer is trained with ``tokenizers`` on generated
text, models are random-initialised from a config and saved as standard Hugging Face folders
(safetensors + tokenizer). ``add_to_hub_cache`` files a folder into a Hugging Face cache as
``repo@revision``, so the hub code path ``from_pretrained(repo, revision=...)`` runs offline.
"""

import hashlib
import random
import shutil
from pathlib import Path

WORDS = ("the cat dog sat ran on a mat big small red blue one two three four five six seven "
         "eight nine ten plus minus equals answer question is what of and to in it was").split()
SPECIAL = "<|endoftext|>"


def corpus(n_lines: int = 2000, seed: int = 0) -> list[str]:
    """Generated text mixing words, digits and arithmetic, enough to train a small BPE."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n_lines):
        a, b = rng.randint(0, 999), rng.randint(0, 999)
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12)))
        lines.append(f"{words}. {a} + {b} = {a + b}. Q: {words[:20]}? A: {rng.choice(WORDS)}")
    return lines


def train_tokenizer(vocab_size: int = 512, seed: int = 0):
    """A byte-level BPE tokenizer as a transformers PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[SPECIAL],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(seed=seed), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=SPECIAL, eos_token=SPECIAL,
                                   unk_token=SPECIAL, model_max_length=2048)


def build_model(path, *, hidden: int = 32, layers: int = 2, heads: int = 4, context: int = 256,
                seed: int = 0, tokenizer=None, vocab_size: int = 512, model_vocab: int | None = None):
    """Save a random-init GPT-NeoX model and its tokenizer to ``path``; return the path.
    ``model_vocab``: embedding rows when larger than the tokenizer's vocabulary (real models pad
    theirs, e.g. Pythia's 50,304); the extra rows cost what they cost in a real model."""
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    tokenizer = tokenizer or train_tokenizer(vocab_size)
    config = GPTNeoXConfig(
        vocab_size=max(len(tokenizer), model_vocab or 0), hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=heads, intermediate_size=4 * hidden, max_position_embeddings=context,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = GPTNeoXForCausalLM(config)
    path = Path(path)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_family(root, sizes=((32, 2), (64, 2), (96, 3)), steps=(100, 200), seed: int = 0) -> Path:
    """A local family folder: ``root/<model>@step<N>/`` per size and step.

    Different steps of one size are different random draws: enough to exercise every code
    path, not a trained family.
    """
    root = Path(root)
    tokenizer = train_tokenizer(seed=seed)
    for k, (hidden, layers) in enumerate(sizes):
        for j, step in enumerate(steps):
            build_model(root / f"tiny-h{hidden}-l{layers}@step{step}", hidden=hidden, layers=layers,
                        seed=seed + 1000 * k + j, tokenizer=tokenizer)
    return root


def add_to_hub_cache(folder, repo_id: str, revision: str, cache_dir) -> str:
    """File ``folder`` into a Hugging Face cache as ``repo_id@revision``; return the commit hash.

    With HF_HUB_CACHE pointing at ``cache_dir`` and HF_HUB_OFFLINE=1,
    ``from_pretrained(repo_id, revision=revision)`` then loads it without a network.
    """
    folder = Path(folder)
    digest = hashlib.sha1(f"{repo_id}@{revision}".encode()).hexdigest()
    repo_dir = Path(cache_dir) / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / digest
    shutil.copytree(folder, snapshot, dirs_exist_ok=True)
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / revision).write_text(digest)
    return digest
