"""Rule candidate_answers: the target answers every kept candidate and every pool prompt."""

from bpo.logging_setup import setup_logging

setup_logging(snakemake.log[0], config=snakemake.config)  # noqa: F821 (injected by the script directive)

from bpo.refine.outcomes import answer_candidates  # noqa: E402
from bpo.settings import LLMRuntime  # noqa: E402
from bpo.settings.evaluate import CandidateAnswerSettings  # noqa: E402

sm = snakemake  # noqa: F821
settings = CandidateAnswerSettings.from_params(sm.params.settings)
# limits, cache path, prices: runtime settings, read from config at run time (edits rerun nothing)
runtime = LLMRuntime.from_config(sm.config, settings.target.call.endpoint.name)
answer_candidates(sm.input.candidates, sm.output.answers, settings, runtime)
