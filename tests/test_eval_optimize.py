"""Optimized test prompts: the context is never rewritten; fallbacks keep the original."""

from __future__ import annotations

import json

import pytest

from bpo.eval.optimize import optimize_testset, split_context
from bpo.schemas import OPTIMIZED, read_table
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


@pytest.mark.parametrize("context_mode", ["with_context", "instruction"])
def test_optimize_testset_keeps_context(tmp_path, tiny_optimizer, context_mode):
    out = tmp_path / "optimized.parquet"
    testset = {"path": str(DEMO / "dolly_eval.json"), "format": "dolly", "sample": 0, "seed": 42}
    optimizer = {"context_mode": context_mode, "temperature": 0.6, "top_p": 0.9, "max_new_tokens": 16,
                 "batch_size": 4, "seed": 1, "greedy": False}
    stats = optimize_testset(out, name="dolly_eval", testset=testset, optimizer=optimizer, model=tiny_optimizer)
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
