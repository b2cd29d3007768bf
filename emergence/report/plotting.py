"""Plotting helpers shared by the report figures: constants, the tidy-row selections figures
show (final checkpoints, the biggest families), axis and colour-bar layout, thinning, and the
lines and points each figure draws. Nothing here touches pyplot's global state."""


from contextlib import ExitStack

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter
from matplotlib.transforms import Bbox

from emergence import schema as S
from emergence.metric_rules import (CONTINUOUS, DISCONTINUOUS, directions_of, metric_higher_is_better,
                                    metric_is_proportion, metric_kind)


AXIS_LABELS = {S.PARAMS: "parameters (total)", S.PARAMS_NONEMBED: "parameters (non-embedding)",
               S.TOKENS: "training tokens", S.FLOPS: "training compute (FLOPs)",
               S.LOSS: "held-out loss (nats/token; lower is to the right)"}
Z95 = 1.96
MAX_PANELS = 4           # families or metrics side by side in one figure
MAX_FAMILIES = 9         # families in colour when many share a panel: the colour-blind palette less its grey
MAX_LINES = 40           # per-model lines drawn individually; more are thinned evenly (said in the caption)
# Readable at 100% zoom: the PNG is shown at its natural size (``ReportConfig.dpi`` >= 100 pixels
# per inch), so no text is under TEXT_PT points, and no figure is wider than MAX_WIDTH_IN inches,
# which keeps it inside the page (1200 px) instead of being scaled down with its text.
TEXT_PT = 9
MAX_WIDTH_IN = 11.5
# Early steps light, the final step dark (it is drawn thick): viridis reversed, without its
# palest yellow, which vanishes on white.
STEP_CMAP = mcolors.ListedColormap(colormaps["viridis_r"](np.linspace(0.12, 1.0, 256)), name="steps")



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


def setting_columns(df: pd.DataFrame) -> list:
    """The evaluation-setting columns (``n_shot``, ``setting``) that vary within one model's rows
    of a task: a curve, a figure and a coverage cell are per setting there. A column fixed per
    model (e.g. a ladder rung's recipe written as its setting) describes the model and is not
    split on."""
    out = []
    for col in S.SETTING_KEYS:
        if col in df.columns and df[col].notna().any():
            per = df.assign(_v=df[col].astype(str)).groupby([S.FAMILY, S.MODEL, S.TASK])["_v"].nunique()
            if (per > 1).any():
                out.append(col)
    return out


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

def layout(fig, axes, panel, *, colorbar=None, ncol=4, left=0.85, wgap=None):
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
    bar = 0.9 if colorbar else 0.0            # colour bar, its tick labels and its label
    wgap = (1.0 + (bar if colorbar == "each" else 0.0)) if wgap is None else wgap
    right = 0.2 + bar
    fixed = left + (ncols - 1) * wgap + right
    w = min(w, (MAX_WIDTH_IN - fixed) / ncols)   # narrower panels, never smaller text
    width = fixed + ncols * w
    item = 0.55 + width_in(seen, TEXT_PT)  # handle, gap and the widest label, in inches
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
                   ncol=ncol, fontsize=TEXT_PT, frameon=False)


class BarLocator:
    """Puts a colour bar 0.08 in to the right of its axes, 0.12 in wide, as tall as they are."""

    def __init__(self, parent):
        self.parent = parent

    def __call__(self, cax, renderer):
        W = self.parent.figure.get_size_inches()[0]
        b = self.parent.get_position()
        return Bbox.from_bounds(b.x1 + 0.08 / W, b.y0, 0.12 / W, b.height)


def style():
    stack = ExitStack()
    stack.enter_context(sns.axes_style("whitegrid"))
    stack.enter_context(sns.plotting_context("notebook", font_scale=0.8, rc={
        "xtick.labelsize": TEXT_PT, "ytick.labelsize": TEXT_PT, "legend.fontsize": TEXT_PT,
        "axes.labelsize": TEXT_PT + 0.5, "axes.titlesize": TEXT_PT + 0.5, "font.size": TEXT_PT + 0.5}))
    return stack


def logx(ax):
    log(ax, ax.xaxis)


def log(ax, axis):
    """Log scale with plain labels (0.5, 100M, 1B, 1e+21): no mathtext, no labelled minor ticks;
    under two decades, 1, 2 and 5 of each decade are labelled."""
    (ax.set_xscale if axis is ax.xaxis else ax.set_yscale)("log")
    lo, hi = sorted(ax.get_xlim() if axis is ax.xaxis else ax.get_ylim())
    short = lo > 0 and hi / lo < 100
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if short else (1.0,), numticks=8))
    axis.set_major_formatter(FuncFormatter(si))
    axis.set_minor_formatter(NullFormatter())


def add_colorbar(fig, norm, cmap, ax, label, ticks=None):
    """A colour bar beside ``ax`` (placed by ``layout``), plain labels (100M, 1B) on a log scale."""
    cax = fig.add_axes([0, 0, 1, 1])
    cax.set_axes_locator(BarLocator(ax))
    cb = fig.colorbar(ScalarMappable(norm, cmap), cax=cax, ticks=ticks)
    cb.set_label(label, fontsize=TEXT_PT)
    if isinstance(norm, mcolors.LogNorm):
        short = norm.vmax / norm.vmin < 100
        cb.ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if short else (1.0,)))
        cb.ax.yaxis.set_major_formatter(FuncFormatter(si))
        cb.ax.yaxis.set_minor_formatter(NullFormatter())
    cb.ax.tick_params(labelsize=TEXT_PT)
    return cb


def width_in(texts, size):
    """Width in inches of the widest of ``texts`` at ``size`` points in the current font."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import text_to_path

    font = FontProperties(size=size)
    return max((text_to_path.get_text_width_height_descent(str(t), font, ismath=False)[0] for t in texts),
               default=0.0) / 72


def si(value, _pos=None):
    if not np.isfinite(value) or value <= 0:
        return ""
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if 1 <= value / scale < 1000 and scale <= 1e12:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}" if 1e-3 <= value < 1e3 else f"{value:.0e}".replace("e+", "e")


def sizes(g, x=S.PARAMS):
    """How many distinct sizes (``x`` values > 0) the rows have."""
    v = pd.to_numeric(g[x], errors="coerce") if x in g.columns else pd.Series(dtype=float)
    return int(v[v > 0].nunique())


def trains(g, x=S.TOKENS, min_checkpoints=3):
    """Whether some model of the rows has at least ``min_checkpoints`` checkpoints along ``x``."""
    if x not in g.columns or S.MODEL not in g.columns:
        return False
    v = g.assign(_x=pd.to_numeric(g[x], errors="coerce")).dropna(subset=["_x"])
    return bool(len(v)) and int(v.groupby(S.MODEL)["_x"].nunique().max()) >= min_checkpoints


def has(df, col):
    return col in df.columns and pd.to_numeric(df[col], errors="coerce").gt(0).any()


def spans_decades(values, decades=2):
    v = pd.to_numeric(pd.Series(values), errors="coerce")
    v = v[v > 0]
    return len(v) > 1 and v.max() / v.min() >= 10 ** decades


def lognorm(values):
    v = pd.to_numeric(pd.Series(values), errors="coerce")
    v = v[v > 0]
    lo, hi = (float(v.min()), float(v.max())) if len(v) else (1.0, 10.0)
    return mcolors.LogNorm(lo, hi if hi > lo else lo * 10)


def thin(items, k=MAX_LINES):
    """At most k items, evenly spaced (the first and last kept)."""
    if len(items) <= k:
        return items
    idx = np.unique(np.linspace(0, len(items) - 1, k).round().astype(int))
    return [items[i] for i in idx]


def shared_steps(g, max_steps=40):
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


def lines_per_step(fig, ax, g, x, metric):
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
    cb = add_colorbar(fig, norm, cmap, ax, "training step (one line each)", ticks=ticks)
    cb.ax.set_yticklabels([f"{int(steps[t]):,}" for t in ticks], fontsize=TEXT_PT)


def lines_per_run(ax, g, x, norm, cmap, flagged=()):
    """Each model's checkpoints along ``x`` as one line coloured by its size (one collection and
    one scatter for all of them: a figure of 40 runs draws as fast as one of 4); checkpoints in
    ``flagged`` ringed. Returns the number of runs drawn (at most ``MAX_LINES``)."""
    from matplotlib.collections import LineCollection

    runs = thin(list(g.groupby(S.MODEL, sort=False)))
    segs, colours, odd = [], [], []
    for _, m in runs:
        m = m.groupby(x, as_index=False).agg(value=(S.VALUE, "mean"), params=(S.PARAMS, "first"),
                                             checkpoint=(S.CHECKPOINT, "first")).sort_values(x)
        segs.append(m[[x, "value"]].to_numpy(float))
        size = m["params"].iloc[0]
        colours.append(cmap(norm(size)) if pd.notna(size) and size > 0 else mcolors.to_rgba("grey"))
        odd.append(m[m["checkpoint"].isin(flagged)])
    ax.add_collection(LineCollection(segs, colors=colours, lw=1.2))
    xy = np.concatenate(segs)
    ax.scatter(xy[:, 0], xy[:, 1], s=5, lw=0, c=np.repeat(colours, [len(s) for s in segs], axis=0), zorder=3)
    odd = pd.concat(odd)
    if len(odd):
        ax.scatter(odd[x], odd["value"], s=70, facecolor="none", edgecolor="#D55E00", lw=1.5, zorder=5,
                   label="outlier on many tasks")
    ax.autoscale_view()
    return len(runs)


def final_points(fig, ax, g, x):
    """Each model's last checkpoint; lines join models with the same tokens/parameter ratio."""
    fin = final_step(g).groupby(S.MODEL, as_index=False).agg(
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


def points_by_size(fig, ax, g, x, colorbar=True):
    norm, cmap = lognorm(g[S.PARAMS]), colormaps["cividis"]
    have = g[S.PARAMS].notna() & (g[S.PARAMS] > 0)
    colors = np.where(have.to_numpy()[:, None], cmap(norm(g[S.PARAMS].where(have, 1.0))), mcolors.to_rgba("grey"))
    many = len(g) > 300
    ax.scatter(g[x], g[S.VALUE], c=colors, s=8 if many else 18, alpha=0.6 if many else 0.9, lw=0,
               rasterized=many)
    if S.STDERR in g.columns and g[S.STDERR].notna().any() and not many:
        ax.errorbar(g[x], g[S.VALUE], yerr=Z95 * g[S.STDERR], ls="none", color="grey", alpha=0.35, lw=0.8,
                    zorder=1)
    if colorbar and have.any():
        add_colorbar(fig, norm, cmap, ax, "parameters")


def final_step(g):
    """Rows of each model's last checkpoint (by step, else tokens)."""
    for col in (S.STEP, S.TOKENS):
        if col in g.columns and g[col].notna().any():
            last = g.groupby([S.FAMILY, S.MODEL])[col].transform("max")
            return g[(g[col] == last) | last.isna()]
    return g


def chance(ax, g):
    if S.CHANCE in g.columns and g[S.CHANCE].notna().any():
        c = float(g[S.CHANCE].median())
        ax.axhline(c, color="grey", ls="--", lw=1, zorder=1, label=f"chance ({c:.3g})")


def metric_axis(ax, g, metric, higher_is_better=None):
    if higher_is_better is None and S.METRIC in g.columns:
        higher_is_better = directions_of(g).get(metric)  # the table's, else the name rule's
    ax.set_ylabel(metric_unit(metric, higher_is_better), fontsize=TEXT_PT)
    if not metric_is_proportion(metric) and spans_decades(g[S.VALUE], 1) and (g[S.VALUE] > 0).all():
        log(ax, ax.yaxis)
    ax.yaxis.set_major_locator(MaxNLocator(6)) if ax.get_yscale() == "linear" else None


def law_lines(ax, curves):
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


def verdict_for(verdicts, family, metric=None):
    if verdicts is None or verdicts.empty:
        return None
    v = verdicts[verdicts[S.FAMILY] == family]
    if metric is not None:
        v = v[v[S.METRIC] == metric]
    return None if v.empty else v.iloc[0].to_dict()
