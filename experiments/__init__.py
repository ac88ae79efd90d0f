"""Experiment scripts: the CLI (``python -m experiments.main``), configs and tables."""
