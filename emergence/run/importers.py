"""Import lm-eval result JSON files as the tidy table, with family metadata (the registry's, or
the user's: ``--family``, ``--meta``, a local config.json; :mod:`emergence.run.meta`), each
result's few-shot count, chance levels and each metric's kind and direction where lm-eval says
them. A result in two files is kept once when the numbers agree, and is an error naming both
files when they do not.

Total over its input: every file gives rows, a clear error naming the file and the key, or (for
a metric with no finite number: NaN, Infinity, null, "N/A") a skip that is counted, logged and
kept in ``df.attrs["notes"]``. Nothing is dropped without a word.
"""

import json
import logging
import math
import re
from pathlib import Path

from emergence import schema as S
from emergence import tasks as T
from emergence.metric_rules import task_chance
from emergence.run.lmeval import ACCURACY_METRICS, DISCRETE_METRICS, short_name
from emergence.run.meta import _shown, family_name, read_meta, require_essentials, resolve_checkpoint

log = logging.getLogger(__name__)

# What lm-eval writes beside the metrics of a task (its _TaskMetrics): not scores.
FIXED_KEYS = ("name", "alias", "sample_len", "sample_count")

# Hub names in old result files that are the same weights as a registered checkpoint's repo.
REPO_ALIASES = ((re.compile(r"^EleutherAI/pythia-v1\.1-", re.I), "EleutherAI/pythia-"),
                (re.compile(r"^(EleutherAI/pythia-1b(?:-deduped)?)-bf16$", re.I), r"\1"))


def import_lmeval(paths, registry=None, *, family: str | None = None, meta=None, duplicates: str = "error",
                  strict: bool = False, setting: str = ""):
    """The tidy table of lm-eval result JSON files (files or folders searched for ``*.json``).

    Model and revision come from ``config.model_args`` (``pretrained=org/name,revision=step3000``)
    and are matched to the registered families for params, tokens and step. A model no family
    lists takes ``family`` (``--family``) and its counts from ``meta`` (a ``--meta`` file, see
    :mod:`emergence.run.meta`) or from the ``config.json`` of a local model folder; without them
    it keeps its name and empty counts. The model name of a hub id is its last part; a local
    path gives none (its folders are cluster layout, not names) unless it is a model folder here
    (it holds config.json) or a ``meta`` model has it as ``repo``.
    Old Pythia-style names (``hendrycksTest-<subject>``) and lm-eval groups become ``task`` +
    ``subtask``; ``acc,none`` becomes ``acc``. ``n`` is lm-eval's ``n-samples`` where the file
    has it, ``chance`` of accuracies comes from :func:`emergence.metric_rules.task_chance`.
    ``higher_is_better`` is the file's own (lm-eval 0.4 writes it per task and metric; empty for
    older files); ``metric_kind`` is 'discontinuous' for lm-eval's all-or-nothing metrics (acc,
    acc_norm, exact_match, ...) and empty otherwise, left to the analysis's name rules.
    ``n_shot`` is the file's ``n-shot`` of the task (0.4), else its ``configs.<task>.num_fewshot``,
    else ``config.num_fewshot`` (0.3 and 0.4); ``setting`` is the caller's name for how these
    files were evaluated (``--setting``: a prompt variant, an answer format such as ``mc``), on
    every row; empty = lm-eval's default prompt.
    Files of several settings (zero- and five-shot) make one table. The same checkpoint, task,
    metric and setting twice is kept once, with a note, when both files give the same value and
    stderr; with different ones it is an error naming both files, or (``duplicates="first"``) the
    first file's row is kept, with a note. ``strict``: refuse a table ``emergence analyze`` would
    refuse or could not analyse (no family, no params or tokens), saying which flag supplies them.
    """
    if duplicates not in ("error", "first"):
        raise ValueError(f"duplicates must be 'error' or 'first', not {duplicates!r}")
    setting = checked_setting(setting)
    if registry is None:
        from emergence.plugins import collect, plugin_manager

        registry = collect(plugin_manager())
    user = read_meta(meta) if meta is not None and not hasattr(meta, "models") else meta
    family = family_name(family, user, registry)
    index = _checkpoint_index(registry)
    rows, seen, unknown, skipped, doubles = [], {}, set(), [], []
    for path in _json_files(paths):
        data = _read_results(path)
        ck = _checkpoint(data, index, path, family, user)
        if not ck.family:
            unknown.add(ck.repo)
        for task, subtask, metric, value, stderr, n, better, version, shots in _result_rows(data, path, skipped):
            key = (ck.name, task, subtask, metric, shots)
            if key in seen:
                _duplicate(key, path, value, stderr, seen[key], duplicates, doubles)
                continue
            seen[key] = (path, value, stderr)
            base = metric.split(",")[0]
            chance = task_chance(task) if base in ACCURACY_METRICS else None
            rows.append({S.FAMILY: ck.family, S.MODEL: ck.model, S.CHECKPOINT: ck.name, S.PARAMS: ck.params,
                         S.PARAMS_NONEMBED: ck.params_nonembed, S.TOKENS: ck.tokens, S.STEP: ck.step,
                         S.FLOPS: ck.training_flops, S.LOSS: None, S.TASK: task, S.SUBTASK: subtask,
                         S.METRIC: metric, S.VALUE: value, S.STDERR: stderr, S.N: n, S.CHANCE: chance,
                         S.METRIC_KIND: T.DISCONTINUOUS if base in DISCRETE_METRICS else None,
                         S.HIGHER_IS_BETTER: better, S.TASK_VERSION: version, S.N_SHOT: shots, S.SETTING: setting})
    if unknown and not strict:
        log.warning("No registered family has %s; imported with empty params and tokens (give --family and --meta)",
                    ", ".join(sorted(unknown)))
    df = tidy_frame(rows, (S.FAMILY, S.MODEL, S.STEP, S.TASK, S.SUBTASK, S.METRIC, S.N_SHOT))
    df.attrs["notes"] = _skip_notes(skipped) + _duplicate_notes(doubles)
    if strict:
        require_essentials(df, meta_given=user is not None)
    for note in df.attrs["notes"]:
        log.warning("%s", note)
    return df


def checked_setting(setting) -> str:
    """The ``--setting`` text, stripped; one line of text or an error naming it."""
    text = "" if setting is None else str(setting).strip()
    if "\n" in text or "\r" in text:
        raise ValueError(f"--setting must be one line of text, not {setting!r}")
    return text


def input_files(paths, found_in, what: str) -> list[Path]:
    """The files an importer reads: files as given, and in folders ``found_in(folder)`` (sorted);
    a file named twice (itself and its folder) is read once. ``what`` names them in the error
    when there are none."""
    given = [paths] if isinstance(paths, (str, Path)) else list(paths)
    files = []
    for p in map(Path, given):
        if p.is_dir():
            files += sorted(found_in(p))
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"No such file or folder: {p}")
    files = list(dict.fromkeys(files))
    if not files:
        raise FileNotFoundError(f"No {what} in {', '.join(map(str, given))}")
    return files


def tidy_frame(rows, order):
    """The tidy table of ``rows`` (dicts keyed by the schema's columns), each column its tidy
    type (counts Int64, measures float64, ``higher_is_better`` boolean), sorted stably by ``order``."""
    import pandas as pd

    df = pd.DataFrame(rows, columns=list(S.TIDY_COLUMNS))
    for col in (S.PARAMS, S.PARAMS_NONEMBED, S.STEP, S.N, S.N_SHOT):
        df[col] = pd.to_numeric(df[col]).astype("Int64")
    for col in (S.TOKENS, S.FLOPS, S.VALUE, S.STDERR, S.CHANCE, S.LOSS):
        df[col] = pd.to_numeric(df[col]).astype("float64")
    df[S.HIGHER_IS_BETTER] = df[S.HIGHER_IS_BETTER].astype("boolean")
    return df.sort_values(list(order), kind="stable", ignore_index=True)


def _json_files(paths) -> list[Path]:
    return input_files(paths, lambda folder: folder.rglob("*.json"), ".json files")


def _read_results(path: Path) -> dict:
    """The file's JSON object, checked to be an lm-eval results file."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file (binary?); expected lm-eval results JSON") from None
    except OSError as e:
        raise ValueError(f"{path}: cannot be read: {e.strerror or e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise ValueError(f"{path}: not an lm-eval results file (no 'results' table)")
    return data


def _checkpoint_index(registry) -> dict:
    """{(hub repo lowercased, revision): Checkpoint} of every registered family, as
    :func:`emergence.run.meta.resolve_checkpoint` looks checkpoints up."""
    return {(ck.repo.lower(), ck.revision): ck for fam in registry.families.values() for ck in fam.checkpoints}


def _checkpoint(data, index, path, family=None, user=None):
    """The checkpoint a results file is of (see :func:`emergence.run.meta.resolve_checkpoint`)."""
    repo, revision = _model_args(data, path)
    for pattern, repl in REPO_ALIASES:
        repo = pattern.sub(repl, repo)
    return resolve_checkpoint(repo, revision, index, family=family, user=user, where=str(path))


def _model_args(data, path) -> tuple[str, str | None]:
    """(pretrained, revision) of ``config.model_args``; revision None for the default branch."""
    config = data.get("config") or {}
    if not isinstance(config, dict):
        raise ValueError(f"{path}: 'config' is {_shown(config)}; expected a table with model_args")
    args = config.get("model_args") or {}
    if isinstance(args, str):
        args = dict(kv.split("=", 1) for kv in args.split(",") if "=" in kv)
    elif not isinstance(args, dict):
        raise ValueError(f"{path}: 'config.model_args' is {_shown(args)}; expected text such as "
                         "'pretrained=org/name,revision=step3000' or a table")
    repo = args.get("pretrained") or data.get("model_name")
    if not isinstance(repo, str) or not repo:
        raise ValueError(f"{path}: no model in config.model_args (expected pretrained=...)")
    revision = args.get("revision")
    if revision is not None and (isinstance(revision, bool) or not isinstance(revision, (str, int))):
        raise ValueError(f"{path}: 'config.model_args.revision' is {_shown(revision)}; expected text")
    return repo, None if revision in (None, "", "main") else str(revision)


def _duplicate(key, path, value, stderr, first, how, doubles: list):
    """A (checkpoint, task, subtask, metric, n_shot) a second time: the same numbers are one
    result seen twice (two suites holding one task); different numbers are a true conflict."""
    first_path, first_value, first_stderr = first
    same = value == first_value and (stderr == first_stderr or (stderr is None and first_stderr is None))
    ck, task, subtask, metric, shots = key
    what = f"{ck} / {task} / {subtask or '-'} / {metric} ({_shots_text(shots)})"
    if not same and how == "error":
        raise ValueError(f"{first_path} and {path} both hold {what} with different values ({first_value:g} and "
                         f"{value:g}): pass --duplicates first to keep the first file's, or import them separately")
    doubles.append((same, what, first_path, path))


def _duplicate_notes(doubles: list) -> list[str]:
    notes = []
    for same, label in ((True, "identical, kept once"), (False, "different values, the first file's kept")):
        hits = [d for d in doubles if d[0] == same]
        if hits:
            shown = "; ".join(f"{w} in {a} and {b}" for _, w, a, b in hits[:3])
            more = f"; and {len(hits) - 3} more" if len(hits) > 3 else ""
            notes.append(f"{len(hits)} result(s) in two files ({label}): {shown}{more}")
    return notes


def _shots_text(shots) -> str:
    return "shots unknown" if shots is None else f"{shots}-shot"


def _result_rows(data, path, skipped: list):
    """(task, subtask, metric, value, stderr, n, higher_is_better, version, n_shot) for every number in ``results``;
    metrics with no finite number are appended to ``skipped``, anything else that is not a number
    is an error."""
    roots = _group_roots(data.get("group_subtasks"), path)
    samples, versions, directions = (_per_task(data, key, path) for key in ("n-samples", "versions",
                                                                           "higher_is_better"))
    shots_of = _shots(data, path)
    for name, metrics in data["results"].items():
        if not isinstance(metrics, dict):
            raise ValueError(f"{path}: 'results.{name}' is {_shown(metrics)}; expected a table of metrics")
        task, subtask = _task_subtask(name, roots)
        shots = shots_of(name)
        counts = samples.get(name) or {}
        n = counts.get("effective") if isinstance(counts, dict) else counts
        if n is not None and not _is_count(n):
            where = f"n-samples.{name}" + (".effective" if isinstance(counts, dict) else "")
            raise ValueError(f"{path}: '{where}' is {_shown(n)}; expected a count")
        for key, value in metrics.items():
            metric, _, fkey = key.partition(",")
            if metric.endswith("_stderr") or key in FIXED_KEYS:
                continue
            if _no_number(value):
                skipped.append(f"{path}: results.{name}.{key} = {value!r}")
                continue
            if not _is_number(value):
                raise ValueError(f"{path}: 'results.{name}.{key}' is {_shown(value)}; expected a number")
            stderr_key = f"{metric}_stderr,{fkey}" if fkey else f"{metric}_stderr"
            stderr = metrics.get(stderr_key)
            if not (_no_number(stderr) or _is_number(stderr)):
                raise ValueError(f"{path}: 'results.{name}.{stderr_key}' is {_shown(stderr)}; expected a number")
            name_out = metric if fkey in ("", "none") else f"{metric},{fkey}"
            better = (directions.get(name) or {}).get(metric) if isinstance(directions.get(name), dict) else None
            version = versions.get(name)
            yield (task, subtask, name_out, float(value), float(stderr) if _is_number(stderr) else None, n,
                   better if isinstance(better, bool) else None, None if version is None else _version(version),
                   shots)


def _per_task(data, key, path) -> dict:
    """``data[key]``, a table keyed by task ({} when absent); anything else names the file and key."""
    table = data.get(key) or {}
    if not isinstance(table, dict):
        raise ValueError(f"{path}: {key!r} is {_shown(table)}; expected a table per task")
    return table


def _shots(data, path):
    """name -> few-shot count of a results file: lm-eval 0.4's ``n-shot`` table, else the task's
    ``configs.<name>.num_fewshot``, else the run's ``config.num_fewshot``; None where none says."""
    table, configs = _per_task(data, "n-shot", path), _per_task(data, "configs", path)
    default = _shot_count((data.get("config") or {}).get("num_fewshot"), path, "config.num_fewshot")

    groups = data.get("group_subtasks") if isinstance(data.get("group_subtasks"), dict) else {}

    def shots(name, seen=()):
        if table.get(name) is not None:
            return _shot_count(table[name], path, f"n-shot.{name}")
        task_config = configs.get(name)
        if isinstance(task_config, dict) and task_config.get("num_fewshot") is not None:
            return _shot_count(task_config["num_fewshot"], path, f"configs.{name}.num_fewshot")
        # A group some lm-eval versions give no count: its children's, where they all agree.
        children = {shots(c, seen + (name,)) for c in groups.get(name) or () if c not in seen + (name,)}
        return children.pop() if len(children) == 1 and None not in children else default
    return shots


def _shot_count(value, path, key):
    if value is None:
        return None
    if not _is_count(value):
        raise ValueError(f"{path}: '{key}' is {_shown(value)}; expected a count of few-shot examples")
    return int(value)


def _version(value) -> str:
    """lm-eval writes versions as numbers (0, 1.0) or strings ("2"); 1.0 and 1 are one version."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _group_roots(groups, path) -> dict:
    """Each grouped task's outermost group, from ``group_subtasks`` ({group: [child, ...]}).
    Every walk up the tree stops at a group seen before, so a cycle is found, not followed."""
    if not groups:
        return {}
    if not isinstance(groups, dict):
        raise ValueError(f"{path}: 'group_subtasks' is {_shown(groups)}; expected {{group: [task, ...]}}")
    parent = {}
    for group, children in groups.items():
        if not isinstance(children, list) or not all(isinstance(c, str) for c in children):
            raise ValueError(f"{path}: 'group_subtasks.{group}' is {_shown(children)}; expected a list of names")
        parent.update((c, group) for c in children if c != group)
    roots = {}
    for name in parent:
        chain = [name]
        while chain[-1] in parent:
            up = parent[chain[-1]]
            if up in chain:
                loop = " -> ".join(chain[chain.index(up):] + [up])
                raise ValueError(f"{path}: 'group_subtasks' has a cycle: {loop}")
            chain.append(up)
        roots[name] = chain[-1]
    return roots


def _task_subtask(name, roots):
    if name.startswith("hendrycksTest-"):
        return "mmlu", name[len("hendrycksTest-"):]
    root = roots.get(name, name)
    return (name, "") if root == name else (root, short_name(name, root))


def _skip_notes(skipped: list, what: str = "metric(s)") -> list[str]:
    if not skipped:
        return []
    shown = "; ".join(skipped[:3]) + (f"; and {len(skipped) - 3} more" if len(skipped) > 3 else "")
    return [f"skipped {len(skipped)} {what} with no finite value: {shown}"]


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_count(value) -> bool:
    return _is_number(value) and value >= 0 and float(value).is_integer()


def _no_number(value) -> bool:
    """lm-eval's ways of writing "no number here": NaN, Infinity, null and "N/A"."""
    if isinstance(value, float):
        return not math.isfinite(value)
    return value is None or value == "N/A"
