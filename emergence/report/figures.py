"""Report figures: each function takes tidy data (and analysis rows) and returns a new
``matplotlib.figure.Figure``. Nothing here touches pyplot's global state or fits anything.

Conventions: log x where a quantity spans decades (parameters, tokens, FLOPs always), loss axes
run so that lower loss (more capable) is to the right, chance is a dashed grey line, 95% bands
are shaded, colours come from colour-blind-safe palettes (seaborn ``colorblind`` for
categories, ``viridis``/``cividis`` for ordered values), and many lines get a colour bar, never
a legend entry each, so that 16 checkpoints or 20 tasks never produce overlapping labels. The
constants and the helpers the figures share are in ``report.plotting``.
"""


import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import colormaps
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from emergence import schema as S
from emergence.metric_rules import directions_of, kinds_of

from emergence.report import plotting as P
from emergence.report.plotting import (AXIS_LABELS, MAX_FAMILIES, MAX_LINES, MAX_PANELS, STEP_CMAP, Z95,  # noqa: F401
                                       biggest_families, checkpoints, metric_unit, order_by_kind)   # (re-exported)

def loss_scaling_figure(df: pd.DataFrame, curves: pd.DataFrame | None = None) -> Figure:
    """Loss vs parameters (final checkpoint of each model) with the fitted law, its band and
    extrapolation; loss vs tokens (one line per model); loss vs FLOPs (every checkpoint).
    ``curves``: rows (family, form, params, tokens, loss, lo, hi, extrapolated) from the report."""
    pts = checkpoints(df).dropna(subset=[S.LOSS, S.PARAMS])
    panels = loss_panels(pts)
    families = biggest_families(pts, MAX_PANELS)
    with P.style():
        fig = Figure()
        axes = fig.subplots(len(families), len(panels), squeeze=False)
        for row, fam in enumerate(families):
            p = pts[pts[S.FAMILY] == fam]
            norm, cmap = P.lognorm(p[S.PARAMS]), colormaps["viridis"]
            for ax, col in zip(axes[row], panels):
                if col == S.PARAMS:
                    final = p[p["final"]]
                    ax.scatter(final[S.PARAMS], final[S.LOSS], c=cmap(norm(final[S.PARAMS])), s=28,
                               edgecolor="black", linewidth=0.4, zorder=3, label="final checkpoints")
                    P.law_lines(ax, None if curves is None or curves.empty else curves[curves[S.FAMILY] == fam])
                else:
                    models = P.thin(list(p.dropna(subset=[col]).groupby(S.MODEL, sort=False)))
                    segs = [m.sort_values(col)[[col, S.LOSS]].to_numpy(float) for _, m in models]
                    colors = [cmap(norm(m[S.PARAMS].iloc[0])) for _, m in models]
                    ax.add_collection(LineCollection(segs, colors=colors, lw=1.1))
                    xy = np.concatenate(segs)
                    ax.scatter(xy[:, 0], xy[:, 1], s=4 if len(p) > 200 else 16, lw=0, rasterized=True,
                               c=np.repeat(colors, [len(x) for x in segs], axis=0))
                    ax.autoscale_view()
                P.logx(ax)
                ax.set_xlabel(AXIS_LABELS[col])
                ax.set_ylabel("held-out loss (nats/token)")
                ax.set_title(f"{fam}: loss vs {col}", fontsize=P.TEXT_PT)
            P.add_colorbar(fig, norm, cmap, axes[row, -1], "parameters")
        P.layout(fig, axes, (3.5, 2.6), colorbar="last")
    return fig


def loss_panels(pts: pd.DataFrame) -> list:
    """The x axes the loss figure has data for: parameters only where a family has two sizes or
    more (one size is no curve), tokens and compute where they are known."""
    sized = any(P.sizes(g) >= 2 for _, g in pts.groupby(S.FAMILY)) if len(pts) else False
    return [c for c in (S.PARAMS, S.TOKENS, S.FLOPS) if P.has(pts, c) and (c != S.PARAMS or sized)]


def metric_vs_size(curve: pd.DataFrame, x: str = S.PARAMS) -> Figure:
    """One curve (task, subtask, metric) vs size, a panel per family (log x). One line per
    training step shared by the models (colour = step); without shared steps, each model's last
    checkpoint, joined by tokens-per-parameter ratio where models share one. More than
    ``MAX_PANELS`` families share one panel, a line each (see ``families_vs_size``)."""
    families = list(curve[S.FAMILY].unique())
    if len(families) > MAX_PANELS:
        return families_vs_size(curve, x)
    metric = curve[S.METRIC].iloc[0]
    with P.style():
        fig = Figure()
        grid = fig.subplots(1, len(families), squeeze=False)
        bars = False
        for ax, fam in zip(grid[0], families):
            g = curve[(curve[S.FAMILY] == fam)].dropna(subset=[x])
            shared = P.shared_steps(g)
            if len(shared) >= 2:
                bars = True
                P.lines_per_step(fig, ax, g[g[S.STEP].isin(shared)], x, metric)
            else:
                P.final_points(fig, ax, g, x)
            P.chance(ax, g)
            P.logx(ax)
            P.metric_axis(ax, g, metric)
            ax.set_xlabel(AXIS_LABELS.get(x, x))
            ax.set_title(f"{fam}", fontsize=P.TEXT_PT)
        P.layout(fig, grid, (3.8, 2.6), colorbar="each" if bars else None)
    return fig


def metric_vs_tokens(curve: pd.DataFrame, verdicts: pd.DataFrame | None = None,
                     outliers: pd.DataFrame | None = None) -> Figure:
    """Training dynamics of one curve, a row per family that has runs with several checkpoints:
    the metric vs training tokens (steps where tokens are unknown), one line per model coloured
    by its size; beside it, when every such family has a held-out loss, the same checkpoints
    pooled against loss (lower loss to the right) with the loss verdict's threshold eta and its
    interval. ``verdicts``: this curve's rows on axis loss; ``outliers``: checkpoints flagged by
    ``tables.outlier_checkpoints`` (ringed)."""
    x = S.TOKENS if P.has(curve, S.TOKENS) else S.STEP
    rows = curve[pd.to_numeric(curve[x], errors="coerce") > 0]
    families = [f for f in biggest_families(rows, MAX_PANELS) if P.trains(rows[rows[S.FAMILY] == f], x)]
    pooled = all(P.has(rows[rows[S.FAMILY] == f], S.LOSS) for f in families)
    metric = curve[S.METRIC].iloc[0]
    flagged = set() if outliers is None or outliers.empty else set(outliers["checkpoint"])
    with P.style():
        fig = Figure()
        side_by_side = not pooled and len(families) <= 2   # two families without loss: one row
        shape = (1, len(families)) if side_by_side else (len(families), 2 if pooled else 1)
        axes = fig.subplots(*shape, squeeze=False)
        for r, fam in enumerate(families):
            g = rows[rows[S.FAMILY] == fam]
            ax = axes[0, r] if side_by_side else axes[r, 0]
            norm, cmap = P.lognorm(g[S.PARAMS]), colormaps["cividis"]   # as points_by_size, beside it
            n_runs = P.lines_per_run(ax, g, x, norm, cmap, flagged)
            P.chance(ax, g)
            P.logx(ax)
            P.metric_axis(ax, g, metric)
            ax.set_xlabel(AXIS_LABELS.get(x, "training step"))
            one = P.sizes(g) == 1
            runs = f"{n_runs} run" + ("" if n_runs == 1 else "s") + (f", {P.si(g[S.PARAMS].max())} parameters" if one else "")
            ax.set_title(f"{fam}: {metric} during training ({runs})", fontsize=P.TEXT_PT)
            if P.sizes(g) >= 2:   # one size needs no colour scale: the title gives it
                P.add_colorbar(fig, norm, cmap, ax, "parameters")
            if pooled:
                ax = axes[r, 1]
                m = g.dropna(subset=[S.LOSS])
                P.points_by_size(fig, ax, m, S.LOSS, colorbar=False)
                P.chance(ax, m)
                v = P.verdict_for(verdicts, fam, metric=metric)
                _threshold(ax, v, S.LOSS)
                if P.spans_decades(m[S.LOSS], 1):
                    P.logx(ax)
                ax.invert_xaxis()
                P.metric_axis(ax, m, metric)
                ax.set_xlabel(AXIS_LABELS[S.LOSS])
                ax.set_title(f"{fam}: every checkpoint vs loss" + _verdict_text(v, S.LOSS), fontsize=P.TEXT_PT)
        P.layout(fig, axes, (3.9, 2.6), colorbar="each")
    return fig


def metric_vs_size_fit(curve: pd.DataFrame, verdicts: pd.DataFrame | None = None, lines: dict | None = None) -> Figure:
    """One curve vs size at each model's final checkpoint (95% intervals; models with the same
    tokens-per-parameter ratio joined), a panel per family with at least two sizes, with the
    curve the size verdict chose (``lines``: {family: (x, y)}, from ``analysis.fitted``), its
    threshold eta and eta's interval shaded, and the verdict in the title."""
    rows = curve.dropna(subset=[S.PARAMS])
    families = [f for f in biggest_families(rows, MAX_PANELS) if P.sizes(rows[rows[S.FAMILY] == f]) >= 2]
    metric = curve[S.METRIC].iloc[0]
    with P.style():
        fig = Figure()
        grid = fig.subplots(1, len(families), squeeze=False)
        for ax, fam in zip(grid[0], families):
            g = rows[rows[S.FAMILY] == fam]
            P.final_points(fig, ax, g, S.PARAMS)
            v = P.verdict_for(verdicts, fam, metric=metric)
            line = (lines or {}).get(fam)
            if line is not None and v is not None:
                ax.plot(line[0], line[1], color="black", lw=1.6, zorder=4, label="the verdict's fitted curve")
            _threshold(ax, v, S.PARAMS)
            P.chance(ax, g)
            P.logx(ax)
            P.metric_axis(ax, g, metric)
            ax.set_xlabel(AXIS_LABELS[S.PARAMS])
            ax.set_title(f"{fam}: final checkpoints" + _verdict_text(v, S.PARAMS, model=True), fontsize=P.TEXT_PT)
        P.layout(fig, grid, (4.2, 2.8))
    return fig


def families_vs_size(curve: pd.DataFrame, x: str = S.PARAMS, top: int = MAX_FAMILIES) -> Figure:
    """One curve vs size for many families in one panel: each family's models at their last
    checkpoint, joined; the ``top`` families with most models in colour, the rest in grey."""
    metric = curve[S.METRIC].iloc[0]
    fin = P.final_step(curve).dropna(subset=[x])
    fin = fin.groupby([S.FAMILY, S.MODEL], as_index=False, sort=False).agg(x=(x, "first"), value=(S.VALUE, "mean"))
    ranked = fin.groupby(S.FAMILY, sort=False).size().sort_values(ascending=False, kind="stable")
    palette = [c for i, c in enumerate(sns.color_palette("colorblind", 10)) if i != 7]  # 7: grey, kept for "other"
    colours = dict(zip(ranked.index[:top], palette))
    with P.style():
        fig = Figure()
        ax = fig.subplots()
        for fam in list(ranked.index[top:]) + list(ranked.index[:top]):  # grey ones underneath
            g = fin[fin[S.FAMILY] == fam].sort_values("x")
            colour = colours.get(fam, "#C8C8C8")
            ax.plot(g["x"], g["value"], color=colour, marker="o", ms=3.5, lw=1.2 if fam in colours else 0.8,
                    zorder=3 if fam in colours else 2, label=fam if fam in colours else None)
        if len(ranked) > top:
            ax.plot([], [], color="#C8C8C8", marker="o", ms=3.5, lw=0.8, label=f"{len(ranked) - top} other families")
        P.chance(ax, curve)
        P.logx(ax)
        P.metric_axis(ax, fin.rename(columns={"value": S.VALUE}), metric, directions_of(curve)[metric])
        ax.set_xlabel(AXIS_LABELS.get(x, x))
        ax.set_title(f"{len(ranked)} families, final checkpoint of each model", fontsize=P.TEXT_PT)
        P.layout(fig, np.array([[ax]]), (6.0, 3.2), ncol=4)
    return fig


def metric_vs_loss(curve: pd.DataFrame, verdicts: pd.DataFrame | None = None) -> Figure:
    """One curve vs held-out loss, pooled over sizes and steps (lower loss to the right), a
    panel per family: points coloured by size, chance level, and for an emergent verdict the
    threshold eta with its 95% interval shaded. ``verdicts``: this curve's rows on axis loss."""
    return metric_panels(curve, S.LOSS, verdicts)


def metric_views(task: pd.DataFrame, x: str, verdicts: pd.DataFrame | None = None, kinds=None) -> Figure:
    """The same outputs under discontinuous and continuous metrics side by side (discontinuous
    first), against ``x``: loss (every checkpoint pooled) or size (final checkpoints). Kinds:
    ``kinds`` ({metric: kind}), else the table's ``metric_kind``, else the name rule."""
    kinds = kinds_of(task, kinds)
    return metric_panels(task, x, verdicts, order_by_kind(task[S.METRIC].unique(), kinds), kinds)


def metric_panels(rows: pd.DataFrame, x: str, verdicts: pd.DataFrame | None = None, metrics=None,
                  kinds=None) -> Figure:
    """A grid: one row per family, one panel per metric, each metric against ``x`` (loss: every
    checkpoint, lower loss to the right; otherwise each model's final checkpoint, log x),
    coloured by size, with chance and, where ``verdicts`` (rows on axis ``x``) has an emergent
    threshold, eta and its interval."""
    families = [f for f in biggest_families(rows, MAX_PANELS)   # never an empty panel, nor one of a single size
                if (P.has(rows[rows[S.FAMILY] == f], x) if x == S.LOSS else P.sizes(rows[rows[S.FAMILY] == f], x) >= 2)]
    metrics = list(metrics if metrics is not None else rows[S.METRIC].unique())[:MAX_PANELS]
    kinds = kinds_of(rows, kinds)
    data = rows if x == S.LOSS else P.final_step(rows)
    with P.style():
        fig = Figure()
        axes = fig.subplots(len(families), len(metrics), squeeze=False)
        for r, fam in enumerate(families):
            for c, metric in enumerate(metrics):
                ax = axes[r, c]
                m = data[(data[S.FAMILY] == fam) & (data[S.METRIC] == metric)].dropna(subset=[x])
                P.points_by_size(fig, ax, m, x, colorbar=c == len(metrics) - 1)
                P.chance(ax, m)
                v = P.verdict_for(verdicts, fam, metric=metric)
                _threshold(ax, v, x)
                if x != S.LOSS or P.spans_decades(m[x], 1):
                    P.logx(ax)
                if x == S.LOSS:
                    ax.invert_xaxis()
                P.metric_axis(ax, m, metric)
                ax.set_xlabel(AXIS_LABELS.get(x, x))
                kind = kinds.get(metric)
                title = f"{fam}: {metric}" + (f" [{kind}]" if kind and len(metrics) > 1 else "")
                ax.set_title(title + _verdict_text(v, x), fontsize=P.TEXT_PT)
        P.layout(fig, axes, (3.4, 2.5), colorbar="last")
    return fig


def _threshold(ax, v, x):
    if v is None or pd.isna(v.get("eta")):
        return
    lo, hi = v.get("eta_lo"), v.get("eta_hi")
    if pd.notna(lo) and pd.notna(hi):
        ax.axvspan(lo, hi, color="#D55E00", alpha=0.15, lw=0, label="threshold eta: 95% interval")
    ax.axvline(v["eta"], color="#D55E00", lw=1.5, label="threshold eta")


def _verdict_text(v, x, model=False):
    if v is None:
        return ""
    text = f"\nverdict vs {x}: {v['label']}"
    if model and isinstance(v.get("best_model"), str):
        text += f" ({v['best_model']})"
    if pd.notna(v.get("eta")):
        unit = " nats" if x == S.LOSS else ""
        fmt = (lambda e: f"{e:.3g}") if x == S.LOSS else P.si
        text += f"\neta = {fmt(v['eta'])} [{fmt(v.get('eta_lo', np.nan))}, {fmt(v.get('eta_hi', np.nan))}]{unit}"
    return text


def composite_figure(task: pd.DataFrame, x: str, k_eff: float | None = None, subtask_metric: str = "acc",
                     composite_metric: str = "exact_match") -> Figure:
    """Each sub-task's accuracy, the composite (exact match), and the composite predicted from
    the sub-tasks (product as if independent; mean ** k_eff when the fitted k_eff is given),
    against ``x`` over the checkpoints that have every sub-task."""
    fam = task[S.FAMILY].iloc[0]
    g = task[task[S.FAMILY] == fam]
    if x != S.LOSS:
        g = P.final_step(g)
    subs = g[(g[S.SUBTASK] != "") & (g[S.METRIC] == subtask_metric)]
    comp = g[(g[S.SUBTASK] == "") & (g[S.METRIC] == composite_metric)]
    wide = subs.pivot_table(index=S.CHECKPOINT, columns=S.SUBTASK, values=S.VALUE, aggfunc="mean").dropna()
    xs = g.groupby(S.CHECKPOINT)[x].first()
    c = comp.groupby(S.CHECKPOINT)[S.VALUE].mean()
    common = wide.index.intersection(c.index).intersection(xs.dropna().index)
    order = xs.loc[common].sort_values().index
    xv = xs.loc[order].to_numpy(float)
    palette = sns.color_palette("crest", max(3, len(wide.columns)))  # one group, apart from the predictions
    with P.style():
        fig = Figure()
        ax = fig.subplots()
        for i, sub in enumerate(wide.columns):
            ax.plot(xv, wide.loc[order, sub], color=palette[i % len(palette)], lw=1, alpha=0.6, marker=".",
                    label=f"sub-task {sub} ({subtask_metric})" if i < 8 else None)
        ax.plot(xv, c.loc[order], color="black", lw=2.2, marker="o", ms=4, label=f"composite ({composite_metric})")
        ax.plot(xv, wide.loc[order].prod(axis=1), color="#D55E00", lw=1.8, ls="--",
                label="predicted: product of sub-tasks")
        if k_eff is not None and np.isfinite(k_eff):
            ax.plot(xv, wide.loc[order].mean(axis=1) ** k_eff, color="#0072B2", lw=1.8, ls=":",
                    label=f"predicted: mean ** k_eff ({k_eff:.2f})")
        P.logx(ax)
        if x == S.LOSS:
            ax.invert_xaxis()
        ax.set_xlabel(AXIS_LABELS.get(x, x))
        ax.set_ylabel("accuracy (proportion)")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{fam}: {len(wide.columns)} sub-tasks vs the composite", fontsize=P.TEXT_PT)
        P.layout(fig, np.array([[ax]]), (5.0, 2.8), ncol=2)
    return fig


def predictions_figure(pred: pd.DataFrame) -> Figure:
    """Backtests: predicted vs actual per task (columns task, actual, predicted[, lo, hi]
    [, reference]: e.g. a published prediction), one row per task (so 20 task names never
    overlap), and the relative error of ``predicted`` beside it."""
    p = pred.copy()
    p["rel_error"] = (p["predicted"] - p["actual"]) / p["actual"].abs().where(p["actual"] != 0)
    p = p.iloc[::-1].reset_index(drop=True)
    y = np.arange(len(p))
    blue, orange = "#0072B2", "#D55E00"
    with P.style():
        fig = Figure()
        ax, ax2 = fig.subplots(1, 2, sharey=True, width_ratios=(2, 1))
        if {"lo", "hi"} <= set(p.columns):
            ax.hlines(y, p["lo"], p["hi"], color=orange, lw=3, alpha=0.35, label="prediction interval")
        ax.scatter(p["actual"], y, color="black", s=30, zorder=3, label="actual")
        ax.scatter(p["predicted"], y, facecolor="white", edgecolor=orange, s=36, lw=1.5, zorder=4,
                   label="predicted")
        if "reference" in p.columns:
            ax.scatter(p["reference"], y, marker="D", facecolor="none", edgecolor=blue, s=30, lw=1.2, zorder=4,
                       label="published prediction")
        ax.set_yticks(y, [str(t) for t in p["task"]], fontsize=P.TEXT_PT)
        ax.set_xlabel("metric value")
        ax2.barh(y, 100 * p["rel_error"], color=[blue if e >= 0 else orange for e in p["rel_error"]])
        ax2.axvline(0, color="black", lw=0.8)
        ax2.set_xlabel("relative error (%)")
        ax.set_title("predicted vs actual", fontsize=P.TEXT_PT)
        ax2.set_title("(predicted - actual) / actual", fontsize=P.TEXT_PT)
        P.layout(fig, np.array([[ax, ax2]]), (3.0, 0.25 * len(p) + 0.2), left=0.4 + P.width_in(p["task"], P.TEXT_PT),
                wgap=0.3)
    return fig


def onset_figure(onset: pd.DataFrame) -> Figure:
    """Where tasks emerge (``emergence.analysis.onset`` rows): per curve, the loss threshold eta predicted
    from the small models against the estimate from all models (left; lower loss to the right),
    and the critical size N_c (right, log): predicted with its interval, the all-model estimate,
    the sizes between which the family's own losses cross eta (grey), and, where the small
    models never reached eta, the lower bound (a right-pointing triangle)."""
    o = onset[onset["status"].isin(["predicted", "not confirmed", "bound", "missed"])].copy()
    o = o.iloc[::-1].reset_index(drop=True)
    y = np.arange(len(o))
    label = [f"{t} / {m}" + ("" if o[S.FAMILY].nunique() == 1 else f" ({f})")
             for t, m, f in zip(o[S.TASK], o[S.METRIC], o[S.FAMILY])]
    orange, grey = "#D55E00", "#BBBBBB"
    with P.style():
        fig = Figure()
        ax, ax2 = fig.subplots(1, 2, sharey=True)
        for a, mid, lo, hi, full in ((ax, "eta_pred", "eta_pred_lo", "eta_pred_hi", "eta_full"),
                                     (ax2, "nc_pred", "nc_pred_lo", "nc_pred_hi", "nc_full")):
            for c in (mid, lo, hi, full):
                o[c] = pd.to_numeric(o.get(c), errors="coerce")
            a.hlines(y, o[lo], o[hi], color=orange, lw=3, alpha=0.35, label="predicted interval")
            a.scatter(o[mid], y, facecolor="white", edgecolor=orange, s=36, lw=1.5, zorder=4,
                      label="predicted from small models")
            a.scatter(o[full], y, color="black", s=22, zorder=3, label="estimate from all models")
        finite = pd.concat([o[c] for c in ("nc_pred", "nc_full", "nc_observed_lo", "nc_observed_hi", "nc_bound")
                            if c in o]).pipe(pd.to_numeric, errors="coerce")
        finite = finite[np.isfinite(finite) & (finite > 0)]
        if len(finite):
            left, right = finite.min() / 3, finite.max() * 3
            for i, r in enumerate(o.to_dict("records")):
                olo, ohi = r.get("nc_observed_lo"), r.get("nc_observed_hi")
                if pd.notna(olo) or pd.notna(ohi):
                    ax2.fill_betweenx([i - 0.3, i + 0.3], olo if pd.notna(olo) else left,
                                      ohi if pd.notna(ohi) else right, color=grey, alpha=0.5, lw=0,
                                      label="observed between", zorder=1)
                if pd.notna(r.get("nc_bound")):
                    ax2.scatter([r["nc_bound"]], [i], marker=">", color=orange, s=40, zorder=4,
                                label="lower bound (eta not reached)")
            ax2.set_xlim(left, right)
        cutoff = pd.to_numeric(o.get("cutoff"), errors="coerce").dropna()
        if len(cutoff):
            ax2.axvline(cutoff.iloc[0], color="black", lw=0.8, ls="--", label="size cutoff")
        P.logx(ax2)
        ax.invert_xaxis()                                      # lower loss (more capable) to the right
        ax.set_yticks(y, label, fontsize=P.TEXT_PT)
        ax.set_xlabel("loss threshold eta (nats)")
        ax2.set_xlabel("critical size N_c (parameters)")
        ax.set_title("where the task emerges: loss", fontsize=P.TEXT_PT)
        ax2.set_title("... and size, at the family's recipe", fontsize=P.TEXT_PT)
        P.layout(fig, np.array([[ax, ax2]]), (3.0, 0.3 * len(o) + 0.3), left=0.4 + P.width_in(label, P.TEXT_PT), wgap=0.3)
    return fig


def finetune_law_figure(table: pd.DataFrame, row: dict, truth: dict | None = None) -> Figure:
    """An emergence law (``analysis.finetune_law``): left, the task's metric vs the base
    checkpoints' pretraining loss, a line per fine-tuning amount D (D = 0 black), with open
    markers for the models' scores on their own training questions where recorded; right, each
    emergent amount's threshold eta(D) with its interval, the law and its extrapolation to the
    few-shot limit D0, and ``truth`` (eta, eta_lo, eta_hi: the measured onset) when given."""
    from emergence.analysis.finetune_law import AMOUNT, SEEN_VALUE

    t = table[(table[S.TASK] == row[S.TASK]) & (table[S.SUBTASK] == row[S.SUBTASK])
              & (table[S.METRIC] == row[S.METRIC])].dropna(subset=[S.LOSS])
    amounts = sorted(t[AMOUNT].unique())
    positive = [a for a in amounts if a > 0]
    norm = P.lognorm(positive) if positive else None
    cmap = colormaps["viridis"]
    with P.style():
        fig = Figure()
        ax, ax2 = fig.subplots(1, 2)
        values = [S.VALUE] + ([SEEN_VALUE] if SEEN_VALUE in t else [])
        for amount in amounts:
            g = t[t[AMOUNT] == amount].groupby(S.LOSS, as_index=False)[values].max()
            colour = "black" if amount == 0 else cmap(norm(amount))
            ax.plot(g[S.LOSS], g[S.VALUE], "-o", color=colour, ms=3, lw=1.2, zorder=3 if amount == 0 else 2)
            if SEEN_VALUE in g and g[SEEN_VALUE].notna().any():
                ax.scatter(g[S.LOSS], g[SEEN_VALUE], facecolor="none", edgecolor=colour, s=18, lw=0.9, zorder=2)
        P.chance(ax, t)
        ax.invert_xaxis()
        ax.set_xlabel("base checkpoint's pretraining loss (nats)")
        P.metric_axis(ax, t, row[S.METRIC])
        ax.set_title(f"{row[S.TASK]}: held-out questions (lines), own training questions (open)", fontsize=P.TEXT_PT)
        if norm is not None:
            P.add_colorbar(fig, norm, cmap, ax, "fine-tuning examples D")
        pts = row["points"]
        em = pts[(pts[AMOUNT] > 0) & (pts["label"] == "emergent")]
        if len(em):
            ax2.errorbar(em[AMOUNT], em["eta"], yerr=[em["eta"] - em["eta_lo"], em["eta_hi"] - em["eta"]], fmt="o",
                         color="#0072B2", ms=4, capsize=2, label="eta(D) of an emergent amount")
        law = row.get("law")
        if law is not None:
            D = np.geomspace(law.d0, max(em[AMOUNT].max(), law.d0 * 10), 100)
            ax2.plot(D, law.predict(D), color="#0072B2", lw=1, label="emergence law")
            ax2.errorbar([law.d0], [law.eta], yerr=[[law.eta - law.eta_lo], [law.eta_hi - law.eta]], fmt="*",
                         color="#D55E00", ms=9, capsize=3, label=f"predicted few-shot eta (D0 = {law.d0:g})")
        if truth and truth.get("eta") is not None:
            ax2.axhline(truth["eta"], color="black", lw=1, ls="--", label="measured onset (held out)")
            if truth.get("eta_lo") is not None:
                ax2.axhspan(truth["eta_lo"], truth["eta_hi"], color="black", alpha=0.12, lw=0)
        if law is None:
            ax2.text(0.5, 0.5, f"no law: {row['status']}\n({row.get('amounts_emergent', '')} amounts emergent)",
                     ha="center", va="center", transform=ax2.transAxes, fontsize=P.TEXT_PT)
        if positive:
            ax2.set_xlim(min([*positive, law.d0 if law is not None else positive[0]]) / 2, max(positive) * 2)
            P.logx(ax2)
        ax2.set_xlabel("fine-tuning examples D")
        ax2.set_ylabel("threshold eta (nats)")
        ax2.set_title("threshold vs fine-tuning data", fontsize=P.TEXT_PT)
        P.layout(fig, np.array([[ax, ax2]]), (3.2, 2.4), colorbar="each", ncol=2)
    return fig
