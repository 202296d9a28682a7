"""Evaluation of a prompt optimizer: test sets, optimized prompts, target answers,
two-order pairwise judging, win rates and the report."""
