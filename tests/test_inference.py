"""Optimizer inference: batched == one at a time (greedy), seeding, fallbacks, `bpo optimize`."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from bpo import inference
from bpo.cli import main as bpo_main
from bpo.inference import (
    EMPTY, EMPTY_INPUT, REPETITION, TEMPLATE_ECHO, TRUNCATED, degenerate_reason, optimize_prompts,
)
from bpo.schemas import OPTIMIZED, read_frame
from bpo.train.trainer import TRAIN_CONFIG_NAME
from bpo.train.tiny_model import build_tiny

from sft_fixture import sft_rows

PROMPTS = [
    "tell me about volcanoes",
    "explain recursion in simple words",
    "what is compound interest? I keep forgetting the details and my exam is next week, so help me",
    "tides",
    "how does the immune system work and why it matters",
    "binary search summary pls",
    "explain the water cycle for a school project",
]
DECODE = dict(temperature=0.6, top_p=0.9, seed=3)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """An optimizer folder as the trainer writes it, with random tiny weights: its outputs
    differ from prompt to prompt, so batching mistakes (padding, positions) would show."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model: one thread is fastest, and robust to shared cores
    d = tmp_path_factory.mktemp("optimizer")
    rows = sft_rows(32)
    model, tok = build_tiny([(r["prompt"], r["optimized_prompt"]) for r in rows],
                            {"hidden_size": 32, "intermediate_size": 64}, seed=1)
    # The default init (std 0.02) makes greedy decoding emit the same token for every
    # prompt; wider random weights make the output depend on the input.
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.3)
    model.save_pretrained(d)
    tok.save_pretrained(d)
    from bpo.prompt_format import TEMPLATE_VERSION

    (d / TRAIN_CONFIG_NAME).write_text(json.dumps({"bpo_template_version": TEMPLATE_VERSION}))
    yield str(d)
    torch.set_num_threads(before)


def test_batched_generation_equals_one_at_a_time_under_greedy(model_dir):
    batched = optimize_prompts(model_dir, PROMPTS, max_new_tokens=12, batch_size=4, greedy=True, **DECODE)
    single = [optimize_prompts(model_dir, [p], max_new_tokens=12, batch_size=1, greedy=True, **DECODE)[0] for p in PROMPTS]
    assert [r.raw for r in batched] == [r.raw for r in single]
    assert len({r.raw for r in batched}) > 3  # outputs depend on the prompt: the check has teeth


def test_sampling_is_seeded(model_dir):
    a = optimize_prompts(model_dir, PROMPTS, max_new_tokens=10, batch_size=4, **DECODE)
    b = optimize_prompts(model_dir, PROMPTS, max_new_tokens=10, batch_size=4, **DECODE)
    c = optimize_prompts(model_dir, PROMPTS, max_new_tokens=10, batch_size=4, **{**DECODE, "seed": 4})
    assert [r.raw for r in a] == [r.raw for r in b]
    assert [r.raw for r in a] != [r.raw for r in c]


def test_decoding_is_top_p_only_as_in_the_paper(model_dir):
    _, tok, _ = inference.load_optimizer(model_dir)
    cfg = inference.generation_config(tok, temperature=0.6, top_p=0.9, max_new_tokens=8, greedy=False)
    assert (cfg.do_sample, cfg.temperature, cfg.top_p, cfg.top_k) == (True, 0.6, 0.9, 0)  # 0: no top-k
    greedy = inference.generation_config(tok, temperature=0.6, top_p=0.9, max_new_tokens=8, greedy=True)
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
    with pytest.raises(FileNotFoundError, match="cannot load the optimizer"):
        optimize_prompts("/nonexistent/optimizer", ["ok"], max_new_tokens=2, batch_size=1, **DECODE)


def test_cli_text_mode_prints_one_rewrite_per_prompt(model_dir, capsys):
    rc = bpo_main(["optimize", "--model", model_dir, "--max-new-tokens", "4", "--greedy", "Tell me about Harry Potter"])
    assert rc == 0
    out = capsys.readouterr()
    expected = optimize_prompts(model_dir, ["Tell me about Harry Potter"], max_new_tokens=4, batch_size=16,
                                greedy=True, temperature=0.6, top_p=0.9, seed=42)[0]
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
    rc = bpo_main(["optimize", "--model", model_dir, "--input", str(src), "--output", str(out),
                   "--context-column", "context", "--max-new-tokens", "4", "--greedy"])
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
    cached = inference._LOADED[(model_dir, "cpu")]
    optimize_prompts(model_dir, ["b"], max_new_tokens=1, batch_size=1, **DECODE)
    assert inference._LOADED[(model_dir, "cpu")] is cached
