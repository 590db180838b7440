"""Orchestration above training and evaluation: the paper's experiments and the demo."""
