"""Rule critique_estimate: the calls, tokens and cost the critique stage would make (dry run)."""

import sys

from bpo.logging_setup import setup_logging

setup_logging(snakemake.log[0])  # noqa: F821

import logging  # noqa: E402

from bpo.critique import CritiqueError, TemplateError, estimate_critiques  # noqa: E402
from bpo.schemas import SchemaError  # noqa: E402
from bpo.llm import LLMError  # noqa: E402

p = snakemake.params  # noqa: F821
cfg = snakemake.config  # noqa: F821
endpoint = dict(p.endpoint, limits=cfg["llm"]["endpoints"][p.endpoint_name].get("limits", {}))
try:
    estimate_critiques(
        pairs_path=snakemake.input.pairs,  # noqa: F821
        sources=p.sources,
        output=snakemake.output.estimate,  # noqa: F821
        template_path=p.template,
        template_sha256=p.template_sha256,
        endpoint=endpoint,
        endpoint_name=p.endpoint_name,
        cache_path=cfg["llm"]["cache"],
        prices=cfg["llm"].get("prices"),
        budget_usd=cfg["critique"].get("budget_usd"),
        **p.settings,
    )
except (LLMError, CritiqueError, TemplateError, SchemaError) as exc:
    logging.getLogger("bpo.critique").error("%s: %s", type(exc).__name__, exc)
    sys.exit(1)
