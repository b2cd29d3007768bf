"""Native engine vs lm-eval's HFLM: the same requests, the same checkpoint, alternating, in one run.

    python bench/engine_vs_lmeval.py [--sizes 1m,10m,30m] [--reps 5] [--threads 1] [--device auto]
                                     [--quick] [--out BENCHMARKS-table.md]

Cases: multiple choice with a 3-shot context and four 3-8-token choices; greedy generation of
short answers with stop strings; rolling log-likelihood over long texts. Each repetition runs
both engines back to back, in alternating order, so drift in machine speed hits both alike.
Reports median examples/s and tokens/s of each, the median of the per-repetition ratios, the
agreement (max |delta log-likelihood|, identical generations) and the fraction of the machine's
own matmul FLOP/s each engine reaches. Models are random-init GPT-NeoX built locally: nothing is
downloaded. Their vocabulary is Pythia's (50,304 rows, --vocab), so the output layer and the
softmax over it cost what they cost in the real family; the text is tokenised by a small local
BPE, which only decides which of those rows are read. --quick is a correctness check (CI), not a
timing.
"""

import argparse
import contextlib
import io
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.models.huggingface import HFLM  # noqa: E402
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from emergence.run.engine import HFEngine  # noqa: E402
from emergence.families import count_parameters  # noqa: E402
from emergence.testing import WORDS, build_model, train_tokenizer  # noqa: E402

# (hidden, layers, heads) giving about 1M, 10M and 30M non-embedding parameters.
SIZES = {"1m": (128, 5, 4), "10m": (320, 8, 8), "30m": (512, 9, 8)}
PYTHIA_VOCAB = 50304   # GPT-NeoX's tokenizer (50,277 tokens) padded to a multiple of 128
CONTEXT = 512
BATCH = 16     # both engines get the same batch size
TOLERANCE = 1e-4   # nats
# Wall clock by default; on a shared machine the process's CPU time leaves out the time it
# waited for a core (with one intra-op thread, the two agree on a quiet machine).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def mc_requests(n_items: int, rng: random.Random):
    """3-shot question contexts, each with four multi-token choices (3-8 tokens)."""
    def phrase(k):
        return " ".join(rng.choice(WORDS) for _ in range(k))
    pairs = []
    for _ in range(n_items):
        shots = "".join(f"Q: {phrase(8)}?\nA: {phrase(4)}\n\n" for _ in range(3))
        context = shots + f"Q: {phrase(8)}?\nA:"
        pairs += [(context, " " + phrase(rng.randint(2, 6))) for _ in range(4)]
    return pairs


def gen_contexts(n: int, rng: random.Random):
    return [f"Q: what is {rng.randint(10, 99)} plus {rng.randint(10, 99)}? A:" for _ in range(n)]


def rolling_texts(n: int, rng: random.Random):
    return [" ".join(rng.choice(WORDS) for _ in range(900)) for _ in range(n)]


def instances(kind, args):
    return [Instance(request_type=kind, doc={}, arguments=a, idx=i) for i, a in enumerate(args)]


def quiet(fn):
    """lm-eval draws progress bars even when asked not to (rolling); keep them off the report."""
    def run():
        with contextlib.redirect_stderr(io.StringIO()):
            return fn()
    return run


def timed(fn, clock=time.perf_counter):
    start = clock()
    out = fn()
    return clock() - start, out


def matmul_flops(device, dtype, reps=5, clock=time.perf_counter) -> float:
    """FLOP/s of a large square matmul: the machine's own ceiling at this thread count, measured
    between repetitions so that it sees the same load as the engines do, on the same clock."""
    n = 8192 if str(device).startswith("cuda") else 1024
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    a @ b   # warm-up
    _sync(device)
    start = clock()
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2 * n ** 3 * reps / (clock() - start)


@dataclass
class Case:
    examples: int
    ours: Callable
    theirs: Callable
    kind: str                    # "scores", "texts" or "rolling": how agreement is judged
    tokens: int = 0              # tokens in the requests: the numerator of tok/s for both engines
    forwarded: tuple = (0, 0)    # tokens (ours, lm-eval) run through the model, for FLOP/s
    headed: tuple = (0, 0)       # positions (ours, lm-eval) whose logits the output layer computes
    text_tokens: tuple = ()      # rolling: tokens of each text
    rounding: Callable = None    # rolling: what lm-eval's float32 window sums alone change
    generated: Callable = None   # generation: the token ids each request generates


def cases(ours, theirs, tok, scale) -> dict[str, Case]:
    rng = random.Random(0)
    mc = mc_requests(max(4, int(48 * scale)), rng)
    gens = gen_contexts(max(4, int(48 * scale)), rng)
    texts = rolling_texts(max(2, int(8 * scale)), rng)
    gen_kwargs = {"until": ["\n", "."], "max_gen_toks": 16, "do_sample": False}
    encoded = ours.encode_pairs(mc)
    # Ours runs each distinct context once, then every continuation token but the last.
    mc_ours = sum(len(c) for c in {tuple(c) for c, _ in encoded}) + sum(len(x) - 1 for _, x in encoded)
    text_tokens = tuple(len(tok.encode(t)) for t in texts)
    # Every rolling window is a pass of up to CONTEXT tokens; a text's last window overlaps the one before.
    windows = sum(-(-n // CONTEXT) * min(n, CONTEXT) for n in text_tokens)
    return {
        "multiple choice (3-shot, 4 choices)": Case(
            len(mc) // 4,
            lambda: [lp for lp, _ in ours.loglikelihood(instances("loglikelihood", mc))],
            quiet(lambda: [lp for lp, _ in theirs.loglikelihood(instances("loglikelihood", mc), disable_tqdm=True)]),
            "scores", sum(len(c) + len(x) for c, x in encoded),
            (mc_ours, sum(len(c) + len(x) - 1 for c, x in encoded)),
            # ours: the output layer at each scored position only; lm-eval: at every position
            (sum(len(x) for _, x in encoded), sum(len(c) + len(x) - 1 for c, x in encoded))),
        "greedy generation (stop strings)": Case(
            len(gens),
            lambda: ours.generate_until(instances("generate_until", [(c, dict(gen_kwargs)) for c in gens])),
            quiet(lambda: theirs.generate_until(instances("generate_until", [(c, dict(gen_kwargs)) for c in gens]),
                                                disable_tqdm=True)),
            "texts", sum(len(tok.encode(c)) for c in gens),   # generated tokens are added once known
            generated=lambda: ours.generate_tokens(gens, gen_kwargs["until"], gen_kwargs["max_gen_toks"])),
        "rolling log-likelihood": Case(
            len(texts),
            lambda: ours.loglikelihood_rolling(instances("loglikelihood_rolling", [(t,) for t in texts])),
            quiet(lambda: theirs.loglikelihood_rolling(instances("loglikelihood_rolling", [(t,) for t in texts]),
                                                       disable_tqdm=True)),
            "rolling", sum(text_tokens), (windows, windows), (windows, windows), text_tokens,
            lambda: float32_rounding(ours, texts)),
    }


def float32_rounding(engine, texts) -> float:
    """How far summing each window in float32, as lm-eval does, moves a text's total: our own
    per-token log-probs summed per window in float32 against the same values in float64."""
    worst = 0.0
    for text in texts:
        windows = list(map(make_disjoint_window, get_rolling_token_windows(
            token_list=engine.tok_encode(text), prefix_token=engine.prefix_token_id,
            max_seq_len=engine.max_length, context_len=1)))
        scores = engine.score_tokens(windows)
        f32 = sum(float(torch.tensor(s.logprobs, dtype=torch.float32).sum()) for s in scores)
        worst = max(worst, abs(f32 - sum(s.total for s in scores)))
    return worst


def bench_size(label, tokenizer, workdir, args, peaks):
    hidden, layers, heads = SIZES[label]
    path = build_model(Path(workdir) / label, hidden=hidden, layers=layers, heads=heads,
                       context=CONTEXT, tokenizer=tokenizer, model_vocab=args.vocab)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, args.dtype)).to(args.device)
    tok = AutoTokenizer.from_pretrained(path)
    total, nonembed = count_parameters(model)
    # 2 FLOPs per weight per token for every weight in a matmul: the body (all but the input
    # embedding and the output layer) for every token forwarded, the output layer for every
    # position whose logits are computed.
    head = model.get_output_embeddings().weight.numel()
    body = total - model.get_input_embeddings().weight.numel() - head
    ours = HFEngine(model, tok, batch_size=BATCH, max_length=CONTEXT)
    theirs = HFLM(pretrained=model, tokenizer=tok, batch_size=BATCH, max_length=CONTEXT)
    rows = []
    clock = CLOCKS[args.clock]
    for name, case in cases(ours, theirs, tok, args.scale).items():
        if not args.quick:
            case.ours(), case.theirs()   # warm-up
        t_ours, t_theirs, ceilings = [], [], []
        for rep in range(args.reps):
            ceilings.append(matmul_flops(args.device, getattr(torch, args.dtype), clock=clock))
            # Alternate who goes first, so neither always runs right after the other.
            if rep % 2 == 0:
                (a, out_ours), (b, out_theirs) = timed(case.ours, clock), timed(case.theirs, clock)
            else:
                (b, out_theirs), (a, out_ours) = timed(case.theirs, clock), timed(case.ours, clock)
            t_ours.append(a)
            t_theirs.append(b)
        tokens, forwarded, headed = case.tokens, case.forwarded, case.headed
        if case.kind == "texts":
            differ = sum(x != y for x, y in zip(out_ours, out_theirs))
            agrees, agree = differ == 0, "identical" if differ == 0 else f"{differ}/{case.examples} differ"
            # Counted as token ids, not by encoding the texts again: most ids a random-init
            # 50,304-row model picks are beyond the 2,048-token tokenizer and decode to nothing.
            ids = case.generated()   # ours = theirs when agreeing
            generated = sum(len(g) for g in ids)
            tokens += generated
            # The prompt, then every generated token but the last; the output layer at the
            # prompt's last position and at each of those tokens.
            steps = sum(max(0, len(g) - 1) for g in ids)
            forwarded = (case.tokens + steps,) * 2
            headed = (case.examples + steps,) * 2
        elif case.kind == "scores":
            delta = max(abs(x - y) for x, y in zip(out_ours, out_theirs))
            agrees, agree = delta <= TOLERANCE, f"{delta:.1e}"
        else:
            # lm-eval adds each window's ~500 log-probs in float32, which alone moves a total of a
            # few thousand nats by ~1e-4 (measured, shown): agreement is judged beyond that.
            delta = max(abs(x - y) for x, y in zip(out_ours, out_theirs))
            per_token = max(abs(x - y) / n for x, y, n in zip(out_ours, out_theirs, case.text_tokens))
            rounding = case.rounding()
            agrees = delta <= TOLERANCE + 2 * rounding
            agree = f"{delta:.1e} ({per_token:.0e}/token; float32 sums alone {rounding:.1e})"
        med_o, med_t = statistics.median(t_ours), statistics.median(t_theirs)
        peaks += ceilings
        ceiling = statistics.median(ceilings)
        ratios = [b / a for a, b in zip(t_ours, t_theirs)]
        ratio = statistics.median(ratios)
        rows.append({
            "size": label, "params": total, "params_nonembed": nonembed, "case": name,
            "ours_ex_s": case.examples / med_o, "lmeval_ex_s": case.examples / med_t,
            "ours_tok_s": tokens / med_o, "lmeval_tok_s": tokens / med_t, "ratio": ratio, "spread": (min(ratios), max(ratios)),
            "agreement": agree, "agrees": agrees,
            "ours_peak": 2 * (body * forwarded[0] + head * headed[0]) / med_o / ceiling,
            "lmeval_peak": 2 * (body * forwarded[1] + head * headed[1]) / med_t / ceiling,
        })
        print(f"{label:4} {name:38} ours {case.examples / med_o:8.1f} ex/s  lm-eval "
              f"{case.examples / med_t:8.1f} ex/s  x{ratio:.2f}  agreement {agree}", flush=True)
    ours.close()
    return rows


def markdown(rows, peaks, args, argv, load) -> str:
    cpu = platform.processor() or platform.machine()
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU ({cpu}, {os.cpu_count()} cores)"
    header = (
        f"{device}, torch {torch.__version__}, {torch.get_num_threads()} intra-op thread(s), {args.dtype}; "
        f"{args.reps} repetitions, {'wall clock' if args.clock == 'wall' else 'process CPU time'}, "
        f"batch size {BATCH} for both engines, model vocabulary "
        f"{max(args.vocab, 2048):,}. Matmul ceiling ({args.dtype}, same "
        f"threads), measured in every repetition: median {statistics.median(peaks) / 1e9:.1f}, best "
        f"{max(peaks) / 1e9:.1f} GFLOP/s; % of peak is against the median of the case's own repetitions. "
        f"Load average (1 min) before / after: "
        f"{load[0]:.1f} / {load[1]:.1f}. Command: `python bench/engine_vs_lmeval.py {' '.join(argv)}`.")
    columns = ("| size | params (non-emb.) | case | ours ex/s | lm-eval ex/s | ours tok/s | lm-eval tok/s "
               "| ratio: median (range) | agreement | ours % of peak | lm-eval % of peak |")
    lines = [header, "", columns, "|---|---:|---|---:|---:|---:|---:|---:|---|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['size']} | {r['params']:,} ({r['params_nonembed']:,}) | {r['case']} | "
                     f"{r['ours_ex_s']:.1f} | {r['lmeval_ex_s']:.1f} | {r['ours_tok_s']:,.0f} | "
                     f"{r['lmeval_tok_s']:,.0f} | **{r['ratio']:.2f}x** ({r['spread'][0]:.2f}-{r['spread'][1]:.2f}) | "
                     f"{r['agreement']} | "
                     f"{100 * r['ours_peak']:.1f}% | {100 * r['lmeval_peak']:.1f}% |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1m,10m,30m")
    p.add_argument("--reps", type=int, default=5)
    # One thread by default: on a shared 2-core machine two intra-op threads make every small
    # op wait for a busy core (10-20x slower for hidden <= 128), whichever engine runs it.
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (CPU), the same for both engines")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    p.add_argument("--dtype", default="auto", help="auto: bfloat16 on CUDA, float32 on CPU")
    p.add_argument("--vocab", type=int, default=PYTHIA_VOCAB,
                   help="model vocabulary (embedding rows); 0: the local tokenizer's 2,048")
    p.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                   help="wall: elapsed time; cpu: this process's CPU time (steadier on a shared machine)")
    p.add_argument("--quick", action="store_true", help="few requests, no warm-up: a correctness check, not a timing")
    p.add_argument("--out", help="write the markdown table to this file")
    args = p.parse_args(argv)
    args.device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    args.dtype = args.dtype if args.dtype != "auto" else "bfloat16" if args.device.startswith("cuda") else "float32"
    if args.clock == "cpu" and args.device != "cpu":
        p.error("--clock cpu times the host process: it cannot see the work of a GPU")
    args.scale = 0.25 if args.quick else 1.0
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    load = [os.getloadavg()[0]]
    tokenizer = train_tokenizer(vocab_size=2048)
    rows, peaks = [], []
    with tempfile.TemporaryDirectory() as workdir:
        for label in args.sizes.split(","):
            rows += bench_size(label, tokenizer, workdir, args, peaks)
    load.append(os.getloadavg()[0])
    table = markdown(rows, peaks, args, argv, load)
    print(table)
    if args.out:
        Path(args.out).write_text(table)
    # Agreement gates only in float32: bfloat16 rounding alone moves log-likelihoods by ~1e-2.
    return 0 if args.dtype != "float32" or all(r["agrees"] for r in rows) else 1


def _sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


if __name__ == "__main__":
    sys.exit(main())
