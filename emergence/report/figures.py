"""Report figures: each function takes tidy data (and analysis rows) and returns a new
``matplotlib.figure.Figure``. Nothing here touches pyplot's global state or fits anything.

Conventions: log x where a quantity spans decades (parameters, tokens, FLOPs always), loss axes
run so that lower loss (more capable) is to the right, chance is a dashed grey line, 95% bands
are shaded, colours come from colour-blind-safe palettes (seaborn ``colorblind`` for
categories, ``viridis``/``cividis`` for ordered values), and many lines get a colour bar, never
a legend entry each, so that 16 checkpoints or 20 tasks never produce overlapping labels.
"""

from contextlib import ExitStack

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter
from matplotlib.transforms import Bbox

from emergence import schema as S
from emergence.metric_rules import (CONTINUOUS, DISCONTINUOUS, directions_of, kinds_of, metric_higher_is_better,
                                    metric_is_proportion, metric_kind)

AXIS_LABELS = {S.PARAMS: "parameters (total)", S.PARAMS_NONEMBED: "parameters (non-embedding)",
               S.TOKENS: "training tokens", S.FLOPS: "training compute (FLOPs)",
               S.LOSS: "held-out loss (nats/token; lower is to the right)"}
Z95 = 1.96
MAX_PANELS = 4           # families or metrics side by side in one figure
MAX_FAMILIES = 9         # families in colour when many share a panel: the colour-blind palette less its grey
MAX_LINES = 40           # per-model lines drawn individually; more are thinned evenly (said in the caption)
# Early steps light, the final step dark (it is drawn thick): viridis reversed, without its
# palest yellow, which vanishes on white.
STEP_CMAP = mcolors.ListedColormap(colormaps["viridis_r"](np.linspace(0.12, 1.0, 256)), name="steps")


def loss_scaling_figure(df: pd.DataFrame, curves: pd.DataFrame | None = None) -> Figure:
    """Loss vs parameters (final checkpoint of each model) with the fitted law, its band and
    extrapolation; loss vs tokens (one line per model); loss vs FLOPs (every checkpoint).
    ``curves``: rows (family, form, params, tokens, loss, lo, hi, extrapolated) from the report."""
    pts = checkpoints(df).dropna(subset=[S.LOSS, S.PARAMS])
    panels = [c for c in (S.PARAMS, S.TOKENS, S.FLOPS) if _has(pts, c)]
    families = biggest_families(pts, MAX_PANELS)
    with _style():
        fig = Figure()
        axes = fig.subplots(len(families), len(panels), squeeze=False)
        for row, fam in enumerate(families):
            p = pts[pts[S.FAMILY] == fam]
            norm, cmap = _lognorm(p[S.PARAMS]), colormaps["viridis"]
            for ax, col in zip(axes[row], panels):
                if col == S.PARAMS:
                    final = p[p["final"]]
                    ax.scatter(final[S.PARAMS], final[S.LOSS], c=cmap(norm(final[S.PARAMS])), s=28,
                               edgecolor="black", linewidth=0.4, zorder=3, label="final checkpoints")
                    _law_lines(ax, None if curves is None or curves.empty else curves[curves[S.FAMILY] == fam])
                else:
                    models = _thin(list(p.dropna(subset=[col]).groupby(S.MODEL, sort=False)))
                    segs = [m.sort_values(col)[[col, S.LOSS]].to_numpy(float) for _, m in models]
                    colors = [cmap(norm(m[S.PARAMS].iloc[0])) for _, m in models]
                    ax.add_collection(LineCollection(segs, colors=colors, lw=1.1))
                    xy = np.concatenate(segs)
                    ax.scatter(xy[:, 0], xy[:, 1], s=4 if len(p) > 200 else 16, lw=0, rasterized=True,
                               c=np.repeat(colors, [len(x) for x in segs], axis=0))
                    ax.autoscale_view()
                _logx(ax)
                ax.set_xlabel(AXIS_LABELS[col])
                ax.set_ylabel("held-out loss (nats/token)")
                ax.set_title(f"{fam}: loss vs {col}", fontsize=9)
            _colorbar(fig, norm, cmap, axes[row, -1], "parameters")
        _layout(fig, axes, (3.5, 2.6), colorbar="last")
    return fig


def metric_vs_size(curve: pd.DataFrame, x: str = S.PARAMS) -> Figure:
    """One curve (task, subtask, metric) vs size, a panel per family (log x). One line per
    training step shared by the models (colour = step); without shared steps, each model's last
    checkpoint, joined by tokens-per-parameter ratio where models share one. More than
    ``MAX_PANELS`` families share one panel, a line each (see ``families_vs_size``)."""
    families = list(curve[S.FAMILY].unique())
    if len(families) > MAX_PANELS:
        return families_vs_size(curve, x)
    metric = curve[S.METRIC].iloc[0]
    with _style():
        fig = Figure()
        grid = fig.subplots(1, len(families), squeeze=False)
        bars = False
        for ax, fam in zip(grid[0], families):
            g = curve[(curve[S.FAMILY] == fam)].dropna(subset=[x])
            shared = _shared_steps(g)
            if len(shared) >= 2:
                bars = True
                _lines_per_step(fig, ax, g[g[S.STEP].isin(shared)], x, metric)
            else:
                _final_points(fig, ax, g, x)
            _chance(ax, g)
            _logx(ax)
            _metric_axis(ax, g, metric)
            ax.set_xlabel(AXIS_LABELS.get(x, x))
            ax.set_title(f"{fam}", fontsize=9)
        _layout(fig, grid, (3.8, 2.6), colorbar="each" if bars else None)
    return fig


def families_vs_size(curve: pd.DataFrame, x: str = S.PARAMS, top: int = MAX_FAMILIES) -> Figure:
    """One curve vs size for many families in one panel: each family's models at their last
    checkpoint, joined; the ``top`` families with most models in colour, the rest in grey."""
    metric = curve[S.METRIC].iloc[0]
    fin = _final_step(curve).dropna(subset=[x])
    fin = fin.groupby([S.FAMILY, S.MODEL], as_index=False, sort=False).agg(x=(x, "first"), value=(S.VALUE, "mean"))
    ranked = fin.groupby(S.FAMILY, sort=False).size().sort_values(ascending=False, kind="stable")
    palette = [c for i, c in enumerate(sns.color_palette("colorblind", 10)) if i != 7]  # 7: grey, kept for "other"
    colours = dict(zip(ranked.index[:top], palette))
    with _style():
        fig = Figure()
        ax = fig.subplots()
        for fam in list(ranked.index[top:]) + list(ranked.index[:top]):  # grey ones underneath
            g = fin[fin[S.FAMILY] == fam].sort_values("x")
            colour = colours.get(fam, "#C8C8C8")
            ax.plot(g["x"], g["value"], color=colour, marker="o", ms=3.5, lw=1.2 if fam in colours else 0.8,
                    zorder=3 if fam in colours else 2, label=fam if fam in colours else None)
        if len(ranked) > top:
            ax.plot([], [], color="#C8C8C8", marker="o", ms=3.5, lw=0.8, label=f"{len(ranked) - top} other families")
        _chance(ax, curve)
        _logx(ax)
        _metric_axis(ax, fin.rename(columns={"value": S.VALUE}), metric, directions_of(curve)[metric])
        ax.set_xlabel(AXIS_LABELS.get(x, x))
        ax.set_title(f"{len(ranked)} families, final checkpoint of each model", fontsize=9)
        _layout(fig, np.array([[ax]]), (6.0, 3.2), ncol=4)
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
    families = biggest_families(rows, MAX_PANELS)
    metrics = list(metrics if metrics is not None else rows[S.METRIC].unique())[:MAX_PANELS]
    kinds = kinds_of(rows, kinds)
    data = rows if x == S.LOSS else _final_step(rows)
    with _style():
        fig = Figure()
        axes = fig.subplots(len(families), len(metrics), squeeze=False)
        for r, fam in enumerate(families):
            for c, metric in enumerate(metrics):
                ax = axes[r, c]
                m = data[(data[S.FAMILY] == fam) & (data[S.METRIC] == metric)].dropna(subset=[x])
                _points_by_size(fig, ax, m, x, colorbar=c == len(metrics) - 1)
                _chance(ax, m)
                v = _verdict_for(verdicts, fam, metric=metric)
                _threshold(ax, v, x)
                if x != S.LOSS or _spans_decades(m[x], 1):
                    _logx(ax)
                if x == S.LOSS:
                    ax.invert_xaxis()
                _metric_axis(ax, m, metric)
                ax.set_xlabel(AXIS_LABELS.get(x, x))
                kind = kinds.get(metric)
                title = f"{fam}: {metric}" + (f" [{kind}]" if kind and len(metrics) > 1 else "")
                ax.set_title(title + _verdict_text(v, x), fontsize=9)
        _layout(fig, axes, (3.4, 2.5), colorbar="last")
    return fig


def _threshold(ax, v, x):
    if v is None or pd.isna(v.get("eta")):
        return
    lo, hi = v.get("eta_lo"), v.get("eta_hi")
    if pd.notna(lo) and pd.notna(hi):
        ax.axvspan(lo, hi, color="#D55E00", alpha=0.15, lw=0, label="threshold eta: 95% interval")
    ax.axvline(v["eta"], color="#D55E00", lw=1.5, label="threshold eta")


def _verdict_text(v, x):
    if v is None:
        return ""
    text = f"\nverdict vs {x}: {v['label']}"
    if pd.notna(v.get("eta")):
        unit = " nats" if x == S.LOSS else ""
        fmt = (lambda e: f"{e:.3g}") if x == S.LOSS else _si
        text += f", eta = {fmt(v['eta'])} [{fmt(v.get('eta_lo', np.nan))}, {fmt(v.get('eta_hi', np.nan))}]{unit}"
    return text


def composite_figure(task: pd.DataFrame, x: str, k_eff: float | None = None, subtask_metric: str = "acc",
                     composite_metric: str = "exact_match") -> Figure:
    """Each sub-task's accuracy, the composite (exact match), and the composite predicted from
    the sub-tasks (product as if independent; mean ** k_eff when the fitted k_eff is given),
    against ``x`` over the checkpoints that have every sub-task."""
    fam = task[S.FAMILY].iloc[0]
    g = task[task[S.FAMILY] == fam]
    if x != S.LOSS:
        g = _final_step(g)
    subs = g[(g[S.SUBTASK] != "") & (g[S.METRIC] == subtask_metric)]
    comp = g[(g[S.SUBTASK] == "") & (g[S.METRIC] == composite_metric)]
    wide = subs.pivot_table(index=S.CHECKPOINT, columns=S.SUBTASK, values=S.VALUE, aggfunc="mean").dropna()
    xs = g.groupby(S.CHECKPOINT)[x].first()
    c = comp.groupby(S.CHECKPOINT)[S.VALUE].mean()
    common = wide.index.intersection(c.index).intersection(xs.dropna().index)
    order = xs.loc[common].sort_values().index
    xv = xs.loc[order].to_numpy(float)
    palette = sns.color_palette("crest", max(3, len(wide.columns)))  # one group, apart from the predictions
    with _style():
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
        _logx(ax)
        if x == S.LOSS:
            ax.invert_xaxis()
        ax.set_xlabel(AXIS_LABELS.get(x, x))
        ax.set_ylabel("accuracy (proportion)")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{fam}: {len(wide.columns)} sub-tasks vs the composite", fontsize=9)
        _layout(fig, np.array([[ax]]), (5.0, 2.8), ncol=2)
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
    with _style():
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
        ax.set_yticks(y, [str(t) for t in p["task"]], fontsize=8)
        ax.set_xlabel("metric value")
        ax2.barh(y, 100 * p["rel_error"], color=[blue if e >= 0 else orange for e in p["rel_error"]])
        ax2.axvline(0, color="black", lw=0.8)
        ax2.set_xlabel("relative error (%)")
        ax.set_title("predicted vs actual", fontsize=9)
        ax2.set_title("(predicted - actual) / actual", fontsize=9)
        _layout(fig, np.array([[ax, ax2]]), (3.0, 0.25 * len(p) + 0.2), left=0.25 + _width_in(p["task"], 8),
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
    with _style():
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
        _logx(ax2)
        ax.invert_xaxis()                                      # lower loss (more capable) to the right
        ax.set_yticks(y, label, fontsize=8)
        ax.set_xlabel("loss threshold eta (nats)")
        ax2.set_xlabel("critical size N_c (parameters)")
        ax.set_title("where the task emerges: loss", fontsize=9)
        ax2.set_title("... and size, at the family's recipe", fontsize=9)
        _layout(fig, np.array([[ax, ax2]]), (3.0, 0.3 * len(o) + 0.3), left=0.4 + _width_in(label, 8), wgap=0.3)
    return fig


# ---- data helpers used by the report too -----------------------------------------------------

def checkpoints(df: pd.DataFrame) -> pd.DataFrame:
    """One row per checkpoint (family, model, checkpoint, sizes, step, tokens, flops, loss) with
    ``final``: the model's last step (or largest tokens)."""
    cols = [c for c in (S.FAMILY, S.MODEL, S.CHECKPOINT, S.PARAMS, S.TOKENS, S.STEP, S.FLOPS, S.LOSS)
            if c in df.columns]
    per = df[cols].drop_duplicates([S.FAMILY, S.CHECKPOINT]).copy()
    order = [c for c in (S.STEP, S.TOKENS) if c in per.columns and per[c].notna().any()]
    per = per.sort_values(order, na_position="first") if order else per
    last = per.groupby([S.FAMILY, S.MODEL], sort=False).tail(1).index
    per["final"] = per.index.isin(last)
    return per.reset_index(drop=True)


def biggest_families(rows: pd.DataFrame, k: int) -> list:
    """The k families with most models (ties: first seen), in order of appearance."""
    sizes = rows.groupby(S.FAMILY, sort=False)[S.MODEL].nunique()
    keep = set(sizes.sort_values(ascending=False, kind="stable").index[:k])
    return [f for f in sizes.index if f in keep]


def order_by_kind(metrics, kinds=None) -> list:
    """Discontinuous metrics first, then continuous, then unknown ones."""
    rank = {DISCONTINUOUS: 0, CONTINUOUS: 1}
    return sorted(metrics, key=lambda m: (rank.get(metric_kind(m, kinds), 2), str(m)))


def metric_unit(metric: str, higher_is_better: bool | None = None) -> str:
    """Axis label for a metric, with its unit and direction (by default the name rule's)."""
    base = str(metric).split("[")[0]
    if base.endswith("bpb") or base == "bits_per_byte":
        unit = "bits/byte"
    elif base in ("nats_per_token", "loss") or base.endswith(("_loss", "logprob")) or base.startswith("logprob"):
        unit = "nats"
    elif base in ("ppl", "perplexity") or base.endswith(("_ppl", "perplexity")):
        unit = "perplexity"
    elif base.startswith("acc") or base.endswith("_acc") or base in ("exact_match", "gold_greedy", "mc1"):
        unit = "accuracy"
    elif "prob" in base:
        unit = "probability"
    else:
        unit = ""
    better = metric_higher_is_better(metric) if higher_is_better is None else higher_is_better
    direction = "\u2191 better" if better else "\u2193 better"
    return f"{metric}" + (f" ({unit}, {direction})" if unit else f" ({direction})")


# ---- private helpers ---------------------------------------------------------------------------

def _layout(fig, axes, panel, *, colorbar=None, ncol=4, left=0.85, wgap=None):
    """Fixed margins in inches instead of a layout engine (which doubles the drawing time):
    room for tick labels, axis labels, titles of any number of lines, colour bars ("each" panel
    or the "last" of a row) and one legend below the panels (never over the data; a label
    shared by several panels appears once). Sets the figure size from the panel size."""
    nrows, ncols = axes.shape
    seen = {}
    for ax in axes.ravel():
        for h, label in zip(*ax.get_legend_handles_labels()):
            if not label.startswith("_"):
                seen.setdefault(label, h)
    title_lines = max((ax.get_title().count("\n") + 1 if ax.get_title() else 0) for ax in axes.ravel())
    w, h = panel
    bar = 0.75 if colorbar else 0.0           # colour bar, its tick labels and its label
    wgap = (1.0 + (bar if colorbar == "each" else 0.0)) if wgap is None else wgap
    right = 0.2 + bar
    width = left + ncols * w + (ncols - 1) * wgap + right
    item = 0.5 + _width_in(seen, 7)  # handle, gap and the widest label at 7 pt, in inches
    ncol = max(1, min(ncol, len(seen), int((width - 0.2) // item))) if seen else 1
    legend_rows = -(-len(seen) // ncol) if seen else 0
    top = 0.12 + 0.19 * title_lines
    hgap = 0.65 + 0.19 * title_lines
    bottom = 0.62 + (0.2 * legend_rows + 0.08 if legend_rows else 0.0)
    W = left + ncols * w + (ncols - 1) * wgap + right
    H = top + nrows * h + (nrows - 1) * hgap + bottom
    fig.set_size_inches(W, H)
    fig.subplots_adjust(left=left / W, right=1 - right / W, bottom=bottom / H, top=1 - top / H,
                        wspace=wgap / w, hspace=hgap / h)
    if seen:
        fig.legend(list(seen.values()), list(seen.keys()), loc="lower center", bbox_to_anchor=(0.5, 0.04 / H),
                   ncol=ncol, fontsize=7, frameon=False)


class _BarLocator:
    """Puts a colour bar 0.08 in to the right of its axes, 0.12 in wide, as tall as they are."""

    def __init__(self, parent):
        self.parent = parent

    def __call__(self, cax, renderer):
        W = self.parent.figure.get_size_inches()[0]
        b = self.parent.get_position()
        return Bbox.from_bounds(b.x1 + 0.08 / W, b.y0, 0.12 / W, b.height)


def _style():
    stack = ExitStack()
    stack.enter_context(sns.axes_style("whitegrid"))
    stack.enter_context(sns.plotting_context("notebook", font_scale=0.8))
    return stack


def _logx(ax):
    _log(ax, ax.xaxis)


def _log(ax, axis):
    """Log scale with plain labels (0.5, 100M, 1B, 1e+21): no mathtext, no labelled minor ticks;
    under two decades, 1, 2 and 5 of each decade are labelled."""
    (ax.set_xscale if axis is ax.xaxis else ax.set_yscale)("log")
    lo, hi = sorted(ax.get_xlim() if axis is ax.xaxis else ax.get_ylim())
    short = lo > 0 and hi / lo < 100
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if short else (1.0,), numticks=8))
    axis.set_major_formatter(FuncFormatter(_si))
    axis.set_minor_formatter(NullFormatter())


def _colorbar(fig, norm, cmap, ax, label, ticks=None):
    """A colour bar beside ``ax`` (placed by ``_layout``), plain labels (100M, 1B) on a log scale."""
    cax = fig.add_axes([0, 0, 1, 1])
    cax.set_axes_locator(_BarLocator(ax))
    cb = fig.colorbar(ScalarMappable(norm, cmap), cax=cax, ticks=ticks)
    cb.set_label(label, fontsize=8)
    if isinstance(norm, mcolors.LogNorm):
        short = norm.vmax / norm.vmin < 100
        cb.ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if short else (1.0,)))
        cb.ax.yaxis.set_major_formatter(FuncFormatter(_si))
        cb.ax.yaxis.set_minor_formatter(NullFormatter())
    cb.ax.tick_params(labelsize=7)
    return cb


def _width_in(texts, size):
    """Width in inches of the widest of ``texts`` at ``size`` points in the current font."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import text_to_path

    font = FontProperties(size=size)
    return max((text_to_path.get_text_width_height_descent(str(t), font, ismath=False)[0] for t in texts),
               default=0.0) / 72


def _si(value, _pos=None):
    if not np.isfinite(value) or value <= 0:
        return ""
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if 1 <= value / scale < 1000 and scale <= 1e12:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}" if 1e-3 <= value < 1e3 else f"{value:.0e}".replace("e+", "e")


def _has(df, col):
    return col in df.columns and pd.to_numeric(df[col], errors="coerce").gt(0).any()


def _spans_decades(values, decades=2):
    v = pd.to_numeric(pd.Series(values), errors="coerce")
    v = v[v > 0]
    return len(v) > 1 and v.max() / v.min() >= 10 ** decades


def _lognorm(values):
    v = pd.to_numeric(pd.Series(values), errors="coerce")
    v = v[v > 0]
    lo, hi = (float(v.min()), float(v.max())) if len(v) else (1.0, 10.0)
    return mcolors.LogNorm(lo, hi if hi > lo else lo * 10)


def _thin(items, k=MAX_LINES):
    """At most k items, evenly spaced (the first and last kept)."""
    if len(items) <= k:
        return items
    idx = np.unique(np.linspace(0, len(items) - 1, k).round().astype(int))
    return [items[i] for i in idx]


def _shared_steps(g, max_steps=40):
    """Steps that at least half the sizes share, when each size is one model (a suite such as
    Pythia, not a ladder of runs per size) and there are at most ``max_steps`` of them."""
    if S.STEP not in g.columns or g[S.STEP].isna().all() or S.MODEL not in g.columns:
        return []
    sizes = g.groupby(S.PARAMS)[S.MODEL].nunique()
    if len(sizes) < 2 or (sizes > 1).any():
        return []
    per = g.dropna(subset=[S.STEP]).groupby(S.STEP)[S.PARAMS].nunique()
    shared = sorted(per[per >= max(2, len(sizes) / 2)].index)
    return shared if len(shared) <= max_steps else []


def _lines_per_step(fig, ax, g, x, metric):
    steps = sorted(g[S.STEP].unique())
    cmap = STEP_CMAP
    norm = mcolors.Normalize(0, max(len(steps) - 1, 1))
    last = steps[-1]
    means = g.groupby([S.STEP, x], as_index=False)[[S.VALUE, S.STDERR]].mean().rename(
        columns={S.VALUE: "value", S.STDERR: "stderr"})
    for i, (step, s) in enumerate(means.groupby(S.STEP, sort=True)):
        color = cmap(norm(i))
        ax.plot(s[x], s["value"], color=color, lw=2.0 if step == last else 0.9, marker="o",
                ms=3 if step == last else 1.5, zorder=3 if step == last else 2)
        if step == last and s["stderr"].notna().any():
            ax.fill_between(s[x], s["value"] - Z95 * s["stderr"], s["value"] + Z95 * s["stderr"],
                            color=color, alpha=0.2, lw=0, label="final step, 95% interval")
    ticks = np.unique(np.linspace(0, len(steps) - 1, min(len(steps), 6)).round().astype(int))
    cb = _colorbar(fig, norm, cmap, ax, "training step (one line each)", ticks=ticks)
    cb.ax.set_yticklabels([f"{int(steps[t]):,}" for t in ticks], fontsize=7)


def _final_points(fig, ax, g, x):
    """Each model's last checkpoint; lines join models with the same tokens/parameter ratio."""
    fin = _final_step(g).groupby(S.MODEL, as_index=False).agg(
        x=(x, "first"), value=(S.VALUE, "mean"), stderr=(S.STDERR, "mean"), tokens=(S.TOKENS, "first"),
        params=(S.PARAMS, "first"))
    ratio = (fin["tokens"] / fin["params"]).where(lambda r: r > 0)
    groups = ratio.map(lambda r: float(f"{r:.2g}") if pd.notna(r) else np.nan)
    err = Z95 * fin["stderr"] if fin["stderr"].notna().any() else None
    if groups.notna().all() and groups.nunique() < len(fin) and groups.nunique() <= 8:
        palette = sns.color_palette("colorblind", groups.nunique())
        for color, (r, grp) in zip(palette, fin.groupby(groups)):
            grp = grp.sort_values("x")
            ax.errorbar(grp["x"], grp["value"], yerr=None if err is None else err.loc[grp.index],
                        color=color, marker="o", ms=4, lw=1.4, capsize=2,
                        label=f"final checkpoints, {r:g} tokens/param")
    else:
        ax.errorbar(fin["x"], fin["value"], yerr=err, ls="none", marker="o", ms=4, color="#0072B2",
                    capsize=2, label="final checkpoint of each model")


def _points_by_size(fig, ax, g, x, colorbar=True):
    norm, cmap = _lognorm(g[S.PARAMS]), colormaps["cividis"]
    have = g[S.PARAMS].notna() & (g[S.PARAMS] > 0)
    colors = np.where(have.to_numpy()[:, None], cmap(norm(g[S.PARAMS].where(have, 1.0))), mcolors.to_rgba("grey"))
    many = len(g) > 300
    ax.scatter(g[x], g[S.VALUE], c=colors, s=8 if many else 18, alpha=0.6 if many else 0.9, lw=0,
               rasterized=many)
    if S.STDERR in g.columns and g[S.STDERR].notna().any() and not many:
        ax.errorbar(g[x], g[S.VALUE], yerr=Z95 * g[S.STDERR], ls="none", color="grey", alpha=0.35, lw=0.8,
                    zorder=1)
    if colorbar and have.any():
        _colorbar(fig, norm, cmap, ax, "parameters")


def _final_step(g):
    """Rows of each model's last checkpoint (by step, else tokens)."""
    for col in (S.STEP, S.TOKENS):
        if col in g.columns and g[col].notna().any():
            last = g.groupby([S.FAMILY, S.MODEL])[col].transform("max")
            return g[(g[col] == last) | last.isna()]
    return g


def _chance(ax, g):
    if S.CHANCE in g.columns and g[S.CHANCE].notna().any():
        c = float(g[S.CHANCE].median())
        ax.axhline(c, color="grey", ls="--", lw=1, zorder=1, label=f"chance ({c:.3g})")


def _metric_axis(ax, g, metric, higher_is_better=None):
    if higher_is_better is None and S.METRIC in g.columns:
        higher_is_better = directions_of(g).get(metric)  # the table's, else the name rule's
    ax.set_ylabel(metric_unit(metric, higher_is_better), fontsize=8)
    if not metric_is_proportion(metric) and _spans_decades(g[S.VALUE], 1) and (g[S.VALUE] > 0).all():
        _log(ax, ax.yaxis)
    ax.yaxis.set_major_locator(MaxNLocator(6)) if ax.get_yscale() == "linear" else None


def _law_lines(ax, curves):
    if curves is None or curves.empty:
        return
    ratios = sorted(curves.loc[curves["form"] == "chinchilla", "ratio"].dropna().unique())
    blues = dict(zip(ratios, sns.color_palette("crest", len(ratios)))) if ratios else {}
    for (form, ratio), c in curves.groupby(["form", "ratio"], sort=False, dropna=False):
        c = c.sort_values(S.PARAMS)
        inside, beyond = c[~c["extrapolated"]], c[c["extrapolated"]]
        if form == "size":
            color, label = "#D55E00", "size law L(N), 95% band, extrapolation dashed"
            ax.fill_between(c[S.PARAMS], c["lo"], c["hi"], color=color, alpha=0.15, lw=0)
        else:
            color, label = blues.get(ratio, "#0072B2"), f"L(N, D) at {ratio:g} tokens/param"
        ax.plot(inside[S.PARAMS], inside[S.LOSS], color=color, ls="-" if form == "size" else ":", lw=1.6,
                label=label)
        ax.plot(beyond[S.PARAMS], beyond[S.LOSS], color=color, ls="--", lw=1.0, alpha=0.8)


def _verdict_for(verdicts, family, metric=None):
    if verdicts is None or verdicts.empty:
        return None
    v = verdicts[verdicts[S.FAMILY] == family]
    if metric is not None:
        v = v[v[S.METRIC] == metric]
    return None if v.empty else v.iloc[0].to_dict()
