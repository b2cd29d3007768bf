"""How long `emergence import` takes on result folders of realistic size, end to end (the CLI in
a fresh process: start-up, parsing, the tidy checks, writing the CSV).

    python bench/import_speed.py [--checkpoints 8] [--docs 10000] [--tasks 50] [--models 24]
                                 [--quick] [--out FILE]

1. lm-eval per-sample files: --checkpoints runs, each a results file and one multiple-choice
   task of --docs documents (4 choices, log-likelihoods drawn with seed 0), in lm-eval 0.4's
   layout (the records of tests/fixtures/lmeval_samples/, re-numbered).
2. BIG-bench score files: --tasks task folders x --models models, each file the layout of
   tests/fixtures/bigbench/ (6 score entries, 26 rows).

The Markdown goes to --out, else into BENCHMARKS.md between this script's markers (appended
the first time; other sections are never touched).
"""

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
START, END = "<!-- import-speed: start (bench/import_speed.py) -->", "<!-- import-speed: end -->"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoints", type=int, default=8)
    p.add_argument("--docs", type=int, default=10_000)
    p.add_argument("--tasks", type=int, default=50)
    p.add_argument("--models", type=int, default=24)
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks that the benchmark runs")
    p.add_argument("--out", help="write the Markdown here instead of BENCHMARKS.md")
    args = p.parse_args(argv)
    if args.quick:
        args.checkpoints, args.docs, args.tasks, args.models = 2, 50, 2, 3
    with tempfile.TemporaryDirectory(prefix="import-bench-") as tmp:
        tmp = Path(tmp)
        samples = _samples_folder(tmp / "samples", args.checkpoints, args.docs)
        scores = _bigbench_folder(tmp / "bigbench", args.tasks, args.models)
        lines = [START, "### `emergence import` on generated folders", "", _machine(), "",
                 "| source | input | rows | seconds |", "|---|---|---:|---:|"]
        for source, folder, what, extra in (
                ("lm-eval-samples", samples, f"{args.checkpoints} runs x {args.docs:,} documents", ["--family", "bench"]),
                ("bigbench", scores, f"{args.tasks} tasks x {args.models} models", [])):
            seconds, rows = _time_import(source, folder, extra, tmp / f"{source}.csv")
            lines.append(f"| {source} | {what} | {rows:,} | {seconds:.1f} |")
        text = "\n".join(lines + ["", "Wall clock of the whole command, one run each.", END]) + "\n"
    print(text)
    _write(text, args.out)
    return 0


def _samples_folder(root: Path, checkpoints: int, docs: int) -> Path:
    src = FIXTURES / "lmeval_samples" / "tiny__neox-h32"
    (results,) = src.glob("results_*.json")
    (samples,) = src.glob("samples_tiny_arith_*.jsonl")
    template = [json.loads(line) for line in samples.read_text().splitlines()]
    data = json.loads(results.read_text())
    data["results"] = {"tiny_arith": data["results"]["tiny_arith"]}
    rng = random.Random(0)
    for i in range(checkpoints):
        folder = root / f"ck{i}"
        folder.mkdir(parents=True)
        data["config"]["model_args"]["pretrained"] = f"bench/model-{i}"
        (folder / results.name).write_text(json.dumps(data))
        with open(folder / samples.name, "w") as f:
            for doc in range(docs):
                record = dict(template[doc % len(template)], doc_id=doc)
                record["filtered_resps"] = [[str(-rng.uniform(1, 9)), "False"] for _ in range(4)]
                f.write(json.dumps(record) + "\n")
    return root


def _bigbench_folder(root: Path, tasks: int, models: int) -> Path:
    template = json.loads((FIXTURES / "bigbench" / "toy_arithmetic" / "results" / "scores_toy-lm_2m.json").read_text())
    for t in range(tasks):
        folder = root / f"task_{t}" / "results"
        folder.mkdir(parents=True)
        for m in range(models):
            data = json.loads(json.dumps(template))
            data["task"]["task_name"] = f"task_{t}"
            data["model"]["model_name"] = f"m{m}"
            data["model"]["total_params"] = 2_000_000 * 2 ** m
            for entry in data["scores"]:
                entry["subtask_description"] = entry["subtask_description"].replace("toy_arithmetic", f"task_{t}")
            (folder / f"scores_toy-lm_m{m}.json").write_text(json.dumps(data))
    return root


def _time_import(source, folder, extra, out) -> tuple[float, int]:
    cmd = [sys.executable, "-m", "emergence.cli", "import", source, str(folder), *extra, "-o", str(out)]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return time.perf_counter() - start, sum(1 for _ in open(out)) - 1


def _machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average {load:.1f}"


def _write(text, out):
    if out:
        Path(out).write_text(text)
        return
    bench = ROOT / "BENCHMARKS.md"
    old = bench.read_text() if bench.exists() else ""
    if START in old and END in old:   # replace only this script's own section
        head, rest = old.split(START, 1)
        bench.write_text(head + text.rstrip("\n") + rest.split(END, 1)[1])
    else:
        bench.write_text(old.rstrip("\n") + "\n\n" + text)


if __name__ == "__main__":
    sys.exit(main())
