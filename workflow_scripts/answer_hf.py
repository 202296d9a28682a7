"""Rule answer_hf: a local Hugging Face target answers one optimizer's questions (original answers reused)."""

from bpo.logging_setup import setup_logging

setup_logging(snakemake.log[0], config=snakemake.config)  # noqa: F821 (injected by the script directive)

from bpo.eval.hf_target import answer_testset_hf  # noqa: E402
from bpo.settings.hf_target import HFTargetSettings  # noqa: E402

answer_testset_hf(snakemake.input.optimized, snakemake.input.original, snakemake.output.answers,  # noqa: F821
                  HFTargetSettings.from_params(snakemake.params.settings))  # noqa: F821
