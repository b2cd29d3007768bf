"""Import BIG-bench per-model score files (``scores_<family>_<model>.json`` in a task's
``results/`` folder) as the tidy table: the canonical data of the emergence literature.

BIG-bench's ``evaluate_task.py`` writes ``dataclasses.asdict(ResultsFileData)``
(bigbench/api/results.py): ``scores``, a list of ``ScoreData`` (``score_dict`` {metric: value},
``preferred_score``, ``number_of_shots``, ``low_score``, ``high_score``,
``subtask_description``), ``task`` {``task_name``}, ``model`` (``ModelData``: ``model_family``,
``model_name``, ``total_params``, ``non_embedding_params``,
``flop_matched_non_embedding_params``, ``training_batch_size``, ``training_steps``, ...) and
``queries``. Values are as the task scored them (multiple_choice_grade in [0, 1]); BIG-bench's
own loader multiplies some by 100 when it reads them, this importer does not.

Rows: family = model_family, model = checkpoint = model_name, params = total_params,
params_nonembed = non_embedding_params, step = training_steps; task = the BIG-bench task,
subtask = ``subtask_description`` without its ``<task>:`` prefix ("" for the task itself, i.e.
the aggregate entry BIG-bench adds over the subtasks); metric = each key of ``score_dict``;
n_shot = number_of_shots (empty where it is -1, BIG-bench's "not applicable"). ``chance`` is
``low_score`` for a preferred ``multiple_choice_grade``, where BIG-bench computes it as the score
of random guessing (the mean of 1/choices, bigbench/api/json_task.py); elsewhere low_score is
only the bottom of a score range (0 for BLEU, -10 for log-likelihoods), not chance, and is not
used. Errors name the file and the key; non-finite scores are skipped with a note.
"""

import json
import logging
import math
from pathlib import Path

from emergence import schema as S
from emergence import tasks as T
from emergence.run.importers import _is_number, _shown, _skip_notes, input_files, tidy_frame

log = logging.getLogger(__name__)

# BIG-bench's built-in metrics (bigbench/api/json_task.py): kind and whether higher is better.
# The direction of the calibration metrics is stated here because their SCORE_RANGES ([0, 1])
# say where scores lie, not which end is good. Other names (programmatic tasks' own metrics)
# take the direction of low_score -> high_score when preferred, else the analysis's name rules.
METRICS = {
    "multiple_choice_grade": (T.DISCONTINUOUS, True),
    "exact_str_match": (T.DISCONTINUOUS, True),
    "case_insensitive_str_match": (T.DISCONTINUOUS, True),
    "numeric_match_with_0_1_relative_error": (T.DISCONTINUOUS, True),
    "macro_f1": (None, True),
    "calibration_multiple_choice_brier_score": (T.CONTINUOUS, False),
    "expected_calibration_error": (T.CONTINUOUS, False),
    "weighted_log_probabilities": (T.CONTINUOUS, True),
    "weighted_probabilities": (T.CONTINUOUS, True),
    "log_likelihood": (T.CONTINUOUS, True),
    "bleu": (T.CONTINUOUS, True),
    "bleurt": (T.CONTINUOUS, True),
    "rouge1": (T.CONTINUOUS, True),
    "rouge2": (T.CONTINUOUS, True),
    "rougeLsum": (T.CONTINUOUS, True),
    "sequence_f1": (T.CONTINUOUS, True),
    "normalized_aggregate_score": (None, True),
}
PROPORTIONS = ("multiple_choice_grade", "exact_str_match", "case_insensitive_str_match",
               "numeric_match_with_0_1_relative_error")
RANDOM_BASELINE = "multiple_choice_grade"   # the preferred score whose low_score is chance


def import_bigbench(paths):
    """The tidy table of BIG-bench score files (files, or folders searched for
    ``scores_*.json``: a BIG-bench checkout's ``bigbench/benchmark_tasks`` works)."""
    rows, seen, skipped = [], {}, []
    for path in _score_files(paths):
        data = _read(path)
        model = _model(data, path)
        task = _task_name(data, path)
        for i, entry in enumerate(data["scores"]):
            for row in _entry_rows(entry, f"scores[{i}]", task, path, skipped):
                key = (model["family"], model["model"], task, row[S.SUBTASK], row[S.METRIC], row[S.N_SHOT])
                if key in seen:
                    raise ValueError(f"{path} and {seen[key]} both hold {model['family']} / {model['model']} / "
                                     f"{task} / {row[S.SUBTASK] or '-'} / {row[S.METRIC]} with {row[S.N_SHOT]} shots")
                seen[key] = f"{path} ({row.pop('_where')})"
                rows.append({S.FAMILY: model["family"], S.MODEL: model["model"], S.CHECKPOINT: model["model"],
                             S.PARAMS: model["params"], S.PARAMS_NONEMBED: model["params_nonembed"],
                             S.TOKENS: None, S.STEP: model["step"], S.FLOPS: None, S.LOSS: None, S.TASK: task,
                             S.STDERR: None, S.N: None, S.TASK_VERSION: None, S.SETTING: "", **row})
    df = tidy_frame(rows, (S.FAMILY, S.PARAMS, S.MODEL, S.TASK, S.SUBTASK, S.N_SHOT, S.METRIC))
    df.attrs["notes"] = _skip_notes(skipped, "score(s)")
    for note in df.attrs["notes"]:
        log.warning("%s", note)
    return df


def _score_files(paths) -> list[Path]:
    return input_files(paths, lambda folder: folder.rglob("scores_*.json"), "BIG-bench scores_*.json files")


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file (binary?); expected a BIG-bench scores JSON file") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON: {e}") from None
    if not isinstance(data, dict) or "scores" not in data or "model" not in data:
        raise ValueError(f"{path}: not a BIG-bench scores file (expected keys 'scores' and 'model')")
    if not isinstance(data["scores"], list):
        raise ValueError(f"{path}: 'scores' is {_shown(data['scores'])}; expected a list of score entries")
    return data


def _model(data: dict, path: Path) -> dict:
    model = data["model"]
    if not isinstance(model, dict):
        raise ValueError(f"{path}: 'model' is {_shown(model)}; expected BIG-bench's model data")
    for key in ("model_family", "model_name"):
        if not isinstance(model.get(key), str) or not model[key].strip():
            raise ValueError(f"{path}: 'model.{key}' is {_shown(model.get(key))}; expected a name")
    return {"family": model["model_family"].strip(), "model": model["model_name"].strip(),
            "params": _count(model, "total_params", path),
            "params_nonembed": _count(model, "non_embedding_params", path),
            "step": _count(model, "training_steps", path)}


def _count(model: dict, key: str, path: Path) -> int | None:
    value = model.get(key)
    if value is None:
        return None
    if not _is_number(value) or value < 0:
        raise ValueError(f"{path}: 'model.{key}' is {_shown(value)}; expected a count")
    # BIG-bench writes 0 where a count is not known; some model cards give averaged (fractional)
    # step counts, as ModelData's docstring allows.
    return round(value) if value > 0 else None


def _task_name(data: dict, path: Path) -> str:
    """``task.task_name``, else the task folder (``<task>/results/scores_*.json``)."""
    task = data.get("task")
    name = task.get("task_name") if isinstance(task, dict) else None
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ValueError(f"{path}: 'task.task_name' is {_shown(name)}; expected a name")
    if name:
        return name.strip()
    if path.parent.name == "results" and path.parent.parent.name:
        return path.parent.parent.name
    raise ValueError(f"{path}: no 'task.task_name' and not in a <task>/results/ folder: the task is unknown")


def _entry_rows(entry, where: str, task: str, path: Path, skipped: list) -> list[dict]:
    """One row per metric of a ScoreData entry."""
    if not isinstance(entry, dict):
        raise ValueError(f"{path}: '{where}' is {_shown(entry)}; expected a score entry")
    for key in ("score_dict", "preferred_score", "number_of_shots", "low_score", "high_score"):
        if key not in entry:
            raise ValueError(f"{path}: '{where}' has no '{key}'")
    scores, preferred = entry["score_dict"], entry["preferred_score"]
    if not isinstance(scores, dict) or not scores:
        raise ValueError(f"{path}: '{where}.score_dict' is {_shown(scores)}; expected {{metric: score}}")
    if not isinstance(preferred, str) or preferred not in scores:
        raise ValueError(f"{path}: '{where}.preferred_score' is {_shown(preferred)}; expected one of "
                         f"{sorted(scores)}")
    shots = entry["number_of_shots"]
    if isinstance(shots, bool) or not isinstance(shots, int) or shots < -1:
        raise ValueError(f"{path}: '{where}.number_of_shots' is {_shown(shots)}; expected a count (or -1)")
    low, high = (_number(entry[k], f"{where}.{k}", path) for k in ("low_score", "high_score"))
    if low == high:
        raise ValueError(f"{path}: '{where}' has low_score = high_score = {low}; they must differ")
    subtask = _subtask(entry.get("subtask_description", ""), task, f"{where}.subtask_description", path)
    rows = []
    for metric, value in scores.items():
        if _no_number(value):
            skipped.append(f"{path}: {where}.score_dict.{metric} = {value!r}")
            continue
        value = _number(value, f"{where}.score_dict.{metric}", path)
        if metric in PROPORTIONS and not 0 <= value <= 1:
            raise ValueError(f"{path}: '{where}.score_dict.{metric}' is {value}; expected a proportion in [0, 1] "
                             "(a file saved after BIG-bench's x100 renormalisation?)")
        kind, better = METRICS.get(metric, (None, (high > low) if metric == preferred else None))
        rows.append({S.SUBTASK: subtask, S.METRIC: metric, S.VALUE: value, S.N_SHOT: None if shots == -1 else shots,
                     S.CHANCE: low if metric == preferred == RANDOM_BASELINE else None,
                     S.METRIC_KIND: kind, S.HIGHER_IS_BETTER: better, "_where": where})
    return rows


def _subtask(description, task: str, where: str, path: Path) -> str:
    if not isinstance(description, str):
        raise ValueError(f"{path}: '{where}' is {_shown(description)}; expected text")
    description = description.strip()
    if description in ("", task):
        return ""
    return description[len(task) + 1:] if description.startswith(task + ":") else description


def _number(value, where: str, path: Path) -> float:
    if not _is_number(value):
        raise ValueError(f"{path}: '{where}' is {_shown(value)}; expected a number")
    return float(value)


def _no_number(value) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))
