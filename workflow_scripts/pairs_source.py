"""Raw dataset of one source -> results/pairs/{source}.parquet and its stats JSON."""

from bpo.logging_setup import exit_on, setup_logging

setup_logging(snakemake.log[0], config=snakemake.config)  # noqa: F821 (injected by the script directive)

from bpo.pairs import build_source_pairs, expected_stops  # noqa: E402
from bpo.settings import PairsSourceSettings  # noqa: E402

with exit_on(*expected_stops(), logger="bpo.pairs"):
    build_source_pairs(
        PairsSourceSettings.from_params(snakemake.params.settings),  # noqa: F821
        pairs_path=snakemake.output.pairs,  # noqa: F821
        stats_path=snakemake.output.stats,  # noqa: F821
    )
