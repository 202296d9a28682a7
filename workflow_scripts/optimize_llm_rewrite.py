"""Rule optimize_llm_rewrite: an endpoint asked to improve each test prompt (cached calls)."""

from bpo.logging_setup import setup_logging

setup_logging(snakemake.log[0], config=snakemake.config)  # noqa: F821 (injected by the script directive)

from bpo.eval.optimize import llm_rewrite_testset  # noqa: E402
from bpo.settings import LLMRuntime  # noqa: E402
from bpo.settings.optimize import LLMRewriteSettings  # noqa: E402

settings = LLMRewriteSettings.from_params(snakemake.params.settings)  # noqa: F821
# limits, cache path, prices: runtime settings, read from config at run time (edits rerun nothing)
runtime = LLMRuntime.from_config(snakemake.config, settings.call.endpoint.name)  # noqa: F821
llm_rewrite_testset(snakemake.output.optimized, settings, runtime)  # noqa: F821
