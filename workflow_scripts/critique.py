"""Rule critique: one critique call per pair of a source -> results/critiques/{source}.parquet."""

from bpo.logging_setup import exit_on, setup_logging

setup_logging(snakemake.log[0], config=snakemake.config)  # noqa: F821 (injected by the script directive)

from bpo.critique import expected_stops, run_critique  # noqa: E402
from bpo.settings import CritiqueSettings, critique_runtime  # noqa: E402

# The runtime settings (limits, cache, prices, budget, error tolerance) come from the config at
# run time, not from params, so editing them reruns nothing.
with exit_on(*expected_stops(), logger="bpo.critique"):
    run_critique(
        CritiqueSettings.from_params(snakemake.params.settings),  # noqa: F821
        critique_runtime(snakemake.config),  # noqa: F821
        pairs_path=snakemake.input.pairs,  # noqa: F821
        source=snakemake.wildcards.source,  # noqa: F821
        output=snakemake.output.critiques,  # noqa: F821
    )
