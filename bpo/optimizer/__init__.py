"""The prompt optimizer at inference: load a trained optimizer, rewrite prompts
(:mod:`bpo.optimizer.rewrite`), keep the original where the output is unusable
(:mod:`bpo.optimizer.fallback`). Generation itself is :mod:`bpo.generation`'s."""

from bpo.optimizer.fallback import degenerate_reason
from bpo.optimizer.rewrite import OptimizeResult, Rewrites, check_template_version, load_optimizer, optimize_prompts

__all__ = [
    "OptimizeResult",
    "Rewrites",
    "check_template_version",
    "degenerate_reason",
    "load_optimizer",
    "optimize_prompts",
]
