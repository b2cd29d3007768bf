"""Trimming sensitivity: do the verdicts move when the earliest checkpoints are dropped?

A label that hinges on a run's first few judged checkpoints (the end of the warm-up, the
initial loss plateau) measures the start of training, not an ability. Each curve set is judged
as it is and again without some of its rows; the share of curves whose label changes, and the
emergent labels before and after, say how much the verdicts rest on those rows. ``emergence
validate`` reports this on real curve sets, and the report on the user's own table.
"""

import pandas as pd

from emergence import schema as S
from emergence.analysis.verdicts import ClassifyConfig, verdicts, warmup_mask

CURVE_KEYS = (S.FAMILY, S.TASK, S.SUBTASK, S.METRIC, *S.SETTING_KEYS)


def first_judged(df: pd.DataFrame, k: int, warmup_fraction: float = ClassifyConfig().warmup_fraction) -> pd.Series:
    """Rows among the first ``k`` distinct token counts (steps where a run has none) of their
    run, past the warm-up."""
    warm = warmup_mask(df, warmup_fraction)
    progress = df[S.TOKENS] if S.TOKENS in df and df[S.TOKENS].notna().any() else df[S.STEP]
    rank = progress.where(~warm & (progress > 0)).groupby([df[S.FAMILY], df[S.MODEL]], dropna=False).rank(method="dense")
    return rank <= k


def trimming_table(df: pd.DataFrame, axis: str, drops: dict, config: ClassifyConfig = ClassifyConfig(), *,
                   workers: int = 0) -> pd.DataFrame:
    """One row per ``drops`` entry ({description: boolean row mask of df}): curves judged both
    ways, the share whose label changed, and the emergent labels before, after and changed."""
    keys = [k for k in CURVE_KEYS if k in df] + ([S.MODEL] if axis == S.TOKENS else [])
    full = verdicts(df, axis, config=config, workers=workers)
    full = full[full["judged"]]
    rows = []
    for what, mask in drops.items():
        cut = verdicts(df[~pd.Series(mask, index=df.index).to_numpy(bool)], axis, config=config, workers=workers)
        both = full.merge(cut[cut["judged"]], on=[k for k in keys if k in full], suffixes=("", "_cut"))
        before, after = both["label"] == "emergent", both["label_cut"] == "emergent"
        rows.append(dict(axis=axis, dropped=what, curves=len(both),
                         labels_changed=float((both["label"] != both["label_cut"]).mean()) if len(both) else float("nan"),
                         emergent_before=int(before.sum()), emergent_after=int(after.sum()),
                         emergent_changed=int((before != after).sum()), emergent_either=int((before | after).sum())))
    return pd.DataFrame(rows)


def earliest_checkpoints(df: pd.DataFrame, ks=(1, 2, 3), config: ClassifyConfig = ClassifyConfig(), *,
                         workers: int = 0) -> pd.DataFrame:
    """``trimming_table`` for dropping the first k judged checkpoints of every run, on the axes
    where a run has several checkpoints (tokens: one curve per run; loss: pooled)."""
    if S.MODEL not in df or not ({S.TOKENS, S.STEP} & set(df.columns)):
        return pd.DataFrame()
    progress = S.TOKENS if S.TOKENS in df and df[S.TOKENS].notna().any() else S.STEP
    per_run = df.groupby([S.FAMILY, S.MODEL], dropna=False)[progress].nunique()
    if per_run.empty or per_run.max() < 4:
        return pd.DataFrame()
    drops = {f"first {k} judged checkpoint(s) per run": first_judged(df, k, config.warmup_fraction) for k in ks}
    axes = [a for a in (S.TOKENS, S.LOSS) if a in df and df[a].notna().any()]
    return pd.concat([trimming_table(df, a, drops, config, workers=workers) for a in axes], ignore_index=True)
