"""Rules judge and judge_turns: judge every answer pair (of a multi-turn test set: every turn)."""

from bpo.logging_setup import setup_logging

setup_logging(snakemake.log[0], config=snakemake.config)  # noqa: F821 (injected by the script directive)

from bpo.eval.judge import judge_answers, judge_turns  # noqa: E402
from bpo.settings import LLMRuntime  # noqa: E402
from bpo.settings.evaluate import JudgeSettings  # noqa: E402

settings = JudgeSettings.from_params(snakemake.params.settings)  # noqa: F821
# limits, cache path, prices: runtime settings, read from config at run time (edits rerun nothing)
runtime = LLMRuntime.from_config(snakemake.config, settings.call.endpoint.name)  # noqa: F821
inp = snakemake.input  # noqa: F821
if "conversations" in inp.keys():
    judge_turns(inp.conversations, snakemake.output.judgments, settings, runtime)  # noqa: F821
else:
    judge_answers(inp.answers, snakemake.output.judgments, settings, runtime)  # noqa: F821
