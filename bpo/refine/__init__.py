"""The refinement loop: the optimizer learns from the target's judged answers to its own rewrites
(candidates -> candidate answers -> candidate judgments -> preferences -> DPO)."""
