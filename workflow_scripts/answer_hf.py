"""Rule answer_hf: a local Hugging Face target answers one optimizer's questions (original answers reused)."""

from bpo.logging_setup import setup_logging

setup_logging(snakemake.log[0], config=snakemake.config)  # noqa: F821 (injected by the script directive)

from bpo.eval.answer import answer_optimized  # noqa: E402
from bpo.eval.hf_target import hf_answerer  # noqa: E402
from bpo.settings.hf_target import HFTargetSettings  # noqa: E402

settings = HFTargetSettings.from_params(snakemake.params.settings)  # noqa: F821
answer_optimized(
    snakemake.input.optimized,
    snakemake.input.original,
    snakemake.output.answers,  # noqa: F821
    settings.name,
    hf_answerer(settings),
)
