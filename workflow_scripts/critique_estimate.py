"""Rule critique_estimate: the calls, tokens and cost the critique stage would make (dry run)."""

from bpo.logging_setup import exit_on, setup_logging

setup_logging(snakemake.log[0], config=snakemake.config)  # noqa: F821 (injected by the script directive)

from bpo.critique import estimate_critiques, expected_stops  # noqa: E402
from bpo.settings import CritiqueEstimateSettings, critique_runtime  # noqa: E402

with exit_on(*expected_stops(), logger="bpo.critique"):
    estimate_critiques(
        CritiqueEstimateSettings.from_params(snakemake.params.settings),  # noqa: F821
        critique_runtime(snakemake.config),  # noqa: F821
        pairs_path=snakemake.input.pairs,  # noqa: F821
        output=snakemake.output.estimate,  # noqa: F821
    )
