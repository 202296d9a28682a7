"""Optimizer inference: the lean decoding loop (bpo.generation) == transformers generate one prompt at
a time (greedy), nucleus sampling as transformers does it, seeding, fallbacks (bpo.optimizer),
`bpo optimize`."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest
import torch
from eval_helpers import save_tiny_optimizer
from sft_fixture import sft_rows

from bpo.cli import main as bpo_main
from bpo.generation import GenerationSettings, lean
from bpo.generation import model as gen_model
from bpo.generation.engines import generation_config
from bpo.optimizer import load_optimizer
from bpo.optimizer import optimize_prompts as _optimize_prompts
from bpo.optimizer.fallback import EMPTY, EMPTY_INPUT, REPETITION, TEMPLATE_ECHO, TRUNCATED, degenerate_reason
from bpo.schemas import OPTIMIZED, read_frame
from bpo.train.artifacts import TRAIN_CONFIG_NAME

PROMPTS = [
    "tell me about volcanoes",
    "explain recursion in simple words",
    "what is compound interest? I keep forgetting the details and my exam is next week, so help me",
    "tides",
    "how does the immune system work and why it matters",
    "binary search summary pls",
    "explain the water cycle for a school project",
]
MORE_PROMPTS = [
    "give me a recipe for bread",
    "why is the sky blue",
    "write a poem about tides",
    "sort a list in python",
    "compare cats and dogs as pets",
    "what causes earthquakes",
    "plan a three day trip to Rome",
]
DECODE = dict(temperature=0.6, top_p=0.9, seed=3)


def optimize_prompts(model_dir, prompts, *, engine="auto", greedy=False, **decoding):
    """The optimizer's results for ``prompts`` with settings from keyword values."""
    settings = GenerationSettings(engine=engine, greedy=greedy, **decoding)
    return _optimize_prompts(model_dir, prompts, settings).results


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """An optimizer folder as the trainer writes it, with random tiny weights: its outputs
    differ from prompt to prompt, so batching mistakes (padding, positions) would show."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model: one thread is fastest, and robust to shared cores
    # The default init (std 0.02) makes greedy decoding emit the same token for every
    # prompt; wider random weights make the output depend on the input.
    pairs = [(r["prompt"], r["optimized_prompt"]) for r in sft_rows(32)]
    yield save_tiny_optimizer(tmp_path_factory.mktemp("optimizer"), pairs, init_std=0.3)
    torch.set_num_threads(before)


def generate_one_at_a_time(model_dir, prompts, **kw):
    """The reference: one transformers ``generate`` call per prompt (the original BPO way)."""
    return [optimize_prompts(model_dir, [p], batch_size=1, engine="hf-generate", **kw)[0] for p in prompts]


@pytest.fixture(scope="module")
def eos_model_dir(model_dir, tmp_path_factory):
    """The fixture optimizer made to end its rewrites at different steps: EOS's (tied)
    embedding row becomes 1.1x the row of a token that greedy decoding emits in a quarter to
    half of the prompts (of those, the one whose first use comes latest), so EOS comes where
    that token would: some rows end early, others run to the limit. EOS never occurs in
    the inputs."""
    import shutil

    from transformers import AutoModelForCausalLM

    from bpo.prompt_format import PLAIN, encode_prompt

    loaded = load_optimizer(model_dir)
    model, tok = loaded.hf(), loaded.tokenizer
    first_seen: dict[int, list[int]] = {}  # token -> the step it first appears at, per prompt
    prompts = PROMPTS + MORE_PROMPTS
    with torch.inference_mode():
        for p in prompts:
            ids = encode_prompt(p, PLAIN, tok)
            out = model.generate(
                torch.tensor([ids]),
                max_new_tokens=24,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
            )[0, len(ids) :].tolist()
            for t in set(out):
                first_seen.setdefault(t, []).append(out.index(t))
    n = len(prompts)
    candidates = {t: min(steps) for t, steps in first_seen.items() if n // 4 <= len(steps) <= n // 2}
    stop_token = max(candidates, key=candidates.get)
    d = tmp_path_factory.mktemp("eos_optimizer")
    shutil.copytree(model_dir, d, dirs_exist_ok=True)
    eos_model = AutoModelForCausalLM.from_pretrained(d)
    with torch.no_grad():
        emb = eos_model.get_input_embeddings().weight
        emb[tok.eos_token_id] = 1.1 * emb[stop_token]
    eos_model.save_pretrained(d)
    return str(d)


@pytest.fixture(scope="module")
def eos_reference(eos_model_dir):
    return generate_one_at_a_time(eos_model_dir, PROMPTS + MORE_PROMPTS, max_new_tokens=24, greedy=True, **DECODE)


def test_batched_generation_equals_one_at_a_time_under_greedy(model_dir):
    batched = optimize_prompts(model_dir, PROMPTS, max_new_tokens=12, batch_size=4, greedy=True, **DECODE)
    single = generate_one_at_a_time(model_dir, PROMPTS, max_new_tokens=12, greedy=True, **DECODE)
    assert [r.raw for r in batched] == [r.raw for r in single]
    assert len({r.raw for r in batched}) > 3  # outputs depend on the prompt: the check has teeth


@pytest.mark.parametrize(
    "batch_size, padded_prefill, small_cache", [(1, False, False), (3, False, True), (3, True, False), (16, True, True)]
)
def test_lean_loop_equals_generate_when_rows_end_at_different_steps(
    eos_model_dir, eos_reference, batch_size, padded_prefill, small_cache, caplog, monkeypatch
):
    """Finished rows are dropped and their slots refilled mid-flight (batch 3 < 14 prompts);
    every row must still decode exactly as transformers' generate decodes it alone. On CPU
    prompts are prefilled one by one; ``padded_prefill`` forces the left-padded batch
    prefill a GPU uses; ``small_cache`` makes the KV cache grow while rows decode."""
    if padded_prefill:
        monkeypatch.setattr(lean, "_pad_chunks", lambda lengths, slack: [list(range(len(lengths)))])
    if small_cache:
        monkeypatch.setattr(lean, "_headroom", lambda width, max_new_tokens: 5)
    prompts, reference = PROMPTS + MORE_PROMPTS, eos_reference
    lengths = {len(r.raw) for r in reference}
    # EOS at many steps: some rows stop early, some hit the limit (the tiny model's text itself
    # is gibberish, which the fallback now rejects; only where each row stopped matters here)
    assert {r.fallback_reason == TRUNCATED for r in reference} == {True, False} and len(lengths) > 5
    with caplog.at_level(logging.DEBUG, logger="bpo.generation.lean"):
        got = optimize_prompts(
            eos_model_dir, prompts, max_new_tokens=24, batch_size=batch_size, greedy=True, engine="lean", **DECODE
        )
    assert [r.raw for r in got] == [r.raw for r in reference]
    assert [r.fallback_reason for r in got] == [r.fallback_reason for r in reference]
    stats = [r.args[-1] for r in caplog.records if r.getMessage().startswith("lean decoding")]
    assert len(stats) == 1
    if batch_size == 3:  # refilled: prompts entered in several groups, rows were dropped in between
        assert stats[0]["prefill groups"] > 3 and stats[0]["rebuilds"] >= stats[0]["prefill groups"]
    if batch_size == 16:  # one group; finished rows were still compacted away
        assert stats[0]["prefill groups"] == 1 and stats[0]["rebuilds"] > 1
    assert (stats[0]["grows"] > 0) == small_cache


def test_sampling_is_seeded(model_dir, eos_model_dir):
    for d, batch_size in [(model_dir, 4), (eos_model_dir, 3)]:  # static rows; rows refilled mid-flight
        a = optimize_prompts(d, PROMPTS + MORE_PROMPTS, max_new_tokens=10, batch_size=batch_size, **DECODE)
        b = optimize_prompts(d, PROMPTS + MORE_PROMPTS, max_new_tokens=10, batch_size=batch_size, **DECODE)
        c = optimize_prompts(
            d, PROMPTS + MORE_PROMPTS, max_new_tokens=10, batch_size=batch_size, **{**DECODE, "seed": 4}
        )
        assert [r.raw for r in a] == [r.raw for r in b]
        assert [r.raw for r in a] != [r.raw for r in c]


@pytest.mark.parametrize("temperature, top_p", [(0.6, 0.9), (1.3, 0.5), (0.6, 1.0)])
def test_nucleus_filter_matches_transformers_warpers(temperature, top_p):
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 200, generator=gen) * torch.tensor([0.05, 0.3, 1.0, 2.0, 5.0, 30.0])[:, None]
    scores = TemperatureLogitsWarper(temperature)(None, logits.clone())
    if top_p < 1.0:  # generate adds no top-p warper at 1.0
        scores = TopPLogitsWarper(top_p)(None, scores)
    expected = scores.softmax(-1)
    got = lean._nucleus_probs(logits, temperature=temperature, top_p=top_p)
    got = got / got.sum(-1, keepdim=True)
    assert torch.equal(got > 0, expected > 0)  # the same nucleus, token for token
    torch.testing.assert_close(got, expected)
    assert (got > 0).sum(-1)[0] > 50  # flat row: no top-k (transformers' default would keep 50)


def test_sampler_draws_from_the_nucleus():
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

    logits = torch.randn(3, 40, generator=torch.Generator().manual_seed(1)) * torch.tensor([[0.2], [1.0], [3.0]])
    expected = TopPLogitsWarper(0.9)(None, TemperatureLogitsWarper(0.6)(None, logits.clone())).softmax(-1)
    n = 100_000
    draws = lean._sample_top_p(
        logits.repeat_interleave(n, 0), temperature=0.6, top_p=0.9, generator=torch.Generator().manual_seed(2)
    ).view(3, n)
    freq = torch.stack([torch.bincount(row, minlength=40) for row in draws]).double() / n
    assert ((freq > 0) <= (expected > 0)).all()  # never a token outside the nucleus
    z = (freq - expected) / (expected * (1 - expected) / n).sqrt().clamp_min(1e-12)
    assert z[expected > 0].abs().max() < 5
    again = lean._sample_top_p(
        logits.repeat_interleave(n, 0), temperature=0.6, top_p=0.9, generator=torch.Generator().manual_seed(2)
    ).view(3, n)
    assert torch.equal(draws, again)


def test_lean_loop_only_for_plain_kv_caches(model_dir):
    from transformers import MistralConfig, MistralForCausalLM

    assert lean.lean_supported(load_optimizer(model_dir).hf())
    tiny = dict(
        vocab_size=32,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    assert not lean.lean_supported(MistralForCausalLM(MistralConfig(sliding_window=8, **tiny)))
    assert lean.lean_supported(MistralForCausalLM(MistralConfig(sliding_window=None, **tiny)))


def test_decoding_is_top_p_only_as_in_the_paper(model_dir):
    model = load_optimizer(model_dir)
    sampling = GenerationSettings(engine="hf-generate", max_new_tokens=8, batch_size=1, greedy=False, **DECODE)
    cfg = generation_config(model, sampling)
    assert (cfg.do_sample, cfg.temperature, cfg.top_p, cfg.top_k) == (True, 0.6, 0.9, 0)  # 0: no top-k
    greedy = generation_config(model, sampling.replace(greedy=True))
    assert greedy.do_sample is False


def test_unusable_outputs_fall_back_to_the_original_prompt(model_dir):
    prompts = ["", "tell me about tides"]
    res = optimize_prompts(model_dir, prompts, max_new_tokens=3, batch_size=2, greedy=True, **DECODE)
    assert res[0].text == "" and res[0].fallback_reason == EMPTY_INPUT
    # Random weights rarely emit EOS within 3 tokens: a cut-off rewrite is not used.
    assert res[1].fallback_reason == TRUNCATED and res[1].text == "tell me about tides" and res[1].raw


@pytest.mark.parametrize(
    "text, hit_limit, reason",
    [
        ("   ", False, EMPTY),
        ("Please explain tides, with an example.", True, TRUNCATED),
        ("Please explain " + "tides " * 12, False, REPETITION),
        ("ha" * 10, False, REPETITION),
        ("explain the explain the explain the explain the explain the explain the", False, REPETITION),
        ("Improve this.\n[Original prompt]\ntides", False, TEMPLATE_ECHO),
        ("x" * 45, False, REPETITION),
        ("Summarise this section:\nResults\n================\nTides rise twice a day.", False, None),
        ("Please explain how tides work, step by step, and give one concrete example.", False, None),
        ("Sort these numbers: 1 1 1 2 3 5 8 13 21", False, None),
    ],
)
def test_degenerate_reason(text, hit_limit, reason):
    assert degenerate_reason(text, hit_limit) == reason


def test_template_version_mismatch_is_refused(model_dir, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(model_dir, old)
    (old / TRAIN_CONFIG_NAME).write_text(json.dumps({"bpo_template_version": -1}))
    with pytest.raises(ValueError, match="template v-1"):
        optimize_prompts(str(old), ["x"], max_new_tokens=2, batch_size=1, **DECODE)


def test_bad_arguments_are_clear(model_dir):
    with pytest.raises(TypeError, match="prompt 1"):
        optimize_prompts(model_dir, ["ok", None], max_new_tokens=2, batch_size=1, **DECODE)
    with pytest.raises(ValueError, match="engine"):
        optimize_prompts(model_dir, ["ok"], max_new_tokens=2, batch_size=1, engine="tgi", **DECODE)
    with pytest.raises(ValueError, match="temperature"):
        optimize_prompts(model_dir, ["ok"], max_new_tokens=2, batch_size=1, temperature=0.0, top_p=0.9, seed=1)
    with pytest.raises(ValueError, match="top_p"):
        optimize_prompts(model_dir, ["ok"], max_new_tokens=2, batch_size=1, temperature=0.6, top_p=1.5, seed=1)
    with pytest.raises(FileNotFoundError, match="cannot load the optimizer"):
        optimize_prompts("/nonexistent/optimizer", ["ok"], max_new_tokens=2, batch_size=1, **DECODE)


def test_cli_text_mode_prints_one_rewrite_per_prompt(model_dir, capsys):
    rc = bpo_main(["optimize", "--model", model_dir, "--max-new-tokens", "4", "--greedy", "Tell me about Harry Potter"])
    assert rc == 0
    out = capsys.readouterr()
    expected = optimize_prompts(
        model_dir,
        ["Tell me about Harry Potter"],
        max_new_tokens=4,
        batch_size=16,
        greedy=True,
        temperature=0.6,
        top_p=0.9,
        seed=42,
    )[0]
    assert out.out.strip() == expected.text.strip()


@pytest.mark.parametrize("fmt", ["jsonl", "json", "parquet"])
def test_cli_file_mode_writes_the_optimized_schema(model_dir, tmp_path, fmt):
    df = pd.DataFrame(
        {
            "id": ["a", "b", "c"],
            "prompt": ["explain tides", "summarize this", "what is recursion"],
            "context": [None, "The quick brown fox.", ""],
            "optimized_prompt": ["Explain how tides work.", None, None],
        }
    )
    src = tmp_path / f"mini.{fmt}"
    if fmt == "jsonl":
        df.to_json(src, orient="records", lines=True)
    elif fmt == "json":
        src.write_text(json.dumps({"data": df.to_dict(orient="records")}))
    else:
        df.to_parquet(src)
    out = tmp_path / "out.parquet"
    rc = bpo_main(
        [
            "optimize",
            "--model",
            model_dir,
            "--input",
            str(src),
            "--output",
            str(out),
            "--context-column",
            "context",
            "--max-new-tokens",
            "4",
            "--greedy",
        ]
    )
    assert rc == 0
    got = read_frame(out, OPTIMIZED)
    assert got["item_id"].tolist() == ["a", "b", "c"] and set(got["testset"]) == {"mini"}
    assert got["context"].tolist() == ["", "The quick brown fox.", ""]  # verbatim, never rewritten
    assert got["reference_optimized"].tolist()[0] == "Explain how tides work."
    # 4 random tokens never end with the context / an EOS: every row keeps its instruction, with a reason.
    assert got["optimized_instruction"].tolist() == df["prompt"].tolist()
    assert got["fallback_reason"].notna().all()


def test_cli_file_mode_names_a_missing_column(model_dir, tmp_path, capsys):
    src = tmp_path / "p.jsonl"
    src.write_text('{"text": "hi"}\n')
    rc = bpo_main(["optimize", "--model", model_dir, "--input", str(src), "--output", str(tmp_path / "o.parquet")])
    assert rc == 2
    assert "no column 'prompt'" in capsys.readouterr().err


def test_model_is_loaded_once_per_process(model_dir):
    optimize_prompts(model_dir, ["a"], max_new_tokens=1, batch_size=1, **DECODE)
    cached = gen_model._LOADED[(model_dir, "auto", "cpu")]
    hf = cached.hf()
    optimize_prompts(model_dir, ["b"], max_new_tokens=1, batch_size=1, **DECODE)
    assert gen_model._LOADED[(model_dir, "auto", "cpu")] is cached and cached.hf() is hf
