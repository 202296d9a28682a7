"""Rule critique: one critique call per pair of a source -> results/critiques/{source}.parquet."""

import sys

from bpo.logging_setup import setup_logging

setup_logging(snakemake.log[0])  # noqa: F821

import logging  # noqa: E402

from bpo.critique import CritiqueError, TemplateError, run_critique  # noqa: E402
from bpo.schemas import SchemaError  # noqa: E402
from bpo.llm import BudgetExceeded, LLMError  # noqa: E402

p = snakemake.params  # noqa: F821
cfg = snakemake.config  # noqa: F821
# Runtime settings, read from config (not params) on purpose so editing them never reruns:
# limits and cache path (throughput), prices (cost estimate), budget cap and error tolerance
# (whether the run may finish, not what it writes).
endpoint = dict(p.endpoint, limits=cfg["llm"]["endpoints"][p.endpoint_name].get("limits", {}))
try:
    run_critique(
        pairs_path=snakemake.input.pairs,  # noqa: F821
        source=p.source,
        output=snakemake.output.critiques,  # noqa: F821
        template_path=p.template,
        template_sha256=p.template_sha256,
        endpoint=endpoint,
        endpoint_name=p.endpoint_name,
        cache_path=cfg["llm"]["cache"],
        prices=cfg["llm"].get("prices"),
        budget_usd=cfg["critique"].get("budget_usd"),
        max_error_fraction=cfg["critique"].get("max_error_fraction", 0.0),
        **p.settings,
    )
except (BudgetExceeded, LLMError, CritiqueError, TemplateError, SchemaError) as exc:
    # A clear one-line reason in the log, not a traceback: these are expected stops.
    logging.getLogger("bpo.critique").error("%s: %s", type(exc).__name__, exc)
    sys.exit(1)
