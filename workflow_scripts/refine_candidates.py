"""Rule candidates: k sampled rewrites per pool prompt from the round's start model."""

from bpo.logging_setup import setup_logging

setup_logging(snakemake.log[0], config=snakemake.config)  # noqa: F821 (injected by the script directive)

from bpo.refine.candidates import sample_candidates  # noqa: E402
from bpo.settings.refine import CandidateSettings  # noqa: E402

sm = snakemake  # noqa: F821
sample_candidates(
    sm.input.pairs,
    sm.input.sft_val,
    str(sm.input.model),
    sm.output.candidates,
    CandidateSettings.from_params(sm.params.settings),
    sm.params.round,
)
