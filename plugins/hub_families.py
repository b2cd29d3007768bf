"""The catalogue of public Hugging Face model families, registered through ``register_families``.

This module owns data only: hub ids, size labels, parameter counts where they follow exactly
from the published architecture, and training tokens where the paper or model card states them.
Pythia comes with its 154 training checkpoints per size, LLM360 Amber with its 360, and the
OLMo suites with the intermediate revisions whose branch names were published (``SUITES``);
``suite_checkpoints`` turns any other branch names of those repos (``list_repo_refs``) into
checkpoints with steps and tokens. The remaining families list the final checkpoint of each size
(default branch). Anything we could not verify stays None: the loader counts parameters on the
loaded model, and a checkpoint without tokens simply has no 6ND compute.
"""

import math
import re
from dataclasses import dataclass, replace

from emergence.families import Checkpoint, Family
from emergence.hookspecs import hookimpl
from emergence.names import unknown_message

# Pythia README: (layers, d_model, padded vocab). GPT-NeoX unties the output embedding and uses
# rotary positions, so the embedding parameters are 2 * vocab * d_model.
PYTHIA_ARCH = {
    "70m": (6, 512, 50304), "160m": (12, 768, 50304), "410m": (24, 1024, 50304),
    "1b": (16, 2048, 50304), "1.4b": (24, 2048, 50304), "2.8b": (32, 2560, 50304),
    "6.9b": (32, 4096, 50432), "12b": (36, 5120, 50688),
}
PYTHIA_TOKENS_PER_STEP = 2_097_152  # 1024 sequences x 2048 tokens
# The hub branches: step0, log-spaced steps 1..512, then every 1000 steps up to the final 143000.
PYTHIA_STEPS = (0, *(2**i for i in range(10)), *range(1000, 143_001, 1000))

# GPT-2 config.json: (size, model, layers, d_model); vocab 50257, 1024 learned positions, tied
# output embedding. The WebText paper gives no token count, so tokens stay None.
GPT2 = (("124m", "gpt2", 12, 768), ("355m", "gpt2-medium", 24, 1024),
        ("774m", "gpt2-large", 36, 1280), ("1.5b", "gpt2-xl", 48, 1600))

# OPT paper Table 1 and the facebook/opt-* config.json: (size, layers, d_model); vocab 50272,
# MLP 4*d, tied output embedding. HF's learned position table has 2048 + 2 rows (offset of 2).
OPT = (("125m", 12, 768), ("350m", 24, 1024), ("1.3b", 24, 2048), ("2.7b", 32, 2560),
       ("6.7b", 32, 4096), ("13b", 40, 5120), ("30b", 48, 7168), ("66b", 64, 9216))
# opt-350m is the odd one: 512-wide token embeddings projected to 1024 (project_in/out, counted
# as non-embedding) and post-LayerNorm blocks without a final LayerNorm. Counted on the HF model.
OPT_350M_COUNTS = (331_196_416, 303_357_952)
# OPT paper section 2.2: the LR schedule decays over 300B tokens, the length of training for all
# sizes (the deduplicated corpus itself holds about 180B tokens).
OPT_TOKENS = 300e9

# Cerebras-GPT model card: (size, hub suffix, layers, d_model, training tokens). GPT-2 layout with
# vocab 50257, 2048 learned positions, MLP 4*d, tied embeddings. Tokens are the card's steps x
# batch x 2048; the 13B batch grew from 720 to 1080 mid-run, so its card total (2.57E+11) is used.
CEREBRAS = (
    ("111m", "111M", 10, 768, 9037 * 120 * 2048),
    ("256m", "256M", 14, 1088, 9468 * 264 * 2048),
    ("590m", "590M", 18, 1536, 21836 * 264 * 2048),
    ("1.3b", "1.3B", 24, 2048, 24334 * 528 * 2048),
    ("2.7b", "2.7B", 32, 2560, 49041 * 528 * 2048),
    ("6.7b", "6.7B", 32, 4096, 62522 * 1040 * 2048),
    ("13b", "13B", 40, 5120, 2.57e11),
)

# Qwen2.5 base models. The technical report (arXiv:2412.15115) scales pretraining data to 18T
# tokens; it does not break the count down per size, so every size carries the 18T.
QWEN25 = ("0.5B", "1.5B", "3B", "7B", "14B", "32B", "72B")
QWEN25_TOKENS = 18e12

# OLMo 2 base models: (size, hub id, "Training Tokens" from the model cards). That column is the
# pretraining stage; the shorter mid-training stage comes on top and is not counted here.
OLMO2 = (("1b", "allenai/OLMo-2-0425-1B", 4e12), ("7b", "allenai/OLMo-2-1124-7B", 4e12),
         ("13b", "allenai/OLMo-2-1124-13B", 5e12), ("32b", "allenai/OLMo-2-0325-32B", 6e12))


@dataclass(frozen=True)
class Suite:
    """One hub repo with intermediate checkpoints: how its branch names read and what a step is."""

    family: str
    repo: str
    size: str                   # the counted size: the suites' names round (OLMo-1B has 1.18B)
    params: int                 # total as published (hub file counts; tests rederive it)
    embedding: int              # input plus untied output embedding
    tokens_per_step: int        # global batch x sequence length of the training config
    scheme: str                 # "olmo" (stepN-tokensMB) or "amber" (ckpt_NNN)
    revisions: tuple[str, ...]  # branch names published by the suite or seen loading from it
    name_rounding: str | None = None  # "ceil": an OLMo name's B is ceil(step x batch); None: the run's log
    final: int | None = None    # Amber: the checkpoint served by the default branch


OLMO_REVISION = re.compile(r"(?:stage1-)?step(\d+)-tokens(\d+)B")
AMBER_REVISION = re.compile(r"ckpt_(\d{3})")

# OLMo-1B-hf branch names come from published loading code; their token counts are the run's
# own log and differ from step x batch by up to 0.1% (step425000-tokens1781B: 1782.6B by the
# config), so tokens are taken from the config and the name is only checked against it.
# OLMo 2 names are ceil(step x batch / 1e9) exactly (tested on every name listed). OLMo 2 names
# come from the transformers Olmo2 docs (stage1-step140000-tokens294B) and published loading code.
SUITES = (
    # allenai/OLMo configs/official/OLMo-1B.yaml: global_train_batch_size 2048, max_sequence_length
    # 2048, tied embedding 50304 x 2048; 1,176,764,416 parameters in the converted model.
    Suite("olmo-1", "allenai/OLMo-1B-hf", "1.2b", 1_176_764_416, 50304 * 2048, 2048 * 2048, "olmo",
          ("step1000-tokens4B", "step10000-tokens41B", "step343000-tokens1438B", "step425000-tokens1781B",
           "step509000-tokens2134B", "step593000-tokens2486B", "step738020-tokens3094B")),
    # configs/official-1124/OLMo2-7B-stage1.yaml: batch 1024 x 4096; untied embedding 100352 x 4096.
    Suite("olmo-2-stage1", "allenai/OLMo-2-1124-7B", "7b", 7_298_617_344, 2 * 100352 * 4096, 1024 * 4096,
          "olmo", ("stage1-step150-tokens1B", "stage1-step2000-tokens9B", "stage1-step5000-tokens21B",
                   "stage1-step10000-tokens42B", "stage1-step20000-tokens84B", "stage1-step72000-tokens302B",
                   "stage1-step101000-tokens424B", "stage1-step812000-tokens3406B",
                   "stage1-step928646-tokens3896B"), name_rounding="ceil"),
    # configs/official-0425/OLMo2-1B-stage1.yaml: batch 512 x 4096; untied embedding 100352 x 2048.
    Suite("olmo-2-stage1", "allenai/OLMo-2-0425-1B", "1.5b", 1_484_916_736, 2 * 100352 * 2048, 512 * 4096,
          "olmo", ("stage1-step140000-tokens294B", "stage1-step1907359-tokens4001B"), name_rounding="ceil"),
    # LLM360/amber-train main.py: 360 data chunks of 1,706,976 sequences, ckpt_k saved after chunk k;
    # each sequence trains 2048 positions (the card's 1259.13B counts 2049 tokens a sequence).
    # LLaMA-7B config (32 layers, d 4096, MLP 11008, vocab 32000, untied): 6,738,415,616.
    Suite("amber", "LLM360/Amber", "7b", 6_738_415_616, 2 * 32000 * 4096, 1_706_976 * 2048, "amber",
          tuple(f"ckpt_{k:03d}" for k in range(359)), final=359),
)
# OLMo-7B-hf: config and branch names disagree on the batch (2048 sequences in
# configs/official/OLMo-7B.yaml, about 2160 in the names), and no -hf branch names were
# published, so only its final checkpoint is listed, without tokens.
OLMO1_7B = ("7b", "allenai/OLMo-7B-hf", (6_888_095_744, 6_888_095_744 - 2 * 50304 * 4096))


def suite_checkpoints(repo: str, revisions) -> list[Checkpoint]:
    """Checkpoints of one suite repo (``SUITES``) for the given branch names, with step and tokens."""
    suite = _suite(repo)
    model = repo.split("/")[-1]
    out = []
    for revision in revisions:
        step, tokens = revision_step_tokens(repo, revision)
        out.append(Checkpoint(family=suite.family, name=f"{model}@{revision}", repo=repo, revision=revision,
                              model=model, size=suite.size, params=suite.params,
                              params_nonembed=suite.params - suite.embedding, tokens=tokens, step=step))
    return sorted(out, key=lambda ck: ck.step)


def revision_step_tokens(repo: str, revision: str) -> tuple[int, float]:
    """(step, training tokens) of a suite branch name; Amber's step is the checkpoint index."""
    suite = _suite(repo)
    if suite.scheme == "amber":
        m = AMBER_REVISION.fullmatch(revision)
        if not m:
            raise ValueError(f"{repo}: revision {revision!r} is not of the form 'ckpt_NNN'")
        k = int(m.group(1))
        return k, float((k + 1) * suite.tokens_per_step)
    m = OLMO_REVISION.fullmatch(revision)
    if not m:
        raise ValueError(f"{repo}: revision {revision!r} is not of the form '[stage1-]stepN-tokensMB'")
    step, named = int(m.group(1)), int(m.group(2))
    tokens = step * suite.tokens_per_step
    if abs(named * 1e9 - tokens) > 1e9 + 2e-3 * tokens:
        raise ValueError(f"{repo}: revision {revision!r} names {named}B tokens, but step {step} x "
                         f"{suite.tokens_per_step:,} tokens a step is {tokens / 1e9:.1f}B")
    return step, float(tokens)


def olmo_revision(repo: str, step: int) -> str:
    """The stage-1 branch name of ``step`` in a suite whose names follow a rule (OLMo 2); whether
    the hub keeps that step is not known here (the published names are in ``SUITES``)."""
    suite = _suite(repo)
    if suite.name_rounding != "ceil":
        raise ValueError(f"{repo}: branch names carry the run's own token count; list them with "
                         "huggingface_hub.list_repo_refs instead")
    return f"stage1-step{step}-tokens{math.ceil(step * suite.tokens_per_step / 1e9)}B"


@hookimpl
def register_families(register):
    for family in families():
        register(family)


def families() -> list[Family]:
    """Every family of the catalogue, built fresh."""
    gpt2 = [_final("gpt2", f"openai-community/{model}", size, gpt_counts(L, d, 50257, 1024))
            for size, model, L, d in GPT2]
    opt = [_final("opt", f"facebook/opt-{size}", size,
                  OPT_350M_COUNTS if size == "350m" else gpt_counts(L, d, 50272, 2050), OPT_TOKENS)
           for size, L, d in OPT]
    cerebras = [_final("cerebras-gpt", f"cerebras/Cerebras-GPT-{hub}", size,
                       gpt_counts(L, d, 50257, 2048), tokens)
                for size, hub, L, d, tokens in CEREBRAS]
    qwen = [_final("qwen2.5", f"Qwen/Qwen2.5-{s}", s.lower(), tokens=QWEN25_TOKENS) for s in QWEN25]
    olmo = [_final("olmo-2", repo, size, tokens=tokens) for size, repo, tokens in OLMO2]
    size, repo, counts = OLMO1_7B
    olmo1 = _suite_family("olmo-1") + [_final("olmo-1", repo, size, counts)]
    amber = _suite("LLM360/Amber")
    amber_cks = _suite_family("amber") + [_amber_final(amber)]
    return [
        Family("pythia", tuple(_pythia("pythia", "")),
               description="EleutherAI Pythia on the Pile: 8 sizes x 154 training checkpoints",
               homepage="https://github.com/EleutherAI/pythia"),
        Family("pythia-deduped", tuple(_pythia("pythia-deduped", "-deduped")),
               description="EleutherAI Pythia on the deduplicated Pile: 8 sizes x 154 checkpoints",
               homepage="https://github.com/EleutherAI/pythia"),
        Family("gpt2", tuple(gpt2), description="OpenAI GPT-2 on WebText, final checkpoints",
               homepage="https://huggingface.co/openai-community/gpt2"),
        Family("opt", tuple(opt), description="Meta OPT, 125M to 66B, final checkpoints",
               homepage="https://arxiv.org/abs/2205.01068"),
        Family("cerebras-gpt", tuple(cerebras),
               description="Cerebras-GPT on the Pile at 20 tokens per parameter, final checkpoints",
               homepage="https://arxiv.org/abs/2304.03208"),
        Family("qwen2.5", tuple(qwen), description="Alibaba Qwen2.5 base models, final checkpoints",
               homepage="https://arxiv.org/abs/2412.15115"),
        Family("olmo-2", tuple(olmo), description="Ai2 OLMo 2 base models, final checkpoints",
               homepage="https://arxiv.org/abs/2501.00656"),
        Family("olmo-1", tuple(olmo1),
               description="Ai2 OLMo 1B (published training revisions) and 7B (final), -hf conversions",
               homepage="https://arxiv.org/abs/2402.00838"),
        Family("olmo-2-stage1", tuple(_suite_family("olmo-2-stage1")),
               description="Ai2 OLMo 2 7B and 1B: published stage-1 pretraining revisions",
               homepage="https://arxiv.org/abs/2501.00656"),
        Family("amber", tuple(amber_cks), description="LLM360 Amber 7B: all 360 training checkpoints",
               homepage="https://huggingface.co/LLM360/Amber"),
    ]


def gpt_counts(layers: int, d_model: int, vocab: int, positions: int = 0,
               tied: bool = True) -> tuple[int, int]:
    """(total, non-embedding) parameters of a GPT-style decoder with biases, LayerNorms and a
    4*d MLP: 12 d^2 + 13 d per block plus the final LayerNorm. Embeddings are the token matrix
    (twice when the output layer is untied) and learned positions, as in count_parameters."""
    nonembed = layers * (12 * d_model * d_model + 13 * d_model) + 2 * d_model
    return nonembed + vocab * d_model * (1 if tied else 2) + positions * d_model, nonembed


def _pythia(family: str, suffix: str):
    for size, (layers, d_model, vocab) in PYTHIA_ARCH.items():
        model = f"pythia-{size}{suffix}"
        params, nonembed = gpt_counts(layers, d_model, vocab, tied=False)
        for step in PYTHIA_STEPS:
            yield Checkpoint(
                family=family, name=f"{model}@step{step}", repo=f"EleutherAI/{model}",
                revision=f"step{step}", model=model, size=size, params=params,
                params_nonembed=nonembed, tokens=step * PYTHIA_TOKENS_PER_STEP, step=step,
            )


def _suite(repo: str) -> Suite:
    for suite in SUITES:
        if suite.repo == repo:
            return suite
    raise ValueError(unknown_message("suite repo", repo, [s.repo for s in SUITES]))


def _suite_family(family: str) -> list[Checkpoint]:
    return [ck for suite in SUITES if suite.family == family for ck in suite_checkpoints(suite.repo, suite.revisions)]


def _amber_final(suite: Suite) -> Checkpoint:
    """The default branch serves the last checkpoint (the card: 'it will load ckpt_359')."""
    return replace(suite_checkpoints(suite.repo, [f"ckpt_{suite.final:03d}"])[0], revision=None)


def _final(family: str, repo: str, size: str, counts=(None, None), tokens=None) -> Checkpoint:
    """The default-branch checkpoint of one model; its name is the hub model name."""
    model = repo.split("/")[-1]
    return Checkpoint(family=family, name=model, repo=repo, model=model, size=size,
                      params=counts[0], params_nonembed=counts[1], tokens=tokens)
