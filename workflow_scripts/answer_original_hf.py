"""Rule answer_original_hf: a local Hugging Face target answers the original questions of a test set."""

from bpo.logging_setup import setup_logging

setup_logging(snakemake.log[0], config=snakemake.config)  # noqa: F821 (injected by the script directive)

from bpo.eval.answer import answer_original  # noqa: E402
from bpo.eval.hf_target import hf_answerer  # noqa: E402
from bpo.settings.hf_target import HFOriginalAnswerSettings  # noqa: E402

settings = HFOriginalAnswerSettings.from_params(snakemake.params.settings)  # noqa: F821
answer_original(snakemake.output.answers, settings.testset, settings.target.name, hf_answerer(settings.target))  # noqa: F821
