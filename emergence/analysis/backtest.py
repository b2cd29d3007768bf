"""Predictor backtest: fit on the models below a size or compute cutoff, predict the rest's final
downstream scores with many predictors, and put every error in one table.

The split is defined once (``split``): per family (or pooled over families), each model's final
checkpoint; models whose params (or flops) are below the cutoff train, the rest are targets. A
predictor is a function ``Problem -> Forecast`` registered in ``PREDICTORS`` (``predictors.py``
holds them); one that cannot run on a problem raises ``CannotPredict`` and its rows say why while
the others still run. ``backtest`` adds, per task and target, the winning predictor and a
``predictable`` verdict with its evidence: the winner's out-of-sample error against the spread of
the data, and how far its prediction moves when the largest training size is dropped
(Lourie et al. 2025 found only 39% of 46 tasks scaling predictably).
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from emergence import schema as S
from emergence.analysis.predictors import PREDICTORS, CannotPredict, Forecast, Problem, compute_of
from emergence.tidy import setting_labels

# A task is called predictable when the winner's error and its cutoff sensitivity are both at
# most this share of the data's spread (sd of the task's final scores over all models): an
# error of half a standard deviation still orders models; more is no better than the mean.
PREDICTABLE_SHARE = 0.5
LOSS_METRIC_PREFIXES = ("bpb", "logprob", "ppl", "perplexity", "loss", "ce_loss", "prob_correct")


@dataclass(frozen=True)
class Split:
    """The problems of one cutoff, and the groups that could not be split (group -> reason)."""

    problems: list
    skipped: dict


@dataclass(frozen=True)
class BacktestConfig:
    """What ``emergence backtest`` ran with; written beside the table."""

    cutoff: float
    by: str = S.PARAMS
    predictors: list | None = None   # None: every registered predictor
    pool: bool = False               # False: each family is split on its own
    task_loss: str = "auto"
    metrics: list | None = None
    tasks: list | None = None
    benchmarks: list | None = None
    n_boot: int = 20                 # per predictor: enough for a rough 90% interval at a fit's cost
    seed: int = 0

    def options(self) -> dict:
        return dict(self.__dict__)


def write_backtest(table: pd.DataFrame, out_dir, config: BacktestConfig) -> list:
    """backtest.csv (every row), backtest.md (the summary table) and backtest.json (the config)."""
    import json
    from pathlib import Path

    from emergence.files import write_atomic

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [write_atomic(out / "backtest.csv", table.to_csv(index=False)),
            write_atomic(out / "backtest.md", markdown(table) + "\n"),
            write_atomic(out / "backtest.json", json.dumps(config.options(), indent=2) + "\n")]


def split(df: pd.DataFrame, cutoff: float, *, by: str = S.PARAMS, pool: bool = False, task_loss: str = "auto",
          metrics=None, tasks=None, benchmarks=None, n_boot: int = 20, seed: int = 0) -> Split:
    """Problems of ``df`` at ``cutoff``: per family (one group with ``pool``), per (task, subtask,
    evaluation setting, metric) whose values are scores in [0, 1] (``metrics``/``tasks`` narrow them).

    ``task_loss``: the metric that is the task's continuous loss ('auto': ``bpb`` with the
    metric's bracket suffix, e.g. bpb[rc] for acc_len_norm[rc]; 'none'; or a metric name).
    ``benchmarks``: task names whose final scores form the capability matrix of observational
    scaling (models x tasks; every model with all of them)."""
    from emergence.tidy import fill_chance

    if by not in (S.PARAMS, S.FLOPS):
        raise ValueError(f"by={by!r}: split by 'params' or 'flops'")
    _check_names(df, task_loss, metrics, tasks)
    df = fill_chance(df)
    groups = [("all", df)] if pool else list(df.groupby(S.FAMILY, sort=True))
    bench = _benchmark_matrix(df, benchmarks) if benchmarks else None
    problems, skipped = [], {}
    for name, g in groups:
        finals = _final_rows(g)
        split_at = _split_values(finals, by)
        if split_at.isna().all():
            skipped[name] = f"no {by} values to split at"
            continue
        train_models = set(finals.loc[split_at < cutoff, S.MODEL])
        test_models = set(finals.loc[split_at >= cutoff, S.MODEL])
        if not train_models or not test_models:
            skipped[name] = (f"{len(train_models)} models below and {len(test_models)} at or above "
                             f"{by} {cutoff:.3g}: nothing to {'fit' if not train_models else 'hold out'}")
            continue
        cache = {}
        for key, curve in _curves(g, metrics, tasks, task_loss):
            task, subtask, setting, metric = key
            frame = curve[1]
            fin = _final_rows(frame)
            chance = pd.to_numeric(curve[0][S.CHANCE], errors="coerce").dropna()
            problems.append(Problem(
                str(name), task if setting == "" else f"{task} ({setting})", subtask, metric,
                float(chance.iloc[0]) if len(chance) else 0.0,
                fin[fin[S.MODEL].isin(train_models)].reset_index(drop=True),
                fin[fin[S.MODEL].isin(test_models)].reset_index(drop=True),
                frame[frame[S.MODEL].isin(train_models)].reset_index(drop=True),
                bench, n_boot, seed, cache))
    return Split(problems, skipped)


def backtest(df: pd.DataFrame, cutoff: float, *, by: str = S.PARAMS, predictors=None, pool: bool = False,
             task_loss: str = "auto", metrics=None, tasks=None, benchmarks=None, n_boot: int = 20,
             seed: int = 0, level: float = 0.9, sensitivity: bool = True) -> pd.DataFrame:
    """Every predictor on every problem of ``split(df, cutoff, ...)``: one row per (group, task,
    subtask, metric, target model, predictor) with prediction, actual, abs error with an interval
    at ``level`` (bootstrap draws of the predictor), status and reason; then ``winner`` (the
    smallest error among the rows that ran), ``shift`` (how far the prediction moves when the
    largest training size is dropped; with ``sensitivity``) and ``predictable`` with ``evidence``."""
    names = list(PREDICTORS) if predictors is None else list(predictors)
    unknown = [n for n in names if n not in PREDICTORS]
    if unknown:
        raise ValueError(f"unknown predictor(s) {unknown}; known: {', '.join(PREDICTORS)}")
    opts = dict(by=by, pool=pool, task_loss=task_loss, metrics=metrics, tasks=tasks, benchmarks=benchmarks)
    sp = split(df, cutoff, n_boot=n_boot, seed=seed, **opts)
    rows = [{"group": g, "predictor": n, "status": "not run", "reason": why} for g, why in sp.skipped.items()
            for n in names]
    for p in sp.problems:
        for n in names:
            rows += _rows(p, n, PREDICTORS[n], level, by)
    if not rows:
        rows = [{"group": "", "predictor": n, "status": "not run", "reason": "no task scored in [0, 1] to predict "
                 "(every metric is a loss, or outside [0, 1]; name them with metrics=...)"} for n in names]
    table = pd.DataFrame(rows)
    if table.empty or "model" not in table:
        return table
    table = table.reindex(columns=table.columns.union(["predicted", "abs_err"], sort=False))
    if sensitivity:
        table = _add_shift(table, df, cutoff, names, opts, seed, level)
    return _add_verdicts(table)


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (group, task, subtask, metric, target): the winner, its error, the spread of
    the data, and the verdict; plus each predictor's error as a column."""
    keys = ["group", "task", "subtask", "metric", "model"]
    ran = table.dropna(subset=["model"]) if "model" in table else table.iloc[:0]
    if ran.empty:
        return pd.DataFrame(columns=keys)
    wide = ran.pivot_table(index=keys, columns="predictor", values="abs_err", aggfunc="first")
    wins = ran[ran["winner"]].set_index(keys)[["predictor", "abs_err", "spread", "predictable", "evidence"]]
    out = ran.drop_duplicates(keys).set_index(keys)[["actual", "spread"]].join(
        wins.drop(columns="spread").rename(columns={"predictor": "winner", "abs_err": "winner_err"})).join(wide)
    return out.reset_index()


def markdown(table: pd.DataFrame, *, digits: int = 3) -> str:
    """The summary as a Markdown table: per task and target each predictor's abs error (the
    winner's in bold, '-' where it could not run), then the verdict and its evidence."""
    s = summary(table)
    if s.empty:
        reasons = table.drop_duplicates("reason")["reason"].tolist() if "reason" in table else []
        return "No problem could be backtested: " + "; ".join(map(str, reasons))
    preds = [c for c in table["predictor"].drop_duplicates() if c in s.columns]
    head = ["| group | task | target | actual | " + " | ".join(preds) + " | predictable | evidence |",
            "|---|---|---|---:|" + "---:|" * len(preds) + "---|---|"]
    lines = []
    for r in s.to_dict("records"):
        cells = []
        for p in preds:
            v = r.get(p)
            cell = "-" if pd.isna(v) else f"{v:.{digits}f}"
            cells.append(f"**{cell}**" if p == r.get("winner") else cell)
        task = r["task"] + (f" / {r['subtask']}" if r["subtask"] else "") + f" ({r['metric']})"
        verdict = [r.get(k) if isinstance(r.get(k), str) else "" for k in ("predictable", "evidence")]
        lines.append(f"| {r['group']} | {task} | {r['model']} | {r['actual']:.3f} | " + " | ".join(cells)
                     + f" | {verdict[0]} | {verdict[1]} |")
    return "\n".join(head + lines)


def predictor_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per predictor: rows that ran and that could not, mean and median abs error, how often the
    bootstrap interval and the calibrated one hold the actual value (and the calibrated one's
    median width), and wins (task x target pairs where its error is smallest)."""
    out = []
    for name, g in table.groupby("predictor", sort=False):
        ok = g[g["status"].eq("ok") & g["abs_err"].notna()] if "abs_err" in g else g.iloc[:0]
        has = ok.dropna(subset=["pred_low", "pred_high"]) if len(ok) else ok
        inside = ((has["pred_low"] <= has["actual"]) & (has["actual"] <= has["pred_high"])) if len(has) else []
        cal = ok.dropna(subset=["cal_low", "cal_high"]) if "cal_low" in ok else ok.iloc[:0]
        cal_inside = ((cal["cal_low"] <= cal["actual"]) & (cal["actual"] <= cal["cal_high"])) if len(cal) else []
        out.append({"predictor": name, "ran": len(ok), "not_run": int((g["status"] == "not run").sum()),
                    "mae": ok["abs_err"].mean() if len(ok) else np.nan,
                    "median_abs_err": ok["abs_err"].median() if len(ok) else np.nan,
                    "coverage": float(np.mean(inside)) if len(has) else np.nan,
                    "cal_coverage": float(np.mean(cal_inside)) if len(cal) else np.nan,
                    "cal_width": float((cal["cal_high"] - cal["cal_low"]).median()) if len(cal) else np.nan,
                    "wins": int(g["winner"].fillna(False).astype(bool).sum()) if "winner" in g else 0,
                    "reason": next(iter(g.loc[g["status"] == "not run", "reason"]), "")})
    return pd.DataFrame(out)


# ----------------------------------------------------------------------------- helpers

def _check_names(df, task_loss, metrics, tasks):
    """Names the table does not have stop the run (an option is never silently ignored)."""
    from emergence.names import unknown_message

    known = {"metric": sorted(df[S.METRIC].astype(str).unique()), "task": sorted(df[S.TASK].astype(str).unique())}
    asked = [("metric", [task_loss] if task_loss not in ("auto", "none") else []), ("metric", metrics or []),
             ("task", tasks or [])]
    for kind, names in asked:
        for name in names:
            if name not in known[kind]:
                raise ValueError(unknown_message(kind, name, known[kind]))


def _rows(p: Problem, name: str, fn, level: float, by: str) -> list:
    base = {"group": p.group, "task": p.task, "subtask": p.subtask, "metric": p.metric, "predictor": name,
            "n_train": len(p.train), "spread": float(p.train["_sd"].iloc[0]) if len(p.train) else np.nan}
    targets = p.test.to_dict("records")
    try:
        fc = fn(p)
        status, reason = "ok", fc.note
    except CannotPredict as e:
        fc, status, reason = None, "not run", str(e)
    rows = []
    for i, t in enumerate(targets):
        row = {**base, "model": t[S.MODEL], S.PARAMS: t[S.PARAMS], by: t.get(by), "actual": t[S.VALUE],
               "status": status, "reason": reason}
        if fc is not None:
            row.update(_scored(fc, i, t[S.VALUE], level))
            if not np.isfinite(row["predicted"]):
                row.update(status="not run", reason=reason or f"{t[S.MODEL]}: no finite prediction "
                           "(its params, tokens or loss are missing)")
        rows.append(row)
    return rows


def _scored(fc: Forecast, i: int, actual: float, level: float) -> dict:
    pred = float(fc.predicted[i])
    lo = hi = np.nan
    if fc.draws is not None and np.isfinite(fc.draws[:, i]).sum() >= 2:
        lo, hi = np.nanpercentile(fc.draws[:, i], [50 * (1 - level), 50 * (1 + level)])
    err = abs(pred - actual)
    # the abs error of any prediction inside [lo, hi]: 0 when the interval holds the actual value
    e_lo = 0.0 if lo <= actual <= hi else min(abs(lo - actual), abs(hi - actual))
    e_hi = max(abs(lo - actual), abs(hi - actual))
    return {"predicted": pred, "pred_low": lo, "pred_high": hi, "abs_err": err,
            "err_low": e_lo if np.isfinite(lo) else np.nan, "err_high": e_hi if np.isfinite(hi) else np.nan}


def _add_shift(table, df, cutoff, names, opts, seed, level):
    """Refit with each group's largest training size (or compute) below the cutoff left out,
    n_boot = 0: the change of each prediction is the cutoff sensitivity, and the errors on the
    left-out models calibrate the intervals (``analysis.intervals``). Only models with a scored
    task count: dropping one that has benchmark scores alone would change nothing."""
    from emergence.analysis.intervals import add_calibrated, model_values

    finals = _final_rows(_scored_rows(df, opts))
    values = _split_values(finals, opts["by"])
    value_of, group_of = model_values(finals, values, opts["pool"])
    v = pd.Series(value_of, dtype=float)
    below = v[v < cutoff]
    per_group = below.groupby(pd.Series(group_of)[below.index])
    # per group with 2+ training sizes: its largest one, the next cutoff down
    lower = per_group.max()[per_group.nunique() >= 2]
    if lower.empty:
        return table.assign(shift=np.nan)
    refits = []
    for at, groups in lower.groupby(lower):      # groups sharing a next cutoff are refitted together
        part = df if opts["pool"] else df[df[S.FAMILY].astype(str).isin(groups.index)]
        refit = backtest(part, float(at), predictors=names, n_boot=0, seed=seed, sensitivity=False, **opts)
        if not refit.empty and "predicted" in refit:
            refits.append(refit)
    if not refits:
        return table.assign(shift=np.nan)
    again = pd.concat(refits, ignore_index=True)
    keys = ["group", "task", "subtask", "metric", "model", "predictor"]
    moved = again.dropna(subset=["model"])[keys + ["predicted"]].rename(columns={"predicted": "_pred_lower"})
    out = table.merge(moved, on=keys, how="left")
    out = out.assign(shift=(out["predicted"] - out["_pred_lower"]).abs()).drop(columns="_pred_lower")
    return add_calibrated(out, again, value_of, group_of, cutoff, lower.to_dict(), level)


def _scored_rows(df, opts):
    """The rows of the tasks a backtest predicts (not the benchmarks it only reads)."""
    if opts.get("tasks"):
        return df[df[S.TASK].isin(list(opts["tasks"]))]
    if opts.get("benchmarks"):
        return df[~df[S.TASK].isin(list(opts["benchmarks"]))]
    return df


def _add_verdicts(table):
    keys = ["group", "task", "subtask", "metric", "model"]
    ok = table["status"].eq("ok") & table["abs_err"].notna()
    best = table[ok].groupby(keys)["abs_err"].idxmin().to_numpy()
    table = table.assign(winner=table.index.isin(best), predictable="", evidence="")
    for idx in best:
        r = table.loc[idx]
        table.loc[idx, ["predictable", "evidence"]] = _verdict(r["abs_err"], r.get("shift", np.nan), r["spread"])
    return table


def _verdict(err, shift, spread):
    if not np.isfinite(spread) or spread <= 0:
        return "unknown", "no spread in the data to compare with"
    e, s = err / spread, (shift / spread if np.isfinite(shift) else np.nan)
    ok = e <= PREDICTABLE_SHARE and (not np.isfinite(s) or s <= PREDICTABLE_SHARE)
    moved = f", cutoff shift {s:.2f} sd" if np.isfinite(s) else ", cutoff shift n/a"
    return ("yes" if ok else "no"), f"error {e:.2f} sd{moved} (sd {spread:.3f})"


def _curves(g, metrics, tasks, task_loss):
    """((task, subtask, setting, metric), (rows, frame)) for each scored curve of one group; the
    setting ("5-shot", "5-shot, mc") keeps curves of different evaluation settings apart."""
    g = g[~g[S.TASK].astype(str).str.startswith("loss/")]
    if tasks is not None:
        g = g[g[S.TASK].isin(list(tasks))]
    g = g.assign(_setting=setting_labels(g), _sub=g[S.SUBTASK].fillna("").astype(str))
    metric = g[S.METRIC].astype(str)
    losses = metric.str.lower().str.startswith(LOSS_METRIC_PREFIXES)
    scored = g[~losses] if metrics is None else g[metric.isin(list(metrics))]
    for (task, sub, setting, m), rows in scored.groupby([S.TASK, "_sub", "_setting", S.METRIC], sort=True):
        v = rows[S.VALUE].to_numpy(float)
        if metrics is None and (np.nanmin(v) < 0 or np.nanmax(v) > 1):
            continue                                # BLEU and friends: not a score in [0, 1]
        tl = _task_loss_rows(g, task, sub, setting, m, task_loss)
        yield (task, sub, setting, m), (rows, _frame(rows, tl))


def _task_loss_rows(g, task, sub, setting, metric, task_loss):
    if task_loss == "none":
        return None
    name = task_loss
    if task_loss == "auto":
        suffix = metric[metric.index("["):] if "[" in metric else ""
        name = "bpb" + suffix
    rows = g[(g[S.TASK] == task) & (g["_sub"] == sub) & (g["_setting"] == setting) & (g[S.METRIC] == name)]
    if rows.empty:
        return None
    sign = -1.0 if name.startswith("logprob") else 1.0    # a log-probability is a negative loss
    return rows.assign(**{S.VALUE: sign * rows[S.VALUE]})


def _frame(rows, task_loss_rows):
    cols = [S.FAMILY, S.MODEL, S.PARAMS, S.TOKENS, S.FLOPS, S.LOSS, S.STEP]
    f = rows.reindex(columns=cols + [S.VALUE]).copy()
    f[S.STEP] = pd.to_numeric(f[S.STEP], errors="coerce")
    if task_loss_rows is None:
        f["task_loss"] = np.nan
    else:
        tl = task_loss_rows[[S.MODEL, S.STEP, S.VALUE]].rename(columns={S.VALUE: "task_loss"})
        tl[S.STEP] = pd.to_numeric(tl[S.STEP], errors="coerce")
        f = f.merge(tl.drop_duplicates([S.MODEL, S.STEP]), on=[S.MODEL, S.STEP], how="left")
    sd = _final_rows(f)[S.VALUE].std(ddof=0)
    return f.assign(_sd=sd)


def _final_rows(df) -> pd.DataFrame:
    """Each model's last checkpoint (by step, else tokens); rows of other keys at that step stay."""
    order = [c for c in (S.STEP, S.TOKENS) if c in df and pd.to_numeric(df[c], errors="coerce").notna().any()]
    if not order:
        return df.drop_duplicates(S.MODEL, keep="last") if S.TASK not in df else df
    key = pd.to_numeric(df[order[0]], errors="coerce").fillna(-np.inf)
    last = key.groupby(df[S.MODEL]).transform("max")
    out = df[key == last]
    return out.drop_duplicates(S.MODEL, keep="last") if S.TASK not in df else out


def _split_values(finals, by) -> pd.Series:
    """Per model (indexed like ``finals``) its params or its compute (``compute_of``)."""
    return pd.to_numeric(finals[S.PARAMS], errors="coerce") if by == S.PARAMS else compute_of(finals)


def _benchmark_matrix(df, benchmarks) -> pd.DataFrame:
    fin = _final_rows(df)
    fin = fin[fin[S.TASK].isin(list(benchmarks))]
    missing = sorted(set(benchmarks) - set(fin[S.TASK]))
    if missing:
        raise ValueError(f"benchmarks {missing} are not tasks of the table")
    wide = fin.groupby([S.MODEL, S.TASK])[S.VALUE].mean().unstack(S.TASK)[list(benchmarks)]
    # a model missing a few benchmarks keeps its place with their mean (Ruan et al. impute too)
    wide = wide[wide.notna().mean(axis=1) >= 0.5]
    return wide.fillna(wide.mean())
