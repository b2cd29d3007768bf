"""lm-evaluation-harness, both ways.

- :class:`LMEvalTask` puts an lm-eval task, group or tag behind our task contract, so our runner
  evaluates it and stores per-sample results like any other task. Users name it
  ``lm-eval:<name>`` (a registered lm-eval name), ``lm-eval:<folder>/<name>`` (a task in a folder
  of YAML files) or ``lm-eval:<file.yaml>``; the built-in ``lmeval`` plugin (a ``resolve_task``
  hook) turns such names into tasks.
- :func:`to_lmeval_task` goes the other way: one of our tasks as an lm-eval ``Task`` object, built
  in memory, for ``lm_eval.simple_evaluate`` on lm-eval's own backends (HF, vLLM, APIs).
- result files are imported by :mod:`emergence.run.importers`.

lm_eval is imported inside the functions that need it.
"""

import functools
import hashlib
import json
import logging
import random
from dataclasses import replace
from pathlib import Path

from emergence import tasks as T
from emergence.metric_rules import task_chance
from emergence.names import unknown_message

log = logging.getLogger(__name__)

PREFIX = "lm-eval:"

# Accuracies whose chance level is the task's: 1 / choices, or emergence.metric_rules.task_chance.
ACCURACY_METRICS = ("acc", "acc_norm", "acc_bytes")
# lm-eval metrics that are all or nothing per document.
DISCRETE_METRICS = {"acc", "acc_norm", "acc_bytes", "exact_match", "acc_mutual_info"}
_KIND = {"multiple_choice": T.MULTIPLE_CHOICE, "generate_until": T.GENERATE,
         "loglikelihood": T.GENERATE, "loglikelihood_rolling": T.ROLLING}



# ---------------------------------------------------------------------------- lm-eval -> ours
class LMEvalTask:
    """An lm-eval task, group or tag as one of our tasks.

    Examples are lm-eval's own requests: the zero-shot context lm-eval builds (description,
    template) and, for multiple choice, ``target_delimiter + choice``. Evaluation documents come
    in a seeded random order, so ``limit`` takes a random sample. Few-shot examples are added by
    our harness from the same documents under another seed (not from lm-eval's few-shot split).
    Scores are our standard ones plus every per-document metric of lm-eval's own
    ``process_results`` that lm-eval averages (acc, acc_norm, exact_match, ...), under lm-eval's
    names, so they equal lm-eval's; corpus-level metrics (BLEU, perplexities) are left out. A
    group or tag becomes one task whose sub-tasks are its member tasks.
    """

    def __init__(self, spec: str):
        folder, name, leaves = _load_lmeval(spec)
        self.spec = spec
        self.name = PREFIX + name
        if not leaves:
            raise ValueError(f"lm-eval task {spec!r} contains no tasks")
        types = {t.OUTPUT_TYPE for t in leaves.values()}
        if len(types) > 1:
            raise ValueError(f"lm-eval {spec!r} mixes output types {sorted(types)}; run its tasks separately")
        self.output_type = types.pop()
        self.kind = _KIND[self.output_type]
        first = next(iter(leaves.values()))
        self.num_fewshot = first.config.num_fewshot or 0
        self.fewshot_separator = first.config.fewshot_delimiter
        self.until, self.max_gen_toks = ("\n",), 32
        multi = len(leaves) > 1
        self.subtasks = tuple(short_name(n, name) for n in leaves) if multi else ()
        self._docs, self._examples, inv_n = {}, [], {}
        for leaf, task in leaves.items():
            _check_supported(leaf, task)
            sub = short_name(leaf, name) if multi else ""
            for doc_id, doc in enumerate(task.eval_docs):
                ex, insts = _example(leaf, task, doc_id, doc, sub)
                self._examples.append(ex)
                self._docs[ex.id] = (task, doc, insts)
                if ex.choices:
                    inv_n.setdefault(sub, []).append(1.0 / len(ex.choices))
        if self.output_type == "generate_until":
            settings = {json.dumps(t.config.generation_kwargs, sort_keys=True, default=str) for t in leaves.values()}
            if len(settings) > 1:
                raise ValueError(f"lm-eval {spec!r}: its tasks generate with different settings; run them separately")
            kwargs = first.config.generation_kwargs or {}
            until = kwargs.get("until") or ()
            self.until = (until,) if isinstance(until, str) else tuple(until)
            self.max_gen_toks = int(kwargs.get("max_gen_toks", 256))  # HFLM's default
        elif self.output_type == "loglikelihood":
            self.max_gen_toks = max(len(ex.target) for ex in self._examples) + 4
        self._chance = {sub: sum(v) / len(v) for sub, v in inv_n.items()}
        if multi and inv_n:
            every = [x for v in inv_n.values() for x in v]
            self._chance[""] = sum(every) / len(every)
        self.metrics = self._metrics(leaves, name)
        self.version = _version(leaves)
        where = f" from {folder}" if folder else ""
        self.description = (f"lm-eval {self.output_type} task {name!r}{where}, "
                            f"{len(self._examples)} documents" + (f" in {len(leaves)} tasks" if multi else ""))

    def examples(self, seed: int):
        order = list(range(len(self._examples)))
        random.Random(f"{self.name}:{seed}").shuffle(order)
        return [self._examples[i] for i in order]

    def score(self, example: T.Example, output: T.Output) -> T.Scores:
        task, doc, insts = self._docs[example.id]
        s = T.standard_scores(self.kind, example, output)
        for metric, value in lmeval_scores(task, doc, insts, _responses(task.OUTPUT_TYPE, output)).items():
            s[("", metric)] = value
        if example.subtask:
            s.update({(example.subtask, m): v for (sub, m), v in list(s.items()) if sub == ""})
        return s

    def chance(self, subtask: str, metric: str) -> float | None:
        base = metric.split(",")[0]
        if subtask in self._chance and base in ("acc", "acc_norm", "acc_bytes", "prob_correct"):
            return self._chance[subtask]
        if subtask in self._chance and base == "brier":
            return 1.0 - self._chance[subtask]
        return next((m.chance for m in self.metrics if m.name == metric), None)

    def _metrics(self, leaves, name) -> tuple[T.Metric, ...]:
        inv_n = self._chance.get("")
        if self.kind == T.MULTIPLE_CHOICE:
            ours = tuple(m if m.chance is None else replace(m, chance=1.0 - inv_n if m.name == "brier" else inv_n)
                         for m in T.mc_metrics(4))
        else:
            ours = T.GENERATE_METRICS if self.kind == T.GENERATE else T.ROLLING_METRICS
        theirs = {}
        for leaf, task in leaves.items():
            better = task.higher_is_better()
            for metric in _mean_metrics(task):
                for fkey in [f.name for f in task._filters]:
                    key = metric if fkey == "none" else f"{metric},{fkey}"
                    chance = None
                    if metric in ACCURACY_METRICS and self.kind == T.MULTIPLE_CHOICE:
                        chance = inv_n
                    elif metric == "acc" and self.output_type == "loglikelihood":
                        chance = 0.0  # the target is the greedy continuation: a free-form answer
                    elif metric in ACCURACY_METRICS:
                        chance = next((c for c in (task_chance(name), task_chance(leaf)) if c is not None), None)
                    theirs[key] = T.Metric(key, T.DISCONTINUOUS if metric in DISCRETE_METRICS else T.CONTINUOUS,
                                           chance, bool(better.get(metric, True)), f"lm-eval's {key}")
        return tuple(m for m in ours if m.name not in theirs) + tuple(theirs.values())


def lmeval_scores(task, doc, instances, responses) -> dict[str, float]:
    """lm-eval's own per-document metrics for ``responses`` (one per request), through the
    task's filters and ``process_results``; only numbers lm-eval averages are kept."""
    from lm_eval.api.instance import Instance
    from lm_eval.api.metrics import mean

    fresh = [Instance(request_type=i.request_type, doc=doc, arguments=i.arguments, idx=i.idx,
                      metadata=i.metadata, resps=[r]) for i, r in zip(instances, responses)]
    for ensemble in task._filters:
        ensemble.apply(fresh)
    out = {}
    for fkey in fresh[0].filtered_resps:
        results = task.process_results(doc, [i.filtered_resps[fkey] for i in fresh])
        averaged = task.aggregation()  # read after process_results, which may add keys
        for metric, value in results.items():
            if averaged.get(metric, mean) is mean and (isinstance(value, (int, float)) or _is_numpy_number(value)):
                out[metric if fkey == "none" else f"{metric},{fkey}"] = float(value)
    return out


# ---------------------------------------------------------------------------- ours -> lm-eval
def to_lmeval_task(task, *, seed: int = 1234, limit: int | None = None, num_fewshot: int | None = None):
    """One of our tasks as an lm-eval ``ConfigurableTask``, built in memory (no files).

    The documents are exactly the contexts our ``evaluate()`` builds for ``seed``, ``limit``
    and ``num_fewshot`` (few-shot examples included), so any lm-eval backend answers the same
    requests; lm-eval's own few-shot setting is pinned to 0. Metrics are our task's ``score``,
    named ``metric`` or ``subtask/metric``. Generation tasks also request the answer's
    log-likelihood, so the continuous metrics are there too. Use as
    ``simple_evaluate(model=..., tasks=[to_lmeval_task(t)], task_manager=TaskManager(include_defaults=False))``.
    """
    import itertools

    from emergence.run.evaluate import build_contexts

    examples = list(itertools.islice(task.examples(seed), limit))
    shots = num_fewshot if num_fewshot is not None else task.num_fewshot
    contexts = build_contexts(task, examples, seed, shots)
    if task.kind == T.MULTIPLE_CHOICE:
        docs = [{"id": ex.id, "context": c, "choices": list(ex.choices), "gold": ex.gold}
                for ex, c in zip(examples, contexts)]
        fields = {"output_type": "multiple_choice", "doc_to_text": "context", "doc_to_choice": "choices",
                  "doc_to_target": "gold"}
    elif task.kind == T.GENERATE:
        docs = [{"id": ex.id, "context": c, "target": ex.target} for ex, c in zip(examples, contexts)]
        fields = {"output_type": "generate_until", "doc_to_text": "context", "doc_to_target": "target",
                  "generation_kwargs": {"until": list(task.until), "max_gen_toks": task.max_gen_toks,
                                        "do_sample": False, "temperature": 0.0}}
    elif task.kind == T.ROLLING:
        docs = [{"id": ex.id, "text": ex.text} for ex in examples]
        fields = {"output_type": "loglikelihood_rolling", "doc_to_text": "text", "doc_to_target": "text"}
    else:
        raise ValueError(f"Task {task.name!r} has unknown kind {task.kind!r}")
    config = {"task": task.name, "test_split": "test", "target_delimiter": "",
              "fewshot_delimiter": getattr(task, "fewshot_separator", "\n\n"), "num_fewshot": 0,
              "metadata": {"version": str(task.version), "emergence_seed": seed,
                           "emergence_num_fewshot": shots}, **fields}
    return _adapter_class()(task, examples, docs, config)


@functools.cache
def _adapter_class():
    from collections import defaultdict

    from lm_eval.api.instance import Instance
    from lm_eval.api.metrics import mean
    from lm_eval.api.task import ConfigurableTask

    class EmergenceTask(ConfigurableTask):
        """Our task inside lm-eval: our requests, our scoring, mean aggregation."""

        def __init__(self, ours, examples, docs, config):
            self.ours = ours
            self.by_id = {ex.id: ex for ex in examples}
            self.docs = docs
            super().__init__(config=config)

        def download(self, *args, **kwargs):
            import datasets

            self.dataset = {"test": datasets.Dataset.from_list(self.docs)}

        def construct_requests(self, doc, ctx, **kwargs):
            if self.OUTPUT_TYPE != "generate_until":
                return super().construct_requests(doc, ctx, **kwargs)
            kwargs.pop("apply_chat_template", None)
            kwargs.pop("chat_template", None)
            gen_kwargs = dict(self.config.generation_kwargs)
            return [Instance("generate_until", doc, (ctx, gen_kwargs), 0, **kwargs),
                    Instance("loglikelihood", doc, (ctx, doc["target"]), 1, **kwargs)]

        def process_results(self, doc, results):
            ex = self.by_id[doc["id"]]
            scores = self.ours.score(ex, _output(self.ours.kind, ex, results))
            return {f"{s}/{m}" if s else m: float(v) for (s, m), v in scores.items()}

        def aggregation(self):
            return defaultdict(lambda: mean)

        def higher_is_better(self):
            better = {m.name: m.higher_is_better for m in self.ours.metrics}
            return {**better, **{f"{s}/{m}": b for s in self.ours.subtasks for m, b in better.items()}}

    return EmergenceTask


def _output(kind, ex, results) -> T.Output:
    """Our Output from lm-eval's responses: (loglikelihood, is_greedy) pairs or a generation."""
    if kind == T.MULTIPLE_CHOICE:
        lls, greedy = zip(*results)
        return T.Output(choice_logprobs=tuple(map(float, lls)), choice_greedy=tuple(map(bool, greedy)),
                        gold_logprob=float(lls[ex.gold]), gold_greedy=bool(greedy[ex.gold]),
                        gold_bytes=len(ex.choices[ex.gold].encode()))
    if kind == T.GENERATE:
        generation, (ll, greedy) = results
        return T.Output(generation=generation, gold_logprob=float(ll), gold_greedy=bool(greedy),
                        gold_bytes=len(ex.target.encode()))
    return T.Output(rolling_logprob=float(results[0]), rolling_bytes=len(ex.text.encode()))


# ---------------------------------------------------------------------------- helpers
def _load_lmeval(spec: str):
    """(folder or None, display name, {task name: lm-eval Task}) for a spec after ``lm-eval:``."""
    path = Path(spec).expanduser()
    if path.suffix in (".yaml", ".yml") and path.is_file():
        folder, name, defaults = path.parent, None, False
    elif "/" in spec:
        folder, name, defaults = path.parent, path.name, False
        if not folder.is_dir():
            raise FileNotFoundError(f"lm-eval task {spec!r}: no folder {folder}")
    else:
        folder, name, defaults = None, spec, True
    manager = _task_manager(str(folder) if folder else None, defaults)
    if name is not None and name not in manager.all_tasks:
        where = f"in {folder}" if folder else "in lm-eval"
        raise KeyError(unknown_message(f"lm-eval task {where}:", name, manager.all_tasks))
    try:
        loaded = manager.load([name or str(path)])
    except Exception as e:
        raise RuntimeError(f"lm-eval task {spec!r} failed to load: {type(e).__name__}: {e}") from e
    if name is None:  # a YAML file: its top-level group, else its one task
        children = {c for kids in loaded["group_map"].values() for c in kids}
        roots = [g for g in loaded["groups"] if g not in children] or list(loaded["tasks"])
        if len(roots) != 1:
            raise ValueError(f"{path} defines {len(roots)} tasks; name one as lm-eval:{folder}/<name>")
        name = roots[0]
    leaves = dict(sorted(loaded["tasks"].items()))
    return folder, name, leaves


@functools.cache
def _task_manager(folder: str | None, defaults: bool):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=folder, include_defaults=defaults)


def _check_supported(name, task):
    if getattr(task, "MULTIMODAL", False):
        raise ValueError(f"lm-eval task {name!r} is multimodal; not supported")
    if getattr(task, "multiple_input", 0):
        raise ValueError(f"lm-eval task {name!r} gives each choice its own context (like winogrande); "
                         "our multiple-choice contract has one prompt per example. Run it with lm-eval.")
    if (task.config.repeats or 1) > 1:
        raise ValueError(f"lm-eval task {name!r} asks for {task.config.repeats} repeats; we decode once, greedily")
    kwargs = task.config.generation_kwargs or {}
    if task.OUTPUT_TYPE == "generate_until" and (kwargs.get("do_sample") or float(kwargs.get("temperature") or 0)):
        raise ValueError(f"lm-eval task {name!r} samples ({kwargs}); our harness decodes greedily")
    if "acc_mutual_info" in task._metric_fn_list:
        log.warning("lm-eval task %r: acc_mutual_info needs unconditional requests; left out", name)
        for table in (task._metric_fn_list, task._aggregation_list, task._higher_is_better, task._metric_fn_kwargs):
            table.pop("acc_mutual_info", None)


def _example(leaf, task, doc_id, doc, sub):
    """Our Example and lm-eval's requests for one document."""
    ctx = task.fewshot_context(doc=doc, num_fewshot=0, gen_prefix=task.doc_to_prefix(doc))
    insts = task.construct_requests(doc=doc, ctx=ctx, metadata=(leaf, doc_id, 1))
    insts = insts if isinstance(insts, list) else [insts]
    ex_id = f"{leaf}:{doc_id}" if sub else str(doc_id)
    out = task.OUTPUT_TYPE
    if out == "multiple_choice":
        choices = tuple(i.args[1] for i in insts)
        raw = task.doc_to_choice(doc)
        gold = task.doc_to_target(doc)
        gold = gold[0] if isinstance(gold, list) else gold
        gold = raw.index(gold) if isinstance(gold, str) and gold in raw else gold
        if not isinstance(gold, int) or not 0 <= gold < len(choices):
            raise ValueError(f"lm-eval task {leaf!r}, document {doc_id}: "
                             f"gold {gold!r} is not one of {len(choices)} choices")
        return T.Example(id=ex_id, prompt=insts[0].args[0], choices=choices, gold=gold, subtask=sub), insts
    if out == "generate_until":
        target = task.doc_to_target(doc)
        if task.config.doc_to_choice is not None and isinstance(target, int):
            target = task.doc_to_choice(doc)[target]
        target = target[0] if isinstance(target, list) else target
        return T.Example(id=ex_id, prompt=insts[0].args[0], target=task.config.target_delimiter + str(target),
                         subtask=sub), insts
    if out == "loglikelihood":
        return T.Example(id=ex_id, prompt=insts[0].args[0], target=insts[0].args[1], subtask=sub), insts
    return T.Example(id=ex_id, text=insts[0].args[0], subtask=sub), insts


def _responses(output_type, out: T.Output) -> list:
    """lm-eval's raw response per request, from our Output."""
    if output_type == "multiple_choice":
        greedy = out.choice_greedy or (False,) * len(out.choice_logprobs)
        return [(lp, bool(g)) for lp, g in zip(out.choice_logprobs, greedy)]
    if output_type == "loglikelihood":
        return [(out.gold_logprob, bool(out.gold_greedy))]
    if output_type == "generate_until":
        return [out.generation or ""]
    return [out.rolling_logprob]


def _mean_metrics(task) -> list[str]:
    from lm_eval.api.metrics import mean

    return [m for m, agg in task.aggregation().items() if agg is mean]


def _version(leaves) -> str:
    """lm-eval's task version plus a hash of the full configs: any YAML change is a new version."""
    configs = [t.dump_config() for t in leaves.values()]
    digest = hashlib.sha256(json.dumps(configs, sort_keys=True, default=_stable).encode()).hexdigest()[:10]
    versions = sorted({str(t.VERSION) for t in leaves.values()})
    return f"{'/'.join(versions)}-{digest}"


def _stable(obj):
    if callable(obj):
        func = getattr(obj, "func", obj)
        return f"{getattr(func, '__module__', '')}.{getattr(func, '__qualname__', type(func).__name__)}"
    return type(obj).__name__


def short_name(name: str, group: str) -> str:
    return name[len(group) + 1:] if name.startswith(group + "_") and len(name) > len(group) + 1 else name


def _is_numpy_number(value) -> bool:
    return type(value).__module__ == "numpy" and hasattr(value, "dtype") and value.dtype.kind in "biuf"
