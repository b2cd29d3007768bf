"""Built-in task resolver for lm-evaluation-harness: ``lm-eval:<name>``, ``lm-eval:<folder>/<name>``
or ``lm-eval:<file.yaml>`` becomes an :class:`emergence.run.lmeval.LMEvalTask` (docs/lm-eval.md).

It runs last (``trylast``), so another plugin can take over some ``lm-eval:`` specs.
"""

from emergence.hookspecs import hookimpl
from emergence.run.lmeval import PREFIX, LMEvalTask  # light: lm_eval is imported when a task is built


@hookimpl(trylast=True)
def resolve_task(spec):
    if not spec.startswith(PREFIX):
        return None
    return LMEvalTask(spec[len(PREFIX):])
