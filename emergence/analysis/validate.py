"""``emergence validate``: rerunnable evidence that the analysis is right, written to VALIDATION.md.

Sections: verdicts on synthetic curves with known answers; where a task emerges, predicted from
small models (synthetic families with a known threshold, and the Gadre et al. over-training
ladder); the Chinchilla refit; the OLMo ladder backtest against the paper's own predictions;
verdicts on the Pythia suite; how verdicts move when the earliest checkpoints are dropped and
when the same curve is seen through a wider window (``robustness_section``); the detector scored
on real curves with published labels; and the emergence-law backtest on the lab, which has its own
command (``bench/finetune_law.py``, about 13 minutes) and is shown from the summary its last run
wrote. Sections that need the public reference data are skipped, and say so, when it is absent.
"""

import hashlib
import json
import os
import time
from pathlib import Path

import pandas as pd

from emergence import schema as S
from emergence.analysis.validate_predictions import predictors_section

REFERENCE_ENV = "EMERGENCE_REFERENCE_DATA"


def default_reference_dir() -> Path | None:
    """$EMERGENCE_REFERENCE_DATA, else ../shared/reference-data next to the working directory."""
    for candidate in (os.environ.get(REFERENCE_ENV), Path.cwd().parent / "shared" / "reference-data"):
        if candidate and Path(candidate, "tidy").is_dir():
            return Path(candidate)
    return None


_TABLES: dict = {}   # reference tables read during one validate(): several sections use each


def _reference_table(path) -> pd.DataFrame:
    """A reference tidy table with chance filled in, read once per ``validate`` (a copy: sections
    filter and add columns). Its ``setting`` column describes the source, not an evaluation
    setting: read as a note, so that curves pool as the source meant."""
    from emergence.tidy import fill_chance, read_tidy

    key = str(path)
    if key not in _TABLES:
        _TABLES[key] = fill_chance(read_tidy([path], setting_is_note=True))
    return _TABLES[key].copy()


def validate(reference_dir: Path | None = None, *, n_curves: int = 600, n_families: int = 48, n_ladders: int = 60,
             seed: int = 0) -> str:
    """Run every section; return the markdown of VALIDATION.md."""
    try:
        return _validate(reference_dir, n_curves, n_families, n_ladders, seed)
    finally:
        _TABLES.clear()


def _validate(reference_dir, n_curves, n_families, n_ladders, seed) -> str:
    from emergence.analysis.parallel import Background

    wall = time.perf_counter()
    # The predictions section runs mostly on one core: it runs beside the others in a forked
    # process (its text does not depend on where it runs) and is collected in its place.
    predictions = Background(_timed, lambda: predictors_section(reference_dir))
    sections, timings = [], []
    for title, short, fn in (
            ("Synthetic curves with known verdicts", "synthetic curves", lambda: synthetic_section(n_curves, seed)),
            ("Where a task emerges: synthetic families", "onset on synthetic families",
             lambda: onset_synthetic_section(seed, n_families)),
            ("Where a task emerges: synthetic families with run-level offsets", "onset with run offsets",
             lambda: onset_run_offsets_section(seed, n_families // 2)),
            ("Where a task emerges: Gadre et al. over-training ladder", "onset on the Gadre ladder",
             lambda: onset_gadre_section(reference_dir)),
            ("Where a task emerges: OLMo model ladder", "onset on the OLMo ladder",
             lambda: onset_olmo_section(reference_dir)),
            ("False emergent on re-simulated real smooth curves", "smooth null",
             lambda: smooth_null_section(reference_dir, seed)),
            ("Chinchilla refit", "chinchilla refit", lambda: chinchilla_section(reference_dir)),
            ("OLMo ladder: the paper's OLMo-2 13B predictions reproduced", "olmo ladder",
             lambda: olmo_section(reference_dir)),
            ("Predictions: headline numbers across seeds, and every predictor on the same splits", "predictions",
             predictions),
            ("Pythia: verdicts across sizes and training", "pythia", lambda: pythia_section(reference_dir)),
            ("Verdicts that do not move: trimming and the observation window", "trimming and window",
             lambda: robustness_section(reference_dir, seed)),
            ("The floor rule, chosen on development ladders", "floor rule", lambda: floor_rule_section(n_ladders)),
            ("Real curves with published labels", "labelled curves", lambda: labelled_section(reference_dir)),
            ("Emergence laws from fine-tuning: the lab backtest", "emergence-law backtest (its last run, read)",
             finetune_law_section)):
        body, seconds = fn.result() if isinstance(fn, Background) else _timed(fn)
        timings.append((short, seconds))
        sections.append(f"## {title}\n\n{body}\n")
    head = ["# Validation", "",
            "Written by `emergence validate` (rerun it to regenerate this file). Reference data: "
            f"`{_shown(reference_dir) if reference_dir else 'not found'}`.", "",
            f"Total time {time.perf_counter() - wall:.1f} s on {os.cpu_count()} CPU cores, the predictions "
            "section beside the others (so each section's time includes sharing the cores): "
            + ", ".join(f"{t} {s:.1f} s" for t, s in timings) + ".", ""]
    return "\n".join(head + sections)


def _timed(fn):
    """(fn(), seconds it took)."""
    start = time.perf_counter()
    return fn(), time.perf_counter() - start


def synthetic_section(n_curves: int, seed: int) -> str:
    from emergence.analysis.synthetic import benchmark

    r = benchmark(n_curves, seed)
    rest = r.rest
    return "\n".join([
        f"{r.n_curves} generated curves with >= 6 points and n >= 200 examples per point (seed {seed}):",
        "",
        "| measure | value | target |", "|---|---:|---:|",
        f"| verdict accuracy | {r.accuracy:.1%} | >= 95% |",
        f"| false `emergent` rate (non-emergent curves called emergent) | {r.false_emergent_rate:.1%} | <= 2% |",
        f"| median eta error, share of the observed x range | {r.eta_error:.1%} | |",
        f"| eta 95% interval coverage | {r.eta_coverage:.0%} | |",
        f"| time per curve | {r.ms_per_curve:.1f} ms | |",
        "",
        f"Outside the regime (< 6 points or n < 200; {rest.get('n_curves')} curves): accuracy "
        f"{rest.get('accuracy', float('nan')):.1%}, false emergent {rest.get('false_emergent_rate', float('nan')):.1%}.",
        "", "Confusion matrix (rows: truth, columns: verdict):", "", "```", r.confusion.to_string(), "```",
    ])


ONSET_INTRO = (
    "The loss threshold eta is located on the pooled loss axis of the models below a size cutoff "
    "(all their checkpoints or token budgets), and the loss law fitted on the same models turns it "
    "into the critical size N_c at the family's recipe (`emergence.analysis.onset`). Intervals: eta's is the "
    "verdict's (bootstrap, profile and grid-gap union, 95%) widened to the 95% interval of a bootstrap over "
    "the small models' runs (100 draws of whole models, `emergence.analysis.significance`); N_c's spans the law's 90% bootstrap "
    "band at both ends of eta's interval. Where the small models do not reach eta, only a bound is "
    "given: a threshold shows only with two checkpoints past it, so eta is below their second-lowest "
    "loss, and N_c is above the size at which the law (the low end of its band) reaches that loss.")


def onset_synthetic_section(seed: int, n_families: int = 48) -> str:
    from emergence.analysis.synthetic import onset_benchmark, onset_score

    score = onset_score(onset_benchmark(n_families, seed, n_boot=20))
    return "\n".join([
        f"{n_families} generated families (seed {seed}), two in three `overtrained`. Losses follow a Chinchilla law "
        "with parameters scattered around Hoffmann et al.'s; a task `threshold` sits at chance (0 or 0.25) "
        "until the loss falls below eta and rises after it; a task `smooth` improves as a power of the loss "
        "(the control). `overtrained`: 4 small sizes at 5-320 tokens per parameter, 2 held-out sizes at 20 "
        "(and 80), final checkpoints only, N_c quoted at 20 tokens per parameter (Gadre et al.). "
        "`fixed_tokens`: 8 sizes on the same 300B tokens with 10 checkpoints each, 5 below the cutoff "
        "(Pythia). The true N_c is drawn across the upper sizes. It may lie within the small sizes "
        "(interpolation); beyond them with eta still within the small models' reach (>= 2 of their "
        "checkpoints truly below it: the case that makes a prediction possible, over-training only); or "
        "out of their reach.", "",
        ONSET_INTRO, "", *_onset_score_rows(score), "",
        "N_c error is the median factor between predicted and true N_c. Where eta is out of reach, "
        "locating it would be a false claim: the `eta located` column must be 0% there."])


def onset_run_offsets_section(seed: int, n_families: int = 24) -> str:
    """The synthetic families of ``onset_synthetic_section`` with a run-level offset of the metric
    (logit scale, normal, sd 0.1, shared by every checkpoint of a model): the case a pointwise
    interval misses."""
    from emergence.analysis.synthetic import onset_benchmark, onset_score

    table = onset_benchmark(n_families, seed + 5000, n_boot=20, run_sd=0.1)
    score = onset_score(table)
    hit = table[table["status"].isin(["predicted", "not confirmed"])]
    covered = (f"covered {hit['eta_covered'].mean():.0%} (target >= 90%), by the verdict's interval alone "
               f"{hit['eta_covered_verdict'].mean():.0%}" if len(hit) else "no interval to score")
    return "\n".join([
        f"{n_families} families drawn as in the section above (seeds {seed + 5000}-{seed + 5000 + n_families - 1}), "
        "each run (model) with its own offset of the metric on the logit scale, normal with sd 0.1 (0.025 at an "
        "accuracy of 0.5), shared by all its checkpoints "
        "or token budgets (seed, data order). `eta covered` uses the interval widened by the bootstrap over runs; "
        "`verdict alone` the verdict's own pointwise interval.", "", *_onset_score_rows(score), "",
        f"Over the {len(hit)} families where eta was located: {covered}; the smooth control "
        f"called emergent by the small models in {table['control_emergent'].mean():.0%} of the families."])


def _onset_score_rows(score):
    rows = ["| recipe | true N_c | families | eta located | median abs. eta error (nats) | "
            "eta covered | eta covered, verdict alone | median N_c error | N_c within 2x | N_c covered | bound given | bound valid | "
            "smooth control called emergent |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def pct(v):
        return "" if pd.isna(v) else f"{v:.0%}"

    for r in score.itertuples():
        err = "" if pd.isna(r.median_nc_log10_err) else f"{10 ** r.median_nc_log10_err:.3f}x"
        eta = "" if pd.isna(r.median_eta_abs_err) else f"{r.median_eta_abs_err:.3f}"
        rows.append(f"| {r.recipe} | {SITUATIONS[r.situation]} | {r.families} | {pct(r.located)} | {eta} | "
                    f"{pct(r.eta_covered)} | {pct(r.eta_covered_verdict)} | {err} | {pct(r.nc_within_2x)} | {pct(r.nc_covered)} | "
                    f"{pct(r.bounds)} | {pct(r.bounds_valid)} | {pct(r.control_false_alarm)} |")
    return rows


SITUATIONS = {"within": "within the small sizes", "beyond": "beyond them, eta within reach",
              "out of reach": "eta out of the small models' reach"}


def onset_gadre_section(reference_dir, cutoff: float = 1e9) -> str:
    path = reference_dir / "tidy" / "gadre_overtraining.csv" if reference_dir else None
    if not path or not path.exists():
        return "Skipped: `tidy/gadre_overtraining.csv` not found."
    return _onset_backtest_section(
        _reference_table(path), cutoff, ("dataset", lambda r: r[S.FAMILY].removeprefix("open_lm-")),
        f"Three pretraining datasets, 11M-6.9B parameters at 5-640 tokens per parameter (final checkpoints "
        f"only). Fit below {cutoff:.0e} parameters (11M-411M, every token budget); hold out 1.4B (20 and 80 "
        "tokens per parameter) and 6.9B (20). Rows: every curve emergent against loss in either view. "
        "N_c at 20 tokens per parameter, the held-out models' recipe; 'observed between' is the pair of "
        "sizes at that recipe whose measured losses bracket the full-data eta.")


def onset_olmo_section(reference_dir, cutoff: float = 2e9) -> str:
    path = reference_dir / "tidy" / "olmo_ladder.csv.gz" if reference_dir else None
    if not path or not path.exists():
        return "Skipped: `tidy/olmo_ladder.csv.gz` not found."
    ladder = _reference_table(path)
    ladder = ladder[ladder[S.FAMILY] == "olmo-ladder"]
    return _onset_backtest_section(
        ladder, cutoff, ("split", lambda r: r[S.SUBTASK]),
        f"The OLMo model ladder (Bhagia et al. 2024): 190M-3B parameters at 0.5-10xC tokens (xC = 20 "
        f"tokens per parameter), every intermediate checkpoint, 5-shot ranked-classification ([rc]) "
        f"metrics on the val and test splits. Fit below {cutoff:.0e} parameters (190M-1B, every token "
        "budget and checkpoint); hold out 3B (every budget). Rows: every curve emergent against loss in "
        "either view. N_c at the held-out models' median tokens per parameter; 'observed between' is the "
        "pair of sizes at that recipe whose measured losses bracket the full-data eta.")


def _onset_backtest_section(df, cutoff, first_column, intro) -> str:
    """Where tasks emerge, predicted from the models below ``cutoff`` and checked against all of
    them: a table of every curve emergent in either view, and a summary of the predicted ones."""
    from emergence.analysis.onset import onset_backtest

    table = onset_backtest(df, cutoff, n_boot=50)
    ok = table[table["status"] == "predicted"]
    name, first = first_column
    rows = [f"| {name} | task | status | eta: small models [interval] | eta: all | N_c predicted [interval] | "
            "N_c: all | N_c observed between | held-out MAE: threshold / smooth |",
            "|---|---|---|---|---:|---|---:|---|---|"]

    def g(v, fmt=".3g"):
        return "" if v is None or pd.isna(v) else format(v, fmt)

    for r in table.sort_values([S.FAMILY, "status", S.TASK, S.SUBTASK]).to_dict("records"):
        pred = (f"{g(r.get('nc_pred'))} [{g(r.get('nc_pred_lo'))}, {g(r.get('nc_pred_hi'))}]"
                if pd.notna(r.get("nc_pred")) else f"> {g(r.get('nc_bound'))}" if pd.notna(r.get("nc_bound")) else "")
        eta = f"{g(r['eta_pred'], '.3f')} [{g(r['eta_pred_lo'], '.3f')}, {g(r['eta_pred_hi'], '.3f')}]" \
            if pd.notna(r["eta_pred"]) else f"({r['label_small']})"
        mae = f"{g(r.get('mae_threshold'), '.3f')} / {g(r.get('mae_smooth'), '.3f')}".strip(" /")
        rows.append(f"| {first(r)} | {r[S.TASK]} ({r[S.METRIC]}) | {r['status']} | {eta} | "
                    f"{g(r['eta_full'], '.3f')} | {pred} | {g(r.get('nc_full'))} | "
                    f"{_between(r.get('nc_observed_lo'), r.get('nc_observed_hi'))} | {mae} |")
    both = ok[ok["eta_covered"].notna()]
    coverage = (f"The eta interval contains the all-model eta for {both['eta_covered'].mean():.0%} of the "
                f"{len(both)} predicted curves (target >= 80%; the verdict's own interval alone: "
                f"{both['eta_covered_verdict'].mean():.0%}); median width {both['eta_width'].median():.3f} nats "
                f"(verdict alone {both['eta_width_verdict'].median():.3f}), median P(emergent) over run resamples "
                f"{both['p_emergent_small'].median():.2f}.") if len(both) else ""
    return "\n".join([
        intro, "", ONSET_INTRO, "", *rows, "", coverage, "",
        f"Predicted from the small models: {len(ok)} of {int((table['label_full'] == 'emergent').sum())} curves "
        f"that are emergent with all models. On those: median |eta error| {ok['eta_abs_err'].median():.3f} nats, "
        f"median N_c factor {10 ** ok['nc_log10_err'].abs().median():.2f}x of the all-model estimate, predicted "
        f"N_c inside the observed bracket {ok['nc_in_observed'].mean():.0%}; the threshold model at the "
        f"predicted loss misses the held-out accuracies by {ok['mae_threshold'].mean():.3f} on average, the "
        f"best smooth model by {ok['mae_smooth'].mean():.3f}."])


def _between(lo, hi) -> str:
    """An interval with possibly open ends, as 'a - b', '< b' or '> a'."""
    lo, hi = (None if v is None or pd.isna(v) else f"{v:.3g}" for v in (lo, hi))
    return f"{lo} - {hi}" if lo and hi else f"< {hi}" if hi else f"> {lo}" if lo else ""


def smooth_null_section(reference_dir, seed: int = 0, replicates: int = 2, max_curves: int = 100) -> str:
    """How often a curve with no threshold in it is called emergent: real curves judged smooth,
    re-simulated from their own fitted smooth model with their own noise (``resimulate_smooth``),
    judged again, before and after the q-value gate (``significance.add_significance``)."""
    if not reference_dir:
        return "Skipped: no reference data."
    from emergence.analysis.significance import add_significance
    from emergence.analysis.synthetic import resimulate_smooth
    from emergence.analysis.verdicts import verdicts

    sources = (("Gadre et al. ladder", "gadre_overtraining.csv", S.LOSS, None),
               ("OLMo model ladder", "olmo_ladder.csv.gz", S.LOSS, "olmo-ladder"),
               ("Pythia", "pythia.csv.gz", S.PARAMS, None), ("Pythia", "pythia.csv.gz", S.TOKENS, None))
    rows = ["| source | axis | simulated curves | emergent (verdict) | emergent (after q < 0.05) |",
            "|---|---|---:|---:|---:|"]
    total = [0, 0, 0]
    for name, file, axis, family in sources:
        path = reference_dir / "tidy" / file
        if not path.exists():
            continue
        df = _reference_table(path)
        df = df if family is None else df[df[S.FAMILY] == family]
        sim = resimulate_smooth(df, axis, replicates=replicates, max_curves=max_curves, seed=seed)
        if sim.empty:
            continue
        table = verdicts(sim, axis).assign(axis=axis)
        gated = add_significance(table, sim)
        counts = [len(table), int((table["label"] == "emergent").sum()), int((gated["label"] == "emergent").sum())]
        total = [a + b for a, b in zip(total, counts)]
        rows.append(f"| {name} | {axis} | {counts[0]} | {counts[1]} ({counts[1] / counts[0]:.1%}) | "
                    f"{counts[2]} ({counts[2] / counts[0]:.1%}) |")
    if not total[0]:
        return "Skipped: no reference table found."
    return "\n".join([
        f"Up to {max_curves} real curves per source judged `smooth` (drawn with seed {seed}) are re-simulated "
        f"{replicates} times each from their own best smooth fit at their own x, with their own per-point "
        "noise times their dispersion (proportions clipped to [0, 1]), then judged and gated like any table "
        "(`emergence.analysis.synthetic.resimulate_smooth`). Every `emergent` here is false.", "", *rows, "",
        f"In all: {total[1]} of {total[0]} ({total[1] / total[0]:.1%}) called emergent by the verdict, "
        f"{total[2]} ({total[2] / total[0]:.1%}) after the q-value gate (target <= 1%)."])


def chinchilla_section(reference_dir) -> str:
    path = reference_dir / "tidy" / "chinchilla_epoch.csv" if reference_dir else None
    if not path or not path.exists():
        return "Skipped: `tidy/chinchilla_epoch.csv` not found."
    from emergence.analysis.scaling import HOFFMANN_2022, replicate_chinchilla
    from emergence.tidy import read_tidy

    fit, cmp = replicate_chinchilla(read_tidy([path], setting_is_note=True), n_boot=100, seed=0)
    replication = {"E": (1.82, 0.03), "alpha": (0.348, 0.015), "beta": (0.366, 0.021)}
    rows = ["| parameter | ours | 95% CI | Besiroglu et al. 2024 | Hoffmann et al. 2022 |", "|---|---:|---|---:|---:|"]
    for name in ("E", "A", "B", "alpha", "beta"):
        lo, hi = fit.intervals.get(name, (float("nan"), float("nan")))
        ref = replication.get(name)
        rows.append(f"| {name} | {fit.params[name]:.4g} | [{lo:.4g}, {hi:.4g}] | "
                    f"{f'{ref[0]} ± {ref[1]}' if ref else ''} | {HOFFMANN_2022[name]} |")
    return "\n".join([
        f"Huber (delta 1e-3) on log loss, L-BFGS from a grid of starts, 100 bootstrap draws; {fit.n} "
        "points digitised from Hoffmann et al. Fig. 4 by the replication, without its 5 highest-loss "
        "runs (the replication's outlier rule).", "", *rows, "",
        f"The originally published parameters fit these points {cmp['ratio']:.2f}x worse "
        f"(Huber objective {cmp['objective_published']:.4g} vs {cmp['objective_fit']:.4g}).",
    ])


def olmo_section(reference_dir) -> str:
    """The paper's own procedure (n_boot = 0: one best step-1 fit), task by task beside its
    published predictions; the default (bagged) numbers across seeds are in the predictions section."""
    if not reference_dir or not (reference_dir / "olmo_ladder").is_dir():
        return "Skipped: `olmo_ladder/` not found."
    from emergence.analysis.predict import olmo_ladder_validation

    table = olmo_ladder_validation(reference_dir, n_boot=0)
    table = table[table["paper_pred"].notna()]   # the paper publishes predictions for 13B-5T only
    lines = ["Two steps as in Bhagia et al. 2024: task loss (bits per byte of the right answer) from "
             "(N, D) fitted on the paper's 'train' ladder runs (190M-1B, 1-10xC, configs/final.json), "
             "then accuracy as a sigmoid of task loss; chained to OLMo-2 13B at 5T tokens. This is the "
             "paper's procedure (one best step-1 fit, `n_boot=0`), deterministic; the default, which bags "
             "step 1, is scored across seeds in the predictions section below.", "",
             "| target | task | actual | ours | paper | our abs. error | paper abs. error |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in table.itertuples():
        lines.append(f"| {r.target} | {r.task} | {r.actual:.3f} | {r.our_pred:.3f} | {r.paper_pred:.3f} | "
                     f"{100 * r.our_abs_err:.1f} | {100 * r.paper_abs_err:.1f} |")
    mae_ours, mae_paper = 100 * table["our_abs_err"].mean(), 100 * table["paper_abs_err"].mean()
    gap = 100 * (table["our_pred"] - table["paper_pred"]).abs().max()
    lines += ["", f"Mean absolute error over {len(table)} tasks: ours {mae_ours:.2f} accuracy points, the paper's "
                  f"published predictions {mae_paper:.2f}; our predictions differ from the paper's by at most "
                  f"{gap:.2f} points."]
    return "\n".join(lines)


def pythia_section(reference_dir) -> str:
    path = reference_dir / "tidy" / "pythia.csv.gz" if reference_dir else None
    if not path or not path.exists():
        return "Skipped: `tidy/pythia.csv.gz` not found."
    from emergence.analysis.verdicts import verdicts

    df = _pythia_zero_shot(path)
    by_size = verdicts(df, axis=S.PARAMS)
    by_tokens = verdicts(df, axis=S.TOKENS)
    lines = ["Zero-shot `acc` and `acc_norm`, MMLU averaged over subjects. Across sizes: the 8 sizes at "
             "the final step (143,000). Across training: one curve per model over its checkpoints.", "",
             "| family | task | metric | across sizes | across training (counts over 8 models) |",
             "|---|---|---|---|---|"]
    for (fam, task, metric), g in by_size.groupby([S.FAMILY, S.TASK, S.METRIC]):
        t = by_tokens[(by_tokens[S.FAMILY] == fam) & (by_tokens[S.TASK] == task) & (by_tokens[S.METRIC] == metric)]
        counts = ", ".join(f"{n} {label}" for label, n in t["label"].value_counts().items())
        lines.append(f"| {fam} | {task} | {metric} | {g['label'].iloc[0]} | {counts} |")
    return "\n".join(lines)


def floor_rule_section(n_ladders: int = 60, seed: int = 1000) -> str:
    """How many floor points an emergent label needs (``ClassifyConfig.min_floor_share``), scored
    on the dense synthetic ladders of ``analysis.dense_ladders``, the rule's development set."""
    from emergence.analysis.dense_ladders import floor_rule_benchmark
    from emergence.analysis.verdicts import ClassifyConfig

    table = floor_rule_benchmark(n_ladders, seed, workers=1)
    current = ClassifyConfig().min_floor_share
    lines = [f"{n_ladders} synthetic ladders (seed {seed}; `emergence.analysis.dense_ladders`): 6 sizes at 20 tokens "
             "per parameter, 40 checkpoints per run, run offsets, judged on the pooled loss axis. A threshold task "
             "whose floor holds 0.5-40% of the judged points, and two smooth controls (a power of the loss, up to "
             "strongly convex, and a gentle sigmoid). The share of judged points the floor must hold is chosen here, "
             "by a rule fixed before this was run: the highest threshold recall with <= 1% of smooth controls "
             "called emergent, ties to the larger share. The real labelled curves below are scored with it, "
             "never used to choose it.", "",
             "| min_floor_share | threshold recall | recall, floor < 5% of points | smooth controls emergent | chosen |",
             "|---:|---:|---:|---:|---|"]
    for r in table.itertuples():
        lines.append(f"| {r.share:g} | {r.recall:.0%} of {r.thresholds} | {r.sparse_recall:.0%} of {r.sparse} | "
                     f"{r.false_emergent:.1%} of {r.controls} | {'yes' if r.chosen else ''}"
                     f"{' (default)' if abs(r.share - current) < 1e-12 else ''} |")
    return "\n".join(lines)


def labelled_section(reference_dir, labels=None) -> str:
    """The detector on the curves of ``analysis/data/labelled_curves.csv`` (or ``labels``):
    accuracy, false emergent, confusion matrix and threshold sensitivity (``analysis.labelled``)."""
    from emergence.analysis import labelled as L
    from emergence.tidy import fill_chance, read_tidy

    labels = L.load_labels() if labels is None else labels
    files = sorted(set(labels["data"]))
    missing = [f for f in files if not reference_dir or not (Path(reference_dir) / "tidy" / f).exists()]
    if missing:
        return f"Skipped: {', '.join(f'`tidy/{f}`' for f in missing)} not found."
    tables = {}
    for f, g in labels.groupby("data"):
        keep = set(g[S.TASK])
        tables[f] = fill_chance(read_tidy([Path(reference_dir) / "tidy" / f], where=lambda d, k=keep: d[S.TASK].isin(k),
                                               setting_is_note=True))
    found = L.detector_verdicts(labels, tables, workers=1)
    return L.report(labels, found, L.sensitivity(labels, tables, workers=1))


FINETUNE_LAW_SUMMARY = Path("bench") / "finetune_law.json"   # written by bench/finetune_law.py --out ...md
# The code the backtest's numbers come from: a summary written before any of it changed is stale.
FINETUNE_LAW_PROCEDURE = ("bench/finetune_law.py", "emergence/lab", "emergence/analysis/finetune_law.py",
                          "emergence/analysis/verdicts.py", "emergence/analysis/scaling.py", "tasks")


def procedure_fingerprint(root: Path | None = None) -> str:
    """sha256 of the Python files of ``FINETUNE_LAW_PROCEDURE`` under the checkout ``root`` (default:
    the one this package lies in), names and contents; "" where they are not there."""
    root = Path(root) if root else Path(__file__).resolve().parents[2]
    files = sorted(f for part in FINETUNE_LAW_PROCEDURE for f in
                   ([root / part] if part.endswith(".py") else (root / part).rglob("*.py")) if f.is_file())
    if not files:
        return ""
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return digest.hexdigest()


def finetune_law_section(summary=None) -> str:
    """The emergence-law backtest's targets, as its last run recorded them (``summary``: its JSON,
    default ``bench/finetune_law.json`` of the checkout). Fine-tuning the lab takes about 13
    minutes on 2 cores, so validate reports that run rather than repeating it."""
    path = Path(summary) if summary else _checkout_file(FINETUNE_LAW_SUMMARY)
    command = "python bench/finetune_law.py --out bench/finetune_law.md"
    if path is None or not path.is_file():
        return f"Not run here: `{command}` writes the summary this section shows (about 13 minutes on 2 cores)."
    data = json.loads(path.read_text())
    versions = ", ".join(f"{k} {v}" for k, v in data.get("versions", {}).items())
    now = procedure_fingerprint(path.resolve().parents[1])
    if not data.get("procedure"):
        fresh = "That run recorded no fingerprint of its code: whether the code has changed since is unknown."
    elif not now:
        fresh = f"The code of the procedure is not beside `{_shown(path)}`: whether it has changed since is unknown."
    elif now != data["procedure"]:
        fresh = ("**Stale: the code of the procedure (" + ", ".join(FINETUNE_LAW_PROCEDURE) + ") has changed since "
                 "that run; rerun its command before reading these numbers.**")
    else:
        fresh = "The code of the procedure is the code that run used (its fingerprint matches)."
    lines = [f"Its own command: `{data['command']}` ({data['seconds']} s on {data['cores']} CPU cores; {versions}). "
             f"Shown from `{_shown(path)}`, which that run wrote; the full report with figures and the "
             f"development runs behind its settings: `bench/finetune_law.md`, docs/finetune-law.md. {fresh}", "",
             "| fitted below | task | role | truth on the loss axis (whole family) | status | target | result | met |",
             "|---|---|---|---|---|---|---|---|"]
    for sec in data["sections"]:
        truth = sec.get("truth")
        told = "" if truth is None else truth["label"] + (
            f", eta {truth['eta']:.3f}" if truth.get("eta") is not None else "") + (
            f", N_c {truth['nc']:.3g}" if truth.get("nc") is not None else "")
        for target in sec["targets"]:
            lines.append(f"| {sec['cutoff']:,.0f} params | {sec['task']} | {sec['role']} | {told} | {sec['status']} | "
                         f"{target['target']} | {target['result']} | {'yes' if target['met'] else '**no**'} |")
    met = sum(t["met"] for sec in data["sections"] for t in sec["targets"])
    total = sum(len(sec["targets"]) for sec in data["sections"])
    lines += ["", f"{met} of {total} targets met. Why a status is not `predicted`:", ""]
    lines += [f"- {sec['task']}: {sec['reason']}" for sec in data["sections"] if sec["status"] != "predicted"]
    return "\n".join(lines)


def _checkout_file(relative: Path) -> Path | None:
    """``relative`` under the working directory, else under the checkout this package lies in."""
    for root in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (root / relative).is_file():
            return root / relative
    return None


def _shown(path: Path) -> str:
    """``path`` relative to the working directory where it can be (the file is committed: no
    machine's absolute paths in it)."""
    path = Path(path).resolve()
    try:
        return os.path.relpath(path, Path.cwd())
    except ValueError:   # another drive
        return path.name


def _pythia_zero_shot(path) -> pd.DataFrame:
    """Pythia's zero-shot acc and acc_norm, MMLU as one task (subjects averaged per checkpoint:
    subject curves are very noisy)."""
    df = _reference_table(path)
    df = df[(df["n_shot"] == 0) & df[S.METRIC].isin(["acc", "acc_norm"])]
    mmlu = df[S.TASK] == "mmlu"
    keys = [c for c in df.columns if c not in (S.SUBTASK, S.VALUE, S.STDERR, "source_file", "_file")]
    avg = df[mmlu].groupby(keys, dropna=False, as_index=False)[S.VALUE].mean().assign(**{S.SUBTASK: ""})
    return pd.concat([df[~mmlu], avg], ignore_index=True)


def robustness_section(reference_dir, seed: int = 0) -> str:
    """Trimming sensitivity on real curve sets and window invariance on synthetic logistics."""
    from emergence.analysis.trimming import first_judged
    from emergence.analysis.verdicts import ClassifyConfig

    lines = ["A verdict should not hinge on a few edge points. Trimming: each curve set is judged as "
             "published and again without its earliest checkpoints; the table gives the share of curves "
             "whose label changes (curves judged in both), and the emergent count before -> after. Checkpoints "
             f"before {ClassifyConfig().warmup_fraction:.0%} of a run's tokens are the warm-up and never "
             "judged, so dropping them is a no-op by design; dropping the first judged checkpoints is the "
             "real test.", "",
             "| curve set | curves | dropped | labels changed | emergent (changed) |", "|---|---:|---|---:|---|"]
    pythia = reference_dir / "tidy" / "pythia.csv.gz" if reference_dir else None
    if pythia and pythia.exists():
        df = _pythia_zero_shot(pythia)
        base = "Pythia zero-shot acc/acc_norm vs tokens, one curve per model"
        lines += _trim_rows(base, df, S.TOKENS, {
            "steps < 1000 (< 1% of training)": df[S.STEP] < 1000,
            **{f"first {k} judged checkpoint(s) per run": first_judged(df, k) for k in (1, 2, 3)}})
        lines += _trim_rows(base + ", warm-up rule off", df, S.TOKENS,
                            {"steps < 1000 (< 1% of training)": df[S.STEP] < 1000},
                            ClassifyConfig(warmup_fraction=0.0))
    olmo = reference_dir / "tidy" / "olmo_ladder.csv.gz" if reference_dir else None
    if olmo and olmo.exists():
        df = _reference_table(olmo)
        df = df[(df[S.FAMILY] == "olmo-ladder") & df[S.METRIC].astype(str).str.startswith("acc_len_norm")]
        loss = df[S.LOSS]
        lines += _trim_rows("OLMo ladder acc_len_norm vs loss, pooled over the 25 runs", df, S.LOSS, {
            "loss > 6 nats (1% of points)": loss > 6,
            **{f"highest-loss {q:.0%} of points": loss > loss.quantile(1 - q) for q in (0.02, 0.05)}})
        lines += _trim_rows("OLMo ladder acc_len_norm vs tokens, one curve per run", df, S.TOKENS,
                            {f"first {k} judged checkpoint(s) per run": first_judged(df, k) for k in (1, 3)})
    if len(lines) == 5:
        lines.append("| (reference data not found) | | | | |")
    lines += ["", *_window_lines(seed)]
    return "\n".join(lines)


def _trim_rows(name, df, axis, drops: dict, config=None) -> list:
    from emergence.analysis.trimming import trimming_table
    from emergence.analysis.verdicts import ClassifyConfig

    table = trimming_table(df, axis, drops, config or ClassifyConfig())
    return [f"| {name} | {r.curves} | {r.dropped} | {r.labels_changed:.1%} | {r.emergent_before} -> "
            f"{r.emergent_after} ({r.emergent_changed} of {r.emergent_either}) |" for r in table.itertuples()]


WINDOW_WIDTHS = (0.25, 0.5, 1.0, 2.0)   # decades, 10-90% rise of the logistic


def _window_lines(seed, seeds: int = 10) -> list:
    """The same logistic in log size (from chance 0.25 to 0.85), seen over 2 and over 4 decades
    centred on its midpoint, 8 points per decade, n = 1000 per point, ``seeds`` noise draws."""
    import numpy as np

    from emergence.analysis.verdicts import ClassifyConfig, classify

    config = ClassifyConfig(bootstrap=0)
    lines = ["Window: the same logistic (chance 0.25 to 0.85, 10-90% rise over the given width, "
             f"midpoint 1e9 parameters, 8 points per decade, n = 1000) seen over 2 and over 4 decades, "
             f"{seeds} noise draws each (seed {seed}).", "",
             "| width (decades) | labels over 2 decades | labels over 4 decades | same label (paired draws) |",
             "|---:|---|---|---:|"]
    for w in WINDOW_WIDTHS:
        labels = {}
        for span in (2, 4):
            x = np.logspace(9 - span / 2, 9 + span / 2, 8 * span + 1)
            p = 0.25 + 0.6 / (1 + np.exp(-2 * np.log(9) / w * (np.log10(x) - 9)))
            rng = np.random.default_rng(seed)
            labels[span] = [classify(x, rng.binomial(1000, p) / 1000, n=1000, chance=0.25, config=config).label
                            for _ in range(seeds)]
        same = np.mean([a == b for a, b in zip(labels[2], labels[4])])

        def counts(ls):
            return ", ".join(f"{ls.count(k)} {k}" for k in dict.fromkeys(sorted(ls)))

        lines.append(f"| {w:g} | {counts(labels[2])} | {counts(labels[4])} | {same:.0%} |")
    lines += ["", "Widths are absolute (`ClassifyConfig.steep_decades`, `gentle_decades`, `steep_nats`, "
              "`gentle_nats`), so the window changes how much of the curve is seen, not what its width means."]
    return lines
