"""Rule converse: one optimizer's optimized conversations of a multi-turn test set with a target,
next to the original ones (bpo.eval.conversation)."""

from bpo.logging_setup import setup_logging

setup_logging(snakemake.log[0], config=snakemake.config)  # noqa: F821 (injected by the script directive)

from bpo.eval.conversation import chat_answerer, turn_rewriter, write_optimized  # noqa: E402
from bpo.settings.testsets import TestsetSettings  # noqa: E402

sm = snakemake  # noqa: F821
params = sm.params.settings
opt = params["optimizer"]
write_optimized(
    sm.output.conversations,
    sm.input.original,
    TestsetSettings.from_params(opt["testset"]),
    opt["name"],
    params["target"]["name"],
    # the optimizer folder when it is local (an input; the trained one for kind trained)
    turn_rewriter(sm.config, opt, str(sm.input.optimizer_model) if sm.input.optimizer_model else None),
    # limits, cache path, prices of an endpoint target: runtime settings, read from config at run time
    chat_answerer(sm.config, params["target"]),
)
