"""Import lm-eval's per-sample files (``--log_samples``) as continuous metrics of multiple-choice
tasks: the probability of the right choice, the Brier score, the gold log-probability and bits
per byte, per checkpoint and task, with standard error and n.

lm-eval 0.4 writes, for each task, ``samples_<task>_<date>.jsonl`` beside the run's
``results_<date>.json`` (lm_eval/loggers/evaluation_tracker.py). Each line is one document under
one filter: ``doc_id``, ``doc``, ``target`` (``str`` of the task's ``doc_to_target``: an index or
a choice's text), ``arguments`` (``{"gen_args_<i>": {"arg_0": context, "arg_1": continuation}}``,
one request per choice), ``resps``, ``filtered_resps`` (per choice ``[log-likelihood,
is_greedy]``, written as strings), ``filter``, ``metrics`` and the metric values (``acc``, ...).
The model, revision, shots, task version and groups come from the results file of the same
run (the same ``<date>``); a samples file without it is an error naming the file it expected.
lm-eval 0.4.0-0.4.2 wrote ``<model_args>_<task>.jsonl`` (one JSON array) beside ``results.json``
instead; those are read too.

Files of other task types (generation, single loglikelihood) have no choices to normalise
over: they are skipped, counted and noted in ``df.attrs["notes"]``. Malformed files are errors
naming the file, the line and the key; nothing is written here, so nothing is half-written.
"""

import json
import logging
import math
import re
from pathlib import Path

from emergence import metrics as M
from emergence import schema as S
from emergence import tasks as T
# Shared with the results importer, so that both name checkpoints and tasks the same way.
from emergence.run.importers import (_checkpoint, _checkpoint_index, _group_roots, _read_results, _shown,
                                     _task_subtask, _version, checked_setting, input_files, tidy_frame)

log = logging.getLogger(__name__)

# lm-eval's date id: datetime.now().isoformat() with ':' replaced by '-'.
SAMPLES_NAME = re.compile(r"^samples_(?P<task>.+)_(?P<date>\d{4}-\d{2}-\d{2}T[0-9.\-]+)\.jsonl?$")

# name: (higher is better, chance from the number of choices k, or None)
CONTINUOUS_METRICS = {
    "prob_correct": (True, lambda k: 1.0 / k),
    "brier": (False, lambda k: (k - 1) / k),
    "gold_logprob": (True, None),
    "gold_bpb": (False, None),
}


def import_lmeval_samples(paths, registry=None, family: str | None = None, setting: str = ""):
    """The tidy table of lm-eval per-sample files (files, or folders searched for
    ``samples_*.jsonl``), one row per checkpoint, task, filter and metric of
    :data:`CONTINUOUS_METRICS`: the mean over documents, its standard error and n.

    ``prob_correct`` is the softmax of the choices' log-likelihoods at the gold choice and
    ``brier`` the squared distance of that distribution from the one-hot gold (lm-eval's
    ``brier_score``); their ``chance`` is what uniform guessing scores (mean 1/k, (k-1)/k).
    A metric under a filter other than ``none`` is named like lm-eval's results
    (``prob_correct,<filter>``). Checkpoints are matched to registered families as in
    :func:`emergence.run.importers.import_lmeval`; ``family`` names the family of models no
    registered family lists (else an error: a table without families is one ``analyze`` refuses);
    ``setting`` (``--setting``) names how the files were evaluated, on every row.
    """
    if registry is None:
        from emergence.plugins import collect, plugin_manager

        registry = collect(plugin_manager())
    index = _checkpoint_index(registry)
    rows, skipped, seen, groups = [], [], {}, {}
    for path in _samples_files(paths):
        base, per_filter, leaves = _read_file(path, index, family, skipped)
        for filt, docs in per_filter.items():
            for row in _metric_rows(base, filt, docs):
                key = tuple(row[c] for c in (S.CHECKPOINT, S.TASK, S.SUBTASK, S.METRIC, S.N_SHOT))
                if key in seen:
                    shown = " / ".join(str(k) or "-" for k in key[:4])
                    raise ValueError(f"{path} and {seen[key]} both hold {shown} with {key[4]} shots")
                seen[key] = path
                rows.append(row)
            if base[S.SUBTASK]:
                group = groups.setdefault((base[S.CHECKPOINT], base[S.TASK], filt, base[S.N_SHOT]), {
                    "base": base, "docs": [], "have": set(), "leaves": leaves, "versions": set()})
                group["docs"] += docs
                group["have"].add(base[S.SUBTASK])
                group["versions"].add(base[S.TASK_VERSION])
    rows += _group_rows(groups, skipped)
    df = tidy_frame(rows, (S.FAMILY, S.MODEL, S.STEP, S.TASK, S.SUBTASK, S.METRIC))
    df[S.SETTING] = checked_setting(setting)   # how these files were evaluated, as the caller names it
    df.attrs["notes"] = _notes(skipped)
    for note in df.attrs["notes"]:
        log.warning("%s", note)
    return df


def _read_file(path: Path, index: dict, family: str | None, skipped: list):
    """(the row fields every metric of the file shares, {filter: documents}, the subtasks of its
    task's group) of one samples file, with the metadata of its run's results file."""
    task_name, results_path = _results_path(path)
    data = _read_results(results_path)
    ck = _checkpoint(data, index, results_path)
    if not ck.family and not family:
        raise ValueError(f"{results_path}: no registered family lists {ck.repo}; give its family (--family "
                         "NAME, or family= in Python; `emergence families` lists the registered ones)")
    meta = _task_meta(data, task_name, path, results_path)
    base = {S.FAMILY: ck.family or family, S.MODEL: ck.model, S.CHECKPOINT: ck.name,
            S.PARAMS: ck.params if ck.params is not None else _counted_params(data, results_path),
            S.PARAMS_NONEMBED: ck.params_nonembed, S.TOKENS: ck.tokens, S.STEP: ck.step,
            S.FLOPS: ck.training_flops, S.LOSS: None, S.TASK: meta["task"], S.SUBTASK: meta["subtask"],
            S.TASK_VERSION: meta["version"], S.N_SHOT: meta["n_shot"], S.SETTING: ""}
    return base, _read_samples(path, skipped), meta["leaves"]


def _metric_rows(base: dict, filt: str, docs: list) -> list[dict]:
    return [{**base, S.METRIC: metric if filt == "none" else f"{metric},{filt}", S.VALUE: value, S.STDERR: stderr,
             S.N: n, S.CHANCE: chance, S.METRIC_KIND: T.CONTINUOUS, S.HIGHER_IS_BETTER: CONTINUOUS_METRICS[metric][0]}
            for metric, (value, stderr, n, chance) in _summaries(docs).items()]


def _group_rows(groups: dict, skipped: list) -> list[dict]:
    """The whole task of a group (subtask ""): every document of its subtasks pooled, as
    lm-eval's groups with ``weight_by_size``; only where every subtask the results file lists
    was imported (a mean over some subjects is not the task's)."""
    rows = []
    for (checkpoint, task, filt, _), group in groups.items():
        missing = sorted(group["leaves"] - group["have"])
        if not group["leaves"]:   # a subtask by its name alone (hendrycksTest-*): the group's members are unknown
            continue
        if missing:
            skipped.append(f"{checkpoint} / {task} as a whole ({len(missing)} of its subtasks have no samples "
                           f"file, e.g. {missing[0]})")
            continue
        version = group["versions"].pop() if len(group["versions"]) == 1 else None
        base = {**group["base"], S.SUBTASK: "", S.TASK_VERSION: version}
        rows += _metric_rows(base, filt, group["docs"])
    return rows


def _counted_params(data: dict, path: Path) -> int | None:
    """lm-eval 0.4's ``config.model_num_parameters`` (the loaded model's ``num_parameters()``,
    embeddings included); None where the file has none (older files, -1 for unknown)."""
    count = (data.get("config") or {}).get("model_num_parameters")
    if count is None or count == -1:
        return None
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"{path}: 'config.model_num_parameters' is {_shown(count)}; expected a count")
    return count


def _samples_files(paths) -> list[Path]:
    """Files as given; in folders, ``samples_<task>_<date>.jsonl`` and (lm-eval 0.4.0-0.4.2)
    any ``*.jsonl`` beside a ``results*.json``."""
    def found_in(folder):
        return (f for f in folder.rglob("*.json*") if SAMPLES_NAME.match(f.name)
                or (f.suffix == ".jsonl" and any(f.parent.glob("results*.json"))))

    return input_files(paths, found_in, "lm-eval samples_<task>_<date>.jsonl files")


def _results_path(path: Path) -> tuple[str, Path]:
    """The task of a samples file and the results file of the same run: ``results_<date>.json``
    for ``samples_<task>_<date>.jsonl``; for lm-eval 0.4.0-0.4.2's ``<model_args>_<task>.jsonl``,
    the JSON file beside it whose ``configs`` hold a task the name ends with (the longest)."""
    match = SAMPLES_NAME.match(path.name)
    if match:
        results = path.with_name(f"results_{match['date']}.json")
        if not results.is_file():
            raise FileNotFoundError(f"{path}: no {results.name} beside it; the model, revision and shots of a "
                                    "samples file come from the results file lm-eval wrote with it")
        return match["task"], results
    for results in sorted(path.parent.glob("*.json")):
        tasks = [t for t in _configs(results) if path.stem == t or path.stem.endswith("_" + t)]
        if tasks and results != path:
            return max(tasks, key=len), results
    raise ValueError(f"{path}: not named like lm-eval's per-sample files (samples_<task>_<date>.jsonl), and no "
                     "results JSON beside it lists a task its name ends with")


def _configs(path: Path) -> dict:
    """The ``configs`` of a JSON file that has them, else {} (it is not an lm-eval results file)."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    configs = data.get("configs") if isinstance(data, dict) else None
    return configs if isinstance(configs, dict) else {}


def _task_meta(data: dict, task_name: str, path: Path, results_path: Path) -> dict:
    """Task, subtask, shots and version of one task from its run's results file."""
    configs = data.get("configs") or {}
    if task_name not in data["results"] and task_name not in configs:
        raise ValueError(f"{path}: task {task_name!r} is not in {results_path} (it has "
                         f"{', '.join(sorted(data['results'])) or 'no results'})")
    roots = _group_roots(data.get("group_subtasks"), results_path)
    task, subtask = _task_subtask(task_name, roots)
    groups = data.get("group_subtasks") or {}
    leaves = {_task_subtask(name, roots)[1] for name, root in roots.items() if root == task and name not in groups}
    key, shots = f"n-shot.{task_name}", (data.get("n-shot") or {}).get(task_name)
    if shots is None and isinstance(configs.get(task_name), dict):
        key, shots = f"configs.{task_name}.num_fewshot", configs[task_name].get("num_fewshot")
    if shots is None:
        key, shots = "config.num_fewshot", (data.get("config") or {}).get("num_fewshot")
    if shots is not None and (isinstance(shots, bool) or not isinstance(shots, int) or shots < 0):
        raise ValueError(f"{results_path}: '{key}' is {_shown(shots)}; expected a count")
    version = (data.get("versions") or {}).get(task_name)
    return {"task": task, "subtask": subtask, "n_shot": shots, "leaves": leaves if subtask else set(),
            "version": None if version is None else _version(version)}


def _read_samples(path: Path, skipped: list) -> dict:
    """{filter: [(log-likelihoods, gold, gold continuation), ...]} of a multiple-choice samples
    file; {} (and a note in ``skipped``) for a file of another task type."""
    per_filter, seen = {}, set()
    for line_no, record in _records(path):
        where = f"{path}:{line_no}"
        lls = _choice_logliks(record, where)
        if lls is None and per_filter:
            raise ValueError(f"{where}: 'filtered_resps' is not one [log-likelihood, is_greedy] per choice, "
                             "unlike the documents before it")
        if lls is None:
            skipped.append(f"{path.name} (not multiple choice: no choices to score)")
            return {}
        filt = record.get("filter", "none")
        if not isinstance(filt, str):
            raise ValueError(f"{where}: 'filter' is {_shown(filt)}; expected text")
        doc_id = record.get("doc_id")
        if (filt, repr(doc_id)) in seen:
            raise ValueError(f"{where}: document {doc_id!r} appears twice under filter {filt!r}")
        seen.add((filt, repr(doc_id)))
        continuations = _continuations(record, where)
        if "acc_mutual_info" in (record.get("metrics") or []) and len(lls) % 2 == 0:
            half = len(lls) // 2  # lm-eval appends one unconditional request per choice for mutual information
            lls, continuations = lls[:half], continuations[:half]
        if len(continuations) != len(lls):
            raise ValueError(f"{where}: {len(lls)} responses in 'filtered_resps' but {len(continuations)} "
                             "requests in 'arguments'")
        gold = _gold(record, lls, continuations, where)
        per_filter.setdefault(filt, []).append((lls, gold, continuations[gold]))
    return per_filter


def _records(path: Path):
    """(line number, record) of a samples file: JSON lines, or one JSON array of records."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file (binary?); expected lm-eval per-sample JSON lines") from None
    if text.lstrip().startswith("["):
        try:
            records = list(enumerate(json.loads(text), 1))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not JSON: {e}") from None
    else:
        records = []
        for line_no, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append((line_no, json.loads(line)))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{line_no}: not JSON: {e.msg}") from None
    if not records:
        raise ValueError(f"{path}: no samples")
    for line_no, record in records:
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{line_no}: a sample is {_shown(record)}; expected a JSON object")
        missing = [k for k in ("doc_id", "target", "filtered_resps") if k not in record]
        if missing:
            raise ValueError(f"{path}:{line_no}: no {', '.join(repr(k) for k in missing)}; "
                             "expected lm-eval's per-sample records (written with --log_samples)")
    return records


def _choice_logliks(record: dict, where: str) -> list[float] | None:
    """The choices' log-likelihoods, or None when the responses are not one pair per choice."""
    resps = record["filtered_resps"]
    if not isinstance(resps, list):
        raise ValueError(f"{where}: 'filtered_resps' is {_shown(resps)}; expected a list")
    pairs = [r for r in resps if isinstance(r, (list, tuple)) and len(r) == 2]
    if len(resps) < 2 or len(pairs) != len(resps):
        return None
    lls = []
    for i, (ll, _) in enumerate(pairs):
        try:
            value = float(ll)  # lm-eval writes responses as strings
        except (TypeError, ValueError):
            raise ValueError(f"{where}: 'filtered_resps[{i}][0]' is {_shown(ll)}; expected a log-likelihood") from None
        if math.isnan(value) or value > 1e-6:
            raise ValueError(f"{where}: 'filtered_resps[{i}][0]' is {value}; a log-likelihood is at most 0")
        lls.append(value)
    return lls


def _continuations(record: dict, where: str) -> list[str]:
    """The continuation of each request: ``gen_args_<i>.arg_1`` (or ``[context, continuation]``)."""
    args = record.get("arguments")
    if isinstance(args, dict):
        order = sorted(args, key=lambda k: int(k.rsplit("_", 1)[-1]) if k.rsplit("_", 1)[-1].isdigit() else -1)
        args = [args[k] for k in order]
        args = [[a.get("arg_0"), a.get("arg_1")] if isinstance(a, dict) else a for a in args]
    if not isinstance(args, list) or not all(isinstance(a, (list, tuple)) and len(a) >= 2
                                             and isinstance(a[1], str) for a in args):
        raise ValueError(f"{where}: 'arguments' is {_shown(args)}; expected one (context, continuation) "
                         "per choice")
    return [a[1] for a in args]


def _gold(record: dict, lls: list, continuations: list, where: str) -> int:
    """The gold choice: ``target`` as an index or as a choice's text; where both readings fit
    different choices, the one that agrees with the record's ``acc``."""
    target = record["target"]
    text = str(target).strip()
    if text.startswith("[") and text.endswith("]"):
        raise ValueError(f"{where}: 'target' is {_shown(target)}: several gold answers; only tasks with "
                         "one right choice have a probability of the right choice")
    candidates = {i for i, c in enumerate(continuations) if c.strip() == text}
    if re.fullmatch(r"\d+", text) and int(text) < len(continuations):
        candidates.add(int(text))
    if len(candidates) > 1 and record.get("acc") in (0, 1, 0.0, 1.0):
        pred = M.argmax(lls)
        candidates = {i for i in candidates if (i == pred) == bool(record["acc"])}
    if len(candidates) != 1:
        shown = ", ".join(repr(c) for c in continuations)
        why = "matches no choice" if not candidates else "is ambiguous between an index and a choice's text"
        raise ValueError(f"{where}: 'target' {_shown(target)} {why} (choices: {shown})")
    return candidates.pop()


def _summaries(docs: list) -> dict:
    """{metric: (mean, stderr, n, chance)} over the documents of one task and filter."""
    values = {name: [] for name in CONTINUOUS_METRICS}
    for lls, gold, continuation in docs:
        probs = M.normalised_choice_probs(lls)
        values["prob_correct"].append(probs[gold])
        values["brier"].append(M.brier(probs, gold))
        values["gold_logprob"].append(lls[gold])
        n_bytes = len(continuation.encode("utf-8"))
        values["gold_bpb"].append(M.bits_per_byte(lls[gold], n_bytes) if n_bytes else math.nan)
    out = {}
    for name, vals in values.items():
        mean, stderr, n, _ = M.mean_stderr(vals)
        if n == 0:
            continue
        rule = CONTINUOUS_METRICS[name][1]
        chance = math.fsum(rule(len(lls)) for lls, _, _ in docs) / len(docs) if rule else None
        out[name] = (mean, stderr, n, chance)
    return out


def _notes(skipped: list) -> list[str]:
    if not skipped:
        return []
    return [f"not imported: {'; '.join(skipped)}"]
