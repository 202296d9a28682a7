"""Per-source pairs -> results/pairs/all.parquet (exact duplicates across sources dropped)."""

from bpo.logging_setup import exit_on, setup_logging

setup_logging(snakemake.log[0], config=snakemake.config)  # noqa: F821 (injected by the script directive)

from bpo.pairs import expected_stops, merge_pairs  # noqa: E402
from bpo.settings import MergeSettings  # noqa: E402

with exit_on(*expected_stops(), logger="bpo.pairs"):
    merge_pairs(
        snakemake.input.pairs,  # noqa: F821
        snakemake.input.stats,  # noqa: F821
        pairs_path=snakemake.output.pairs,  # noqa: F821
        stats_path=snakemake.output.stats,  # noqa: F821
        settings=MergeSettings.from_params(snakemake.params.settings),  # noqa: F821
    )
