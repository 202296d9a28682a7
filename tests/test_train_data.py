"""Tokenization with prompt masking, and packing without attention leaks (no training)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from sft_fixture import sft_rows

from bpo.prompt_format import PLAIN, build_prompt, encode_prompt
from bpo.train.data import IGNORE_INDEX, encode_example, encode_pairs, make_collator, prepare_tokenizer
from bpo.train.tiny_model import build_tiny, train_tokenizer


@pytest.fixture(scope="module")
def tiny():
    rows = sft_rows(24)
    pairs = [(r["prompt"], r["optimized_prompt"]) for r in rows]
    model, tok = build_tiny(pairs, {"hidden_size": 32, "intermediate_size": 64, "num_layers": 2}, seed=0)
    prepare_tokenizer(tok)
    model.eval()
    return model, tok, rows


def test_labels_mask_the_prompt_and_keep_target_and_eos(tiny):
    _, tok, rows = tiny
    prompt = "explain tides  for a school project\n"
    optimized = "  Please explain tides clearly, with one example.  "
    enc = encode_example(tok, prompt, optimized, max_length=512, prompt_format=PLAIN)
    p_ids = encode_prompt(prompt, PLAIN, tok)
    n = len(p_ids)
    # Input: BOS + template exactly as inference feeds it, then the target and EOS.
    assert p_ids[0] == tok.bos_token_id
    assert enc["input_ids"][:n] == p_ids
    assert tok.decode(p_ids, skip_special_tokens=True) == build_prompt(prompt)
    # Labels: every prompt token masked, every target token (and EOS) kept, nothing else.
    assert enc["labels"][:n] == [IGNORE_INDEX] * n
    assert enc["labels"][n:] == enc["input_ids"][n:]
    assert enc["labels"][-1] == tok.eos_token_id
    assert tok.eos_token_id not in enc["input_ids"][:-1]
    assert tok.decode(enc["labels"][n:-1]) == optimized.strip()
    assert len(enc["input_ids"]) == len(enc["labels"])


def test_drops_are_counted_with_reasons(tiny, caplog):
    _, tok, _ = tiny
    pairs = [
        ("a", "ok prompt", "Please do it."),
        ("b", "   ", "Please do it."),
        ("c", "ok prompt", ""),
        ("d", "word " * 400, "Please do it."),
    ]
    examples, report = encode_pairs(tok, pairs, max_length=256, prompt_format=PLAIN)
    assert len(examples) == 1 and report.n_kept == 1 and report.n_rows == 4
    assert dict(report.dropped) == {"empty_prompt": 1, "empty_optimized_prompt": 1, "too_long": 1}
    assert "dropped 3 of 4" in caplog.text


def test_prepare_tokenizer_adds_pad_and_right_padding():
    tok = train_tokenizer(["hello world"] * 10, vocab_size=300)
    tok.pad_token = None
    prepare_tokenizer(tok)
    assert tok.pad_token_id is not None and tok.padding_side == "right"


def _per_example_losses(logits, labels, bounds):
    """Summed next-token CE of each example; ``bounds`` = [(start, end)] in the row."""
    out = []
    for s, e in bounds:
        lg, lb = logits[s : e - 1], labels[s + 1 : e]
        out.append(F.cross_entropy(lg, lb, ignore_index=IGNORE_INDEX, reduction="sum").item())
    return out


@pytest.mark.parametrize("attn", ["sdpa_varlen", "sdpa"])
def test_packed_batch_gives_the_losses_of_examples_run_one_by_one(tiny, attn):
    """sdpa_varlen attends within each packed sequence; sdpa gets a block-diagonal mask from
    the restarting position ids. Both must equal the examples run alone."""
    model, tok, rows = tiny
    model.set_attn_implementation(attn)
    examples, _ = encode_pairs(
        tok, [(r["pair_id"], r["prompt"], r["optimized_prompt"]) for r in rows[:6]], 512, prompt_format=PLAIN
    )
    lengths = [len(e["input_ids"]) for e in examples]
    assert len(set(lengths)) > 1  # variable lengths, the case packing is for

    with torch.no_grad():
        single = []
        for e in examples:
            logits = model(input_ids=torch.tensor([e["input_ids"]]), use_cache=False).logits[0]
            single += _per_example_losses(logits, torch.tensor(e["labels"]), [(0, len(e["input_ids"]))])

        batch = make_collator(tok, packing=True, attn_implementation=attn)(examples)
        assert batch["input_ids"].shape == (1, sum(lengths)) and "attention_mask" not in batch
        assert ("cu_seq_lens_q" in batch) == (attn == "sdpa_varlen")
        out = model(**batch, use_cache=False)
        bounds, start = [], 0
        for n in lengths:
            bounds.append((start, start + n))
            start += n
        packed = _per_example_losses(out.logits[0], batch["labels"][0], bounds)
        assert packed == pytest.approx(single, rel=1e-5, abs=1e-5)
        # The model's own loss is the token-weighted mean of the same numbers.
        n_tokens = sum(sum(1 for t in e["labels"][1:] if t != IGNORE_INDEX) for e in examples)
        assert out.loss.item() == pytest.approx(sum(single) / n_tokens, rel=1e-5)

        # Control: the same row with one running position sequence (no example boundaries)
        # lets later examples attend to earlier ones, and their losses change.
        leaky = model(input_ids=batch["input_ids"], position_ids=torch.arange(sum(lengths))[None], use_cache=False)
        leaked = _per_example_losses(leaky.logits[0], batch["labels"][0], bounds)
        assert leaked[0] == pytest.approx(single[0], rel=1e-5)
        assert any(abs(a - b) > 1e-3 for a, b in zip(leaked[1:], single[1:]))
    model.set_attn_implementation("sdpa_varlen")


def test_padded_batch_gives_the_same_losses(tiny):
    model, tok, rows = tiny
    examples, _ = encode_pairs(
        tok, [(r["pair_id"], r["prompt"], r["optimized_prompt"]) for r in rows[6:10]], 512, prompt_format=PLAIN
    )
    batch = make_collator(tok, packing=False)(examples)
    assert batch["input_ids"].shape[0] == len(examples)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        for i, e in enumerate(examples):
            n = len(e["input_ids"])
            alone = model(input_ids=torch.tensor([e["input_ids"]])).logits[0]
            assert batch["labels"][i, n:].eq(IGNORE_INDEX).all()  # right padding never in the loss
            assert _per_example_losses(logits[i], batch["labels"][i], [(0, n)]) == pytest.approx(
                _per_example_losses(alone, torch.tensor(e["labels"]), [(0, n)]), rel=1e-5
            )


@pytest.mark.parametrize("packing", [True, False])
def test_scored_position_logits_give_the_models_loss_and_gradients(tiny, packing):
    """bpo.train.loss: logits only where the next token is a target give the model's own loss
    (mean, and sum over a given token count) and the same gradients, on fewer positions."""
    from bpo.train.loss import scored_positions, target_logits_loss

    model, tok, rows = tiny
    examples, _ = encode_pairs(
        tok, [(r["pair_id"], r["prompt"], r["optimized_prompt"]) for r in rows[10:16]], 512, prompt_format=PLAIN
    )
    batch = make_collator(tok, packing=packing)(examples)
    keep = scored_positions(batch["labels"])
    assert 0 < len(keep) < batch["labels"].shape[1]  # prompt positions are skipped
    model.zero_grad()
    reference = model(**batch, use_cache=False).loss
    reference.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    loss = target_logits_loss(model, {**batch, "use_cache": False})
    loss.backward()
    assert loss.item() == pytest.approx(reference.item(), rel=1e-5)
    for name, p in model.named_parameters():
        assert torch.allclose(p.grad, grads[name], rtol=1e-4, atol=1e-6), name
    n = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    summed = target_logits_loss(model, batch, num_items_in_batch=torch.tensor(2 * n))
    assert summed.item() == pytest.approx(reference.item() / 2, rel=1e-5)
    model.zero_grad()
    assert target_logits_loss(model, {**batch, "labels": torch.full_like(batch["labels"], IGNORE_INDEX)}) is None


def test_varlen_attention_runs_in_fp32_on_cpu_under_bf16(monkeypatch):
    """bpo.train.attention: on CPU, bf16 inputs under autocast attend in fp32 with autocast off
    there (the bf16 backward kernel is 2.2x slower); the output keeps the caller's dtype and
    equals per-sequence causal attention."""
    from types import SimpleNamespace

    from bpo.train.attention import sdpa_varlen_attention_forward

    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 10, 8) for _ in range(3))
    cu = torch.tensor([0, 4, 10])
    expected = torch.cat(
        [
            F.scaled_dot_product_attention(q[:, :, s:e], k[:, :, s:e], v[:, :, s:e], is_causal=True)
            for s, e in ((0, 4), (4, 10))
        ],
        dim=2,
    ).transpose(1, 2)
    seen = []
    real = F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        seen.append((args[0].dtype, torch.is_autocast_enabled("cpu")))
        return real(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = sdpa_varlen_attention_forward(
            SimpleNamespace(num_key_value_groups=1), q.bfloat16(), k.bfloat16(), v.bfloat16(), None, cu_seq_lens_q=cu
        )
    assert out.dtype == torch.bfloat16 and set(seen) == {(torch.float32, False)}
    assert torch.allclose(out.float(), expected, atol=3e-2)
