"""Synthetic data with known answers, and the benchmarks that score the analysis against them.

Two generators. Single curves (``generate``, scored by ``benchmark``): thresholds at a known
eta, smooth power laws and gentle sigmoids, p^k composites of smooth sub-tasks, flat-at-chance,
floor, inverse and noisy curves. Whole families with a known loss law and loss threshold
(``synthetic_family``, scored by ``onset_benchmark``): where a task emerges.

Curves are realistic rather than tuned to the classifier: x spans 1.5-3 decades of size (or a
pretraining loss range inside 2.2-4.0 nats) with jittered spacing, y is a binomial sample of n
(50-2000) examples at each point, 30% of trending curves carry extra checkpoint-to-checkpoint
scatter (0.5-1.5 SE), 20% are reported as error rates (lower is better), and every shape is
defined on the capability axis t in [0, 1].

A label must be identifiable at the curve's own n, or it is no ground truth: an emergent
curve's rise is at least 8 standard errors, a smooth or inverse curve's change at least 6, a
noisy curve's wiggle at least 4; a threshold sits in [0.2, 0.8] of the range with >= 2 points
on its plateau and >= 3 above (2 when a curve has under 6 points); "smooth" sigmoids are at
least 0.6 of the range wide and smooth power laws keep >= 1/6 of their rise in the lower half
of the range, while threshold sigmoids rise within 0.15 of it. The ambiguous band in between
is deliberately not generated. p^k composites are labelled smooth: nothing in them has a
threshold, however sudden exact match looks.
"""

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from scipy import special

from emergence import schema as S
from emergence.analysis.curves import Axis
from emergence.analysis.verdicts import LN9, ClassifyConfig, classify

SHAPES = {
    "emergent": ("hinge", "saturating", "step"),
    "smooth": ("linear", "concave", "convex", "gentle_sigmoid", "pk_composite"),
    "flat": ("chance", "saturated"),
    "undetermined": ("zeros", "rare_hits"),
    "inverse": ("linear", "concave", "convex"),
    "noisy": ("wiggle", "bump", "overdispersed"),
}
TOP = 0.98


@dataclass(frozen=True, eq=False)   # holds arrays: compared by identity
class SyntheticCurve:
    label: str                 # the ground truth, one of verdicts.LABELS
    shape: str
    x: np.ndarray = field(repr=False)
    y: np.ndarray = field(repr=False)
    p: np.ndarray = field(repr=False)  # the noiseless curve (in the metric's own orientation)
    n: int
    chance: float
    axis: str
    higher_is_better: bool = True
    eta: float | None = None   # true threshold in x units (emergent curves)
    subtasks: np.ndarray | None = field(default=None, repr=False)  # (k, points) observed sub-task accuracy

    @property
    def in_regime(self) -> bool:
        """The regime the targets are stated for: >= 6 points and n >= 200 per point."""
        return len(self.x) >= 6 and self.n >= 200


@dataclass(frozen=True)
class BenchmarkResult:
    n_curves: int
    accuracy: float
    false_emergent_rate: float       # share of non-emergent curves called emergent
    confusion: pd.DataFrame          # truth (rows) x verdict (columns)
    eta_error: float                 # median |eta_hat - eta| as a share of the observed range
    eta_coverage: float              # share of bootstrap 95% intervals that contain the truth
    ms_per_curve: float
    rest: dict                       # the same numbers outside the regime (< 6 points or n < 200)

    def summary(self) -> str:
        return (f"{self.n_curves} curves: accuracy {self.accuracy:.3f}, false emergent "
                f"{self.false_emergent_rate:.3f}, eta error {self.eta_error:.3f} of the range "
                f"(coverage {self.eta_coverage:.2f}), {self.ms_per_curve:.1f} ms/curve; outside "
                f"the regime: {self.rest}")


def generate(n_curves: int, seed: int = 0, *, regime: bool | None = None) -> list[SyntheticCurve]:
    """Labelled curves, labels drawn uniformly. ``regime``: True keeps to >= 6 points and
    n >= 200, False draws only outside it, None draws from the whole range (4-30 points,
    n 50-2000)."""
    rng = np.random.default_rng(seed)
    labels = list(SHAPES)
    out = []
    while len(out) < n_curves:
        c = _curve(rng, labels[rng.integers(len(labels))])
        if regime is None or c.in_regime == regime:
            out.append(c)
    return out


def benchmark(n_curves: int = 600, seed: int = 0, *, rest: int | None = None,
              config: ClassifyConfig = ClassifyConfig()) -> BenchmarkResult:
    """Verdict accuracy on ``n_curves`` curves inside the target regime, and on ``rest``
    (default n_curves // 4) outside it."""
    inside, outside = generate(n_curves, seed, regime=True), generate(
        n_curves // 4 if rest is None else rest, seed + 1, regime=False)
    t0 = time.perf_counter()
    vin = [_judge(c, config) for c in inside]
    ms = 1e3 * (time.perf_counter() - t0) / max(len(inside), 1)
    stats_in = _score(inside, vin)
    stats_out = _score(outside, [_judge(c, config) for c in outside])
    return BenchmarkResult(len(inside), stats_in["accuracy"], stats_in["false_emergent_rate"],
                           stats_in["confusion"], stats_in["eta_error"], stats_in["eta_coverage"], ms,
                           {k: v for k, v in stats_out.items() if k != "confusion"} | {"n_curves": len(outside)})


def composite(k: int = 5, lo: float = 0.4, hi: float = 0.6, *, points: int = 8, n: int = 1000,
              seed: int = 0, noise: bool = True):
    """The brief's example: k sub-tasks each improving lo -> hi linearly in log size; exact
    match is their product (5 x 40% -> 60% gives 1.0% -> 7.8%). Returns (x, sub-task
    accuracies (k, points), composite exact match), binomially sampled unless noise=False."""
    rng = np.random.default_rng(seed)
    x = np.geomspace(7e7, 1.2e10, points)
    q = np.tile(np.linspace(lo, hi, points), (k, 1))
    if not noise:
        return x, q, q.prod(0)
    hits = rng.random((n, k, points)) < q[None]     # each example needs every sub-step right
    return x, hits.mean(0), hits.all(1).mean(0)


# ---- one curve ------------------------------------------------------------------------------

def _curve(rng, label) -> SyntheticCurve:
    npts, n = int(rng.integers(4, 31)), int(np.exp(rng.uniform(np.log(50), np.log(2000))))
    axis = "params" if rng.random() < 0.6 else "loss"
    if axis == "params":
        u0, span = rng.uniform(6.8, 8.5), rng.uniform(1.5, 3.0)
        u = np.linspace(u0, u0 + span, npts)
        u[1:-1] += rng.uniform(-0.3, 0.3, npts - 2) * span / (npts - 1)
        x = 10.0 ** u
    else:
        hi, lo = rng.uniform(3.4, 4.0), rng.uniform(2.2, 2.8)
        x = np.linspace(hi, lo, npts)
        x[1:-1] += rng.uniform(-0.3, 0.3, npts - 2) * (hi - lo) / (npts - 1)
    t = np.sort(Axis.over(axis, x).to_t(x))
    x = np.sort(x) if axis == "params" else np.sort(x)[::-1]
    shape = SHAPES[label][rng.integers(len(SHAPES[label]))]
    chance = 0.0 if label == "undetermined" or shape == "pk_composite" else float(
        rng.choice([0.1, 0.2, 0.25, 0.5] if label == "flat" else [0.0, 0.1, 0.2, 0.25, 0.5]))
    p, t0, subs = _shape(rng, label, shape, t, n, chance)
    q = p
    if label in ("emergent", "smooth", "inverse") and rng.random() < 0.3:
        # checkpoint-to-checkpoint scatter beyond sampling (seeds, data order): 0.5-1.5 SE
        q = p + rng.normal(0, 1, len(p)) * rng.uniform(0.5, 1.5) * _se(p, n)
    y = rng.binomial(n, np.clip(q, 0, 1)) / n
    eta = None if t0 is None else float(Axis.over(axis, x).to_x(t0))
    if subs is not None:
        subs = rng.binomial(n, subs) / n
    if rng.random() < 0.2 and shape != "pk_composite":  # report an error rate instead
        return SyntheticCurve(label, shape, x, 1 - y, 1 - p, n, 1 - chance, axis, False, eta, subs)
    return SyntheticCurve(label, shape, x, y, p, n, chance, axis, True, eta, subs)


def _se(p, n):
    return np.sqrt(np.clip(p, 0.01, 0.99) * (1 - np.clip(p, 0.01, 0.99)) / n)


def _shape(rng, label, shape, t, n, chance):
    """Noiseless p(t), the true onset (emergent only) and sub-task curves (composites)."""
    room = TOP - chance
    if label == "undetermined":
        return (np.zeros_like(t) if shape == "zeros" else np.full_like(t, rng.uniform(0, 0.1 / n))), None, None
    if label == "flat":
        return np.full_like(t, chance if shape == "chance" else rng.uniform(chance + 0.05, 0.9)), None, None
    if label == "emergent":
        m = len(t)
        # >= 2 points and >= 20% of the range on the plateau, >= 3 points (2 if m < 6) above
        t0 = rng.uniform(max(t[1], 0.2), min(t[m - 3] if m >= 6 else t[m - 2] - 1e-9, 0.8))
        for _ in range(50):
            rise = rng.uniform(0.25, 1.0) * room
            if rise >= 8 * _se(chance + rise, n):
                break
        else:
            rise = room
        z = np.clip(t - t0, 0, None)
        if shape == "hinge":
            g = z / (1 - t0)
        elif shape == "saturating":
            tau = rng.uniform(0.1, 0.4) * (1 - t0)
            g = (1 - np.exp(-z / tau)) / (1 - np.exp(-(1 - t0) / tau))
        else:                                                 # step: a steep sigmoid
            k = 2 * LN9 / rng.uniform(0.03, 0.15)
            g = 1 / (1 + np.exp(-k * (t - t0 - LN9 / k)))
        return chance + rise * g, t0, None
    if label == "noisy":
        base = rng.uniform(chance + 0.15 * room, chance + 0.85 * room)
        amp = max(rng.uniform(4, 8) * _se(base, n), 0.02)
        amp = min(amp, base - chance, TOP - base)
        if shape == "wiggle":
            g = np.sin(2 * np.pi * rng.integers(1, 3) * t + rng.uniform(0, 2 * np.pi))
        elif shape == "bump":
            g = 1 - 2 * (2 * t - 1) ** 2
        else:
            g = np.clip(rng.normal(0, 0.5, len(t)), -1, 1)
        return base + amp * g, None, None
    for _ in range(50):                                      # smooth / inverse: identifiable change
        p, subs = _smooth(rng, shape, t, chance, room)
        if abs(p[-1] - p[0]) >= 6 * _se(np.mean(p), n):
            break
    return (p[::-1] if label == "inverse" else p), None, subs


def _smooth(rng, shape, t, chance, room):
    if shape == "pk_composite":
        k = int(rng.integers(2, 7))
        q0 = rng.uniform(0.3, 0.7, k)[:, None]
        q1 = np.minimum(q0 + rng.uniform(0.15, 0.35, (k, 1)), TOP)
        q = q0 + (q1 - q0) * _ramp(rng, t)
        return q.prod(0), q
    p0 = chance + rng.uniform(0, 0.3) * room
    rise = rng.uniform(0.2, 1.0) * (TOP - p0)
    return p0 + rise * _ramp(rng, t, shape), None


def _ramp(rng, t, shape=None):
    """A smooth rise from 0 at t=0 to 1 at t=1."""
    shape = shape or ("linear", "concave")[rng.integers(2)]
    if shape == "linear":
        return t
    if shape == "concave":                                   # error falling as a power law in size
        c = rng.uniform(0.5, 4)
        return (1 - np.exp(-c * t)) / (1 - np.exp(-c))
    if shape == "convex":                                    # >= 1/6 of the rise in the lower half
        c = rng.uniform(0.5, 3)
        return (np.exp(c * t) - 1) / (np.exp(c) - 1)
    w, mid = rng.uniform(0.6, 2.0), rng.uniform(0, 1)       # gentle sigmoid, 10-90% width w
    s = 1 / (1 + np.exp(-2 * LN9 / w * (t - mid)))
    return (s - s[0]) / (s[-1] - s[0])


# ---- scoring ------------------------------------------------------------------------------------

def _judge(c: SyntheticCurve, config):
    return classify(c.x, c.y, n=c.n, chance=c.chance, higher_is_better=c.higher_is_better,
                    axis=c.axis, bounded=True, config=config)


def _score(curves, verdicts) -> dict:
    truth = np.array([c.label for c in curves])
    pred = np.array([v.label for v in verdicts])
    if len(truth) == 0:
        return {"accuracy": np.nan, "false_emergent_rate": np.nan, "confusion": pd.DataFrame(),
                "eta_error": np.nan, "eta_coverage": np.nan}
    errs, cover = [], []
    for c, v in zip(curves, verdicts):
        e = v.evidence
        if c.label == "emergent" and v.label == "emergent" and e.eta is not None:
            ax = Axis.over(c.axis, c.x)
            errs.append(abs(float(ax.to_t(e.eta) - ax.to_t(c.eta))))
            if e.eta_lo is not None:
                lo, hi = sorted((e.eta_lo, e.eta_hi))
                cover.append(lo <= c.eta <= hi)
    neg = truth != "emergent"
    return {"accuracy": float(np.mean(truth == pred)),
            "false_emergent_rate": float(np.mean(pred[neg] == "emergent")) if neg.any() else np.nan,
            "confusion": pd.crosstab(pd.Series(truth, name="truth"), pd.Series(pred, name="verdict")),
            "eta_error": float(np.median(errs)) if errs else np.nan,
            "eta_coverage": float(np.mean(cover)) if cover else np.nan}


# ---- real smooth curves, re-simulated (the null an emergent label must survive) -------------

def resimulate_smooth(df: pd.DataFrame, axis: str, *, replicates: int = 2, max_curves: int = 150,
                      seed: int = 0) -> pd.DataFrame:
    """A tidy table of curves with no threshold in them: each real curve of ``df`` judged
    ``smooth`` on ``axis`` (at most ``max_curves``, drawn with ``seed``) is re-simulated
    ``replicates`` times from its own fitted smooth model (the verdict's best fit) at its own x,
    with its own noise (the verdict's per-point standard errors times its dispersion; proportions
    clipped to [0, 1]). Tasks are named ``task~r`` for replicate r; models are kept (the runs)."""
    from emergence.analysis.curves import noise_model
    from emergence.analysis.significance import curve_arrays
    from emergence.analysis.verdicts import verdicts

    table = verdicts(df, axis)
    smooth = table[table["label"] == "smooth"]
    if len(smooth) > max_curves:
        smooth = smooth.sample(max_curves, random_state=seed)
    rng = np.random.default_rng(seed)
    frames = []
    for i, (x, y, runs, se, nn, hib, ax, bounded) in curve_arrays(df, smooth, axis):
        v = classify(x, y, stderr=se, n=nn, higher_is_better=hib, axis=ax, bounded=bounded)
        if v.label != "smooth":
            continue
        sigma = noise_model(Axis.over(ax, x).to_t(x), y, se, nn, bounded)[0] * np.sqrt(v.evidence.dispersion)
        fit = v.best_fit.predict(x)
        meta = smooth.loc[i]
        for r in range(replicates):
            sim = fit + rng.normal(size=len(x)) * sigma
            frames.append(pd.DataFrame({
                S.FAMILY: meta[S.FAMILY], S.TASK: f"{meta[S.TASK]}~{r}", S.SUBTASK: meta[S.SUBTASK],
                S.METRIC: meta[S.METRIC], S.MODEL: runs if runs is not None else "", axis: x,
                S.VALUE: np.clip(sim, 0, 1) if bounded else sim, S.STDERR: se, S.N: nn}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


# ---- families with a known loss threshold (where a task emerges) ------------------------------

@dataclass(frozen=True, eq=False)
class SyntheticFamily:
    """A family whose task ``threshold`` emerges below the true loss ``eta`` (and whose task
    ``smooth`` improves smoothly with loss), with losses from a known Chinchilla law."""

    table: pd.DataFrame = field(repr=False)
    recipe: str                # "overtrained": sizes x token multipliers, final checkpoints only
                               # "fixed_tokens": every size trained on the same D, 10 checkpoints each
    eta: float                 # the true threshold (nats)
    n_c: float                 # the true critical size at the recipe (D = 20 N, or the fixed D)
    cutoff: float              # models below it are the small ones
    situation: str             # "within": N_c inside the small sizes; "beyond": above them, but
                               # >= 2 small checkpoints are truly below eta (over-training);
                               # "out of reach": fewer, so eta cannot be located from them

    @property
    def tokens_per_param(self) -> float | None:
        return 20.0 if self.recipe == "overtrained" else None


def synthetic_family(seed: int, recipe: str, *, run_sd: float = 0.0) -> SyntheticFamily:
    """One family (see SyntheticFamily). Law parameters scatter around Hoffmann et al.'s; sizes
    span ~3 decades from ~10M; the true N_c is drawn across the upper sizes, so that sometimes the
    small models reach eta (over-training reaches losses of ~2-4x larger models) and sometimes not.
    ``run_sd``: each run (model) gets its own offset of the metric on the logit scale, normal
    with this standard deviation, shared by all its checkpoints (run-level noise: seed, data
    order; 0.1 moves an accuracy of 0.5 by 0.025 and one at the floor not at all: an offset in
    probability, clipped at 0, would put a flat floor into a smooth curve); 0 draws none and
    leaves the family as it was."""
    rng = np.random.default_rng(seed)
    E, A, B = rng.uniform(1.7, 2.0), 406.4 * rng.uniform(0.7, 1.4), 410.7 * rng.uniform(0.7, 1.4)
    alpha, beta = rng.uniform(0.30, 0.38), rng.uniform(0.26, 0.32)
    if recipe == "overtrained":    # Gadre et al. 2024: 4 small sizes at 5-320 tokens/param, 2 large
        sizes = np.geomspace(1, 10 ** rng.uniform(2.6, 3.0), 6) * 10 ** rng.uniform(6.8, 7.2)
        mults = [(5, 10, 20, 40, 80, 160, 320)] * 4 + [(20, 80), (20,)]
        runs = [(n, m * n, m * n, f"{i}-x{m}") for i, (n, ms) in enumerate(zip(sizes, mults)) for m in ms]
        cutoff = np.sqrt(sizes[3] * sizes[4])
        lo, hi = sizes[3] / 2, sizes[4]
    elif recipe == "fixed_tokens":  # Pythia: every size on the same 300B tokens, checkpoints along the way
        sizes = np.geomspace(1, 10 ** rng.uniform(2.5, 3.0), 8) * 10 ** rng.uniform(6.8, 7.2)
        d_final = 3e11
        runs = [(n, d, d_final, f"{i}@{j}") for i, n in enumerate(sizes)
                for j, d in enumerate(np.geomspace(0.01, 1, 10) * d_final)]
        cutoff = np.sqrt(sizes[4] * sizes[5])
        lo, hi = sizes[2], sizes[7]
    else:
        raise ValueError(f"recipe must be 'overtrained' or 'fixed_tokens', not {recipe!r}")
    n_c = 10 ** rng.uniform(np.log10(lo), np.log10(hi))      # the truth; eta follows from the law
    d_c = 20.0 * n_c if recipe == "overtrained" else d_final
    eta = float(E + A / n_c ** alpha + B / d_c ** beta)
    n, d = np.array([r[0] for r in runs]), np.array([r[1] for r in runs])
    loss = E + A / n ** alpha + B / d ** beta
    chance, top, scale = float(rng.choice([0.0, 0.25])), rng.uniform(0.6, 0.95), rng.uniform(0.05, 0.2)
    u = np.clip(np.log(eta / loss), 0, None)           # capability past the threshold, in ln loss
    curves = {"threshold": chance + (top - chance) * (1 - np.exp(-u / scale)),
              "smooth": chance + (top - chance) * ((loss.max() / loss) ** rng.uniform(1, 3) - 1)
              / ((loss.max() / loss.min()) ** 3 - 1)}
    n_examples = int(rng.integers(300, 2001))
    observed = loss * np.exp(rng.normal(0, 0.003, len(loss)))
    rows = []
    models = [r[3].split("@")[0] for r in runs]
    if run_sd > 0:   # a stream of its own: the family is otherwise the one drawn without offsets
        codes, uniq = pd.factorize(pd.Series(models))
        offsets = np.random.default_rng([seed, 1]).normal(0, run_sd, (len(curves), len(uniq)))
        curves = {task: special.expit(special.logit(np.clip(p, 1e-9, 1 - 1e-9)) + offsets[i][codes])
                  for i, (task, p) in enumerate(curves.items())}
    for task, p in curves.items():
        y = rng.binomial(n_examples, np.clip(p, 0, 1)) / n_examples
        for (size, tokens, final, name), l_obs, v in zip(runs, observed, y):
            model = name.split("@")[0]
            rows.append({S.FAMILY: f"synthetic-{recipe}-{seed}", S.MODEL: model, S.CHECKPOINT: name,
                         S.PARAMS: size, S.TOKENS: tokens, S.STEP: tokens / final * 1000, S.LOSS: l_obs,
                         S.TASK: task, S.SUBTASK: "", S.METRIC: "acc", S.VALUE: v, S.N: n_examples,
                         S.CHANCE: chance})
    situation = ("out of reach" if np.sum((n < cutoff) & (loss < eta)) < 2 else
                 "beyond" if n_c > n[n < cutoff].max() else "within")
    return SyntheticFamily(pd.DataFrame(rows), recipe, eta, float(n_c), float(cutoff), situation)


def onset_benchmark(n_families: int = 48, seed: int = 0, *, n_boot: int = 30, workers: int = 0,
                    run_sd: float = 0.0) -> pd.DataFrame:
    """Backtest ``onset.onset_backtest`` on synthetic families (two in three over-trained, the
    recipe where eta can lie beyond the small sizes and still within their reach): one row per
    family with the truth beside the prediction for its threshold task, and whether its smooth
    control task was (wrongly) predicted to emerge. ``run_sd``: run-level offsets (``synthetic_family``)."""
    from emergence.analysis.parallel import map_chunks

    jobs = [(seed + i, "fixed_tokens" if i % 3 == 2 else "overtrained", n_boot, run_sd) for i in range(n_families)]
    return pd.DataFrame(map_chunks(_onset_chunk, jobs, workers=workers, chunk=1, min_items=2))


def onset_score(table: pd.DataFrame) -> pd.DataFrame:
    """Per recipe and situation: how often eta was located (and, where it could not be, how
    often one was claimed anyway), the errors of eta (nats) and N_c (|log10| ratio), interval
    coverage, the share and validity of bounds, and false alarms on the smooth control task."""
    out = []
    order = {"within": 0, "beyond": 1, "out of reach": 2}
    for (recipe, situation), g in sorted(table.groupby(["recipe", "situation"]), key=lambda kv: (kv[0][0], order[kv[0][1]])):
        located = g["status"].isin(["predicted", "not confirmed"])
        # Columns a located family carries, present (empty) even when no family was located.
        hit = g[located].reindex(columns=list(dict.fromkeys([*g.columns, "eta_abs_err", "eta_covered",
                                                             "nc_log10_err", "nc_covered"])))
        bound = g[g["status"] == "bound"]
        out.append({"recipe": recipe, "situation": situation, "families": len(g), "located": located.mean(),
                    "median_eta_abs_err": hit["eta_abs_err"].median(), "eta_covered": hit["eta_covered"].mean(),
                    "eta_covered_verdict": hit["eta_covered_verdict"].mean() if "eta_covered_verdict" in hit else np.nan,
                    "median_nc_log10_err": hit["nc_log10_err"].abs().median(),
                    "nc_within_2x": (hit["nc_log10_err"].abs() <= np.log10(2)).mean(),
                    "nc_covered": hit["nc_covered"].mean(), "bounds": len(bound) / len(g),
                    "bounds_valid": (bound["nc_bound"] <= bound["n_c_true"]).mean(),
                    "control_false_alarm": g["control_emergent"].mean()})
    return pd.DataFrame(out)


def _onset_chunk(jobs):
    from emergence.analysis.onset import onset_backtest

    out = []
    for seed, recipe, n_boot, run_sd in jobs:
        fam = synthetic_family(seed, recipe, run_sd=run_sd)
        res = onset_backtest(fam.table, fam.cutoff, tokens_per_param=fam.tokens_per_param, n_boot=n_boot,
                             seed=seed, include_all=True)
        thr = res[res[S.TASK] == "threshold"].iloc[0].to_dict() if (res.get(S.TASK) == "threshold").any() else {}
        ctl = res[res[S.TASK] == "smooth"]
        row = {"seed": seed, "recipe": recipe, "situation": fam.situation, "eta_true": fam.eta,
               "n_c_true": fam.n_c, "cutoff": fam.cutoff, "status": thr.get("status", "undetermined"),
               "label_small": thr.get("label_small"), "eta_pred": thr.get("eta_pred"),
               "eta_pred_lo": thr.get("eta_pred_lo"), "eta_pred_hi": thr.get("eta_pred_hi"),
               "nc_pred": thr.get("nc_pred"), "nc_pred_lo": thr.get("nc_pred_lo"),
               "nc_pred_hi": thr.get("nc_pred_hi"), "nc_bound": thr.get("nc_bound"),
               "eta_verdict_lo": thr.get("eta_verdict_lo"), "eta_verdict_hi": thr.get("eta_verdict_hi"),
               "p_emergent_small": thr.get("p_emergent_small"),
               "mae_threshold": thr.get("mae_threshold"), "mae_smooth": thr.get("mae_smooth"),
               "control_emergent": bool((ctl["label_small"] == "emergent").any()) if len(ctl) else False,
               "reason": thr.get("reason", "")}
        eta, nc = row["eta_pred"], row["nc_pred"]
        if eta is not None and np.isfinite(eta):
            lo, hi = sorted((row["eta_pred_lo"], row["eta_pred_hi"]))
            vlo, vhi = sorted((row["eta_verdict_lo"], row["eta_verdict_hi"]))
            row.update(eta_abs_err=abs(eta - fam.eta), eta_covered=lo <= fam.eta <= hi,
                       eta_covered_verdict=vlo <= fam.eta <= vhi)
        if nc is not None and np.isfinite(nc):
            row.update(nc_log10_err=float(np.log10(nc / fam.n_c)),
                       nc_covered=bool(row["nc_pred_lo"] <= fam.n_c <= row["nc_pred_hi"]))
        out.append(row)
    return out
