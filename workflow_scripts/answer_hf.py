"""Rule answer_hf: a local Hugging Face target answers the original and the optimized questions."""

from bpo.logging_setup import setup_logging

setup_logging(snakemake.log[0], config=snakemake.config)  # noqa: F821 (injected by the script directive)

from bpo.eval.hf_target import answer_testset_hf  # noqa: E402
from bpo.settings.hf_target import HFTargetSettings  # noqa: E402

answer_testset_hf(snakemake.input.optimized, snakemake.output.answers,  # noqa: F821
                  HFTargetSettings.from_params(snakemake.params.settings))  # noqa: F821
