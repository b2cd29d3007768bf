"""Trimming sensitivity: the earliest judged checkpoints of each run, dropped and judged again."""

import numpy as np
import pandas as pd

from emergence import schema as S
from emergence.analysis.synthetic import synthetic_family
from emergence.analysis.trimming import earliest_checkpoints, first_judged, trimming_table


def test_first_judged_picks_each_runs_earliest_checkpoints_past_the_warm_up():
    df = synthetic_family(3, "fixed_tokens").table      # 10 checkpoints per run, from 1% of the tokens
    first = df[first_judged(df, 1)]
    assert len(first) == df[S.MODEL].nunique() * df[S.TASK].nunique()
    assert (first[S.TOKENS] == df.groupby(S.MODEL)[S.TOKENS].transform("min")[first.index]).all()
    warm = first.assign(**{S.TOKENS: first[S.TOKENS] / 200, S.CHECKPOINT: "warm-up"})   # at 0.005% of the run
    both = pd.concat([warm, df], ignore_index=True)
    assert not first_judged(both, 2).iloc[:len(warm)].any()       # never among them
    assert first_judged(both, 1).iloc[len(warm):].sum() == len(first)


def test_earliest_checkpoints_judges_both_axes_and_counts_what_changed():
    df = synthetic_family(3, "fixed_tokens").table
    out = earliest_checkpoints(df, ks=(1, 3), workers=1)
    assert out.groupby("axis").size().to_dict() == {S.LOSS: 2, S.TOKENS: 2}
    tokens = out[out["axis"] == S.TOKENS]
    assert (tokens["curves"] <= df[S.MODEL].nunique() * 2).all() and (tokens["curves"] > 0).all()
    assert out["labels_changed"].between(0, 1).all()
    assert (out["emergent_changed"] <= out["emergent_either"]).all()


def test_dropping_nothing_changes_nothing_and_a_single_size_table_has_no_checkpoints_to_drop():
    df = synthetic_family(3, "fixed_tokens").table
    same = trimming_table(df, S.LOSS, {"nothing": np.zeros(len(df), bool)}, workers=1).iloc[0]
    assert same["labels_changed"] == 0 and same["emergent_changed"] == 0
    finals = df[df[S.STEP] == df[S.STEP].max()]
    assert earliest_checkpoints(finals, workers=1).empty
