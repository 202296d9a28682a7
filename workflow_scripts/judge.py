"""Rule judge: judge every answer pair in both orders."""

from bpo.logging_setup import setup_logging

setup_logging(snakemake.log[0])  # noqa: F821

from bpo.eval.judge import judge_answers  # noqa: E402
from bpo.llm import runtime_settings  # noqa: E402

p = snakemake.params  # noqa: F821
judge_answers(
    snakemake.input.answers,  # noqa: F821
    snakemake.output.judgments,  # noqa: F821
    template_path=snakemake.input.template,  # noqa: F821
    judge=p.judge,
    # limits, cache path, prices: runtime settings read from config on purpose
    **runtime_settings(snakemake.config["llm"], p.judge["endpoint"]),  # noqa: F821
)
