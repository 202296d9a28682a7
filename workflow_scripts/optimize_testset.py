"""Rule optimize_testset (and sft_rewrite_optimize): rewrite a test set with the optimizer."""

from bpo.logging_setup import setup_logging

setup_logging(snakemake.log[0])  # noqa: F821

from bpo.eval.optimize import optimize_testset  # noqa: E402

p = snakemake.params  # noqa: F821
optimize_testset(
    snakemake.output.optimized,  # noqa: F821
    name=p.name,
    testset=p.testset,
    optimizer=p.optimizer,
    # the model folder when it is local (an input), else the hub id
    model=str(snakemake.input.model) if snakemake.input.model else p.model,  # noqa: F821
)
