"""Rule optimize_identity: the no-rewrite optimizer (every optimized prompt is the original)."""

from bpo.logging_setup import setup_logging

setup_logging(snakemake.log[0], config=snakemake.config)  # noqa: F821 (injected by the script directive)

from bpo.eval.optimize import identity_testset  # noqa: E402
from bpo.settings.optimize import IdentitySettings  # noqa: E402

identity_testset(snakemake.output.optimized, IdentitySettings.from_params(snakemake.params.settings))  # noqa: F821
