"""Ruan et al. (2024)'s own held-out prediction of the 'emergent' BIG-bench tasks (their Sec. 4.1),
done as the paper's released notebook does it (``base_llm_emergent_capability.ipynb`` and
``utils/`` of github.com/ryoungj/ObsScaling at 4d6e1e4, the commit of the reference data), so
the project's predictors can be scored on the paper's split beside the paper's procedure.

Their procedure, per task:
- models: their evaluated base-model families with published compute (the notebook's
  ``filter_model_family=EVAL_BASE_MODEL_WITH_FLOPS_FAMILIES``) that have the task's score;
- split: training FLOPs <= 8.4e22 (Llama-2 7B) fit, the rest are predicted (a model without a
  FLOPs figure falls into the predicted set, as ``split_data`` does); 2.2e22 for the arithmetic
  tasks, "to make the task more challenging";
- target: the min-max normalised score (score - random) / (perfect - random), random 0.25 for
  Persian QA and 0 otherwise, perfect 100 for BLEU and 1 otherwise;
- inputs: the eight standard benchmarks (GSM8K left out for arithmetic), missing scores imputed by
  a one-component PCA of the standardised training matrix (clipped to [0, 1]), then a PCA of the
  unstandardised training matrix and its top 3 components;
- fit: y = sigmoid(w . x + b) by Huber loss (delta 1: least squares for y in [0, 1]) with BFGS
  from w = 0.01, b = 0; the compute baselines are the same sigmoid on log FLOPs and log size;
- error: mean squared error of the normalised score over the predicted models.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from emergence import schema as S

# EVAL_BASE_MODEL_WITH_FLOPS_FAMILIES of utils/constants.py at 4d6e1e4 (Mistral, Mixtral and
# Qwen2 removed from the evaluated families: no published compute).
PAPER_FAMILIES = ("Llama-2", "Llama", "Llama-3", "Llama-3.1", "Qwen1.5", "Qwen", "Yi", "Yi-1.5", "Gemma",
                  "Gemma-2", "Falcon", "Phi", "Pythia", "BLOOM", "GPT-Neo/J", "OPT", "MPT", "XGLM", "CodeLlama",
                  "StarCoder", "StarCoder2", "DeepSeek-Coder", "DeepSeek-V2", "DeepSeek-Coder-V2", "Jamba")
BENCHMARKS = ("MMLU", "ARC-C", "HellaSwag", "Winograd", "TruthfulQA", "GSM8K", "XWinograd", "HumanEval")
NO_GSM8K = tuple(b for b in BENCHMARKS if b != "GSM8K")
CUTOFF, ARITHMETIC_CUTOFF = 84e21, 22e21
N_COMPONENTS = 3
INPUTS = ("components", "log_flops", "log_size")   # the notebook's PC-3, FLOPs and model-size panels


@dataclass(frozen=True)
class PaperTask:
    """One target of the notebook, with its own normalisation, cutoff and benchmark inputs."""

    task: str
    metric: str
    random: float
    perfect: float
    cutoff: float
    benchmarks: tuple
    headline: bool     # shown in the paper; the others are the notebook's commented-out "additional tasks"


def paper_tasks() -> list:
    arith = dict(cutoff=ARITHMETIC_CUTOFF, benchmarks=NO_GSM8K)
    other = dict(cutoff=CUTOFF, benchmarks=BENCHMARKS)
    return [PaperTask("word_unscrambling", "exact_match", 0.0, 1.0, headline=True, **other),
            PaperTask("parsinlu_qa", "acc", 0.25, 1.0, headline=True, **other),
            PaperTask("arithmetic_3ds", "acc", 0.0, 1.0, headline=True, **arith),
            PaperTask("arithmetic_2dm", "acc", 0.0, 1.0, headline=True, **arith),
            PaperTask("arithmetic_3da", "acc", 0.0, 1.0, headline=False, **arith),
            PaperTask("arithmetic_2da", "acc", 0.0, 1.0, headline=False, **arith),
            PaperTask("ipa_transliterate", "bleu", 0.0, 100.0, headline=False, **other)]


def leaderboard_tasks(frame: pd.DataFrame) -> list:
    """The Open LLM Leaderboard v2 scores of the same models (already normalised from chance) as
    targets of the same procedure: a development set outside the paper's Sec. 4.1."""
    names = sorted(c for c in frame.columns if isinstance(c, str) and c.startswith("leaderboard_"))
    return [PaperTask(*c.split("/"), 0.0, 1.0, CUTOFF, BENCHMARKS, headline=False) for c in names]


def model_matrix(df: pd.DataFrame) -> pd.DataFrame:
    """One row per model of the paper's families: family, flops, params, each benchmark and each
    task's score (columns ``task/metric``)."""
    d = df[df[S.FAMILY].isin(PAPER_FAMILIES)]
    meta = d.groupby(S.MODEL)[[S.FAMILY, S.FLOPS, S.PARAMS]].first()
    bench = d[d[S.TASK].isin(BENCHMARKS)].pivot_table(index=S.MODEL, columns=S.TASK, values=S.VALUE, aggfunc="first")
    tasks = d[~d[S.TASK].isin(BENCHMARKS)]
    scores = tasks.pivot_table(index=S.MODEL, columns=tasks[S.TASK] + "/" + tasks[S.METRIC], values=S.VALUE,
                               aggfunc="first")
    return meta.join(bench.reindex(columns=list(BENCHMARKS))).join(scores)


def paper_split(frame: pd.DataFrame, t: PaperTask):
    """(train, test) boolean masks over ``frame``'s models that have the task's score."""
    scored = frame[f"{t.task}/{t.metric}"].notna().to_numpy()
    weak = (frame[S.FLOPS] <= t.cutoff).to_numpy()   # NaN compares False: no FLOPs -> predicted
    return scored & weak, scored & ~weak


def paper_predictions(frame: pd.DataFrame, t: PaperTask, inputs: str = "components") -> pd.DataFrame:
    """The notebook's prediction of every held-out model: model, family, flops, the normalised
    actual and predicted scores, and the training models' count."""
    train, test = paper_split(frame, t)
    y = (frame[f"{t.task}/{t.metric}"].to_numpy(float) - t.random) / (t.perfect - t.random)
    if inputs == "components":
        bench = frame[list(t.benchmarks)].to_numpy(float)
        tr, te = _impute(bench[train], bench[test])
        x_train, x_test = _components(tr, te, N_COMPONENTS)
    elif inputs in ("log_flops", "log_size"):
        col = S.FLOPS if inputs == "log_flops" else S.PARAMS
        unit = 1e21 if inputs == "log_flops" else 1e9     # the paper's FLOPs (1E21) and Model Size (B)
        x = np.log(frame[col].to_numpy(float) / unit + 1e-9)[:, None]
        train, test = train & np.isfinite(x[:, 0]), test & np.isfinite(x[:, 0])   # rows without x are dropped
        x_train, x_test = x[train], x[test]
    else:
        raise ValueError(f"inputs={inputs!r}: one of {', '.join(INPUTS)}")
    coef = _fit_sigmoid(x_train, y[train])
    out = frame.loc[test, [S.FAMILY, S.FLOPS]].reset_index()
    return out.assign(actual=y[test], predicted=_sigmoid(x_test, coef), n_train=int(train.sum()))


def paper_errors(frame: pd.DataFrame, tasks=None, among: dict | None = None) -> pd.DataFrame:
    """Per task (``paper_tasks()`` by default) and input, on a ``model_matrix`` frame: training and
    held-out counts, MSE and MAE of the normalised score. ``among``: task -> the held-out models to
    score (e.g. those another predictor could predict too); all of them otherwise."""
    rows = []
    for t in paper_tasks() if tasks is None else tasks:
        if f"{t.task}/{t.metric}" not in frame:
            continue
        for inputs in INPUTS:
            p = paper_predictions(frame, t, inputs)
            if among is not None:
                p = p[p[S.MODEL].isin(among.get(t.task, ()))]
            err = p["predicted"] - p["actual"]
            rows.append({"task": t.task, "metric": t.metric, "headline": t.headline, "cutoff": t.cutoff,
                         "inputs": inputs, "n_train": int(p["n_train"].iloc[0]) if len(p) else 0, "n_test": len(p),
                         "mse": float(np.mean(err ** 2)) if len(p) else np.nan,
                         "mae": float(np.mean(np.abs(err))) if len(p) else np.nan})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- the notebook's steps

def _impute(train, test, max_iter=1000, tol=1e-4):
    """``pca_impute(n_components=1, boundary=[0, 1])``: standardise on the training rows, start
    from the mean, replace missing cells by a rank-1 PCA reconstruction until it stops moving;
    the test rows are filled by the last training PCA."""
    mean, sd = np.nanmean(train, axis=0), np.nanstd(train, axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    z_train, z_test = (train - mean) / sd, (test - mean) / sd
    miss_train, miss_test = np.isnan(z_train), np.isnan(z_test)
    filled = np.where(miss_train, 0.0, z_train)
    for _ in range(max_iter):
        centre, basis = _pca(filled, 1)
        back = (filled - centre) @ basis.T @ basis + centre
        if np.allclose(filled, back, atol=tol):
            break
        filled[miss_train] = back[miss_train]
    test_filled = np.where(miss_test, 0.0, z_test)
    for _ in range(max_iter):
        back = (test_filled - centre) @ basis.T @ basis + centre
        if np.allclose(test_filled, back, atol=tol):
            break
        test_filled[miss_test] = back[miss_test]
    return (np.clip(filled * sd + mean, 0.0, 1.0), np.clip(test_filled * sd + mean, 0.0, 1.0))


def _components(train, test, k):
    centre, basis = _pca(train, k)
    return (train - centre) @ basis.T, (test - centre) @ basis.T


def _pca(x, k):
    """(centre, top-k components) as scikit-learn's PCA gives them: sign fixed so that each
    component's largest absolute loading is positive."""
    centre = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - centre, full_matrices=False)
    vt = vt[:k]
    signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(axis=1)])
    return centre, vt * signs[:, None]


def _sigmoid(x, coef):
    return 1.0 / (1.0 + np.exp(-(x @ coef[1:] + coef[0])))


def _fit_sigmoid(x, y, delta=1.0):
    def huber(coef):
        with np.errstate(over="ignore"):
            r = np.abs(_sigmoid(x, coef) - y)
        return np.where(r <= delta, 0.5 * r ** 2, delta * (r - 0.5 * delta)).sum()

    p0 = np.concatenate([[0.0], np.full(x.shape[1], 1e-2)])
    return minimize(huber, p0, method="BFGS").x
