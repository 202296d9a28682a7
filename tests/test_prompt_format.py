"""bpo.prompt_format: the three optimizer input formats, their token ids, training targets and
the format record, checked on a real Llama-architecture tokenizer (SmolLM2) where installed."""

from __future__ import annotations

import json
import logging

import pytest

from bpo.prompt_format import (
    BPO_RELEASE,
    CHAT_TEMPLATE,
    FORMATS,
    PLAIN,
    RECORD_NAME,
    build_prompt,
    encode_prompt,
    encode_target,
    encode_training_pair,
    format_prompt,
    read_format_record,
    resolve_prompt_format,
    write_format_record,
)

RELEASED_INPUT = (
    "[INST] You are an expert prompt engineer. Please help me improve this prompt to get a more helpful "
    "and harmless response:\nTell me about Harry Potter [/INST]"
)


def test_plain_is_todays_template_byte_for_byte():
    expected = (
        "Rewrite the prompt below so that an AI assistant answers it more helpfully, correctly and safely. "
        "Keep all of its information and any attached text unchanged; do not answer it.\n\n"
        "[Original prompt]\nTell me about Harry Potter\n\n[Improved prompt]\n"
    )
    assert build_prompt("  Tell me about Harry Potter\n") == expected
    assert format_prompt("  Tell me about Harry Potter\n", PLAIN) == expected


def test_bpo_release_is_the_released_models_input():
    assert format_prompt("Tell me about Harry Potter", BPO_RELEASE) == RELEASED_INPUT


def test_unknown_format_and_missing_chat_template_are_clear_errors():
    with pytest.raises(ValueError, match="unknown prompt format 'llama'.*plain, chat-template, bpo-release"):
        format_prompt("x", "llama")
    with pytest.raises(ValueError, match="has no chat template"):
        format_prompt("x", CHAT_TEMPLATE, tokenizer=None)


def test_record_roundtrip_and_resolution_order(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="bpo.prompt_format")
    assert read_format_record(tmp_path) is None
    assert resolve_prompt_format(tmp_path) == (PLAIN, "default")
    assert resolve_prompt_format(tmp_path, configured=BPO_RELEASE) == (BPO_RELEASE, "config")
    assert resolve_prompt_format("THUDM/BPO", configured=BPO_RELEASE) == (BPO_RELEASE, "config")
    write_format_record(tmp_path, CHAT_TEMPLATE)
    assert json.loads((tmp_path / RECORD_NAME).read_text()) == {"prompt_format": CHAT_TEMPLATE}
    assert resolve_prompt_format(tmp_path, configured=BPO_RELEASE) == (CHAT_TEMPLATE, "record")
    assert resolve_prompt_format(tmp_path, override=PLAIN, configured=BPO_RELEASE) == (PLAIN, "override")
    assert "records prompt format 'chat-template'; using 'plain' as overridden" in caplog.text
    assert "prompt format 'plain' (from override)" in caplog.text
    write_format_record(tmp_path, PLAIN)
    assert json.loads((tmp_path / RECORD_NAME).read_text()) == {"prompt_format": PLAIN, "template_version": 1}
    (tmp_path / RECORD_NAME).write_text('{"prompt_format": "alpaca"}')
    with pytest.raises(ValueError, match="unknown prompt format 'alpaca'"):
        read_format_record(tmp_path)
    with pytest.raises(ValueError, match="--format: unknown prompt format"):
        resolve_prompt_format("THUDM/BPO", override="nope")


# --- on a real tokenizer (SmolLM2: Llama architecture, BOS <|im_start|>, EOS <|im_end|>) ---


@pytest.fixture(scope="module")
def tokenizers(smollm2_dir):
    """SmolLM2's tokenizer as shipped (adds no BOS) and one that adds BOS like Llama-2's."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_dir), AutoTokenizer.from_pretrained(smollm2_dir, add_bos_token=True)


@pytest.mark.slow
def test_bpo_release_ids_have_exactly_one_bos(tokenizers):
    for tok in tokenizers:
        ids = encode_prompt("Tell me about Harry Potter", BPO_RELEASE, tok)
        assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
        assert ids[-1] != tok.eos_token_id
        assert tok.decode(ids[1:]) == RELEASED_INPUT
        assert ids[1:] == tok(RELEASED_INPUT, add_special_tokens=False).input_ids


@pytest.mark.slow
def test_no_double_bos_when_the_text_and_the_tokenizer_both_have_one(tokenizers):
    for tok in tokenizers:
        tok = tok.__class__.from_pretrained(tok.name_or_path, add_bos_token=tok.add_bos_token)
        tok.chat_template = "{{ bos_token }}" + tok.chat_template  # as Llama-2-chat's template does
        ids = encode_prompt("Tell me about Harry Potter", CHAT_TEMPLATE, tok)
        assert ids[0] == tok.bos_token_id and ids[1] != tok.bos_token_id, ids[:3]


@pytest.mark.slow
def test_chat_template_is_the_base_models_own_turn(tokenizers):
    tok = tokenizers[0]
    text = format_prompt("Tell me about Harry Potter", CHAT_TEMPLATE, tok)
    assert text.startswith("<|im_start|>system\n") and text.endswith("<|im_start|>assistant\n")
    user_turn = text.split("<|im_start|>user\n")[1].split("<|im_end|>")[0]
    assert user_turn.endswith("[Original prompt]\nTell me about Harry Potter") and "do not answer it" in user_turn
    assert tok.decode(encode_prompt("Tell me about Harry Potter", CHAT_TEMPLATE, tok)) == text


@pytest.mark.slow
def test_training_target_ends_with_eos_exactly_once(tokenizers):
    tok = tokenizers[1]
    for optimized in [
        "Describe the Harry Potter books.",
        "Describe the Harry Potter books.<|im_end|>",
        "  Describe the Harry Potter books. <|im_end|><|im_end|>\n",
    ]:
        target = encode_target(optimized, tok)
        assert target[-1] == tok.eos_token_id and target.count(tok.eos_token_id) == 1
        assert tok.decode(target[:-1]) == "Describe the Harry Potter books."
    for fmt in FORMATS:
        inp, target = encode_training_pair("Tell me about Harry Potter", "Describe the books.", fmt, tok)
        # SmolLM2's BOS and EOS are also its chat turn markers, so only the ends are checked
        assert inp[0] == tok.bos_token_id and inp[1] != tok.bos_token_id and inp[-1] != tok.eos_token_id
        assert target == encode_target("Describe the books.", tok)


@pytest.mark.slow
def test_plain_ids_are_what_training_used_before(tokenizers):
    """``plain`` is byte-identical to the encoding before formats existed: the template text
    tokenized whole (trailing EOS dropped), then the stripped target and one EOS."""
    from bpo.train.data import encode_example

    for tok in tokenizers:
        before = tok(build_prompt("Tell me about Harry Potter")).input_ids
        before = before[:-1] if before[-1] == tok.eos_token_id else before
        before += tok("Describe the books.", add_special_tokens=False).input_ids + [tok.eos_token_id]
        inp, target = encode_training_pair("Tell me about Harry Potter", " Describe the books. ", PLAIN, tok)
        assert inp + target == before
        assert (
            encode_example(tok, "Tell me about Harry Potter", "Describe the books.", 10_000, PLAIN)["input_ids"]
            == before
        )


@pytest.fixture()
def unrecorded_smollm2(smollm2_dir, tmp_path):
    """The SmolLM2 folder without a format record (as a downloaded hub model): links to its files."""
    folder = tmp_path / "SmolLM2-no-record"
    folder.mkdir()
    for f in smollm2_dir.iterdir():
        if f.name != RECORD_NAME:
            (folder / f.name).symlink_to(f)
    return folder


@pytest.mark.slow
def test_optimizer_feeds_the_model_the_resolved_format(unrecorded_smollm2, monkeypatch, caplog):
    """End to end through bpo.optimizer.optimize_prompts on a real Llama-architecture folder:
    configured bpo-release (as eval.optimizer.prompt_format for THUDM/BPO) reaches the model as
    exactly one BOS + the released input; a folder record wins over the configured format;
    --format (format_override) wins over both."""
    from transformers import AutoTokenizer

    import bpo.optimizer.rewrite as rewrite
    from bpo.settings.generation import GenerationSettings

    seen = []
    real_generate = rewrite.generate

    def spy(model, inputs, settings):  # records what the model is fed, then generates for real
        seen.append([list(ids) for ids in inputs])
        return real_generate(model, inputs, settings)

    monkeypatch.setattr(rewrite, "generate", spy)
    caplog.set_level(logging.INFO, logger="bpo.prompt_format")
    tok = AutoTokenizer.from_pretrained(unrecorded_smollm2)
    settings = GenerationSettings(
        engine="auto", temperature=0.0, top_p=1.0, max_new_tokens=3, batch_size=2, seed=0, greedy=True
    )
    hp = "Tell me about Harry Potter"

    out = rewrite.optimize_prompts(str(unrecorded_smollm2), [hp], settings, prompt_format=BPO_RELEASE)
    assert len(out.results) == 1 and out.results[0].raw is not None
    assert seen[-1] == [[tok.bos_token_id] + tok(RELEASED_INPUT, add_special_tokens=False).input_ids]
    assert "prompt format 'bpo-release' (from config)" in caplog.text

    write_format_record(unrecorded_smollm2, CHAT_TEMPLATE)
    rewrite.optimize_prompts(str(unrecorded_smollm2), [hp], settings, prompt_format=BPO_RELEASE)
    assert seen[-1] == [encode_prompt(hp, CHAT_TEMPLATE, tok)]
    assert tok.decode(seen[-1][0]) == format_prompt(hp, CHAT_TEMPLATE, tok)
    rewrite.optimize_prompts(str(unrecorded_smollm2), [hp], settings, prompt_format=PLAIN, format_override=BPO_RELEASE)
    assert seen[-1][0][0] == tok.bos_token_id and tok.decode(seen[-1][0][1:]) == RELEASED_INPUT
    assert "prompt format 'bpo-release' (from override)" in caplog.text
