"""Rule critique_estimate: the calls, tokens and cost the critique stage would make (dry run)."""

import sys

from bpo.logging_setup import setup_logging

setup_logging(snakemake.log[0])  # noqa: F821

import logging  # noqa: E402

from bpo.critique import CritiqueError, TemplateError, estimate_critiques, rule_kwargs  # noqa: E402
from bpo.schemas import SchemaError  # noqa: E402
from bpo.llm import LLMError  # noqa: E402

try:
    estimate_critiques(
        pairs_path=snakemake.input.pairs,  # noqa: F821
        sources=snakemake.params.sources,  # noqa: F821
        output=snakemake.output.estimate,  # noqa: F821
        **rule_kwargs(snakemake.params, snakemake.config),  # noqa: F821
    )
except (LLMError, CritiqueError, TemplateError, SchemaError) as exc:
    logging.getLogger("bpo.critique").error("%s: %s", type(exc).__name__, exc)
    sys.exit(1)
