"""What a metric is: its kind and direction as the table declares them, else the name rules.

A task declares each metric's kind, direction and chance (:class:`emergence.tasks.Metric`);
the store and the importers write them into the tidy table (``metric_kind``,
``higher_is_better``, ``chance``) and the analysis reads them there. Tables made elsewhere or
earlier (old run directories, published results) may leave them empty; then, and only then,
the name rules below decide. This module is the one place such rules live, together with the
one table of chance levels of well-known benchmarks (by task name).
"""

import re

import pandas as pd

from emergence import schema as S
from emergence.tasks import CONTINUOUS, DISCONTINUOUS, METRIC_KINDS

__all__ = ["CONTINUOUS", "DISCONTINUOUS", "METRIC_KINDS", "CHANCE_TABLE", "kinds_of", "directions_of",
           "metric_kind", "metric_higher_is_better", "metric_is_proportion", "looks_like_accuracy",
           "task_chance"]

# Chance accuracy of common benchmarks (1 / number of choices; 0 for a free-form answer), by task
# name or its prefix. ARC has a few 3- and 5-option questions among the 4-option ones, so 0.25
# is within a fraction of a percent.
CHANCE_TABLE = {
    **dict.fromkeys(["arc_easy", "arc_challenge", "arc_c", "arc_e", "openbookqa", "openbook_qa", "mmlu",
                     "hendryckstest", "hellaswag", "sciq", "logiqa", "logi_qa", "race", "swag", "headqa",
                     "medqa", "medmcqa"], 0.25),
    **dict.fromkeys(["piqa", "winogrande", "winograd", "xwinograd", "wsc", "wsc273", "boolq", "copa", "rte",
                     "wic", "sst2", "mrpc", "qnli", "qqp"], 0.5),
    **dict.fromkeys(["csqa", "commonsense_qa", "commonsenseqa", "mathqa", "math_qa"], 0.2),
    **dict.fromkeys(["socialiqa", "social_iqa", "siqa", "cb", "anli", "mnli"], 1 / 3),
    **dict.fromkeys(["lambada", "gsm8k", "triviaqa", "nq_open", "squad", "drop", "humaneval", "jeopardy",
                     "arithmetic", "coqa"], 0.0),
}


def kinds_of(df: pd.DataFrame, kinds: dict | None = None) -> dict:
    """{metric: kind} for the metrics of ``df``: ``kinds`` first, then the table's
    ``metric_kind`` column (its first value per metric), then :func:`metric_kind`'s name rule
    (None where nothing is known). Give it the rows of one task (and sub-task) when tasks may
    declare the same metric name differently."""
    declared = _declared(df, S.METRIC_KIND)
    return {m: (kinds or {}).get(m, declared.get(m)) or metric_kind(m) for m in df[S.METRIC].unique()}


def directions_of(df: pd.DataFrame) -> dict:
    """{metric: higher is better} for the metrics of ``df``: the table's ``higher_is_better``
    column (its first value per metric), else :func:`metric_higher_is_better`'s name rule."""
    declared = _declared(df, S.HIGHER_IS_BETTER)
    return {m: bool(declared[m]) if m in declared else metric_higher_is_better(m) for m in df[S.METRIC].unique()}


# ---- the name rules: only for metrics whose table says nothing ----------------------------

_DISCONTINUOUS = {"exact_match", "acc", "gold_greedy", "acc_norm", "acc_len_norm", "mc1"}
_CONTINUOUS = {"gold_logprob", "gold_bpb", "gold_token_prob", "prob_correct", "brier", "edit_distance",
               "token_edit_similarity", "char_acc", "digit_acc", "step_acc", "item_acc", "bits_per_byte",
               "nats_per_token", "logprob_correct", "bpb", "ppl", "perplexity", "mc2", "bleu"}
_LOWER_IS_BETTER = {"brier", "edit_distance", "gold_bpb", "bits_per_byte", "nats_per_token", "ppl",
                    "perplexity", "word_perplexity", "byte_perplexity", "bpb", "loss"}
_PROPORTIONS = {"exact_match", "gold_greedy", "prob_correct", "token_edit_similarity",
                "gold_token_prob", "char_acc", "digit_acc", "step_acc", "item_acc", "mc1", "mc2"}


def metric_kind(metric: str, kinds: dict | None = None) -> str | None:
    """Name rule: 'discontinuous' (exact match, multiple-choice grade: acc*, gold_greedy),
    'continuous' (log-probabilities, bits per byte, Brier, edit distance, per-part accuracies
    ...), or None when neither the mapping nor the rule knows. '[rc]'-style suffixes are ignored."""
    if kinds and metric in kinds:
        return kinds[metric]
    base = str(metric).split("[")[0]
    if base in _DISCONTINUOUS:
        return DISCONTINUOUS
    if base in _CONTINUOUS or base.endswith(("_bpb", "_logprob", "_prob", "perplexity", "_ppl")):
        return CONTINUOUS
    return None


def metric_higher_is_better(metric: str) -> bool:
    """Name rule: bpb, perplexity, Brier, edit distance, losses are lower-is-better; any other
    name is taken as higher-is-better."""
    base = str(metric).split("[")[0]
    return not (base in _LOWER_IS_BETTER or base.endswith(("_ppl", "perplexity", "_loss", "bpb")))


def metric_is_proportion(metric: str) -> bool:
    """Name rule: accuracies (acc*, *_acc), exact match and probabilities live in [0, 1]."""
    base = str(metric).split("[")[0]
    return base.startswith("acc") or base.endswith("_acc") or base in _PROPORTIONS


def looks_like_accuracy(metric: str) -> bool:
    """Accuracy-like metric names: acc, acc_norm, exact_match, em, prob_correct, pass@k, ...

    Not log-probabilities, losses, perplexities, or lm-eval ``metric,filter`` names marked
    ``norm`` (chance-normalised scores, which can be negative)."""
    parts = str(metric).lower().split(",")
    if "norm" in parts[1:]:
        return False
    base = re.sub(r"\[.*?\]", "", parts[0])
    tokens = set(re.split(r"[^a-z0-9@]+", base.replace("_", " ")))
    if tokens & {"log", "logprob", "loss", "nll", "ppl", "perplexity", "bpb", "gain"}:
        return False
    return bool(tokens & {"acc", "accuracy", "em", "prob"}) or "exact_match" in base \
        or base.startswith("pass@")


def task_chance(task: str) -> float | None:
    """Chance accuracy of a well-known task from :data:`CHANCE_TABLE`, by its name or the
    longest key it starts with ("arc_challenge" before "arc_c"); None when none matches."""
    name = re.sub(r"[^a-z0-9]+", "_", str(task).lower()).strip("_")
    for key in _KEYS_LONGEST_FIRST:
        if name == key or name.startswith(key + "_"):
            return CHANCE_TABLE[key]
    return None


_KEYS_LONGEST_FIRST = sorted(CHANCE_TABLE, key=len, reverse=True)


def _declared(df, column) -> dict:
    """{metric: the first non-empty value of ``column``}, whole-task rows (subtask "") before
    sub-task rows (a task may score its parts under a name it also uses for the whole)."""
    if column not in df.columns:
        return {}
    values = df[column]
    have = df.loc[values.notna() & (values.astype(str) != "")]
    if S.SUBTASK in have.columns:
        have = have.sort_values(S.SUBTASK, key=lambda s: s.fillna("") != "", kind="stable")
    return dict(have[[S.METRIC, column]].drop_duplicates(S.METRIC).itertuples(index=False, name=None))
