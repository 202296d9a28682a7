"""Rule browse: the self-contained results browser (report/browse.html)."""

from bpo.logging_setup import setup_logging

setup_logging(snakemake.log[0], config=snakemake.config)  # noqa: F821 (injected by the script directive)

from bpo.browse import build_browse  # noqa: E402

inp = snakemake.input  # noqa: F821
build_browse(
    list(inp.optimized) + list(inp.prompts),
    list(inp.answers),
    list(inp.judgments),
    [inp.winrates, inp.turn_winrates],
    snakemake.output.html,
    conversations=list(inp.conversations),  # noqa: F821
    turn_judgments=list(inp.turn_judgments),
)
