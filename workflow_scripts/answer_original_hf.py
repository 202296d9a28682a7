"""Rule answer_original_hf: a local Hugging Face target answers the original questions of a test set."""

from bpo.logging_setup import setup_logging

setup_logging(snakemake.log[0], config=snakemake.config)  # noqa: F821 (injected by the script directive)

from bpo.eval.hf_target import answer_original_testset_hf  # noqa: E402
from bpo.settings.hf_target import HFOriginalAnswerSettings  # noqa: E402

answer_original_testset_hf(snakemake.output.answers,  # noqa: F821
                           HFOriginalAnswerSettings.from_params(snakemake.params.settings))  # noqa: F821
