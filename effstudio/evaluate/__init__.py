"""Evaluation and drift: where a checkpoint fails, how it holds up on longer or perturbed inputs, whether
its confidence can be trusted, and whether new data still looks like the data it was trained on.

Qt-free; long jobs are generators of events (the CLI, the window and the tests drive the same ones).
"""
