"""Fine-tuning checkpoints on a task's own training examples: the data behind an emergence law.

For a family, a task and a ladder of data amounts D (numbers of training examples), each selected
checkpoint is fine-tuned on the first D examples of the task's training stream and saved as a
Hugging Face folder under ``<out>/models/``; the checkpoints as they are (D = 0) and every
fine-tuned one are then evaluated with the same task (and the held-out loss task) by the ordinary
run (``emergence.run.runner.run``) into ``<out>/run``, so each (checkpoint, D) cell is a cell of a
run store with the run's resume guarantees. ``finetune_table`` exports it as a tidy table with
the data amount, the base checkpoint and the base checkpoint's pretraining loss on every row:
the input of ``emergence.analysis.finetune_law`` (Snell et al. 2024).

The training stream is ``task.train_examples(train_seed)`` with every example whose prompt is an
evaluation or few-shot prompt removed, so no evaluated question is trained on; the first D of it
are used, so a smaller set is a subset of a larger one. What "disjoint" means is the prompt: a
walk's prompt names its start and nothing else (not its length), so a training walk from an
evaluated start, of any length, would be that evaluated question and is excluded; walks from the
other starts are fair, and on the lab's one 50-node cycle they pass through every evaluated start
mid-walk (a test checks it), so every successor fact is trained except in the evaluated
questions' own first position. A small problem space also caps the distinct examples (walk:
25 beside the 25 evaluated), so past that D counts repeats. ``<out>/finetune.json`` records, per
fine-tuned checkpoint, its base, D, seed, steps and training loss, and why a checkpoint could
not be fine-tuned; a finished model folder is never trained again. Each fine-tuned model also
answers some of its own training questions: a skill that does not transfer (the training
questions learned, the held-out ones not) is then told apart from one not learned at all.
"""

import itertools
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from emergence.analysis.finetune_law import AMOUNT, SEEN_VALUE   # columns the law reads
from emergence.families import Checkpoint, Selection, select
from emergence.files import write_atomic

MANIFEST = "finetune.json"
FAMILY_FILE = "family.toml"
RUN_DIR = "run"
MODELS_DIR = "models"
DONE_MARK = "finetuned.json"     # written last into a model folder: the folder is complete
BASE = "base_checkpoint"         # tidy columns added by finetune_table (and AMOUNT)
FT_LOSS = "ft_loss"
SEEN = "seen"                    # a model record's scores on its own training questions


class FinetuneError(ValueError):
    """A task, family or setting that cannot give fine-tuning data; the message names it."""


PRECISIONS = ("float32", "bfloat16")


@dataclass(frozen=True)
class FinetuneConfig:
    family: str = ""
    task: str = ""
    out: str = "runs/finetune"
    # 0 is the checkpoint as it is (the few-shot curve the law extrapolates to); the law needs
    # >= 2 positive amounts, spaced by factors of 2-4 as in Snell et al.'s data subsets.
    amounts: tuple[int, ...] = (0, 64, 256, 1024)
    select: Selection = field(default_factory=Selection)
    loss_task: str | None = "heldout_loss"   # the pretraining loss axis of the law
    # Full fine-tuning, a fixed number of epochs for every D (more data = more steps, as in a
    # data-amount sweep); AdamW at a constant rate after a short warm-up. 1e-5 is the usual full
    # fine-tuning rate of pretrained LMs of 100M+ parameters; the lab's tiny models need their own
    # pretraining rate, 1e-2 (bench/finetune_law.py), to move at all in a few hundred steps.
    epochs: int = 3
    batch_size: int = 16
    lr: float = 1e-5
    warmup_steps: int = 10
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    answer_only: bool = True      # loss on the answer tokens only (the prompt is given at test time)
    # Replay: rows of pretraining-like text (the held-out loss task's training text, never its
    # evaluated text) added to every batch, loss on every token, so that fine-tuning teaches the
    # task without overwriting the rest of the model. 0: the task's examples alone.
    replay_rows: int = 0
    shuffle_seed: int = 0         # the order of the examples (and replay rows): the fine-tuning seed
    # Training examples come from this seed of the task's generator: not the evaluation seed,
    # its few-shot seed (seed + 1) or the lab corpus seeds (>= 10,000,000 counting up by skill).
    train_seed: int = 20_000_000
    seed: int = 1234              # evaluation seed, as `emergence run`
    limit: int | None = 200       # evaluation examples per task
    num_fewshot: int | None = None
    device: str = "auto"
    # "bfloat16": forward and backward under bfloat16 autocast (the weights, AdamW state and the
    # loss stay float32), for GPUs with bfloat16; "float32": everything in float32.
    precision: str = "float32"
    threads: int = 1              # torch threads while fine-tuning (tiny models: one is fastest)
    # After training, each fine-tuned model answers this many of its own (distinct) training
    # questions, so the report can tell "learned the task" from "learned its training questions"
    # (a skill that does not transfer to held-out questions gives no law). 0: skip the check.
    seen_questions: int = 25

    def __post_init__(self):
        amounts = tuple(int(a) for a in self.amounts)
        if any(a < 0 for a in amounts) or len(set(amounts)) != len(amounts):
            raise FinetuneError(f"amounts must be distinct numbers of examples >= 0, got {self.amounts!r}")
        object.__setattr__(self, "amounts", tuple(sorted(amounts)))
        if self.replay_rows < 0:
            raise FinetuneError(f"replay_rows must be >= 0, got {self.replay_rows!r}")
        if self.seen_questions < 0:
            raise FinetuneError(f"seen_questions must be >= 0, got {self.seen_questions!r}")
        for key in ("epochs", "batch_size"):
            if getattr(self, key) < 1:
                raise FinetuneError(f"{key} must be >= 1, got {getattr(self, key)!r}")
        if not self.lr > 0:
            raise FinetuneError(f"lr must be > 0, got {self.lr!r}")
        if self.precision not in PRECISIONS:
            raise FinetuneError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")


@dataclass
class FinetuneSummary:
    out: Path
    trained: int = 0              # models fine-tuned now
    reused: int = 0               # finished model folders of an earlier call
    failed: list = field(default_factory=list)   # (checkpoint, amount, why)
    run: object = None            # the evaluation's RunSummary
    shots: int = 0                # few-shot examples in each evaluated prompt

    @property
    def ok(self) -> bool:
        return not self.failed and (self.run is None or self.run.ok)


def finetune_run(config: FinetuneConfig, pm=None, *, progress: bool = True, log=print) -> FinetuneSummary:
    """Fine-tune every (selected checkpoint, D > 0), then evaluate all cells into ``<out>/run``.
    A checkpoint that cannot be fine-tuned is recorded with its reason and the rest go on."""
    from emergence.plugins import collect, plugin_manager
    from emergence.run.config import BackendOptions, RunConfig
    from emergence.run.runner import resolve_family, resolve_task, run

    pm = pm or plugin_manager()
    registry = collect(pm)
    if not config.family or not config.task:
        raise FinetuneError("finetune needs a family and a task")
    family = resolve_family(config.family, pm, registry)
    task = resolve_task(config.task, pm, registry)
    checkpoints = select(family, config.select)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    examples = training_examples(task, max(config.amounts), train_seed=config.train_seed, seed=config.seed,
                                 limit=config.limit, num_fewshot=config.num_fewshot)
    replay_texts = _replay_texts(config, registry) if config.replay_rows else []
    manifest = _read_manifest(out)
    _check_training_settings(out, manifest.get("config"), config)
    manifest["config"] = _config_record(config)
    manifest["failed"] = {}
    summary = FinetuneSummary(out, shots=task.num_fewshot if config.num_fewshot is None else config.num_fewshot)
    for ck in checkpoints:
        for amount in (a for a in config.amounts if a > 0):
            name = finetuned_name(ck.name, amount)
            folder = out / MODELS_DIR / name
            if (folder / DONE_MARK).exists():   # finished earlier: its record travels with it
                manifest.setdefault("models", {})[name] = json.loads((folder / DONE_MARK).read_text())
                summary.reused += 1
                continue
            try:
                record = finetune_checkpoint(ck, examples[:amount], folder, config, replay_texts, task=task)
            except Exception as e:   # one checkpoint that cannot be trained must not stop the rest
                why = " ".join(str(e).split()) if isinstance(e, FinetuneError) else f"{type(e).__name__}: {e}"
                summary.failed.append((ck.name, amount, why))
                manifest["failed"][name] = {BASE: ck.name, AMOUNT: amount, "error": why}
                log(f"could not fine-tune {ck.name} on {amount} examples: {why}")
                continue
            manifest.setdefault("models", {})[name] = record
            summary.trained += 1
            write_atomic(out / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
    write_atomic(out / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
    _write_family(out, family.name, checkpoints, manifest.get("models", {}))
    tasks = (task.name,) + ((config.loss_task,) if config.loss_task and config.loss_task != task.name else ())
    summary.run = run(RunConfig(family=str(out / FAMILY_FILE), tasks=tasks, out=str(out / RUN_DIR),
                                seed=config.seed, limit=config.limit, num_fewshot=config.num_fewshot,
                                loss_task=config.loss_task or "heldout_loss",
                                backend=BackendOptions(device=config.device)), pm, progress=progress)
    return summary


def training_examples(task, amount: int, *, train_seed: int, seed: int, limit: int | None,
                      num_fewshot: int | None = None) -> list:
    """The first ``amount`` examples of ``task.train_examples(train_seed)`` whose prompts are not
    among the evaluation examples (``seed``, ``limit``) or the few-shot pool (``seed + 1``),
    continuing under ``train_seed + 1``, ``+ 2``... when one seed's examples run out: a task with
    few distinct questions gives repeats, and D counts examples, not distinct ones."""
    from emergence.run.evaluate import checked_examples

    kind = getattr(task, "kind", None)
    if kind == "rolling":
        raise FinetuneError(f"task {task.name!r} scores whole documents (rolling): it has no questions "
                            "and answers to fine-tune on")
    if not callable(getattr(task, "train_examples", None)):
        raise FinetuneError(f"task {task.name!r} has no training examples: its plugin does not implement "
                            "train_examples(seed) (docs/tasks.md)")
    evaluated = checked_examples(task, seed, limit)
    shots = task.num_fewshot if num_fewshot is None else num_fewshot
    pool = list(itertools.islice(task.examples(seed + 1), max(shots * 8, 64))) if shots else []
    seen = {_key(ex) for ex in evaluated + pool}
    if amount == 0:
        return []
    kept, drawn = [], 0
    # A task with a small problem space (walk has 50 questions) runs out of new examples: the
    # stream goes on under the next seeds, which repeat the disjoint ones in another order.
    for ex in itertools.islice(_stream(task, train_seed), 50 * amount + 1000):
        drawn += 1
        if _key(ex) not in seen and _answer(ex):
            kept.append(ex)
            if len(kept) == amount:
                return kept
    raise FinetuneError(f"task {task.name!r} gave {len(kept)} training examples disjoint from its "
                        f"{len(evaluated)} evaluation examples (of {drawn} drawn from train_examples("
                        f"{train_seed}...)), fewer than the {amount} asked for; use smaller amounts or a "
                        "smaller --limit")


def _stream(task, train_seed):
    for seed in itertools.count(train_seed):
        any_ = False
        try:
            for ex in task.train_examples(seed):
                any_ = True
                yield ex
        except NotImplementedError:
            raise FinetuneError(f"task {task.name!r} has no training examples (train_examples is not "
                                "implemented)") from None
        if not any_:
            return


def finetune_checkpoint(ck: Checkpoint, examples: list, folder: Path, config: FinetuneConfig,
                        replay_texts: list[str] = (), task=None) -> dict:
    """Fine-tune ``ck`` on ``examples`` and save it to ``folder`` (built beside it, then renamed);
    return what was done, with ``task``'s scores on the first ``config.seen_questions`` distinct
    training questions. Raises when the checkpoint cannot be loaded or trained."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from emergence.run.devices import resolve_device

    if not examples:
        raise FinetuneError(f"no training examples for {ck.name}")
    torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    try:   # the architecture first: a checkpoint that is no causal LM is told so, not about its tokenizer
        model = AutoModelForCausalLM.from_pretrained(ck.repo, revision=ck.revision, dtype=torch.float32).to(device)
        tokenizer = AutoTokenizer.from_pretrained(ck.repo, revision=ck.revision)
    except Exception as e:
        raise FinetuneError(f"checkpoint {ck.name!r} cannot be loaded as a causal language model to fine-tune "
                            f"({type(e).__name__}: {' '.join(str(e).split())})") from e
    trainable = [p for p in model.parameters() if p.requires_grad and p.is_floating_point()]
    if not trainable:
        raise FinetuneError(f"checkpoint {ck.name!r} has no trainable floating-point weights (frozen or "
                            "quantised); fine-tune a full-precision copy")
    before = [p.detach().to("cpu", copy=True) for p in trainable]   # host memory: the GPU holds one copy
    rows = [_encode(tokenizer, ex, config.answer_only) for ex in examples]
    generator = torch.Generator().manual_seed(config.train_seed * 31 + len(examples) + 7919 * config.shuffle_seed)
    steps = config.epochs * math.ceil(len(rows) / config.batch_size)
    if config.replay_rows and not replay_texts:
        raise FinetuneError(f"replay_rows = {config.replay_rows} but no replay text was given")
    replay = _replay_rows(tokenizer, replay_texts, getattr(model.config, "max_position_embeddings", None))
    opt = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    losses, step, start = [], 0, time.perf_counter()
    model.train()
    for _ in range(config.epochs):
        order = torch.randperm(len(rows), generator=generator).tolist()
        for k in range(0, len(order), config.batch_size):
            step += 1
            for group in opt.param_groups:
                group["lr"] = config.lr * min(1.0, step / max(1, config.warmup_steps))
            batch = [rows[i] for i in order[k:k + config.batch_size]]
            x, y = _batch(batch + [next(replay) for _ in range(config.replay_rows)], tokenizer, device)
            with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16,
                                enabled=config.precision == "bfloat16"):
                logits = model(input_ids=x).logits
            logits = logits.float()
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1),
                                                     ignore_index=-100)
            if not torch.isfinite(loss):
                raise FinetuneError(f"checkpoint {ck.name!r}: the training loss became {loss.item()} at step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, config.grad_clip)
            opt.step()
            losses.append(loss.item())
    moved = float(sum((p.detach().cpu() - b).pow(2).sum().item() for p, b in zip(trainable, before)) ** 0.5)
    distinct = _distinct(examples)
    record = {BASE: ck.name, AMOUNT: len(examples), "distinct": len(distinct),
              "steps": steps, "seed": config.train_seed, "shuffle_seed": config.shuffle_seed,
              "replay_rows": config.replay_rows,
              "first_loss": round(losses[0], 4), "last_loss": round(losses[-1], 4),
              "weight_change": moved, "seconds": round(time.perf_counter() - start, 2), "device": device,
              "precision": config.precision}
    if task is not None and config.seen_questions:
        record[SEEN] = seen_scores(model, tokenizer, task, distinct[:config.seen_questions])
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / DONE_MARK).write_text(json.dumps(record, indent=2, sort_keys=True))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    del model, opt
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return record


def finetuned_name(checkpoint: str, amount: int) -> str:
    return f"{checkpoint}+ft{amount}"


def finetune_table(out, loss_task: str | None = None):
    """The tidy table of ``<out>/run`` with the data amount (``ft_examples``, 0 for the checkpoint
    as it is), the base checkpoint and, in ``loss``, the *base* checkpoint's pretraining loss on
    every row (the fine-tuned model's own loss moves to ``ft_loss``); ``seen_value`` is a
    fine-tuned model's score on its own training questions, beside the held-out ``value``."""
    import pandas as pd

    from emergence import schema as S
    from emergence.export import tidy_table

    out = Path(out)
    df = tidy_table(out / RUN_DIR, loss_task)
    manifest = _read_manifest(out)
    models = manifest.get("models", {})
    df[BASE] = df[S.CHECKPOINT].map(lambda c: models.get(c, {}).get(BASE, c))
    df[AMOUNT] = df[S.CHECKPOINT].map(lambda c: models.get(c, {}).get(AMOUNT, 0)).astype(int)
    base_loss = df[df[AMOUNT] == 0].drop_duplicates(S.CHECKPOINT).set_index(S.CHECKPOINT)[S.LOSS]
    df[FT_LOSS] = df[S.LOSS]
    df[S.LOSS] = df[BASE].map(base_loss).astype(float)
    task = manifest.get("config", {}).get("task")
    seen = [models.get(c, {}).get(SEEN, {}).get(m) if t == task and sub == "" else None
            for c, t, sub, m in zip(df[S.CHECKPOINT], df[S.TASK], df[S.SUBTASK], df[S.METRIC])]
    df[SEEN_VALUE] = pd.Series(seen, index=df.index, dtype=float)
    return df


# ----------------------------------------------------------------------------- helpers

def _key(ex):
    return (ex.prompt, ex.text)


def _distinct(examples) -> list:
    seen, out = set(), []
    for ex in examples:
        if _key(ex) not in seen:
            seen.add(_key(ex))
            out.append(ex)
    return out


def seen_scores(model, tokenizer, task, examples) -> dict:
    """Mean whole-answer scores of ``task`` on ``examples`` (questions the model was trained on),
    decoded as the evaluation decodes them (``HFEngine.generate``: greedy, cut at the task's stop
    strings), without few-shot examples. Generation tasks only: {"n": 0, "reason": ...} for others."""
    from emergence.run.engine import HFEngine
    from emergence.tasks import GENERATE, Output

    if getattr(task, "kind", None) != GENERATE:
        return {"n": 0, "reason": f"only generation tasks are checked; {task.name!r} is {task.kind}"}
    answers = HFEngine(model, tokenizer).generate([ex.prompt for ex in examples], until=task.until,
                                                  max_gen_toks=task.max_gen_toks)
    totals = {}
    for ex, text in zip(examples, answers):
        for (subtask, metric), value in task.score(ex, Output(generation=text)).items():
            if subtask == "":
                totals.setdefault(metric, []).append(float(value))
    return {"n": len(examples), **{m: round(sum(v) / len(v), 4) for m, v in totals.items()}}


def _answer(ex) -> str:
    if ex.choices:
        return ex.choices[ex.gold] if ex.gold is not None and 0 <= ex.gold < len(ex.choices) else ""
    return ex.target


def _encode(tokenizer, ex, answer_only: bool):
    """(ids, labels): the prompt and the answer tokenised apart and joined, as the evaluation
    scores them (lm-eval's convention), then the end-of-text token so the model learns to stop."""
    prompt = tokenizer(ex.prompt, add_special_tokens=False)["input_ids"]
    answer = tokenizer(_answer(ex), add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        answer = answer + [tokenizer.eos_token_id]
    ids = prompt + answer
    labels = ([-100] * len(prompt) if answer_only else list(prompt)) + answer
    return ids, labels


def _replay_texts(config: FinetuneConfig, registry) -> list[str]:
    """Pretraining-like text for replay: paragraphs of the lab filler's task (the held-out loss
    task's training text, a generated corpus under ``train_seed``; never its evaluated text), in
    an order set by ``shuffle_seed``."""
    import random

    from emergence.lab.corpus import FILLER_TASK

    task = registry.tasks.get(FILLER_TASK)
    if task is None or not callable(getattr(task, "train_examples", None)):
        raise FinetuneError(f"replay needs the training text of task {FILLER_TASK!r}, which no plugin registers")
    try:
        texts = [ex.text for ex in itertools.islice(task.train_examples(config.train_seed), 4000) if ex.text]
    except NotImplementedError as e:
        raise FinetuneError(f"replay needs training text, and task {FILLER_TASK!r} has none ({e})") from None
    random.Random(config.shuffle_seed).shuffle(texts)
    return texts


def _replay_rows(tokenizer, texts, max_tokens: int | None):
    """Endless (ids, labels) rows of ``texts``, cut to the model's context, every token a target."""
    def rows():
        for text in itertools.cycle(texts):
            ids = tokenizer(text, add_special_tokens=False)["input_ids"][:max_tokens or 64]
            if len(ids) > 1:
                yield ids, list(ids)
    return rows() if texts else iter(())


def _batch(rows, tokenizer, device):
    import torch

    width = max(len(ids) for ids, _ in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    x = torch.full((len(rows), width), pad, dtype=torch.long)
    y = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (ids, labels) in enumerate(rows):   # right padding: the causal mask alone is right
        x[i, :len(ids)] = torch.tensor(ids)
        y[i, :len(labels) - 1] = torch.tensor(labels[1:])
    return x.to(device), y.to(device)


def _read_manifest(out: Path) -> dict:
    path = Path(out) / MANIFEST
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise FinetuneError(f"{path} is not valid JSON ({e}); it records the fine-tuned models, so it is "
                            "left as it is: move it away to start over") from None


# What the fine-tuned weights are made from: an out folder keeps one value of each.
TRAINING_SETTINGS = ("task", "epochs", "batch_size", "lr", "warmup_steps", "weight_decay", "grad_clip",
                     "answer_only", "replay_rows", "shuffle_seed", "train_seed", "seed", "limit", "num_fewshot",
                     "precision")


def _check_training_settings(out: Path, recorded: dict | None, config: FinetuneConfig):
    """Refuse settings that would make the stored models and new ones incomparable; models
    already there would otherwise be reused as if made with the new settings."""
    if not recorded:
        return
    # a setting an older folder did not record was made at that setting's default
    defaults = {f.name: f.default for f in fields(FinetuneConfig)}
    was = {k: recorded.get(k, defaults.get(k)) for k in TRAINING_SETTINGS}
    changed = [k for k in TRAINING_SETTINGS if was[k] != getattr(config, k)]
    if changed:
        shown = ", ".join(f"{k} {was[k]!r} -> {getattr(config, k)!r}" for k in changed)
        raise FinetuneError(f"{out} holds models fine-tuned with other settings ({shown}); use another "
                            "--out, or the recorded settings")


def _config_record(config: FinetuneConfig) -> dict:
    d = asdict(config)
    d["amounts"] = list(config.amounts)
    return d


def _write_family(out: Path, name: str, checkpoints, models: dict):
    """The family file the evaluation reads: each base checkpoint (D = 0) and each fine-tuned one,
    with the base's size, step, tokens and counts (the pretraining coordinates of the law)."""
    by_base = {}
    for model_name, rec in models.items():
        by_base.setdefault(rec[BASE], []).append((rec[AMOUNT], model_name))
    lines = [f"name = {json.dumps(name + '-finetuned')}", ""]
    for ck in checkpoints:
        entries = [(None, ck.name)] + sorted(by_base.get(ck.name, []))
        for amount, label in entries:
            lines.append("[[checkpoint]]")
            if amount is None:
                lines.append(f"repo = {json.dumps(ck.repo)}")
                if ck.revision:
                    lines.append(f"revision = {json.dumps(ck.revision)}")
            else:
                lines.append(f"path = {json.dumps(f'{MODELS_DIR}/{label}')}")
            lines.append(f"name = {json.dumps(label)}")
            lines.append(f"model = {json.dumps(ck.model if amount is None else finetuned_name(ck.model, amount))}")
            lines.append(f"size = {json.dumps(ck.size)}")
            for key in ("step", "tokens", "params", "params_nonembed", "flops"):
                value = getattr(ck, key)
                if value is not None:
                    lines.append(f"{key} = {value!r}")
            lines.append("")
    write_atomic(out / FAMILY_FILE, "\n".join(lines))
