"""Optimized test prompts: the context is never rewritten; fallbacks keep the original."""

from __future__ import annotations

import json

import pytest

from bpo.eval.optimize import optimize_testset, split_context
from bpo.schemas import OPTIMIZED, read_metadata, read_table
from bpo.settings.optimize import OptimizeSettings
from conftest import REPO
from eval_helpers import save_tiny_model

DEMO = REPO / "resources" / "demo" / "testsets"


@pytest.mark.parametrize(
    "output, context, expected",
    [
        ("Summarize the passage below in two sentences.\nCats sleep a lot.", "Cats sleep a lot.",
         ("Summarize the passage below in two sentences.", None)),
        ("Rewrite it clearly.\n\n  Their going too the libary.  \n", "Their going too the libary.", ("Rewrite it clearly.", None)),
        ("Summarize.\nCats sleep a lot!", "Cats sleep a lot.", (None, "context altered")),  # one character changed
        ("Cats sleep a lot.\n\nSummarize this.", "Cats sleep a lot.", ("Summarize this.", None)),  # context first
        ("Summarize: Cats sleep a lot. In one line.", "Cats sleep a lot.", (None, "context altered")),  # moved inside
        ("Cats sleep a lot.", "Cats sleep a lot.", (None, "empty instruction")),
    ],
)
def test_split_context(output, context, expected):
    assert split_context(output, context) == expected


@pytest.fixture(scope="module")
def tiny_optimizer(tmp_path_factory):
    """An untrained tiny Llama in the optimizer's folder layout (random weights, no download)."""
    pairs = [("explain tides", "Please explain how tides work, step by step.")] * 4
    return save_tiny_model(tmp_path_factory.mktemp("tiny_optimizer"), pairs)


def _settings(context_mode="with_context", **generation):
    """Optimize settings for the demo's dolly set, built from the validated config."""
    from bpo.settings import load_config

    config = load_config(overrides={"eval": {"optimizer": {"context_mode": context_mode, "max_new_tokens": 16,
                                                           "batch_size": 4, "seed": 1, **generation}}})
    settings = OptimizeSettings.from_config(config, "dolly_eval")
    return settings.replace(testset=settings.testset.replace(path=str(DEMO / "dolly_eval.json")))


@pytest.mark.parametrize("context_mode", ["with_context", "instruction"])
def test_optimize_testset_keeps_context(tmp_path, tiny_optimizer, context_mode):
    out = tmp_path / "optimized.parquet"
    stats = optimize_testset(out, _settings(context_mode), tiny_optimizer)
    rows = read_table(out, OPTIMIZED).to_pylist()
    assert len(rows) == stats["items"] == 5
    source = {str(r["idx"]): r for r in json.loads((DEMO / "dolly_eval.json").read_text())}
    for r in rows:
        assert r["testset"] == "dolly_eval"
        assert r["context"] == source[r["item_id"]]["context"]  # verbatim
        assert r["instruction"] == source[r["item_id"]]["instruction"]
        if r["fallback_reason"] is not None:
            assert r["optimized_instruction"] == r["instruction"]
        else:
            assert r["optimized_instruction"].strip()
    assert sum(stats["fallbacks"].values()) == sum(r["fallback_reason"] is not None for r in rows)
    if context_mode == "with_context":
        # a random model does not reproduce a context verbatim: those items keep the original
        with_ctx = [r for r in rows if r["context"]]
        assert with_ctx and all(r["fallback_reason"] is not None for r in with_ctx)


@pytest.mark.parametrize("engine, expected", [("auto", "lean"), ("lean", "lean"), ("hf-generate", "hf-generate")])
def test_the_engine_that_ran_is_in_the_metadata(tmp_path, tiny_optimizer, engine, expected):
    """auto resolves to lean for a plain Llama; the record names the resolved engine and its
    version, the rows are unchanged by it (greedy)."""
    import bpo
    import transformers

    out = tmp_path / "optimized.parquet"
    stats = optimize_testset(out, _settings(engine=engine, greedy=True), tiny_optimizer)
    meta = read_metadata(out)
    version = f"bpo-{bpo.__version__}" if expected == "lean" else f"transformers-{transformers.__version__}"
    assert meta["generation_engine"] == stats["engine"] == f"{expected} {version}"
    assert meta["generation_engine_requested"] == engine
    assert meta["generation_transformers"] == transformers.__version__ and meta["generation_torch"]
    reference = tmp_path / "reference.parquet"
    optimize_testset(reference, _settings(engine="hf-generate", greedy=True), tiny_optimizer)
    assert read_table(out, OPTIMIZED).equals(read_table(reference, OPTIMIZED))


def test_settings_come_from_the_config_section():
    settings = _settings(temperature=0.7)
    assert settings.generation.temperature == 0.7 and settings.generation.engine == "auto"
    assert settings.testset.format == "dolly" and settings.testset.seed == 42
    assert OptimizeSettings.from_params(settings.canonical()) == settings
