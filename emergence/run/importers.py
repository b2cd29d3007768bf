"""Import lm-eval result JSON files as the tidy table, with family metadata, chance levels and
each metric's kind and direction where lm-eval says them."""

import json
import logging
import math
import re
from pathlib import Path

from emergence import schema as S
from emergence import tasks as T
from emergence.metric_rules import task_chance
from emergence.run.lmeval import ACCURACY_METRICS, DISCRETE_METRICS, short_name

log = logging.getLogger(__name__)

# Hub names in old result files that are the same weights as a registered checkpoint's repo.
REPO_ALIASES = ((re.compile(r"^EleutherAI/pythia-v1\.1-", re.I), "EleutherAI/pythia-"),
                (re.compile(r"^(EleutherAI/pythia-1b(?:-deduped)?)-bf16$", re.I), r"\1"))


def import_lmeval(paths, registry=None):
    """The tidy table of lm-eval result JSON files (files or folders searched for ``*.json``).

    Model and revision come from ``config.model_args`` (``pretrained=org/name,revision=step3000``)
    and are matched to the registered families for params, tokens and step; an unknown model
    keeps its name and empty counts. Old Pythia-style names (``hendrycksTest-<subject>``) and
    lm-eval groups become ``task`` + ``subtask``; ``acc,none`` becomes ``acc``. ``n`` is
    lm-eval's ``n-samples`` where the file has it, ``chance`` of accuracies comes from
    :func:`emergence.metric_rules.task_chance`. ``higher_is_better`` is the file's own (lm-eval
    0.4 writes it per task and metric; empty for older files); ``metric_kind`` is
    'discontinuous' for lm-eval's all-or-nothing metrics (acc, acc_norm, exact_match, ...) and
    empty otherwise, left to the analysis's name rules.
    The same checkpoint, task and metric twice (say zero- and five-shot files together) is an
    error: the table has no column for the setting, so import such files separately.
    """
    import pandas as pd

    if registry is None:
        from emergence.plugins import collect, plugin_manager

        registry = collect(plugin_manager())
    index = {(ck.repo.lower(), ck.revision): ck for fam in registry.families.values() for ck in fam.checkpoints}
    rows, seen, unknown = [], {}, set()
    for path in _json_files(paths):
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not JSON: {e}") from None
        if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
            raise ValueError(f"{path}: not an lm-eval results file (no 'results' table)")
        ck = _checkpoint(data, index, path)
        if not ck.family:
            unknown.add(ck.repo)
        for task, subtask, metric, value, stderr, n, better in _result_rows(data):
            key = (ck.name, task, subtask, metric)
            if key in seen:
                raise ValueError(f"{path} and {seen[key]} both hold {ck.name} / {task} / {subtask or '-'} / "
                                 f"{metric}: import files of different settings (e.g. shots) separately")
            seen[key] = path
            base = metric.split(",")[0]
            chance = task_chance(task) if base in ACCURACY_METRICS else None
            rows.append({S.FAMILY: ck.family, S.MODEL: ck.model, S.CHECKPOINT: ck.name, S.PARAMS: ck.params,
                         S.PARAMS_NONEMBED: ck.params_nonembed, S.TOKENS: ck.tokens, S.STEP: ck.step,
                         S.FLOPS: ck.training_flops, S.LOSS: None, S.TASK: task, S.SUBTASK: subtask,
                         S.METRIC: metric, S.VALUE: value, S.STDERR: stderr, S.N: n, S.CHANCE: chance,
                         S.METRIC_KIND: T.DISCONTINUOUS if base in DISCRETE_METRICS else None,
                         S.HIGHER_IS_BETTER: better})
    if unknown:
        log.warning("No registered family has %s; imported with empty params and tokens", ", ".join(sorted(unknown)))
    df = pd.DataFrame(rows, columns=list(S.TIDY_COLUMNS))
    for col in (S.PARAMS, S.PARAMS_NONEMBED, S.STEP, S.N):
        df[col] = pd.to_numeric(df[col]).astype("Int64")
    for col in (S.TOKENS, S.FLOPS, S.VALUE, S.STDERR, S.CHANCE, S.LOSS):
        df[col] = pd.to_numeric(df[col]).astype("float64")
    df[S.HIGHER_IS_BETTER] = df[S.HIGHER_IS_BETTER].astype("boolean")
    return df.sort_values([S.FAMILY, S.MODEL, S.STEP, S.TASK, S.SUBTASK, S.METRIC], kind="stable",
                          ignore_index=True)


def _json_files(paths) -> list[Path]:
    files = []
    for p in map(Path, [paths] if isinstance(paths, (str, Path)) else paths):
        if p.is_dir():
            files += sorted(p.rglob("*.json"))
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"No such file or folder: {p}")
    if not files:
        raise FileNotFoundError(f"No .json files in {', '.join(map(str, paths))}")
    return files


def _checkpoint(data, index, path):
    from emergence.families import Checkpoint

    config = data.get("config") or {}
    args = config.get("model_args") or {}
    if isinstance(args, str):
        args = dict(kv.split("=", 1) for kv in args.split(",") if "=" in kv)
    repo = args.get("pretrained") or data.get("model_name")
    if not isinstance(repo, str) or not repo:
        raise ValueError(f"{path}: no model in config.model_args (expected pretrained=...)")
    revision = args.get("revision")
    revision = None if revision in (None, "", "main") else str(revision)
    for pattern, repl in REPO_ALIASES:
        repo = pattern.sub(repl, repo)
    ck = index.get((repo.lower(), revision))
    if ck is not None:
        return ck
    model = repo.rstrip("/").split("/")[-1]
    step = re.fullmatch(r"step(\d+)", revision or "")
    return Checkpoint(family="", name=f"{model}@{revision}" if revision else model, repo=repo,
                      revision=revision, model=model, step=int(step.group(1)) if step else None)


def _result_rows(data):
    """(task, subtask, metric, value, stderr, n, higher_is_better) for every number in ``results``."""
    parent = {c: g for g, children in (data.get("group_subtasks") or {}).items() for c in children if c != g}
    samples = data.get("n-samples") or {}
    directions = data.get("higher_is_better") or {}
    for name, metrics in data["results"].items():
        if not isinstance(metrics, dict):
            continue
        task, subtask = _task_subtask(name, parent)
        n = (samples.get(name) or {}).get("effective") if isinstance(samples.get(name), dict) else None
        for key, value in metrics.items():
            metric, _, fkey = key.partition(",")
            if metric.endswith("_stderr") or not _is_number(value):
                continue
            stderr = metrics.get(f"{metric}_stderr,{fkey}" if fkey else f"{metric}_stderr")
            name_out = metric if fkey in ("", "none") else f"{metric},{fkey}"
            better = (directions.get(name) or {}).get(metric) if isinstance(directions.get(name), dict) else None
            yield (task, subtask, name_out, float(value), float(stderr) if _is_number(stderr) else None, n,
                   better if isinstance(better, bool) else None)


def _task_subtask(name, parent):
    if name.startswith("hendrycksTest-"):
        return "mmlu", name[len("hendrycksTest-"):]
    root = name
    while root in parent:
        root = parent[root]
    return (name, "") if root == name else (root, short_name(name, root))


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
