"""Rules answer / answer_hf: a target answers the original and the optimized questions."""

from bpo.logging_setup import setup_logging

setup_logging(snakemake.log[0])  # noqa: F821

from bpo.eval.answer import answer_testset  # noqa: E402

p = snakemake.params  # noqa: F821
llm = snakemake.config["llm"]  # noqa: F821
# Limits and the cache path are runtime settings: read from config, not params, on purpose.
endpoint = llm["endpoints"][p.target["endpoint"]] if p.target["kind"] == "endpoint" else None
answer_testset(
    snakemake.input.optimized,  # noqa: F821
    snakemake.output.answers,  # noqa: F821
    target_name=snakemake.wildcards.target,  # noqa: F821
    target=p.target,
    endpoint=endpoint,
    cache_path=llm["cache"],
    prices=llm.get("prices"),
)
