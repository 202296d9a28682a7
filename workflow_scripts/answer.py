"""Rule answer: an endpoint target answers one optimizer's questions (original answers reused)."""

from bpo.logging_setup import setup_logging

setup_logging(snakemake.log[0], config=snakemake.config)  # noqa: F821 (injected by the script directive)

from bpo.eval.answer import answer_optimized, endpoint_answerer  # noqa: E402
from bpo.settings import LLMRuntime  # noqa: E402
from bpo.settings.evaluate import EndpointTargetSettings  # noqa: E402

settings = EndpointTargetSettings.from_params(snakemake.params.settings)  # noqa: F821
# limits, cache path, prices: runtime settings, read from config at run time (edits rerun nothing)
runtime = LLMRuntime.from_config(snakemake.config, settings.call.endpoint.name)  # noqa: F821
inp = snakemake.input  # noqa: F821
answer_optimized(
    inp.optimized,
    inp.original,
    snakemake.output.answers,
    settings.name,  # noqa: F821
    endpoint_answerer(settings, runtime),
)
