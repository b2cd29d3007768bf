"""The predictions section of ``emergence validate``: headline numbers across seeds, and the
predictor backtest (``analysis.backtest``) on the OLMo ladder, the Gadre ladder, Pythia and ObsScaling."""

import json
from pathlib import Path

import pandas as pd

from emergence import schema as S

OLMO_METRICS = ("bpb[rc]", "acc_len_norm[rc]")


def read_olmo_ladder(reference_dir) -> pd.DataFrame:
    """The OLMo ladder rows the predictions use: the paper's 'train' rungs and the OLMo-2 targets,
    rc accuracy and task bits per byte (300k rows in all; this keeps about a tenth)."""
    from emergence.analysis.predict import OLMO_TARGETS
    from emergence.tidy import read_tidy

    ref = Path(reference_dir)
    config = json.loads((ref / "olmo_ladder" / "raw" / "configs" / "final.json").read_text())
    keep = [Path(p).stem for c in config.values() if c["mode"] == "train" for p in c["paths"]] + list(OLMO_TARGETS)
    return read_tidy(ref / "tidy" / "olmo_ladder.csv.gz",
                     where=lambda d: d[S.MODEL].isin(keep) & d[S.METRIC].isin(OLMO_METRICS))
