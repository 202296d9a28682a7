"""Rule answer_original: an endpoint target answers the original questions of a test set (once)."""

from bpo.logging_setup import setup_logging

setup_logging(snakemake.log[0], config=snakemake.config)  # noqa: F821 (injected by the script directive)

from bpo.eval.answer import answer_original, endpoint_answerer  # noqa: E402
from bpo.settings import LLMRuntime  # noqa: E402
from bpo.settings.evaluate import OriginalAnswerSettings  # noqa: E402

settings = OriginalAnswerSettings.from_params(snakemake.params.settings)  # noqa: F821
# limits, cache path, prices: runtime settings, read from config at run time (edits rerun nothing)
runtime = LLMRuntime.from_config(snakemake.config, settings.target.call.endpoint.name)  # noqa: F821
answer_original(
    snakemake.output.answers,
    settings.testset,
    settings.target.name,  # noqa: F821
    endpoint_answerer(settings.target, runtime),
)
