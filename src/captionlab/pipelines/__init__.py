"""The pipelines behind train.py, evaluate.py and caption.py (and what they share, in common.py)."""
