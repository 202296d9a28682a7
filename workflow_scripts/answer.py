"""Rules answer / answer_hf: a target answers the original and the optimized questions."""

from bpo.logging_setup import setup_logging

setup_logging(snakemake.log[0])  # noqa: F821

from bpo.eval.answer import answer_testset, target_runtime_kwargs  # noqa: E402

p = snakemake.params  # noqa: F821
answer_testset(
    snakemake.input.optimized,  # noqa: F821
    snakemake.output.answers,  # noqa: F821
    target_name=snakemake.wildcards.target,  # noqa: F821
    target=p.target,
    **target_runtime_kwargs(p.target, snakemake.config["llm"]),  # noqa: F821
)
