"""Rules optimize_testset and sft_rewrite_optimize: rewrite a test set with a local optimizer model."""

from bpo.logging_setup import setup_logging

setup_logging(snakemake.log[0], config=snakemake.config)  # noqa: F821 (injected by the script directive)

from bpo.eval.optimize import optimize_testset  # noqa: E402
from bpo.settings.optimize import OptimizeSettings  # noqa: E402

settings = OptimizeSettings.from_params(snakemake.params.settings)  # noqa: F821
# the optimizer folder when it is local (an input; the trained one for kind trained), else the hub id
model = str(snakemake.input.model) if snakemake.input.model else settings.model  # noqa: F821
optimize_testset(snakemake.output.optimized, settings, model)  # noqa: F821
