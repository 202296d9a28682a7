"""Rule refine_estimate: the calls, tokens and cost of round 1's LLM stages (dry run)."""

from bpo.logging_setup import exit_on, setup_logging

setup_logging(snakemake.log[0], config=snakemake.config)  # noqa: F821 (injected by the script directive)

from bpo.refine.estimate import estimate_refine, expected_stops  # noqa: E402
from bpo.settings import LLMRuntime  # noqa: E402
from bpo.settings.refine import RefineEstimateSettings  # noqa: E402

sm = snakemake  # noqa: F821
settings = RefineEstimateSettings.from_params(sm.params.settings)
# limits and cache path: runtime settings, read from config at run time (the prices are in the params)
with exit_on(*expected_stops(), logger="bpo.refine"):
    estimate_refine(
        settings,
        LLMRuntime.from_config(sm.config, settings.answers.target.call.endpoint.name),
        LLMRuntime.from_config(sm.config, settings.judgments.judge.call.endpoint.name),
        pairs_path=sm.input.pairs,
        output=sm.output.estimate,
    )
