"""Rules converse_original and converse: a target plays the original conversations of a
multi-turn test set, or one optimizer's optimized conversations next to them (bpo.eval.conversation)."""

from bpo.logging_setup import setup_logging

setup_logging(snakemake.log[0], config=snakemake.config)  # noqa: F821 (injected by the script directive)

from bpo.eval.conversation import chat_answerer, turn_rewriter, write_optimized, write_original  # noqa: E402
from bpo.settings.testsets import TestsetSettings  # noqa: E402

sm = snakemake  # noqa: F821
params = sm.params.settings
# limits, cache path, prices of an endpoint target: runtime settings, read from config at run time
answer = chat_answerer(sm.config, params["target"])
if "optimizer" in params:
    opt = params["optimizer"]
    # the optimizer folder when it is local (an input; the trained one for kind trained)
    model = str(sm.input.optimizer_model) if sm.input.optimizer_model else None
    write_optimized(
        sm.output.conversations,
        sm.input.original,
        TestsetSettings.from_params(opt["testset"]),
        opt["name"],
        params["target"]["name"],
        turn_rewriter(sm.config, opt, model),
        answer,
    )
else:
    write_original(
        sm.output.conversations, TestsetSettings.from_params(params["testset"]), params["target"]["name"], answer
    )
