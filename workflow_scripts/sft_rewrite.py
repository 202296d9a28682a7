"""Rule sft_rewrite_answer: a target answers the optimized SFT instructions (alpaca_reproduce)."""

from bpo.logging_setup import setup_logging

setup_logging(snakemake.log[0], config=snakemake.config)  # noqa: F821 (injected by the script directive)

from bpo.eval.sft_rewrite import answer_sft  # noqa: E402
from bpo.settings import LLMRuntime  # noqa: E402
from bpo.settings.evaluate import SFTRewriteSettings  # noqa: E402

settings = SFTRewriteSettings.from_params(snakemake.params.settings)  # noqa: F821
# limits, cache path, prices: runtime settings, read from config at run time (edits rerun nothing)
runtime = LLMRuntime.from_config(snakemake.config, settings.target.call.endpoint.name)  # noqa: F821
out = snakemake.output  # noqa: F821
answer_sft(
    snakemake.input.optimized,
    snakemake.input.source,
    settings,
    runtime,  # noqa: F821
    out_reproduce=out.reproduce,
    out_sft=out.sft,
)
