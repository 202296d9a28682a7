"""Rule critique: one critique call per pair of a source -> results/critiques/{source}.parquet."""

import sys

from bpo.logging_setup import setup_logging

setup_logging(snakemake.log[0])  # noqa: F821

import logging  # noqa: E402

from bpo.critique import CritiqueError, TemplateError, rule_kwargs, run_critique  # noqa: E402
from bpo.schemas import SchemaError  # noqa: E402
from bpo.llm import BudgetExceeded, LLMError  # noqa: E402

cfg = snakemake.config  # noqa: F821
try:
    run_critique(
        pairs_path=snakemake.input.pairs,  # noqa: F821
        source=snakemake.params.source,  # noqa: F821
        output=snakemake.output.critiques,  # noqa: F821
        # Read from config, not params, on purpose (like the runtime settings in rule_kwargs):
        # the error tolerance decides whether the run may finish, not what it writes.
        max_error_fraction=cfg["critique"].get("max_error_fraction", 0.0),
        **rule_kwargs(snakemake.params, cfg),  # noqa: F821
    )
except (BudgetExceeded, LLMError, CritiqueError, TemplateError, SchemaError) as exc:
    # A clear one-line reason in the log, not a traceback: these are expected stops.
    logging.getLogger("bpo.critique").error("%s: %s", type(exc).__name__, exc)
    sys.exit(1)
