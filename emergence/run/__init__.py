"""The evaluation stage: a family x tasks sweep into a run directory.

``config`` (what to run), ``runner`` (the resumable sweep), ``executors`` (where checkpoints are
evaluated: here, in a process pool, or on Ray), ``evaluate`` (one checkpoint's tasks),
``engine`` (batched scoring with transformers), ``lmeval`` (the bridge to lm-evaluation-harness)
and ``importers`` (published results into the tidy table). The only stage that imports torch.
"""
