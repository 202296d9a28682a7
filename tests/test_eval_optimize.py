"""Optimized test prompts by every optimizer kind: the context is never rewritten; fallbacks keep
the original with their reason; identity copies; llm_rewrite asks an endpoint (loopback server)."""

from __future__ import annotations

import json

import pytest
from conftest import REPO
from eval_helpers import loopback_config, save_tiny_model
from loopback_server import LoopbackServer

from bpo.eval.optimize import identity_testset, llm_rewrite_testset, optimize_testset, split_context
from bpo.schemas import OPTIMIZED, read_metadata, read_table
from bpo.settings import ConfigError, LLMRuntime, SettingsError, load_config
from bpo.settings.optimize import IdentitySettings, LLMRewriteSettings, OptimizeSettings, optimizer_settings

DEMO = REPO / "resources" / "demo" / "testsets"


@pytest.mark.parametrize(
    "output, context, expected",
    [
        (
            "Summarize the passage below in two sentences.\nCats sleep a lot.",
            "Cats sleep a lot.",
            ("Summarize the passage below in two sentences.", None),
        ),
        (
            "Rewrite it clearly.\n\n  Their going too the libary.  \n",
            "Their going too the libary.",
            ("Rewrite it clearly.", None),
        ),
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

    config = load_config(
        overrides={
            "eval": {
                "optimizers": {
                    "trained": {
                        "context_mode": context_mode,
                        "max_tokens": 16,
                        "batch_size": 4,
                        "seed": 1,
                        **generation,
                    }
                }
            }
        }
    )
    settings = OptimizeSettings.from_config(config, "dolly_eval", "trained")
    return settings.replace(testset=settings.testset.replace(path=str(DEMO / "dolly_eval.json")))


@pytest.mark.parametrize("context_mode", ["with_context", "instruction"])
def test_optimize_testset_keeps_context(tmp_path, tiny_optimizer, context_mode):
    out = tmp_path / "optimized.parquet"
    stats = optimize_testset(out, _settings(context_mode), tiny_optimizer)
    rows = read_table(out, OPTIMIZED).to_pylist()
    assert len(rows) == stats["items"] == 5
    source = {str(r["idx"]): r for r in json.loads((DEMO / "dolly_eval.json").read_text())}
    for r in rows:
        assert r["testset"] == "dolly_eval" and r["optimizer"] == "trained"
        assert r["category"] == source[r["item_id"]]["category"]  # kept for per-category results
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
    import transformers

    import bpo

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


def _demo_testset(name="dolly_eval", fmt="dolly", file="dolly_eval.json"):
    return {name: {"format": fmt, "path": str(DEMO / file)}}


def test_identity_keeps_every_prompt_and_its_category(tmp_path):
    config = load_config(
        overrides={
            "eval": {
                "testsets": _demo_testset("vicuna_eval", "vicuna", "vicuna_eval.jsonl"),
                "optimizers": {"none": {"kind": "identity"}},
            }
        }
    )
    settings = optimizer_settings(config, "vicuna_eval", "none")
    assert isinstance(settings, IdentitySettings)
    assert IdentitySettings.from_params(settings.canonical()) == settings
    identity_testset(tmp_path / "o.parquet", settings)
    rows = read_table(tmp_path / "o.parquet", OPTIMIZED).to_pylist()
    source = [json.loads(line) for line in (DEMO / "vicuna_eval.jsonl").read_text().splitlines() if line.strip()]
    assert len(rows) == len(source)
    for r, src in zip(rows, source):
        assert r["optimized_instruction"] == r["instruction"] == src["text"] and r["fallback_reason"] is None
        assert r["optimizer"] == "none" and r["category"] == src["category"]
    assert read_metadata(tmp_path / "o.parquet")["optimizer_kind"] == "identity"


def _rewriter(body):
    """A loopback 'model' that improves prompts, except a few it answers badly."""
    prompt = body["messages"][-1]["content"].rsplit("Prompt:\n", 1)[1]
    if "moons" in prompt:
        return "   ", "stop"  # empty reply
    if "cats" in prompt.lower():
        return "I can't help with that.", "content_filter"  # refused
    return f"Please answer carefully and step by step: {prompt}", "stop"


def test_llm_rewrite_asks_the_endpoint_and_falls_back_with_a_reason(tmp_path, monkeypatch):
    with LoopbackServer(responder=_rewriter) as srv:
        config = loopback_config(
            srv,
            monkeypatch,
            tmp_path,
            eval={
                "testsets": _demo_testset(),
                "optimizers": {
                    "rw": {
                        "kind": "llm_rewrite",
                        "endpoint": "loop",
                        "model": "rewriter",
                        "temperature": 0.0,
                        "top_p": None,
                        "max_tokens": 300,
                        "seed": None,
                    }
                },
            },
        )
        settings = optimizer_settings(config, "dolly_eval", "rw")
        assert (
            isinstance(settings, LLMRewriteSettings)
            and LLMRewriteSettings.from_params(settings.canonical()) == settings
        )
        runtime = LLMRuntime.from_config(config, "loop")
        stats = llm_rewrite_testset(tmp_path / "o.parquet", settings, runtime)
        bodies = [json.loads(r.body) for r in srv.requests]
        llm_rewrite_testset(tmp_path / "again.parquet", settings, runtime)
        assert srv.total == len(bodies)  # every call cached
    rows = read_table(tmp_path / "o.parquet", OPTIMIZED).to_pylist()
    source = {str(r["idx"]): r for r in json.loads((DEMO / "dolly_eval.json").read_text())}
    assert len(rows) == len(source) == stats["items"] == len(bodies)
    assert not any("Phobos" in b["messages"][-1]["content"] for b in bodies)  # the context is not sent
    for body in bodies:
        assert body["model"] == "rewriter" and body["max_tokens"] == 300
        assert "top_p" not in body and "seed" not in body  # null: not sent
        assert "Reply with the rewritten prompt only" in body["messages"][-1]["content"]
    for r in rows:
        src = source[r["item_id"]]
        assert r["context"] == src["context"]  # never sent, never changed
        if "moons" in r["instruction"]:
            assert (r["optimized_instruction"], r["fallback_reason"]) == (r["instruction"], "empty output")
        elif "cats" in r["instruction"].lower():
            assert (r["optimized_instruction"], r["fallback_reason"]) == (r["instruction"], "refused")
        else:
            assert r["optimized_instruction"] == f"Please answer carefully and step by step: {r['instruction']}"
            assert r["fallback_reason"] is None
    assert stats["fallbacks"].get("empty output") == 1


def test_optimizer_settings_name_the_config_key():
    config = load_config(
        overrides={
            "eval": {
                "optimizers": {
                    "hub": {"kind": "model", "model": "THUDM/BPO", "prompt_format": "bpo-release"},
                    "nomodel": {"kind": "model"},
                    "nullp": {"kind": "trained", "top_p": None},
                    "rw": {"kind": "llm_rewrite", "model": "m"},
                }
            }
        }
    )
    hub = optimizer_settings(config, "dolly_eval", "hub")
    assert (hub.name, hub.model, hub.prompt_format) == ("hub", "THUDM/BPO", "bpo-release")
    trained = optimizer_settings(config, "dolly_eval", "trained")
    assert trained.model is None and trained.prompt_format is None
    with pytest.raises(SettingsError, match="eval.optimizers.nomodel.model: kind model needs"):
        optimizer_settings(config, "dolly_eval", "nomodel")
    with pytest.raises(SettingsError, match="eval.optimizers.nullp.top_p"):
        optimizer_settings(config, "dolly_eval", "nullp")
    with pytest.raises(
        SettingsError, match="eval.optimizers.rw.endpoint: kind llm_rewrite needs a name under llm.endpoints"
    ):
        optimizer_settings(config, "dolly_eval", "rw")
    with pytest.raises(SettingsError, match="eval.optimizers has no optimizer 'nope'"):
        optimizer_settings(config, "dolly_eval", "nope")
    with pytest.raises(SettingsError, match="kind 'identity' is not one of trained, model"):
        OptimizeSettings.from_config(config, "dolly_eval", "identity")
    with pytest.raises(ConfigError, match="'THUDM/BPO' does not match"):  # the name is a path level
        load_config(overrides={"eval": {"optimizers": {"THUDM/BPO": {"kind": "model", "model": "THUDM/BPO"}}}})
