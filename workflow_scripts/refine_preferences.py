"""Rule preferences: chosen/rejected rewrite pairs from the judged outcomes, with their report."""

from bpo.logging_setup import setup_logging

setup_logging(snakemake.log[0], config=snakemake.config)  # noqa: F821 (injected by the script directive)

from bpo.refine.preferences import make_preferences  # noqa: E402
from bpo.settings.refine import PreferenceSettings  # noqa: E402

sm = snakemake  # noqa: F821
make_preferences(
    sm.input.candidates,
    sm.input.judgments,
    sm.output.preferences,
    sm.output.report,
    PreferenceSettings.from_params(sm.params.settings),
)
