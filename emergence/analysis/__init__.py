"""The analysis stage: tidy table in; verdicts, audits, decompositions, scaling laws and
backtests out. Pure CPU: never imports torch, transformers, the run stage or a plugin.
"""
