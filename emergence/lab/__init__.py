"""The emergence lab: a family of tiny causal LMs trained here with known ground truth, and the
``emergence demo`` that runs the whole pipeline on it (docs/lab.md).
"""
