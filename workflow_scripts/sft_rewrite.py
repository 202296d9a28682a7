"""Rule sft_rewrite_answer: a target answers the optimized SFT instructions (alpaca_reproduce)."""

from bpo.logging_setup import setup_logging

setup_logging(snakemake.log[0])  # noqa: F821

from bpo.eval.answer import target_runtime_kwargs  # noqa: E402
from bpo.eval.sft_rewrite import answer_sft  # noqa: E402

p = snakemake.params  # noqa: F821
answer_sft(
    snakemake.input.optimized,  # noqa: F821
    snakemake.input.source,  # noqa: F821
    out_reproduce=snakemake.output.reproduce,  # noqa: F821
    out_sft=snakemake.output.sft,  # noqa: F821
    target_name=p.target_name,
    target=p.target,
    **target_runtime_kwargs(p.target, snakemake.config["llm"]),  # noqa: F821
)
