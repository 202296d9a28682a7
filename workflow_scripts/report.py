"""Rule report: win-rate table, Markdown and HTML summary, plots, intrinsic metrics."""

from bpo.logging_setup import setup_logging

setup_logging(snakemake.log[0], config=snakemake.config)  # noqa: F821 (injected by the script directive)

from bpo.eval.report import build_report  # noqa: E402
from bpo.settings.evaluate import ReportSettings  # noqa: E402

inp, out = snakemake.input, snakemake.output  # noqa: F821
build_report(
    list(inp.judgments),
    list(inp.answers),
    list(inp.optimized),
    ReportSettings.from_params(snakemake.params.settings),  # noqa: F821
    out_table=out.table,
    out_summary=out.summary,
    out_plot=out.plot,
    out_compare_plot=out.compare_plot,
    out_intrinsic=out.intrinsic,
    out_summary_html=out.summary_html,
)
