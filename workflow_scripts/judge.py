"""Rule judge: judge every answer pair in both orders."""

from bpo.logging_setup import setup_logging

setup_logging(snakemake.log[0])  # noqa: F821

from bpo.eval.judge import judge_answers  # noqa: E402

p = snakemake.params  # noqa: F821
llm = snakemake.config["llm"]  # noqa: F821
# Limits and the cache path are runtime settings: read from config, not params, on purpose.
judge_answers(
    snakemake.input.answers,  # noqa: F821
    snakemake.output.judgments,  # noqa: F821
    template_path=snakemake.input.template,  # noqa: F821
    judge=p.judge,
    endpoint=llm["endpoints"][p.judge["endpoint"]],
    cache_path=llm["cache"],
    prices=llm.get("prices"),
)
