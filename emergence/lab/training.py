"""The emergence lab: a family of GPT-NeoX causal LMs trained from scratch, with known ground
truth by design (docs/lab.md).

``train_family(LabConfig(...))`` generates the corpus (``lab.corpus``), trains its tokenizer,
then trains every size on the same rows in the same order and saves checkpoints at log-spaced
steps as standard Hugging Face folders ``<out>/<model>@step<N>/`` (safetensors + tokenizer).
``<out>/family.toml`` lists them with parameters, tokens seen, step and FLOPs, so
``emergence run --family <out>/family.toml`` (or the registered family ``lab``) evaluates them
like any local family; ``<out>/lab.json`` holds the resolved config and the training log.
Deterministic in ``LabConfig.seed`` on one kind of device (threads and workers change the speed,
not the numbers). The training loop is ``_train_size``, top to bottom, nanoGPT style.
"""

import dataclasses
import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from emergence.files import write_atomic
from emergence.names import at_line, read_toml, unknown_message

FAMILY_FILE = "family.toml"
RECORD_FILE = "lab.json"
SCHEDULES = ("cosine", "linear", "constant")


class LabConfigError(ValueError):
    pass


@dataclass(frozen=True)
class LabConfig:
    # --- the family: one (d_model, layers) pair per size, heads of head_dim each
    sizes: tuple = ((4, 2), (8, 2), (16, 2), (24, 2), (32, 2), (48, 2), (64, 2))  # 3.6k-149k params
    head_dim: int = 4               # many small heads: positional look-ups form early in tiny models
    context: int = 64               # tokens per training row; every probe prompt + answer fits
    vocab_size: int = 384           # byte-level BPE over printable ASCII; every copy item is one token
    split_digits: bool = False      # True: every digit its own token (LLaMA-style)
    rotary_pct: float = 1.0         # share of each head's dimensions that are rotated
    rope_theta: float = 100.0       # rotary base; 100 resolves offsets well within a 64-token row
    init_std: float = 0.02          # weight init std (GPT-NeoX default; 1/sqrt(d) learned copying slower)
    # --- data: every size sees the same rows in the same order
    tokens: int = 1_000_000         # training token slots per size (488 steps; ~86% are real tokens)
    tokens_per_param: float | None = None  # Chinchilla-style: tokens = r * params per size (20 = optimal)
    mix: tuple = (("copy", 0.25), ("add_1d", 0.25), ("walk", 0.065), ("filler", 0.435))  # (skill, share of characters):
                                    # a generation task's name, or "filler" (prose and arithmetic lines)
    # --- optimisation: AdamW, linear warmup, then the schedule down to lr * min_lr_ratio
    batch_size: int = 32            # rows per step
    lr: float = 1e-2                # peak; tiny models tolerate (and need) a high rate
    min_lr_ratio: float = 0.1
    schedule: str = "cosine"        # cosine | linear | constant
    warmup: float = 0.03            # share of the steps spent warming up
    weight_decay: float = 0.1       # on matrices only
    beta2: float = 0.95
    grad_clip: float = 1.0
    # --- checkpoints and execution
    checkpoints: int = 8            # per size, at log-spaced steps ending at the last one
    first_checkpoint: float = 1 / 8   # share of training done at the first checkpoint
    seed: int = 0
    device: str = "auto"            # auto (cuda > mps > cpu), cpu, cuda, ...
    threads: int = 1                # torch threads per worker: tiny matmuls run best on one
    workers: int = 0                # sizes trained in parallel processes; 0 = one per CPU core (1 on GPU)
    family: str = "lab"             # family name in the tidy table

    def __post_init__(self):
        problems = []
        if not self.sizes:
            problems.append("sizes: give at least one (d_model, layers) pair")
        for s in self.sizes:
            if (not isinstance(s, (tuple, list)) or len(s) != 2
                    or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in s)):
                problems.append(f"sizes: {s!r} is not a (d_model, layers) pair of positive integers")
            elif isinstance(self.head_dim, int) and self.head_dim > 0 and s[0] % self.head_dim:
                problems.append(f"sizes: d_model {s[0]} is not a multiple of head_dim {self.head_dim}")
        if len({tuple(s) for s in self.sizes if isinstance(s, (tuple, list))}) != len(self.sizes):
            problems.append("sizes: a (d_model, layers) pair is listed twice")
        for name in ("head_dim", "context", "tokens", "batch_size", "checkpoints", "threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                problems.append(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.workers, int) or self.workers < 0:
            problems.append(f"workers must be 0 (auto) or a positive integer, got {self.workers!r}")
        if not isinstance(self.vocab_size, int) or self.vocab_size < 128:
            problems.append(f"vocab_size must be an integer >= 128 (the alphabet has 97 symbols), "
                            f"got {self.vocab_size!r}")
        if self.tokens_per_param is not None and not self.tokens_per_param > 0:
            problems.append(f"tokens_per_param must be positive, got {self.tokens_per_param!r}")
        if not self.mix or any(not isinstance(m, (tuple, list)) or len(m) != 2 or not isinstance(m[0], str)
                               or isinstance(m[1], bool) or not isinstance(m[1], (int, float)) or m[1] <= 0
                               for m in self.mix):
            problems.append("mix: give (skill, positive share) pairs")
        elif len({m[0] for m in self.mix}) != len(self.mix):
            problems.append("mix: a skill is listed twice")
        if self.schedule not in SCHEDULES:
            problems.append(unknown_message("schedule", self.schedule, SCHEDULES))
        if not (self.lr > 0 and 0 <= self.min_lr_ratio <= 1 and 0 <= self.warmup < 1):
            problems.append("need lr > 0, 0 <= min_lr_ratio <= 1 and 0 <= warmup < 1")
        if not 0 < self.rotary_pct <= 1 or not self.rope_theta > 0:
            problems.append("need 0 < rotary_pct <= 1 and rope_theta > 0")
        if not 0 < self.first_checkpoint <= 1:
            problems.append(f"first_checkpoint must be in (0, 1], got {self.first_checkpoint!r}")
        if problems:
            raise LabConfigError("Invalid lab config: " + "; ".join(problems))

    def digest(self) -> str:
        """Short hash of every setting that changes the weights (not device, threads, workers)."""
        d = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("device", "threads", "workers")}
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]

    def tokens_for(self, params: int) -> int:
        return int(self.tokens_per_param * params) if self.tokens_per_param else self.tokens


def config_from_dict(data: dict, source: str = "lab config", text: str = "") -> LabConfig:
    """A LabConfig from plain data (TOML, JSON, flags); unknown keys fail with a suggestion."""
    fields = {f.name for f in dataclasses.fields(LabConfig)}
    for key in data:
        if key not in fields:
            raise LabConfigError(f"{source}{at_line(text, key)}: {unknown_message('key', key, fields)}")
    data = dict(data)
    for key in ("sizes", "mix"):
        if isinstance(data.get(key), list):
            data[key] = tuple(tuple(v) if isinstance(v, list) else v for v in data[key])
    return LabConfig(**data)


def load_lab_config(path, **overrides) -> LabConfig:
    """A TOML file of LabConfig keys, then the overrides that are not None."""
    path = Path(path)
    data, text = read_toml(path, LabConfigError)
    config_from_dict(data, str(path), text)   # names the line of an unknown key
    return config_from_dict({**data, **{k: v for k, v in overrides.items() if v is not None}}, str(path), text)


def default_cache() -> Path:
    """``$EMERGENCE_LAB_CACHE``, else ``.cache/emergence/lab`` under the working directory."""
    return Path(os.environ.get("EMERGENCE_LAB_CACHE") or Path(".cache") / "emergence" / "lab")


def family_dir(config: LabConfig, cache=None) -> Path:
    """Where the lab cache keeps the family of ``config``: ``<cache>/<config digest>``."""
    return Path(default_cache() if cache is None else cache) / config.digest()


def trained(folder) -> bool:
    """Whether ``folder`` holds a finished lab family."""
    return (Path(folder) / FAMILY_FILE).exists() and (Path(folder) / RECORD_FILE).exists()


def train_family(config: LabConfig, out=None, *, progress: bool = True, log=print) -> Path:
    """Train every size of ``config`` into ``out`` (default: the cache folder named by its
    digest) and return the family TOML. A finished family of the same config is reused."""
    from emergence.lab.corpus import FILLER, skill_tasks

    out = Path(out) if out is not None else family_dir(config)
    # Unknown skills fail before anything is written.
    versions = {name: str(task.version) for name, task in skill_tasks(config.mix).items() if name != FILLER}
    if trained(out):
        done = json.loads((out / RECORD_FILE).read_text())
        if done.get("digest") != config.digest():
            raise LabConfigError(f"{out} holds a lab family of another config ({done.get('digest')}); "
                                 "choose another folder or delete it")
        if done.get("skill_versions", versions) == versions:
            log(f"Reusing the lab family in {out} (config {config.digest()})")
            return out / FAMILY_FILE
        # A skill's task changed since (its version says so): its corpus would differ, so the
        # family is stale. It is ours (same config digest): retrain it in place.
        log(f"Retraining the lab family in {out}: skill versions {done.get('skill_versions')} -> {versions}")
        shutil.rmtree(out)
    import torch

    from emergence.lab.corpus import build_corpus
    clock = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    # Rows for the size that trains longest (every size trains on a prefix of the same rows),
    # from text estimated at 3.3 characters a token slot: ample at the default vocabulary.
    longest = max(config.tokens_for(param_count(config, d, n)) for d, n in config.sizes)
    n_docs, tokenizer, rows, mask = build_corpus(
        config.mix, int(longest * 3.3), longest // config.context + config.batch_size, config.context,
        config.vocab_size, config.split_digits, config.seed)
    work = out / "_work"
    work.mkdir(exist_ok=True)
    tokenizer.save_pretrained(work / "tokenizer")
    torch.save({"rows": rows, "mask": mask}, work / "rows.pt")
    corpus_s = time.perf_counter() - clock
    log(f"Corpus: {n_docs:,} documents, {int(mask.sum()):,} tokens in {len(rows):,} rows of "
        f"{config.context + 1}, vocabulary {len(tokenizer)} ({corpus_s:.1f} s)")

    # Largest first, so that parallel workers finish together.
    sizes = sorted(config.sizes, key=lambda s: -param_count(config, *s))
    workers = _workers(config, len(sizes))
    jobs = [(dataclasses.asdict(config), d, n, str(out), i % workers, progress) for i, (d, n) in enumerate(sizes)]
    if workers > 1:
        from emergence.workers import process_pool

        with process_pool(workers, "spawn") as pool:
            results = list(pool.map(_train_size, jobs))
    else:
        results = [_train_size(job) for job in jobs]
    for _, stats in results:
        log(f"  {stats['model']}: {stats['params']:,} params, {stats['tokens']:,} tokens, {stats['steps']} steps "
            f"in {stats['seconds']:.1f} s = {stats['tokens_per_s']:,.0f} tokens/s, "
            f"final train loss {stats['final_loss']:.3f}")
    records = sorted((r for recs, _ in results for r in recs), key=lambda r: (r["params"], r["step"]))
    train_s = time.perf_counter() - clock - corpus_s
    total_tokens = sum(s["tokens"] for _, s in results)
    timing = {"corpus_s": round(corpus_s, 2), "train_s": round(train_s, 2), "workers": workers,
              "tokens": total_tokens, "tokens_per_s": round(total_tokens / max(train_s, 1e-9))}
    _write_family(out, config, records, [s for _, s in results], timing, versions)
    shutil.rmtree(work, ignore_errors=True)
    log(f"Lab family {config.family!r}: {len(sizes)} sizes, {len(records)} checkpoints in {out}; "
        f"trained in {train_s:.0f} s on {workers} worker(s), {timing['tokens_per_s']:,} tokens/s overall")
    return out / FAMILY_FILE


def build_model(config: LabConfig, d_model: int, layers: int, vocab: int, eos_id: int = 0):
    """A freshly initialised GPT-NeoX model of one lab size (seed torch first)."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    return GPTNeoXForCausalLM(GPTNeoXConfig(
        vocab_size=vocab, hidden_size=d_model, num_hidden_layers=layers,
        num_attention_heads=d_model // config.head_dim, intermediate_size=4 * d_model,
        max_position_embeddings=config.context, bos_token_id=eos_id, eos_token_id=eos_id,
        pad_token_id=eos_id, tie_word_embeddings=False, hidden_dropout=0.0, attention_dropout=0.0,
        initializer_range=config.init_std,
        rope_parameters={"rope_type": "default", "rope_theta": config.rope_theta,
                         "partial_rotary_factor": config.rotary_pct},
    ))


def param_count(config: LabConfig, d_model: int, layers: int, vocab: int | None = None) -> int:
    """Parameters of a lab size without building it: GPT-NeoX blocks (12 d^2 + 13 d each),
    untied input and output embeddings, final LayerNorm."""
    vocab = config.vocab_size if vocab is None else vocab
    return layers * (12 * d_model * d_model + 13 * d_model) + 2 * vocab * d_model + 2 * d_model


def checkpoint_steps(config: LabConfig, total: int) -> list[int]:
    """Up to ``config.checkpoints`` distinct log-spaced steps from ``first_checkpoint * total``
    to ``total`` (fewer only when there are not that many steps)."""
    first = max(1, round(config.first_checkpoint * total))
    n = min(config.checkpoints, total - first + 1)
    if n <= 1:
        return [total]
    steps = sorted({round(first * (total / first) ** (i / (n - 1))) for i in range(n)})
    # Rounding merges neighbours when steps are few: fill from the low end.
    extra = (s for s in range(first, total + 1) if s not in steps)
    while len(steps) < n:
        steps = sorted(steps + [next(extra)])
    return steps


def model_name(config: LabConfig, d_model: int, layers: int) -> str:
    return f"{config.family}-d{d_model}-l{layers}"


# ---------------------------------------------------------------- one size, top to bottom


def _train_size(job):
    """Train one size from scratch on the shared rows; save its checkpoints; return their
    family records and the run's statistics. Runs in a worker process or in-line."""
    config, d_model, layers, out, position, progress = job
    config = config_from_dict(config)
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    from emergence.families import count_parameters

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    torch.set_num_threads(config.threads)
    out = Path(out)
    tokenizer = AutoTokenizer.from_pretrained(out / "_work" / "tokenizer")
    data = torch.load(out / "_work" / "rows.pt")
    rows, mask = data["rows"], data["mask"]
    device = _device(config.device)
    name = model_name(config, d_model, layers)

    torch.manual_seed(config.seed * 1_000_003 + d_model * 101 + layers)
    model = build_model(config, d_model, layers, len(tokenizer), tokenizer.eos_token_id).to(device)
    params, params_nonembed = count_parameters(model)
    total = max(1, config.tokens_for(params) // (config.batch_size * config.context))
    if total * config.batch_size > len(rows):
        raise LabConfigError(f"{name}: {total} steps need {total * config.batch_size} rows; the corpus has {len(rows)}")
    saves = set(checkpoint_steps(config, total))
    matrices = [p for p in model.parameters() if p.dim() >= 2]
    vectors = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": matrices, "weight_decay": config.weight_decay},
                             {"params": vectors, "weight_decay": 0.0}],
                            lr=config.lr, betas=(0.9, config.beta2))
    warmup = int(config.warmup * total)
    records, seen, loss, start = [], 0, None, time.perf_counter()
    bar = tqdm(range(1, total + 1), desc=f"train {name}", unit="step", position=position,
               disable=not progress, leave=True, dynamic_ncols=True)
    model.train()
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = config.lr * _lr_factor(config, step, total, warmup)
        batch = slice((step - 1) * config.batch_size, step * config.batch_size)
        # Padding only ever ends a row, so the causal mask alone is right; padded targets are ignored.
        x = rows[batch, :-1].to(device)
        y = rows[batch, 1:].masked_fill(mask[batch, 1:] == 0, -100).to(device)
        logits = model(input_ids=x).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1),
                                                 ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.step()
        seen += int(mask[batch, 1:].sum())
        if step % 25 == 0 or step == total:
            bar.set_postfix(loss=f"{loss.item():.3f}", tok_s=f"{seen / (time.perf_counter() - start):,.0f}")
        if step in saves:
            folder = out / f"{name}@step{step}"
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            records.append({"path": folder.name, "model": name, "size": _size_label(params), "step": step,
                            "tokens": float(seen), "params": params, "params_nonembed": params_nonembed,
                            "flops": 6.0 * params * seen, "train_loss": round(loss.item(), 4)})
    bar.close()
    seconds = time.perf_counter() - start
    return records, {"model": name, "d_model": d_model, "layers": layers, "params": params,
                     "params_nonembed": params_nonembed, "steps": total, "tokens": seen,
                     "seconds": round(seconds, 2), "tokens_per_s": round(seen / seconds),
                     "final_loss": round(loss.item(), 4)}


def _lr_factor(config, step, total, warmup):
    if step <= warmup:
        return step / max(warmup, 1)
    progress = (step - warmup) / max(total - warmup, 1)
    floor = config.min_lr_ratio
    if config.schedule == "cosine":
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    if config.schedule == "linear":
        return floor + (1 - floor) * (1 - progress)
    return 1.0


def _workers(config, n_sizes):
    if config.workers:
        return min(config.workers, n_sizes)
    if _device(config.device) != "cpu":
        return 1
    return max(1, min(n_sizes, os.cpu_count() or 1))


def _device(device: str) -> str:
    if device != "auto":
        return device
    from emergence.run.devices import resolve_device

    return resolve_device("auto")


def _size_label(params: int) -> str:
    return f"{params / 1e6:.2f}m" if params >= 1e6 else f"{params / 1e3:.0f}k"


def _write_family(out: Path, config: LabConfig, records, stats, timing, skill_versions):
    """family.toml for the local-family reader; lab.json with the config and the training log."""
    lines = [f"name = {json.dumps(config.family)}",
             f'description = "emergence lab: trained from scratch by `emergence lab train` (config {config.digest()})"',
             ""]
    for r in records:
        lines.append("[[checkpoint]]")
        lines += [f"{k} = {json.dumps(r[k])}" for k in ("path", "model", "size", "step", "tokens", "params",
                                                         "params_nonembed", "flops")]
        lines.append("")
    # The record last: a family counts as trained only once both files are whole (``trained``).
    write_atomic(out / FAMILY_FILE, "\n".join(lines))
    write_atomic(out / RECORD_FILE, json.dumps(
        {"digest": config.digest(), "config": dataclasses.asdict(config), "skill_versions": skill_versions,
         "timing": timing,
         "sizes": sorted(stats, key=lambda s: s["params"]), "checkpoints": records}, indent=2))
