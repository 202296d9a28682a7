"""Rule report: win-rate table, Markdown summary, bar chart, intrinsic metrics."""

from bpo.logging_setup import setup_logging

setup_logging(snakemake.log[0])  # noqa: F821

from bpo.eval.report import build_report  # noqa: E402

p = snakemake.params  # noqa: F821
out = snakemake.output  # noqa: F821
build_report(
    list(snakemake.input.judgments),  # noqa: F821
    list(snakemake.input.answers),  # noqa: F821
    list(snakemake.input.optimized),  # noqa: F821
    out_table=out.table,
    out_summary=out.summary,
    out_plot=out.plot,
    out_intrinsic=out.intrinsic,
    bootstrap_samples=p.bootstrap_samples,
    seed=p.seed,
    confidence=p.confidence,
)
