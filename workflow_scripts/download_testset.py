"""Rule download_testset: fetch a published test set."""

from bpo.logging_setup import setup_logging

setup_logging(snakemake.log[0], config=snakemake.config)  # noqa: F821 (injected by the script directive)

from bpo.eval.download import fetch  # noqa: E402

fetch(snakemake.params.url, snakemake.output.testset)  # noqa: F821
