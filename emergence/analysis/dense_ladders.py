"""Dense synthetic ladders: the development set of the floor rule (``ClassifyConfig.min_floor_share``).

A model ladder evaluated at many checkpoints pools hundreds of points on the loss axis, and a
task that emerges early in the larger runs' training keeps only a few of them on its floor (the
OLMo-2 multiple-choice-format curves are of this kind). How many floor points an ``emergent``
label needs is a rule that must be set where the truth is known, not on the real curves it is
then scored on: here. Each ladder has 6 sizes at 20 tokens per parameter (Chinchilla), 40
checkpoints per run (4 of them in the warm-up, before 1% of the tokens), a loss law scattered
around Hoffmann et al.'s, run offsets on the logit scale (sd 0.1) and a binomial sample of
500-2000 examples per point. Its tasks:

- ``threshold``: at chance until the loss falls below eta, then rising; eta is drawn so that
  0.5-40% (log-uniform) of the judged points lie on the floor;
- ``smooth_power``: a power of the loss from chance, up to strongly convex (exponent 1-6);
- ``smooth_sigmoid``: a gentle sigmoid in log loss.

``floor_rule_benchmark`` judges every ladder on the pooled loss axis under each candidate
share and scores threshold recall (ladders whose floor truly holds >= 3 judged points) and
false ``emergent`` on the smooth controls. The rule for choosing, fixed before it was run: the
share with the highest recall whose smooth controls are called emergent <= 1% of the time;
ties go to the larger (more conservative) share.
"""

import numpy as np
import pandas as pd
from scipy import special

from emergence import schema as S
from emergence.analysis.verdicts import ClassifyConfig, verdicts

SHARES = (0.0, 0.01, 0.025, 0.05, 0.1)
WARMUP_CHECKPOINTS = np.geomspace(0.002, 0.008, 4)            # fractions of the run's tokens
JUDGED_CHECKPOINTS = np.geomspace(0.01, 1.0, 36)


def dense_ladder(seed: int) -> tuple[pd.DataFrame, int, int]:
    """(tidy table, judged points on the threshold task's floor, judged points) of one ladder."""
    rng = np.random.default_rng(seed)
    E, A, B = rng.uniform(1.7, 2.0), 406.4 * rng.uniform(0.7, 1.4), 410.7 * rng.uniform(0.7, 1.4)
    alpha, beta = rng.uniform(0.30, 0.38), rng.uniform(0.26, 0.32)
    sizes = np.geomspace(2e7, 2e7 * 10 ** rng.uniform(1.5, 2.0), 6)
    fractions = np.r_[WARMUP_CHECKPOINTS, JUDGED_CHECKPOINTS]
    size_of = np.repeat(np.arange(len(sizes)), len(fractions))
    fraction = np.tile(fractions, len(sizes))
    n, d = sizes[size_of], fraction * 20 * sizes[size_of]
    loss = E + A / n ** alpha + B / d ** beta
    judged = loss[fraction >= 0.01]
    floor_share = 10 ** rng.uniform(np.log10(0.005), np.log10(0.4))
    eta = float(np.quantile(judged, 1 - floor_share))
    chance = float(rng.choice([0.0, 0.25]))
    top, scale = rng.uniform(0.6, 0.95), rng.uniform(0.05, 0.2)
    span = loss.max() / loss
    power = rng.uniform(1, 6)
    curves = {"threshold": chance + (top - chance) * (1 - np.exp(-np.clip(np.log(eta / loss), 0, None) / scale)),
              "smooth_power": chance + (top - chance) * (span ** power - 1) / (span.max() ** power - 1),
              "smooth_sigmoid": chance + (top - chance) * special.expit(
                  (np.log(span) - rng.uniform(0.3, 0.7) * np.log(span.max())) / rng.uniform(0.25, 0.5))}
    offsets = rng.normal(0, 0.1, (len(curves), len(sizes)))      # one per run and task, on the logit scale
    n_examples = int(rng.integers(500, 2001))
    observed = loss * np.exp(rng.normal(0, 0.003, len(loss)))
    frames = []
    for k, (task, p) in enumerate(curves.items()):
        p = special.expit(special.logit(np.clip(p, 1e-9, 1 - 1e-9)) + offsets[k][size_of])
        frames.append(pd.DataFrame({
            S.FAMILY: f"ladder-{seed}", S.MODEL: [f"{s}" for s in size_of],
            S.CHECKPOINT: [f"{s}@{f:.4f}" for s, f in zip(size_of, fraction)], S.PARAMS: n, S.TOKENS: d,
            S.STEP: fraction * 1000, S.LOSS: observed, S.TASK: task, S.SUBTASK: "", S.METRIC: "acc",
            S.VALUE: rng.binomial(n_examples, p) / n_examples, S.N: n_examples, S.CHANCE: chance}))
    return pd.concat(frames, ignore_index=True), int((judged > eta).sum()), len(judged)


def floor_rule_benchmark(n_ladders: int = 60, seed: int = 1000, shares=SHARES, *,
                         workers: int = 0) -> pd.DataFrame:
    """One row per candidate share: threshold recall (all, and where the floor holds < 5% of the
    judged points), false emergent on the smooth controls, and ``chosen`` (the module's rule)."""
    made = [dense_ladder(seed + i) for i in range(n_ladders)]
    table = pd.concat([m[0] for m in made], ignore_index=True)
    floor_points = {f"ladder-{seed + i}": m[1] for i, m in enumerate(made)}
    judged = made[0][2]
    rows = []
    for share in shares:
        v = verdicts(table, axis=S.LOSS, config=ClassifyConfig(min_floor_share=share), workers=workers)
        thr = v[v[S.TASK] == "threshold"].assign(floor_points=lambda d: d[S.FAMILY].map(floor_points))
        observed = thr[thr["floor_points"] >= 3]
        sparse = observed[observed["floor_points"] < 0.05 * judged]
        controls = v[v[S.TASK] != "threshold"]
        rows.append(dict(share=share, recall=float((observed["label"] == "emergent").mean()),
                         thresholds=len(observed), sparse_recall=float((sparse["label"] == "emergent").mean()),
                         sparse=len(sparse), false_emergent=float((controls["label"] == "emergent").mean()),
                         controls=len(controls)))
    out = pd.DataFrame(rows)
    allowed = out[out["false_emergent"] <= 0.01]
    best = allowed[allowed["recall"] == allowed["recall"].max()]["share"].max() if len(allowed) else np.nan
    return out.assign(chosen=out["share"] == best)
