"""Rule candidate_judgments: the judge compares the candidates' answers in both orders."""

from bpo.logging_setup import setup_logging

setup_logging(snakemake.log[0], config=snakemake.config)  # noqa: F821 (injected by the script directive)

from bpo.refine.outcomes import judge_candidates  # noqa: E402
from bpo.settings import LLMRuntime  # noqa: E402
from bpo.settings.evaluate import CandidateJudgeSettings  # noqa: E402

sm = snakemake  # noqa: F821
settings = CandidateJudgeSettings.from_params(sm.params.settings)
# limits, cache path, prices: runtime settings, read from config at run time (edits rerun nothing)
runtime = LLMRuntime.from_config(sm.config, settings.judge.call.endpoint.name)
judge_candidates(sm.input.answers, sm.output.judgments, settings, runtime)
