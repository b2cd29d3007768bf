"""The predictors of the backtest (``analysis.backtest``) and their contract: each a function
``Problem -> Forecast`` that fits on ``problem.train`` / ``problem.history`` and predicts
``problem.test``, registered in ``PREDICTORS``. Intervals come from each predictor's own
bootstrap (``problem.n_boot`` draws of its first step: the loss law's refits, or resampled models). A predictor that cannot run raises
``CannotPredict`` with the reason.

- ``two_step``: loss from (N, D), accuracy as a sigmoid of that loss (Bhagia et al. 2024); the
  loss is the task's own (bits per byte of the answer) when the table has it, else the model's.
- ``power_law``: log(-log q) linear in log compute, q the accuracy above chance (Krajewski et al.
  2025; Hu et al. 2024's task scaling law).
- ``loss_to_loss``: the model's loss from (N, D), the task loss from it by a shifted power law
  (Brandfonbrener et al. 2024), then accuracy by the sigmoid.
- ``flp``: loss from compute, accuracy linear in loss fitted only on checkpoints past the task's
  onset (Chen et al. 2024).
- ``onset``: the emergence verdict on the loss axis (``verdicts.classify``); its threshold model
  (or best smooth fit) at the loss the law predicts (``analysis.onset``'s predictor).
- ``obs_scaling``: principal components of standard benchmark scores, accuracy a sigmoid of
  them (Ruan et al. 2024); ``obs_compute``: the same components predicted from log compute and a
  per-family compute efficiency, for targets whose benchmarks are not known yet.
"""

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import OptimizeWarning, curve_fit

from emergence import schema as S
from emergence.analysis.scaling import FitError, fit_chinchilla, fit_size_law

ONSET_MARGIN = 0.05    # FLP: a checkpoint is past the onset above chance + 5% of the room above chance
SKIP_FRACTION = 0.1    # the sigmoid's fit drops each run's first 10% of steps (Bhagia et al.: noisy start)
N_COMPONENTS = 3       # observational scaling: Ruan et al. use the top 3 principal components
LEVEL = 0.9


class CannotPredict(ValueError):
    """A predictor cannot run on a problem; the message is the row's reason."""


@dataclass(frozen=True, eq=False)
class Problem:
    """One curve to predict. Frames have one row per model (``train``, ``test``: final checkpoints)
    or per checkpoint (``history``: every checkpoint of the training models), with columns model,
    params, tokens, flops, loss, step, value and task_loss (NaN where the table has none)."""

    group: str
    task: str
    subtask: str
    metric: str
    chance: float
    train: pd.DataFrame
    test: pd.DataFrame
    history: pd.DataFrame
    benchmarks: pd.DataFrame | None = None   # model x standard benchmark scores, for observational scaling
    n_boot: int = 20
    seed: int = 0
    cache: dict = field(default_factory=dict)  # fits shared by the problems of one split (the loss law)


@dataclass(frozen=True)
class Forecast:
    """Predictions for ``problem.test`` rows, bootstrap draws (rows) and a note ('' when clean)."""

    predicted: np.ndarray
    draws: np.ndarray | None = None
    note: str = ""


def compute_of(frame) -> pd.Series:
    """Training compute per row: the table's flops when every row has them, else 6 N D for all
    (one convention across the models compared)."""
    flops = pd.to_numeric(frame[S.FLOPS], errors="coerce") if S.FLOPS in frame else None
    if flops is not None and flops.notna().all():
        return flops
    return 6 * pd.to_numeric(frame[S.PARAMS], errors="coerce") * pd.to_numeric(frame[S.TOKENS], errors="coerce")


def two_step(p: Problem) -> Forecast:
    col, note = _intermediate(p)
    law = _law(p, col)
    x_hat, x_draws = _law_at(law, p.test)
    link = _sigmoid_link(p, col)
    return Forecast(_clip(link(x_hat)), _clip(link(x_draws)), _join(note, law.reason))


def power_law(p: Problem) -> Forecast:
    c_train, c_test = (np.log(c) for c in _compute_split(p))
    z = _loglog(p.train[S.VALUE].to_numpy(float), p.chance)
    ok = np.isfinite(c_train) & np.isfinite(z)
    if ok.sum() < 3 or np.ptp(c_train[ok]) == 0:
        raise CannotPredict(f"{int(ok.sum())} training models with compute (flops, or params and tokens): "
                            "a power law in compute needs 3 at 2 or more compute levels")
    # a covariance needs 5 points (numpy scales it by n - 4); with fewer there are no draws
    x_ok, z_ok = c_train[ok], z[ok]
    coef, cov = np.polyfit(x_ok, z_ok, 1, cov=True) if ok.sum() > 4 else (np.polyfit(x_ok, z_ok, 1), None)
    draws = None
    if cov is not None and p.n_boot and np.all(np.isfinite(cov)):
        draws = np.random.default_rng(p.seed).multivariate_normal(coef, cov, size=p.n_boot)
        draws = np.stack([_from_loglog(d, c_test, p.chance) for d in draws])
    return Forecast(_from_loglog(coef, c_test, p.chance), draws)


def loss_to_loss(p: Problem) -> Forecast:
    hist = _history(p, S.LOSS, "task_loss")
    if len(hist) < 4:
        no_metric = p.history["task_loss"].isna().all()
        raise CannotPredict("no task-loss metric in the table (task_loss=...): needs the model's and the "
                            "task's loss on 4 or more checkpoints" if no_metric
                            else f"{len(hist)} checkpoints with both the model's and the task's loss: needs 4")
    law = _law(p, S.LOSS)
    l_hat, l_draws = _law_at(law, p.test)
    floor = law.params.get("E", law.params.get("L_inf", 0.0))
    shift = min(floor, 0.99 * float(hist[S.LOSS].min()))   # the shift must stay below every observed loss
    tl = hist["task_loss"].to_numpy(float)
    x = hist[S.LOSS].to_numpy(float) - shift

    def shifted(v, k, kappa, e):
        return k * np.power(np.maximum(v, 1e-12), kappa) + e

    try:
        (k, kappa, e), _ = curve_fit(shifted, x, tl, p0=[float(np.median(tl / x)), 1.0, 0.0],
                                     bounds=([1e-9, 0.05, 0.0], [np.inf, 10.0, max(float(tl.min()), 1e-9)]),
                                     maxfev=20000)
    except (RuntimeError, ValueError) as err:
        raise CannotPredict(f"shifted power law of task loss on loss failed: {err}") from err
    link = _sigmoid_link(p, "task_loss")

    def chain(loss):
        return _clip(link(shifted(np.asarray(loss, float) - shift, k, kappa, e)))
    return Forecast(chain(l_hat), None if l_draws is None else chain(l_draws), law.reason)


def flp(p: Problem) -> Forecast:
    col, note = _intermediate(p, prefer=S.LOSS)
    hist = _history(p, col)
    past = hist[hist[S.VALUE] > p.chance + ONSET_MARGIN * (1 - p.chance)]
    if len(past) < 3 or past[col].nunique() < 3:
        raise CannotPredict(f"{len(past)} checkpoints past the onset (accuracy above chance + "
                            f"{ONSET_MARGIN:.0%} of the room): the line needs 3")
    c_train, c_test = _compute_split(p)
    y = p.train[col].to_numpy(float)
    ok = np.isfinite(c_train) & np.isfinite(y)
    if ok.sum() < 4:
        raise CannotPredict(f"{int(ok.sum())} training models with compute and {col}: the loss law needs 4")
    key = ("compute", col, tuple(sorted(p.train[S.MODEL]))) if col == S.LOSS else None
    try:
        law = p.cache[key] if key in p.cache else fit_size_law(c_train[ok], y[ok], n_boot=p.n_boot, seed=p.seed,
                                                                level=LEVEL)
    except FitError as err:
        raise CannotPredict(f"loss-from-compute law: {err}") from err
    if key is not None:
        p.cache[key] = law
    slope, icpt = np.polyfit(past[col].to_numpy(float), past[S.VALUE].to_numpy(float), 1)
    l_hat = law.predict(c_test)
    draws = law.predict_draws(c_test) if law.draws is not None else None
    return Forecast(_clip(icpt + slope * l_hat), None if draws is None else _clip(icpt + slope * draws),
                    _join(note, law.reason))


def onset(p: Problem) -> Forecast:
    from emergence.analysis.onset import SMOOTH_MODELS
    from emergence.analysis.verdicts import ClassifyConfig, classify

    hist = _history(p, S.LOSS)
    if len(hist) < 4:
        raise CannotPredict(_no_loss(p) if p.history[S.LOSS].isna().all() else
                            f"{len(hist)} checkpoints with a loss: the verdict needs 4")
    law = _law(p, S.LOSS)
    l_hat, l_draws = _law_at(law, p.test)
    v = classify(hist[S.LOSS].to_numpy(float), hist[S.VALUE].to_numpy(float), chance=p.chance, axis=S.LOSS,
                 bounded=True, config=ClassifyConfig(bootstrap=0))
    smooth = [f for f in v.alternatives if f.name in SMOOTH_MODELS]
    fit = v.best_fit if v.label == "emergent" else (smooth[0] if smooth else v.best_fit)
    if fit is None:
        raise CannotPredict(f"no curve fits the small models' {p.metric} on loss ({v.label})")
    shape = "threshold" if fit is v.best_fit and v.label == "emergent" else fit.name
    return Forecast(_clip(fit.predict(l_hat)), None if l_draws is None else _clip(fit.predict(l_draws)),
                    f"verdict {v.label}: {shape} model")


def obs_scaling(p: Problem) -> Forecast:
    scores, train = _components_and_train(p)
    x_train = scores.loc[train[S.MODEL]].to_numpy(float)
    x_test = scores.reindex(p.test[S.MODEL]).to_numpy(float)
    y = train[S.VALUE].to_numpy(float)
    coef = _fit_capability_sigmoid(x_train, y, p.chance)

    def predict(idx):
        return _capability(x_test, _fit_capability_sigmoid(x_train[idx], y[idx], p.chance), p.chance)

    rng = np.random.default_rng(p.seed)
    draws = [_or_nan(predict, rng.integers(0, len(y), len(y)), len(x_test)) for _ in range(p.n_boot)]
    return Forecast(_capability(x_test, coef, p.chance), np.array(draws) if draws else None)


def obs_compute(p: Problem) -> Forecast:
    """Observational scaling without the target's own benchmark scores: each component is linear
    in log compute with one slope and an intercept per family (the family's compute efficiency,
    Ruan et al. 2024), then the same sigmoid as ``obs_scaling``."""
    scores, train = _components_and_train(p)
    both = pd.concat([train, p.test], ignore_index=True)
    logc = np.log(compute_of(both).to_numpy(float))
    families = sorted(train[S.FAMILY].astype(str).unique())
    design = np.column_stack([logc] + [(both[S.FAMILY].astype(str) == f).to_numpy(float) for f in families])
    fit_rows, test_rows = design[:len(train)], design[len(train):]
    x_train, y = scores.loc[train[S.MODEL]].to_numpy(float), train[S.VALUE].to_numpy(float)
    unseen = sorted(set(p.test[S.FAMILY].astype(str)) - set(families))

    def predict(idx):
        ok = np.isfinite(fit_rows[idx, 0])
        if ok.sum() < len(families) + 2:
            raise CannotPredict(f"{int(ok.sum())} training models with compute: one slope and "
                                f"{len(families)} family intercepts need {len(families) + 2}")
        slopes = np.linalg.lstsq(fit_rows[idx][ok], x_train[idx][ok], rcond=None)[0]
        pcs = test_rows @ slopes
        pcs[test_rows[:, 1:].sum(axis=1) == 0] = np.nan      # a family with no training model
        return _capability(pcs, _fit_capability_sigmoid(x_train[idx], y[idx], p.chance), p.chance)

    point = predict(np.arange(len(y)))
    rng = np.random.default_rng(p.seed)
    draws = [_or_nan(predict, rng.integers(0, len(y), len(y)), len(point)) for _ in range(p.n_boot)]
    note = f"no training model of {', '.join(unseen)}: no compute efficiency to use" if unseen else ""
    return Forecast(point, np.array(draws) if draws else None, note)


PREDICTORS = {"two_step": two_step, "power_law": power_law, "loss_to_loss": loss_to_loss, "flp": flp,
              "onset": onset, "obs_scaling": obs_scaling, "obs_compute": obs_compute}


# ----------------------------------------------------------------------------- helpers

def _from_loglog(coef, log_c, chance):
    """Accuracy from log(-log q) = a log C + b (q: the share of the room above chance)."""
    q = np.exp(-np.exp(coef[0] * np.asarray(log_c, float) + coef[1]))
    return chance + (1 - chance) * q


def _loglog(acc, chance):
    q = np.clip((np.asarray(acc, float) - chance) / (1 - chance), 1e-3, 1 - 1e-3)
    return np.log(-np.log(q))


def _compute_split(p: Problem):
    """(training, target) compute, with one convention (``compute_of``) across both."""
    c = compute_of(pd.concat([p.train, p.test], ignore_index=True)).to_numpy(float)
    return c[:len(p.train)], c[len(p.train):]


def _components_and_train(p: Problem):
    """The benchmark components of every model, and the training models that have them."""
    if p.benchmarks is None or p.benchmarks.empty:
        raise CannotPredict("no standard benchmark scores to take components of (benchmarks=..., --benchmarks)")
    scores = _components(p.benchmarks)
    train = p.train[p.train[S.MODEL].isin(scores.index)].reset_index(drop=True)
    if len(train) < N_COMPONENTS + 3:
        raise CannotPredict(f"{len(train)} training models with every standard benchmark: the sigmoid of "
                            f"{N_COMPONENTS} components needs {N_COMPONENTS + 3}")
    return scores, train


def _intermediate(p: Problem, prefer: str = "task_loss"):
    """The loss a two-stage predictor goes through: ``prefer`` when the training models have it,
    else the other one, with a note; a family with neither cannot be predicted this way."""
    order = [prefer] + [c for c in ("task_loss", S.LOSS) if c != prefer]
    present = [c for c in order if p.train[c].notna().all()]
    if not present:
        raise CannotPredict(_no_loss(p))
    col = present[0]
    if p.history[col].notna().sum() < 4:
        raise CannotPredict(f"{int(p.history[col].notna().sum())} training checkpoints with {_label(col)}: "
                            "the link to accuracy needs 4")
    return col, "" if col == prefer else f"via {_label(col)} (no {_label(prefer)})"


def _no_loss(p):
    return f"{p.group}: no loss (neither a pretraining loss nor a task-loss metric for {p.task})"


def _label(col):
    return "the task loss" if col == "task_loss" else "the model's loss"


def _law(p: Problem, col: str):
    """The loss law of ``col`` on the training models' finals: Chinchilla when their token counts
    vary apart from size, else L(N). The model's loss law is shared by all tasks of a split."""
    key = (col, tuple(sorted(p.train[S.MODEL]))) if col == S.LOSS else None
    if key in p.cache:
        return p.cache[key]
    n, d, y = (p.train[c].to_numpy(float) for c in (S.PARAMS, S.TOKENS, col))
    ok = np.isfinite(n) & np.isfinite(y)
    chinchilla = np.isfinite(d[ok]).all() and np.unique(n[ok]).size >= 2 and np.unique(np.round(
        np.log(d[ok] / n[ok]), 3)).size >= 2 and ok.sum() >= 6
    try:
        if chinchilla:
            law = fit_chinchilla(n[ok], d[ok], y[ok], n_boot=p.n_boot, seed=p.seed, level=LEVEL)
        elif np.unique(n[ok]).size >= 4:
            law = fit_size_law(n[ok], y[ok], n_boot=p.n_boot, seed=p.seed, level=LEVEL)
        else:
            raise CannotPredict(f"{np.unique(n[ok]).size} training sizes with {_label(col)}: L(N) needs 4 "
                                "(or 6 models at 2+ sizes and token ratios for L(N, D))")
    except FitError as err:
        raise CannotPredict(f"loss law of {_label(col)}: {err}") from err
    if key is not None:
        p.cache[key] = law
    return law


def _law_at(law, frame):
    n, d = frame[S.PARAMS].to_numpy(float), frame[S.TOKENS].to_numpy(float)
    args = (n, d) if law.form == "chinchilla" else (n,)
    return law.predict(*args), (law.predict_draws(*args) if law.draws is not None else None)


def _history(p: Problem, *cols) -> pd.DataFrame:
    """Training checkpoints with ``cols`` and a value, without each run's first ``SKIP_FRACTION``
    of steps where there are steps."""
    h = p.history.dropna(subset=[*cols, S.VALUE])
    if h[S.STEP].notna().any():
        last = h.groupby(S.MODEL)[S.STEP].transform("max")
        h = h[h[S.STEP].isna() | (h[S.STEP] >= SKIP_FRACTION * last) | (h[S.STEP] == last)]
    return h


def _sigmoid_link(p: Problem, col: str):
    from emergence.analysis.predict import fit_sigmoid

    h = _history(p, col)
    try:
        fit = fit_sigmoid(h[col].to_numpy(float), h[S.VALUE].to_numpy(float), chance=p.chance)
    except FitError as err:
        raise CannotPredict(f"sigmoid of accuracy on {_label(col)}: {err}") from err
    if fit.status != "ok":
        raise CannotPredict(f"sigmoid of accuracy on {_label(col)}: {fit.reason}")
    def link(x):
        return None if x is None else np.asarray(fit.predict(np.asarray(x, float)), float)
    return link


def _components(bench: pd.DataFrame) -> pd.DataFrame:
    """Top principal-component scores of the (centred) benchmark matrix, sign fixed so that each
    component grows with the mean score."""
    x = bench.to_numpy(float)
    xc = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    k = min(N_COMPONENTS, vt.shape[0])
    pcs = xc @ vt[:k].T
    signs = np.sign([np.corrcoef(pcs[:, i], x.mean(axis=1))[0, 1] or 1.0 for i in range(k)])
    return pd.DataFrame(pcs * signs, index=bench.index, columns=[f"PC{i + 1}" for i in range(k)])


def _capability(x, coef, chance):
    z = np.asarray(x, float) @ coef[:-1] + coef[-1]
    return chance + (1 - chance) / (1 + np.exp(-z))


def _fit_capability_sigmoid(x, y, chance):
    def f(xx, *c):
        return _capability(xx, np.array(c), chance)
    try:
        with warnings.catch_warnings():   # an exact fit has no covariance to estimate; only coef is used
            warnings.simplefilter("ignore", OptimizeWarning)
            coef, _ = curve_fit(f, x, y, p0=np.zeros(x.shape[1] + 1), maxfev=20000)
    except (RuntimeError, ValueError) as err:
        raise CannotPredict(f"sigmoid of the task on the components failed: {err}") from err
    return coef


def _or_nan(fn, idx, n):
    """``fn(idx)``, or NaN where a bootstrap resample cannot be fitted."""
    try:
        return fn(idx)
    except CannotPredict:
        return np.full(n, np.nan)


def _clip(v):
    return None if v is None else np.clip(np.asarray(v, float), 0.0, 1.0)


def _join(*notes):
    return "; ".join(n for n in notes if n)
