"""The fitted curve behind a stored verdict row, as a line to draw.

A verdict row (``verdicts.csv``) names its chosen model (``best_model``) and its threshold
(``eta`` with its interval) but not the model's parameters. ``fitted_line`` gets them back by
classifying the very points the verdict judged (``significance.curve_arrays`` selects them as
the verdicts do) with the same settings, and returns the chosen model's curve only when that
reproduces the stored row (same model, same margin): a figure never shows a fit the analysis
did not make.
"""

import numpy as np
import pandas as pd

from emergence.analysis.significance import curve_arrays
from emergence.analysis.verdicts import ClassifyConfig, classify


def fitted_line(df: pd.DataFrame, row: dict, *, points: int = 120, config: ClassifyConfig = ClassifyConfig()):
    """(x, y) of the chosen model of verdict ``row`` (a dict with the verdict table's key
    columns, ``axis``, ``best_model``, ``margin`` and ``floor``) over the judged x range, in the
    axis' and the metric's own units; None when the row has no fitted model or the fit cannot
    be reproduced from ``df`` (the table it was computed from)."""
    if not isinstance(row.get("best_model"), str) or not row["best_model"]:
        return None
    rows = pd.DataFrame([row])
    found = list(curve_arrays(df, rows, row["axis"], config.warmup_fraction))
    if not found:
        return None
    x, y, _runs, se, nn, hib, axis, bounded = found[0][1]
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0)   # the points the verdict kept (``verdicts``)
    x, y = x[ok], y[ok]
    se, nn = (None if a is None or not np.isfinite(a[ok]).any() else a[ok] for a in (se, nn))
    chance = row.get("floor")
    chance = float(chance) if chance is not None and np.isfinite(float(chance)) else None
    v = classify(x, y, stderr=se, n=nn, chance=chance, higher_is_better=hib, axis=axis, bounded=bounded,
                 config=config)
    if v.best_fit is None or v.evidence.best_model != row["best_model"] or not _same(v.evidence.margin,
                                                                                   row.get("margin")):
        return None
    grid = np.geomspace(x.min(), x.max(), points) if axis != "capability" else np.linspace(x.min(), x.max(), points)
    return grid, np.asarray(v.best_fit.predict(grid), float)


def _same(a, b, rtol=1e-6):
    a, b = (np.nan if x is None else float(x) for x in (a, b))
    return bool(np.isclose(a, b, rtol=rtol, atol=1e-9, equal_nan=True))
