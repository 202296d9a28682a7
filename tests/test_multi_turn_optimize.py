"""Multi-turn optimizer input (issue 20): every prompt format with and without history, the
history budget, training == inference ids, optimize_prompts(histories=) and `bpo optimize
--input` on OpenAI-style messages."""

from __future__ import annotations

import json

import pytest
from smollm2_fixture import smollm2_dir  # noqa: F401 (fixture)
from test_inference import model_dir  # noqa: F401 (fixture)

from bpo.cli import main as bpo_main
from bpo.generation import GenerationSettings
from bpo.history import CLIP_MARK, CLIP_MIN_TOKENS, check_history, fit_history, render_history
from bpo.prompt_format import (
    BPO_RELEASE,
    FORMATS,
    INSTRUCTION,
    PLAIN,
    encode_conversation,
    encode_prompt,
    encode_training_pair,
    format_prompt,
)

# The optimizer's input formats; INSTRUCTION is a student's question (sft_data), never with history.
OPTIMIZER_FORMATS = tuple(f for f in FORMATS if f != INSTRUCTION)

HISTORY = [
    {"role": "user", "content": "Write a short poem about the sea."},
    {"role": "assistant", "content": "Waves fold over waves,\nthe grey sea hums its old song."},
]
LAST = "Now make it rhyme."


@pytest.fixture(scope="module")
def smol_tok(smollm2_dir):  # noqa: F811
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_dir)


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_history_is_byte_identical_in_every_format(fmt, smol_tok):
    single = format_prompt("  Tell me about Harry Potter\n", fmt, smol_tok)
    for none in (None, []):
        assert format_prompt("  Tell me about Harry Potter\n", fmt, smol_tok, history=none) == single
        assert encode_prompt("Tell me about Harry Potter", fmt, smol_tok, history=none) == encode_prompt(
            "Tell me about Harry Potter", fmt, smol_tok
        )
        assert encode_conversation("Tell me about Harry Potter", fmt, smol_tok, none) == (
            encode_prompt("Tell me about Harry Potter", fmt, smol_tok),
            0,
        )


def test_a_students_question_takes_no_history(smol_tok):
    with pytest.raises(ValueError, match="takes no conversation history"):
        format_prompt(LAST, INSTRUCTION, smol_tok, history=HISTORY)


@pytest.mark.parametrize("fmt", OPTIMIZER_FORMATS)
def test_history_in_every_format(fmt, smol_tok):
    text = format_prompt(LAST, fmt, smol_tok, history=HISTORY)
    rendered = render_history(HISTORY)
    assert rendered == (
        "User: Write a short poem about the sea.\n\nAssistant: Waves fold over waves,\nthe grey sea hums its old song."
    )
    assert rendered in text and text.index(rendered) < text.rindex(LAST)
    assert text.count(LAST) == 1
    if fmt == PLAIN:
        assert text.endswith(f"[Original prompt]\n{LAST}\n\n[Improved prompt]\n")
    elif fmt == BPO_RELEASE:
        assert text.startswith("[INST] ") and text.endswith(f"{LAST} [/INST]")
    else:  # the base model's own template, one user turn: the conversation is not the optimizer's own chat
        assert text.count("<|im_start|>user") == 1 and text.endswith("<|im_start|>assistant\n")
    ids = encode_prompt(LAST, fmt, smol_tok, history=HISTORY)
    assert ids[-1] != smol_tok.eos_token_id


def test_history_budget_drops_whole_turns_from_the_oldest(smol_tok):
    turns = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " + "word " * 30} for i in range(6)]
    one = len(smol_tok(render_history(turns[-1:]) + "\n\n", add_special_tokens=False).input_ids)
    kept, dropped = fit_history(turns, smol_tok, max_tokens=2 * one + 4)
    assert (kept, dropped) == (turns[-2:], 4)  # the two most recent, in order
    assert fit_history(turns, smol_tok, 100_000) == (turns, 0)
    assert fit_history(turns, smol_tok, 0) == ([], 6)
    assert fit_history(turns, None, len(render_history(turns[-1:]))) == (turns[-1:], 5)  # characters
    ids, n = encode_conversation(LAST, PLAIN, smol_tok, turns, 2 * one + 4)
    assert n == 4 and ids == encode_prompt(LAST, PLAIN, smol_tok, turns[-2:])
    with pytest.raises(ValueError, match="non-negative"):
        fit_history(turns, smol_tok, -1)


LONG_ANSWER = (
    "Tides begin with the moon. "
    + "The water rises and falls as the earth turns beneath the pull of the moon and the sun. " * 20
    + "Shall I explain spring tides next?"
)
LONG_CHAT = [
    {"role": "user", "content": "How do tides work?"},
    {"role": "assistant", "content": LONG_ANSWER},
]


def _tokens(tok, turns) -> int:
    return len(tok(render_history(turns), add_special_tokens=False).input_ids)


def test_a_long_answer_is_clipped_not_the_question_it_answers(smol_tok):
    assert _tokens(smol_tok, LONG_CHAT) > 300
    kept, cut = fit_history(LONG_CHAT, smol_tok, 128)
    assert cut == 1 and kept[0] == LONG_CHAT[0]  # the question whole, the answer clipped
    answer = kept[1]["content"]
    head, tail = answer.split(CLIP_MARK)
    assert answer.startswith("Tides begin with the moon.") and answer.endswith("Shall I explain spring tides next?")
    assert LONG_ANSWER.startswith(head) and LONG_ANSWER.endswith(tail)
    assert _tokens(smol_tok, kept) <= 128
    # a budget the whole history fits is not touched; one too small for a useful clip drops
    assert fit_history(LONG_CHAT, smol_tok, 10_000) == (LONG_CHAT, 0)
    assert fit_history(LONG_CHAT, smol_tok, CLIP_MIN_TOKENS // 2) == ([], 2)


@pytest.mark.parametrize("budget", [64, 128, 256])
def test_oldest_turns_go_first_and_the_budget_holds(smol_tok, budget):
    turns = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}: " + "tides and moons " * (5 + 7 * i)}
        for i in range(6)
    ]
    kept, cut = fit_history(turns, smol_tok, budget)
    assert _tokens(smol_tok, kept) <= budget
    assert kept and kept[-1]["content"].startswith("turn 5:")  # the newest turn is always there
    assert [t["role"] for t in kept] == [t["role"] for t in turns[len(turns) - len(kept) :]]
    clipped = sum(t != o for t, o in zip(kept, turns[len(turns) - len(kept) :]))
    assert cut == len(turns) - len(kept) + clipped > 0


@pytest.mark.parametrize("text", ["海は広いな大きいな。" * 60, "🌊 vague après vague, la mer chante. " * 40])
def test_clipping_never_splits_a_character(smol_tok, text):
    turns = [{"role": "user", "content": "Et alors ?"}, {"role": "assistant", "content": text.strip()}]
    for tok in (smol_tok, None):  # tokens, and the serve rewriter's characters
        budget = 96 if tok is not None else 400
        kept, cut = fit_history(turns, tok, budget)
        head, tail = kept[-1]["content"].split(CLIP_MARK)
        assert "\ufffd" not in head + tail and text.strip().startswith(head) and text.strip().endswith(tail)
        assert cut == 1 and (len(render_history(kept)) if tok is None else _tokens(tok, kept)) <= budget


def test_a_tokenizer_without_offsets_clips_by_decoding(smol_tok):
    class NoOffsets:  # a Python ("slow") tokenizer: no offset mapping
        def __call__(self, text, return_offsets_mapping=False, **kw):
            if return_offsets_mapping:
                raise NotImplementedError("return_offset_mapping is not available when using Python tokenizers")
            return smol_tok(text, **kw)

        def decode(self, ids):
            return smol_tok.decode(ids)

    kept, cut = fit_history(LONG_CHAT, NoOffsets(), 128)
    assert cut == 1 and kept[0] == LONG_CHAT[0] and CLIP_MARK in kept[1]["content"]
    assert kept[1]["content"].startswith("Tides begin") and kept[1]["content"].endswith("spring tides next?")
    assert _tokens(smol_tok, kept) <= 128


def test_clipped_history_is_the_same_in_training_and_inference(smol_tok):
    for fmt in OPTIMIZER_FORMATS:
        train_ids, _ = encode_training_pair(LAST, "Make the poem rhyme.", fmt, smol_tok, LONG_CHAT, 128)
        ids, cut = encode_conversation(LAST, fmt, smol_tok, LONG_CHAT, 128)
        assert train_ids == ids and cut == 1
        assert ids == encode_prompt(LAST, fmt, smol_tok, fit_history(LONG_CHAT, smol_tok, 128)[0])


def test_training_input_is_the_inference_input(smol_tok):
    for fmt in OPTIMIZER_FORMATS:
        train_ids, target = encode_training_pair(
            LAST, "Rewrite the poem about the sea so it rhymes.", fmt, smol_tok, HISTORY
        )
        assert train_ids == encode_conversation(LAST, fmt, smol_tok, HISTORY)[0]
        assert target[-1] == smol_tok.eos_token_id


@pytest.mark.parametrize(
    "bad, match",
    [
        ("not a list", "expected a list"),
        ([{"role": "bot", "content": "x"}], r"history\[0\]\.role: 'bot'"),
        ([{"role": "user", "content": 3}], r"history\[0\]\.content: expected a str"),
        (["hi"], r"history\[0\]: expected a \{role, content\}"),
    ],
)
def test_bad_history_is_a_clear_error(bad, match):
    with pytest.raises((TypeError, ValueError), match=match):
        check_history(bad)
    with pytest.raises((TypeError, ValueError), match=match):
        format_prompt(LAST, PLAIN, history=bad)


def test_optimize_prompts_feeds_the_fitted_history(model_dir, monkeypatch):  # noqa: F811
    from bpo.optimizer import optimize_prompts
    from bpo.optimizer import rewrite as rewrite_mod

    seen = []
    real = rewrite_mod.generate

    def recording(model, inputs, settings):  # the real generation; the test only reads its input
        seen.extend(inputs)
        return real(model, inputs, settings)

    monkeypatch.setattr(rewrite_mod, "generate", recording)
    settings = GenerationSettings(
        engine="auto", temperature=0.6, top_p=0.9, max_new_tokens=4, batch_size=4, seed=1, greedy=True
    )
    long_history = HISTORY * 20
    res = optimize_prompts(
        model_dir, [LAST, LAST, "tides"], settings, histories=[HISTORY, long_history, None], max_history_tokens=64
    )
    from bpo.optimizer import load_optimizer

    tok = load_optimizer(model_dir).tokenizer
    assert (seen[0], res.results[0].history_cut) == encode_conversation(LAST, PLAIN, tok, HISTORY, 64)
    ids, dropped = encode_conversation(LAST, PLAIN, tok, long_history, 64)
    assert seen[1] == ids and dropped > 0 and res.results[1].history_cut == dropped
    assert seen[2] == encode_prompt("tides", PLAIN, tok)  # single-turn: today's input
    assert res.results[2].history_cut == 0
    with pytest.raises(ValueError, match="2 histories for 3 prompts"):
        optimize_prompts(model_dir, [LAST, LAST, "x"], settings, histories=[None, None])


def test_cli_messages_mode_rewrites_the_last_user_message_only(model_dir, tmp_path, capsys):  # noqa: F811
    records = [
        {
            "id": "a",
            "messages": [{"role": "system", "content": "Be kind."}, *HISTORY, {"role": "user", "content": LAST}],
        },
        {"id": "b", "messages": [{"role": "user", "content": "what is recursion"}]},
        {"id": "c", "messages": "not a list"},
        {"id": "d", "messages": [{"role": "assistant", "content": "hello"}]},
        {"id": "e"},
    ]
    src = tmp_path / "chats.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "out.jsonl"
    rc = bpo_main(
        [
            "optimize",
            "--model",
            model_dir,
            "--input",
            str(src),
            "--output",
            str(out),
            "--max-new-tokens",
            "4",
            "--greedy",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 0
    assert f"dropped 1 record(s) of --input as malformed_wrong_type: {src}:3" in err
    assert f"no_user_message: {src}:4" in err and f"malformed_missing_field: {src}:5" in err
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [g["id"] for g in got] == ["a", "b"]
    a = got[0]
    assert a["messages"][:3] == records[0]["messages"][:3]  # earlier turns and system untouched
    assert a["bpo"]["original"] == LAST and a["bpo"]["history_turns"] == 2  # system left out by default
    # 4 random tokens are no usable rewrite: the original is kept, with its reason
    assert a["bpo"]["fallback_reason"] is not None and a["messages"][3] == {"role": "user", "content": LAST}
    assert got[1]["bpo"]["history_turns"] == 0
    rc = bpo_main(["optimize", "--model", model_dir, "--input", str(src), "--output", str(tmp_path / "o.parquet")])
    assert rc == 2 and "needs --output FILE.jsonl" in capsys.readouterr().err
