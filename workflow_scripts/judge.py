"""Rule judge: judge every answer pair in both orders."""

from bpo.logging_setup import setup_logging

setup_logging(snakemake.log[0], config=snakemake.config)  # noqa: F821 (injected by the script directive)

from bpo.eval.judge import judge_answers  # noqa: E402
from bpo.settings import LLMRuntime  # noqa: E402
from bpo.settings.evaluate import JudgeSettings  # noqa: E402

settings = JudgeSettings.from_params(snakemake.params.settings)  # noqa: F821
# limits, cache path, prices: runtime settings, read from config at run time (edits rerun nothing)
runtime = LLMRuntime.from_config(snakemake.config, settings.call.endpoint.name)  # noqa: F821
judge_answers(snakemake.input.answers, snakemake.output.judgments, settings, runtime)  # noqa: F821
