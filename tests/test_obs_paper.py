"""Ruan et al.'s Sec. 4.1 procedure (analysis.obs_paper): the notebook's steps, checked one by one."""

import numpy as np
import pandas as pd
import pytest

from emergence import schema as S
from emergence.analysis import obs_paper as O


def test_pca_matches_scikit_learn_up_to_its_sign_rule():
    sklearn = pytest.importorskip("sklearn.decomposition")
    x = np.random.default_rng(0).normal(size=(30, 6))
    centre, basis = O._pca(x, 3)
    ours = (x - centre) @ basis.T
    theirs = sklearn.PCA(n_components=3).fit_transform(x)
    assert np.allclose(np.abs(ours), np.abs(theirs), atol=1e-8)   # same components; signs by convention
    assert (basis[np.arange(3), np.abs(basis).argmax(axis=1)] > 0).all()


def test_rank_one_imputation_recovers_missing_scores():
    rng = np.random.default_rng(1)
    skill = rng.uniform(0, 1, 40)
    x = np.clip(0.2 + 0.6 * np.outer(skill, rng.uniform(0.5, 1.0, 5)), 0, 1)
    hidden = x.copy()
    hidden[rng.random(x.shape) < 0.1] = np.nan
    train, test = O._impute(hidden[:30], hidden[30:])
    assert not np.isnan(train).any() and not np.isnan(test).any()
    missing = np.isnan(hidden)
    assert np.abs(np.vstack([train, test])[missing] - x[missing]).max() < 0.02
    assert np.allclose(train[~missing[:30]], hidden[:30][~missing[:30]])   # observed cells kept


def _frame(n=40, seed=2):
    """Models whose task score is a sigmoid of their mean benchmark score, with FLOPs rising with it."""
    rng = np.random.default_rng(seed)
    skill = np.sort(rng.uniform(0, 1, n))
    rows = []
    for i, s in enumerate(skill):
        base = {S.FAMILY: "Llama-2", S.MODEL: f"m{i}", S.FLOPS: 10 ** (20 + 4 * s), S.PARAMS: 1e9 * (1 + 10 * s)}
        for b in O.BENCHMARKS:
            rows.append({**base, S.TASK: b, S.METRIC: "acc", S.VALUE: 0.25 + 0.6 * s + rng.normal(0, 0.01)})
        rows.append({**base, S.TASK: "word_unscrambling", S.METRIC: "exact_match",
                     S.VALUE: 1 / (1 + np.exp(-12 * (s - 0.6)))})
    return pd.DataFrame(rows)


def test_split_trains_up_to_the_cutoff_and_predicts_models_without_flops():
    frame = O.model_matrix(_frame())
    frame.loc["m0", S.FLOPS] = np.nan
    t = O.paper_tasks()[0]
    train, test = O.paper_split(frame, t)
    assert (frame.loc[train, S.FLOPS] <= t.cutoff).all() and (frame.loc[test & frame[S.FLOPS].notna(), S.FLOPS] > t.cutoff).all()
    assert test[frame.index.get_loc("m0")]


def test_components_predict_a_sigmoid_of_skill_better_than_size():
    frame = O.model_matrix(_frame())
    errors = O.paper_errors(frame).set_index("inputs")
    assert errors.loc["components", "n_test"] > 5
    assert errors.loc["components", "mse"] < 0.01
    assert errors.loc["components", "mse"] < errors.loc["log_size", "mse"]
    held_out = O.paper_predictions(frame, O.paper_tasks()[0])[S.MODEL].tolist()
    two = O.paper_errors(frame, among={"word_unscrambling": held_out[:2]}).set_index("inputs")
    assert (two["n_test"] == 2).all() and two.loc["components", "n_train"] == errors.loc["components", "n_train"]


def test_families_outside_the_paper_are_left_out():
    df = _frame()
    df.loc[df[S.MODEL] == "m3", S.FAMILY] = "Cerebras-GPT"
    assert "m3" not in O.model_matrix(df).index
