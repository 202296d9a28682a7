"""Rules optimize_testset, optimize_identity, optimize_llm_rewrite and sft_rewrite_optimize: one
optimizer rewrites a test set, by the library function its kind registers (bpo.settings.optimize)."""

from bpo.logging_setup import setup_logging

setup_logging(snakemake.log[0], config=snakemake.config)  # noqa: F821 (injected by the script directive)

from bpo.eval.optimize import run_optimizer  # noqa: E402

sm = snakemake  # noqa: F821
# the optimizer folder when it is local (an input; the trained one for kind trained)
model = str(sm.input.model) if "model" in sm.input.keys() and sm.input.model else None
run_optimizer(sm.output.optimized, sm.config, sm.params.settings, model)
