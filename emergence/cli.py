"""The ``emergence`` command line: one sub-command per stage, plus listings and the demo."""

import argparse
import logging
import os
import sys
from pathlib import Path

from emergence.files import write_atomic
from emergence.names import unknown_message

IMPORT_SOURCES = ("lm-eval", "lm-eval-samples", "bigbench")
COMMANDS = ("run", "export", "analyze", "backtest", "report", "validate", "import", "plugins", "families", "tasks",
            "check-task", "demo", "lab", "finetune-law")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and not argv[0].startswith("-") and argv[0] not in COMMANDS:
        print(f"emergence: {unknown_message('command', argv[0], COMMANDS)}", file=sys.stderr)
        return 2
    args = _parser().parse_args(argv)
    if not getattr(args, "command", None):
        _parser().print_help()
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command not in ("analyze", "backtest", "report", "validate", "import"):  # these load no model: skip importing transformers (~2 s)
        from emergence.run.executors import quiet_libraries

        quiet_libraries()
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        print("Interrupted; rerun the same command to finish the rest.", file=sys.stderr)
        return 130
    except Exception as e:  # every known failure is an exception with a message meant for users
        if os.environ.get("EMERGENCE_DEBUG"):
            raise
        print(f"emergence {args.command}: error: {e}", file=sys.stderr)
        return 1


IMPORT_HELP = """\
Turn other tools' result files into a tidy table that `emergence analyze` accepts.

Models a registered family lists (`emergence families`) get their params, tokens and step from
it. For any other model give the family with --family and the counts with --meta:

  ladder.toml                                  ladder.csv
    family = "my-ladder"                         model,revision,repo,params,params_nonembed,tokens,step
    [models.ladder-150m]                         ladder-150m,,,151000000,113000000,,
    params = 151_000_000                         ladder-150m,step1000,,,,4.2e9,1000
    params_nonembed = 113_000_000
    tokens_per_step = 4_194_304    # tokens = step x this, where a checkpoint gives none
    [models.ladder-150m.checkpoints]
    step1000 = { tokens = 4.2e9 }  # per revision (main = none): tokens, step, params

Keys of a model: params, params_nonembed, tokens, tokens_per_step, step, repo (the pretrained=
value of its result files, needed for a local path), config (a config.json whose model is
counted offline instead of params), checkpoints. A model folder here that holds a config.json
is counted the same way. The model name comes from a hub id (org/NAME); a local path is named by
--meta (repo = "..."), never by the folders above the model. A model no registry, --meta or
config.json describes is an error, as is anything `analyze` would refuse.
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="emergence", description=__doc__)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser("run", help="evaluate a family of checkpoints on tasks into a run directory")
    r.add_argument("--config", "-c", help="TOML run config; flags override it")
    r.add_argument("--family", "-f", help="registered family name, a folder of checkpoints, or a family TOML")
    r.add_argument("--tasks", "-t", help="comma-separated task names")
    r.add_argument("--out", "-o", help="run directory (default runs/default)")
    r.add_argument("--sizes", help="comma-separated sizes or model names, e.g. 70m,160m")
    r.add_argument("--steps", help="'final', a range LO:HI, or a list 0,512,1000")
    r.add_argument("--glob", help="fnmatch pattern on checkpoint names")
    r.add_argument("--seed", type=int)
    r.add_argument("--limit", type=int, help="examples per task")
    r.add_argument("--num-fewshot", type=int)
    r.add_argument("--device", help="auto, cpu, cuda, cuda:1, mps")
    r.add_argument("--dtype", help="auto, float32, bfloat16, float16")
    r.add_argument("--batch-size", help="rows per forward pass, or auto")
    r.add_argument("--device-map", help="'auto' to shard a large model (accelerate)")
    r.add_argument("--max-length", type=int, help="context window in tokens")
    r.add_argument("--allow-pickle", action="store_const", const=True, help="allow non-safetensors weights")
    r.add_argument("--trust-remote-code", action="store_const", const=True,
                   help="run Python code shipped with a model repository")
    r.add_argument("--executor", metavar="{local,pool,ray}",
                   help="where checkpoints are evaluated: this process (default), worker processes on this "
                        "machine, or Ray workers (docs/ray.md)")
    r.add_argument("--eval-workers", type=int, help="processes of the pool executor (default: one per CPU)")
    r.add_argument("--address", help="Ray cluster to join, e.g. auto or 10.0.0.1:6379 (default: find or start one)")
    r.add_argument("--gpus-per-worker", type=float, help="GPUs each Ray task reserves (default 0: CPU only)")
    r.add_argument("--reevaluate-changed", action="store_const", const=True,
                   help="evaluate again the cells of a checkpoint whose weights or family changed, or of a "
                        "task whose version changed, since they were stored, replacing them (default: refuse)")
    r.add_argument("--no-progress", action="store_true")
    r.set_defaults(func=cmd_run)

    e = sub.add_parser("export", help="write a run directory's results as one tidy table")
    e.add_argument("run_dir")
    e.add_argument("--format", choices=("csv", "parquet"), default="csv")
    e.add_argument("--output", "-o", help="output file (default RUN_DIR/results.<format>)")
    e.add_argument("--loss-task", help="task whose nats/token fill the loss column")
    e.add_argument("--salvage", action="store_true",
                   help="from a damaged store: export the intact cells, cell by cell, to RUN_DIR/"
                        "results.salvaged.<format> and list what was lost (the store is left as it is)")
    e.set_defaults(func=cmd_export)

    i = sub.add_parser("import", help="turn other tools' result files into a tidy table",
                       description=IMPORT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    i.add_argument("source", choices=IMPORT_SOURCES,
                   help="format of the files: lm-eval result JSON (*.json), lm-eval --log_samples files "
                        "(samples_*.jsonl, continuous metrics of multiple-choice tasks), BIG-bench score "
                        "files (scores_*.json); see docs/import.md")
    i.add_argument("paths", nargs="+", metavar="PATH", help="result files, or folders searched for them")
    i.add_argument("--output", "-o", help="output .csv or .parquet (default: CSV on stdout)")
    i.add_argument("--family", help="lm-eval, lm-eval-samples: family name of the models no registered family lists")
    i.add_argument("--meta", metavar="FILE", help="lm-eval: params, params_nonembed, tokens and step of those models "
                   "(.toml or .csv; format below and in docs/lm-eval.md)")
    i.add_argument("--duplicates", choices=("error", "first"), default="error",
                   help="lm-eval: a result in two files with different values: stop (default), or keep the first "
                        "file's (identical ones are always kept once, with a note)")
    i.add_argument("--setting", default="",
                   help="lm-eval, lm-eval-samples: how these files were evaluated (a prompt variant, an answer "
                        "format such as mc), written on every row; curves of different settings never mix")
    i.set_defaults(func=cmd_import)

    a = sub.add_parser("analyze", help="fits, emergence verdicts and metric audits of tidy tables or run directories",
                       description=_analyze_description(), formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("tables", nargs="+", metavar="TABLE", help="tidy .csv/.csv.gz/.parquet files or run directories")
    a.add_argument("--x", help="comma-separated axes: params, tokens, flops, loss (default: every usable one)")
    a.add_argument("--output", "-o", help="folder for the CSV files (default: analysis/ next to the first table)")
    a.add_argument("--n-boot", type=int, default=100, help="bootstrap draws for scaling-law intervals")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--workers", type=int, default=0, help="processes fitting curves (default: one per CPU)")
    a.add_argument("--duplicates", choices=("error", "first"), default="error",
                   help="rows sharing a key: stop (default), or keep the first of each")
    a.add_argument("--cutoff", type=float, help="backtest: fit on models with fewer parameters, predict the rest's "
                   "loss (backtest.csv) and where tasks emerge (onset.csv)")
    a.add_argument("--setting-is-note", action="store_true",
                   help="the tables' setting column describes where rows come from (as in the reference data: "
                        "'ladder rung, token budget 10xC'), not how a task was evaluated: keep it as source_note, "
                        "so that it does not split curves")
    a.set_defaults(func=cmd_analyze)

    b = sub.add_parser("backtest", help="fit every predictor below a size or compute cutoff, score it on the "
                       "rest: one error table (backtest.csv, backtest.md)")
    b.add_argument("tables", nargs="+", metavar="TABLE", help="tidy .csv/.csv.gz/.parquet files or run directories")
    b.add_argument("--cutoff", type=float, required=True, help="models with params (or flops) below it train")
    b.add_argument("--by", choices=("params", "flops"), default="params", help="what the cutoff applies to")
    b.add_argument("--predictors", help="comma-separated (default: all of two_step, power_law, loss_to_loss, flp, "
                   "onset, obs_scaling, obs_compute)")
    b.add_argument("--pool", action="store_true", help="split all families together (targets of another family)")
    b.add_argument("--task-loss", default="auto", help="metric that is each task's continuous loss: 'auto' "
                   "(bpb with the metric's [suffix]), 'none', or a metric name")
    b.add_argument("--metrics", help="comma-separated metrics to predict (default: every score in [0, 1])")
    b.add_argument("--tasks", help="comma-separated tasks to predict (default: all)")
    b.add_argument("--benchmarks", help="comma-separated tasks whose scores form the capability components "
                   "of obs_scaling")
    b.add_argument("--n-boot", type=int, default=20, help="bootstrap draws per predictor for the intervals")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--duplicates", choices=("error", "first"), default="error")
    b.add_argument("--output", "-o", default="backtest", help="folder for backtest.csv, backtest.md, backtest.json")
    b.set_defaults(func=cmd_backtest)

    v = sub.add_parser("validate", help="rerun the analysis validation and write VALIDATION.md")
    v.add_argument("--reference-data", help="folder with tidy/ and the raw sources (default: "
                   "$EMERGENCE_REFERENCE_DATA or ../shared/reference-data)")
    v.add_argument("--output", "-o", default="VALIDATION.md")
    v.add_argument("--curves", type=int, default=600, help="synthetic curves to classify")
    v.add_argument("--families", type=int, default=48, help="synthetic families for the onset backtest")
    v.add_argument("--ladders", type=int, default=60, help="synthetic ladders for the floor rule")
    v.set_defaults(func=cmd_validate)

    rp = sub.add_parser("report", help="one self-contained HTML report (+ summary.md, PNG/SVG figures) of tables or runs")
    rp.add_argument("tables", nargs="+", metavar="RUN_OR_TABLE", help="tidy .csv/.csv.gz/.parquet files or run directories")
    rp.add_argument("--output", "-o", help="report folder (default: reports/<name of the first input>)")
    rp.add_argument("--predictions", help="CSV of backtests: task, actual, predicted[, lo, hi]")
    rp.add_argument("--analysis", help="folder of `emergence analyze` CSVs to use (default: analysis/ beside the "
                    "first input when it matches the table)")
    rp.add_argument("--reanalyze", action="store_true", help="run the analysis here even if analysis/ exists")
    rp.add_argument("--max-tasks", type=int, default=6, help="tasks with full figures (the rest are in the tables)")
    rp.add_argument("--title", help="report title")
    rp.add_argument("--n-boot", type=int, default=100, help="bootstrap draws if the analysis runs here")
    rp.add_argument("--cutoff", type=float, help="backtest below this many parameters if the analysis runs here "
                    "(as `emergence analyze --cutoff`)")
    rp.add_argument("--seed", type=int, default=0)
    rp.set_defaults(func=cmd_report)

    for name, helptext, func in (("plugins", "list plugins, their hooks and versions", cmd_plugins),
                                 ("families", "list model families", cmd_families),
                                 ("tasks", "list tasks with their sub-tasks and metrics", cmd_tasks)):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("--verbose", "-v", action="store_true")
        s.set_defaults(func=func)

    c = sub.add_parser("check-task", help="check tasks against the task contract, without a model (docs/tasks.md)")
    c.add_argument("names", nargs="+", metavar="NAME", help="registered task names or task specs")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--limit", type=int, default=200, help="examples checked per task")
    c.set_defaults(func=cmd_check_task)

    d = sub.add_parser("demo", help="train (or reuse) the lab family, evaluate it, analyse it, write the report")
    d.add_argument("--out", "-o", default="runs/demo")
    d.add_argument("--limit", type=int, default=200, help="examples per task")
    d.add_argument("--tasks", help="comma-separated tasks (default: the lab's skills and heldout_loss)")
    d.add_argument("--eval-workers", type=int, default=0, help="evaluation processes (0: one per CPU)")
    d.add_argument("--no-report", action="store_true", help="stop after the analysis")
    _lab_options(d)
    d.set_defaults(func=cmd_demo)

    lab = sub.add_parser("lab", help="the emergence lab: a family of small LMs trained from scratch")
    lab_sub = lab.add_subparsers(dest="lab_command", metavar="LAB_COMMAND", required=True)
    t = lab_sub.add_parser("train", help="train the lab family (sizes x checkpoints) into a folder")
    t.add_argument("--out", "-o", help="folder for the family (default: the lab cache, keyed by the config)")
    _lab_options(t)
    t.set_defaults(func=cmd_lab_train)

    ft = sub.add_parser("finetune-law", help="fine-tune checkpoints on a task's training examples and fit its "
                                             "emergence law (docs/finetune-law.md)")
    ft.add_argument("--family", "-f", required=True, help="registered family name, a folder or a family TOML")
    ft.add_argument("--task", "-t", required=True, help="the task to fine-tune on and evaluate")
    ft.add_argument("--metric", default="exact_match", help="the metric whose threshold is located")
    ft.add_argument("--subtask", default="")
    ft.add_argument("--amounts", help="fine-tuning examples per model, e.g. 0,64,256,1024 (0: as it is)")
    ft.add_argument("--out", "-o", default="runs/finetune")
    ft.add_argument("--sizes", help="comma-separated sizes or model names to fine-tune")
    ft.add_argument("--steps", help="'final', a range LO:HI, or a list 0,512,1000")
    ft.add_argument("--glob", help="fnmatch pattern on checkpoint names")
    ft.add_argument("--epochs", type=int, help="passes over each amount's examples (default 3)")
    ft.add_argument("--lr", type=float, help="AdamW rate (default 1e-5, for pretrained LMs; the lab's tiny "
                                             "models need 1e-2)")
    ft.add_argument("--batch-size", type=int, help="examples per step (default 16)")
    ft.add_argument("--replay-rows", type=int, help="rows of pretraining-like text (the held-out loss task's "
                                                    "training text) added to every batch (default 0)")
    ft.add_argument("--shuffle-seed", type=int, help="fine-tuning seed: the order of examples and replay rows")
    ft.add_argument("--train-seed", type=int, help="seed of the training examples (default 20000000)")
    ft.add_argument("--seed", type=int, help="evaluation seed")
    ft.add_argument("--limit", type=int, help="evaluation examples per task (default 200); the rest of a "
                                              "small task's questions are the training examples")
    ft.add_argument("--num-fewshot", type=int)
    ft.add_argument("--loss-task", help="task whose nats/token is the pretraining loss (default heldout_loss)")
    ft.add_argument("--seen-questions", type=int, help="training questions each fine-tuned model answers, to "
                                                       "tell a skill from memorised questions (default 25; 0: off)")
    ft.add_argument("--d0", type=float, help="few-shot limit the law is extrapolated to (default: the shots, >= 1)")
    ft.add_argument("--truth-run", help="a run (emergence run --out DIR) of the family on the task and its loss "
                                        "task, the larger sizes included: the prediction is checked against its "
                                        "measured onset")
    ft.add_argument("--device", help="auto, cpu, cuda, mps")
    ft.add_argument("--precision", help="float32 (default) or bfloat16: forward and backward under bfloat16 "
                                        "autocast, weights and optimizer in float32 (GPUs with bfloat16)")
    ft.add_argument("--no-progress", action="store_true")
    ft.set_defaults(func=cmd_finetune_law)
    return p


def _lab_options(p):
    """LabConfig overrides shared by `lab train` and `demo` (defaults: emergence/lab.py)."""
    g = p.add_argument_group("lab family (defaults in emergence/lab.py; docs/lab.md)")
    g.add_argument("--lab-config", help="TOML file of LabConfig keys; the flags below override it")
    g.add_argument("--sizes", help="d_model x layers per size, e.g. 8x2,32x2,128x4")
    g.add_argument("--head-dim", type=int)
    g.add_argument("--context", type=int, help="tokens per training row")
    g.add_argument("--vocab-size", type=int)
    g.add_argument("--tokens", type=int, help="training tokens per size")
    g.add_argument("--tokens-per-param", type=float, help="Chinchilla-style: tokens = R x params per size")
    g.add_argument("--mix", help="skill shares, e.g. copy=0.3,add_1d=0.3,filler=0.4")
    g.add_argument("--lr", type=float)
    g.add_argument("--schedule", help="cosine, linear or constant")
    g.add_argument("--warmup", type=float, help="share of steps spent warming up")
    g.add_argument("--batch-size", type=int, dest="lab_batch_size", help="rows per training step")
    g.add_argument("--checkpoints", type=int, help="checkpoints per size (log-spaced)")
    g.add_argument("--seed", type=int)
    g.add_argument("--device", help="auto, cpu, cuda, mps")
    g.add_argument("--threads", type=int, help="torch threads per training worker")
    g.add_argument("--workers", type=int, help="sizes trained in parallel (0: one per CPU)")
    g.add_argument("--no-progress", action="store_true")


def cmd_run(args) -> int:
    from emergence.run.config import RunConfig, load_config, with_overrides
    from emergence.run.runner import run

    config = load_config(args.config) if args.config else RunConfig()
    batch = args.batch_size
    if batch is not None and batch != "auto":
        if not batch.isdigit() or int(batch) < 1:
            raise ValueError(f"--batch-size must be a positive integer or 'auto', got {batch!r}")
        batch = int(batch)
    config = with_overrides(
        config, family=args.family, out=args.out, seed=args.seed, limit=args.limit,
        num_fewshot=args.num_fewshot,
        tasks=tuple(t.strip() for t in args.tasks.split(",") if t.strip()) if args.tasks else None,
        select_sizes=tuple(s.strip() for s in args.sizes.split(",")) if args.sizes else None,
        select_steps=args.steps, select_glob=args.glob,
        backend_device=args.device, backend_dtype=args.dtype, backend_batch_size=batch,
        backend_device_map=args.device_map, backend_max_length=args.max_length,
        backend_allow_pickle=args.allow_pickle, backend_trust_remote_code=args.trust_remote_code,
        executor_kind=args.executor, executor_address=args.address,
        executor_gpus_per_worker=args.gpus_per_worker, executor_workers=args.eval_workers,
        reevaluate_changed=args.reevaluate_changed,
    )
    summary = run(config, progress=not args.no_progress)
    if summary.changed:
        print(f"{len(summary.changed)} changed checkpoint(s) evaluated again: {', '.join(summary.changed)}")
    print(f"{summary.evaluated} cells evaluated, {summary.skipped} already done, "
          f"{len(summary.failed)} failed, in {summary.run_dir}")
    for ck, task, error in summary.failed:
        print(f"  FAILED {ck} / {task}: {error}", file=sys.stderr)
    return 0 if summary.ok else 1


def cmd_export(args) -> int:
    from emergence.export import SALVAGED_NAME, salvage_table, tidy_table, write_table

    if args.salvage:
        salvage = salvage_table(args.run_dir, loss_task=args.loss_task)
        out = args.output or Path(args.run_dir) / f"{SALVAGED_NAME}.{args.format}"
        write_table(salvage.table, out, args.format)
        print(f"{salvage.summary()}\n{len(salvage.table)} rows -> {out}")
        return 0
    df = tidy_table(args.run_dir, loss_task=args.loss_task)
    out = args.output or Path(args.run_dir) / f"results.{args.format}"
    write_table(df, out, args.format)
    print(f"{len(df)} rows -> {out}")
    return 0


def cmd_import(args) -> int:
    df = _imported(args)
    if not args.output:
        df.to_csv(sys.stdout, index=False)
        return 0
    from emergence.export import write_table

    write_table(df, args.output)
    print(f"{len(df)} rows from {df[['checkpoint']].drop_duplicates().shape[0]} checkpoints -> {args.output}")
    return 0


def _imported(args):
    """The tidy table of ``emergence import``, checked as ``analyze`` will read it."""
    if args.source != "lm-eval" and (args.meta or args.duplicates != "error"):
        raise ValueError(f"--meta and --duplicates apply to lm-eval result files, not {args.source}")
    if (args.family or args.setting) and args.source == "bigbench":
        raise ValueError("--family and --setting do not apply to bigbench: its score files name their model "
                         "family, and its subtasks are its settings")
    if args.source == "lm-eval":
        from emergence.run.importers import import_lmeval

        return import_lmeval(args.paths, family=args.family, meta=args.meta, duplicates=args.duplicates, strict=True,
                             setting=args.setting)
    from emergence.tidy import check_tidy

    if args.source == "bigbench":
        from emergence.run.import_bigbench import import_bigbench

        df = import_bigbench(args.paths)
    else:
        from emergence.run.import_samples import import_lmeval_samples

        df = import_lmeval_samples(args.paths, family=args.family, setting=args.setting)
    check_tidy(df, source=", ".join(args.paths))  # refused here, before anything is written
    return df


def _analyze_description() -> str:
    from textwrap import fill

    from emergence.analysis.verdicts import definition   # light: numpy, pandas, scipy.special

    return (fill("Fits, emergence verdicts and metric audits of tidy tables or run directories; CSVs "
                 "(verdicts, not_judged, audit, composites, fits) and a summary.", 88) + "\n\n" +
            fill(definition(), 88) + "\n\n" +
            fill("Curves with < 3 points or distinct x values, a constant axis, or an axis that duplicates "
                 "another go to not_judged.csv, not into the counts. flops = 6 N D is derived where params "
                 "and tokens exist and flops is empty. See docs/verdicts.md.", 88))


def cmd_analyze(args) -> int:
    from emergence.analysis.analyze import analyze, load_tables, summary, write_analysis

    df = load_tables(args.tables, duplicates=args.duplicates, setting_is_note=args.setting_is_note)
    axes = _names(args.x)
    result = analyze(df, axes, n_boot=args.n_boot, seed=args.seed, workers=args.workers, cutoff=args.cutoff)
    first = Path(args.tables[0])
    out = Path(args.output) if args.output else (first if first.is_dir() else first.parent) / "analysis"
    write_analysis(result, out)
    print(summary(result))
    print(f"{len(df)} rows analysed -> {out}/")
    return 0


def cmd_backtest(args) -> int:
    from emergence.analysis.analyze import load_tables
    from emergence.analysis.backtest import BacktestConfig, backtest, markdown, write_backtest

    config = BacktestConfig(cutoff=args.cutoff, by=args.by, predictors=_names(args.predictors), pool=args.pool,
                            task_loss=args.task_loss, metrics=_names(args.metrics), tasks=_names(args.tasks),
                            benchmarks=_names(args.benchmarks), n_boot=args.n_boot, seed=args.seed)
    df = load_tables(args.tables, duplicates=args.duplicates)
    table = backtest(df, **config.options())
    written = write_backtest(table, args.output, config)
    print(markdown(table))
    print(f"{len(table)} rows -> {', '.join(map(str, written))}")
    return 0


def cmd_validate(args) -> int:
    from emergence.analysis.validate import default_reference_dir, validate

    ref = Path(args.reference_data) if args.reference_data else default_reference_dir()
    if args.reference_data and not (ref / "tidy").is_dir():
        raise FileNotFoundError(f"{ref} has no tidy/ folder of reference tables")
    text = validate(ref, n_curves=args.curves, n_families=args.families, n_ladders=args.ladders)
    write_atomic(args.output, text)
    print(text)
    return 0


def cmd_report(args) -> int:
    from emergence.report.build import ReportConfig, build_report

    first = Path(args.tables[0])
    name = first.resolve().name if first.is_dir() else first.name.split(".")[0]  # "..": the folder's own name
    out = Path(args.output) if args.output else Path("reports") / (name or "report")
    config = ReportConfig(max_tasks=args.max_tasks, title=args.title, n_boot=args.n_boot, seed=args.seed,
                          cutoff=args.cutoff)
    report = build_report(args.tables, out, predictions=args.predictions, analysis_dir=args.analysis,
                          reanalyze=args.reanalyze, config=config)
    print(f"analysis {report.analysis_source}")
    print(f"{report.html} ({report.html.stat().st_size / 1e6:.1f} MB), {report.summary}, "
          f"{len(report.figures)} figure files in {out / 'figures'}/ ({report.seconds['total']:.1f} s)")
    return 0


def cmd_plugins(args) -> int:
    from emergence.plugins import plugin_info, plugin_manager

    for info in plugin_info(plugin_manager()):
        origin = f"{info.distribution} {info.version}" if info.distribution else info.module
        print(f"{info.name:18} {origin:24} {', '.join(info.hooks)}")
    return 0


def cmd_families(args) -> int:
    from emergence.plugins import collect, plugin_manager

    pm = plugin_manager()
    registry = collect(pm)
    for name, fam in sorted(registry.families.items()):
        steps = fam.steps
        span = f", steps {steps[0]}..{steps[-1]} ({len(steps)})" if len(steps) > 1 else ""
        print(f"{name:16} {len(fam.checkpoints):5} checkpoints, sizes {', '.join(fam.sizes)}{span}")
        if args.verbose and fam.description:
            print(f"{'':16} {fam.description}")
    if "lab" not in registry.families and pm.has_plugin("lab_family"):
        from emergence.lab.training import LabConfig, family_dir

        # The lab family exists only once trained: say so rather than leave it out silently.
        print(f"{'lab':16}     - not trained yet in {family_dir(LabConfig())}: run `emergence lab train` or "
              "`emergence demo` (or set EMERGENCE_LAB_CACHE) to use --family lab")
    return 0


def cmd_tasks(args) -> int:
    from emergence.plugins import collect, plugin_manager

    registry = collect(plugin_manager())
    for name, task in sorted(registry.tasks.items()):
        print(f"{name}  (v{task.version}, {task.kind}, plugin {registry.owner[('task', name)]})")
        if task.description:
            print(f"    {task.description}")
        if task.subtasks:
            print(f"    sub-tasks: {', '.join(task.subtasks)}")
        metrics = [f"{m.name} [{m.kind}{'' if m.chance is None else f', chance {m.chance:g}'}]"
                   for m in task.metrics]
        print(f"    metrics: {', '.join(metrics)}")
    return 0


def cmd_check_task(args) -> int:
    from emergence.plugins import collect, plugin_info, plugin_manager
    from emergence.run.runner import resolve_task
    from emergence.task_checks import ERROR, check_task

    pm = plugin_manager()
    registry = collect(pm)
    origins = {p.name: f"{p.distribution} {p.version}" if p.distribution else p.module for p in plugin_info(pm)}
    failed = 0
    for name in args.names:
        task = resolve_task(name, pm, registry)
        plugin = registry.owner.get(("task", task.name))
        source = f"plugin {plugin} from {origins.get(plugin, '?')}" if plugin else "resolved from its spec"
        problems = check_task(task, seed=args.seed, limit=args.limit)
        errors = sum(p.level == ERROR for p in problems)
        verdict = "ok" if not problems else f"{errors} error(s), {len(problems) - errors} warning(s)"
        print(f"{task.name} (v{task.version}, {source}): {verdict}")
        for problem in problems:
            print(f"  {problem}")
        failed += bool(errors)
    return 1 if failed else 0


def cmd_demo(args) -> int:
    from emergence.lab.demo import demo

    tasks = tuple(t.strip() for t in args.tasks.split(",") if t.strip()) if args.tasks else None
    result = demo(out=args.out, limit=args.limit, lab=_lab_config(args), tasks=tasks,
                  workers=args.eval_workers, report=not args.no_report, progress=not args.no_progress)
    return 1 if result.failed else 0


def cmd_lab_train(args) -> int:
    from emergence.lab.training import train_family

    family = train_family(_lab_config(args), args.out, progress=not args.no_progress)
    print(f"Family file: {family}  (emergence run --family {family} ...)")
    return 0


def cmd_finetune_law(args) -> int:
    import dataclasses

    from emergence.analysis.finetune_law import (MIN_AMOUNTS, emergence_prediction, measured_onset,
                                                 prediction_markdown, truth_markdown)
    from emergence.analysis.scaling import FitError
    from emergence.export import tidy_table
    from emergence.families import Selection
    from emergence.lab.finetune import FinetuneConfig, FinetuneError, finetune_run, finetune_table

    try:
        amounts = tuple(int(a) for a in args.amounts.split(",")) if args.amounts else None
    except ValueError:
        raise FinetuneError(f"--amounts takes whole numbers of examples, e.g. 0,64,256; got {args.amounts!r}") from None
    overrides = {"amounts": amounts, "epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
                 "replay_rows": args.replay_rows, "shuffle_seed": args.shuffle_seed,
                 "train_seed": args.train_seed, "seed": args.seed, "limit": args.limit,
                 "num_fewshot": args.num_fewshot, "loss_task": args.loss_task, "device": args.device,
                 "precision": args.precision,
                 "seen_questions": args.seen_questions}
    config = dataclasses.replace(
        FinetuneConfig(family=args.family, task=args.task, out=args.out,
                       select=Selection(sizes=tuple(s.strip() for s in args.sizes.split(",")) if args.sizes else (),
                                        steps=args.steps, glob=args.glob)),
        **{k: v for k, v in overrides.items() if v is not None})
    if sum(a > 0 for a in config.amounts) < MIN_AMOUNTS:   # fail before any training, not after it
        raise FinetuneError(f"--amounts {','.join(map(str, config.amounts))}: an emergence law needs >= "
                            f"{MIN_AMOUNTS} positive amounts of fine-tuning examples, e.g. 0,64,256,1024")
    truth = None
    if args.truth_run:                                      # ... and read the check before training too
        try:
            truth = measured_onset(tidy_table(args.truth_run), task=args.task, metric=args.metric,
                                   subtask=args.subtask)
        except (FileNotFoundError, FitError) as e:
            raise FinetuneError(f"--truth-run {args.truth_run}: {e}") from None
    summary = finetune_run(config, progress=not args.no_progress)
    print(f"{summary.trained} models fine-tuned, {summary.reused} reused, {len(summary.failed)} failed; "
          f"{summary.run.evaluated} cells evaluated, {summary.run.skipped} already done, in {summary.out}")
    for ck, amount, why in summary.failed:
        print(f"  FAILED {ck} on {amount} examples: {why}", file=sys.stderr)
    for ck, task, error in summary.run.failed:
        print(f"  FAILED {ck} / {task}: {error}", file=sys.stderr)
    d0 = args.d0 if args.d0 is not None else float(max(1, summary.shots))
    try:
        table = finetune_table(summary.out)
        row = emergence_prediction(table, task=args.task, metric=args.metric, subtask=args.subtask, d0=d0)
    except FitError as e:   # e.g. every cell failed: say so after the failures above
        print(f"emergence finetune-law: no law fitted: {e}", file=sys.stderr)
        return 1
    from emergence.report.figures import finetune_law_figure

    finetune_law_figure(table, row, truth).savefig(Path(summary.out) / "finetune_law.png", dpi=150)
    text = prediction_markdown(row) + "\n![threshold vs fine-tuning data](finetune_law.png)\n"
    if truth is not None:
        text += "\n" + truth_markdown(row, truth)
    write_atomic(Path(summary.out) / "finetune_law.md", text)
    print(text)
    return 0 if summary.ok else 1


def _names(value):
    """A comma-separated option as a list of names; None where it was not given."""
    return [x.strip() for x in value.split(",") if x.strip()] if value else None


def _lab_config(args):
    import dataclasses

    from emergence.lab import training as lab

    overrides = {"head_dim": args.head_dim, "context": args.context, "vocab_size": args.vocab_size,
                 "tokens": args.tokens, "tokens_per_param": args.tokens_per_param, "lr": args.lr,
                 "schedule": args.schedule, "warmup": args.warmup, "batch_size": args.lab_batch_size,
                 "checkpoints": args.checkpoints, "seed": args.seed, "device": args.device,
                 "threads": args.threads, "workers": args.workers}
    try:
        if args.sizes:
            overrides["sizes"] = tuple(tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(","))
        if args.mix:
            overrides["mix"] = tuple((k.strip(), float(v)) for k, v in (m.split("=") for m in args.mix.split(",")))
    except ValueError:
        raise lab.LabConfigError("--sizes takes DxL pairs (8x2,32x2); --mix takes skill=share pairs "
                                 "(copy=0.3,filler=0.7)") from None
    if args.lab_config:
        return lab.load_lab_config(args.lab_config, **overrides)
    base = dataclasses.asdict(lab.LabConfig())
    return lab.config_from_dict({**base, **{k: v for k, v in overrides.items() if v is not None}})


if __name__ == "__main__":
    sys.exit(main())
