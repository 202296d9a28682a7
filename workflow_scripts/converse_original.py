"""Rule converse_original: a target plays the original conversations of a multi-turn test set
(bpo.eval.conversation)."""

from bpo.logging_setup import setup_logging

setup_logging(snakemake.log[0], config=snakemake.config)  # noqa: F821 (injected by the script directive)

from bpo.eval.conversation import chat_answerer, write_original  # noqa: E402
from bpo.settings.testsets import TestsetSettings  # noqa: E402

sm = snakemake  # noqa: F821
params = sm.params.settings
write_original(
    sm.output.conversations,
    TestsetSettings.from_params(params["testset"]),
    params["target"]["name"],
    # limits, cache path, prices of an endpoint target: runtime settings, read from config at run time
    chat_answerer(sm.config, params["target"]),
)
