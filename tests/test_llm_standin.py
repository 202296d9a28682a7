"""The offline stand-in, through the real client path (AsyncOpenAI -> httpx2 -> stand-in transport)."""

from __future__ import annotations

import re

import pytest
from loopback_server import LoopbackServer

import bpo.llm.session as session_mod
from bpo.llm import STANDIN_MODEL, ChatRequest, client_from_mapping
from bpo.llm.cache import Cache
from bpo.llm.standin import StandinTransport, completion, find_instruction, reply_text

CRITIQUE_FORMAT = re.compile(
    r"^Detailed Comparison Result: (?P<cmp>.+?)\n\nOptimized Instruction: (?P<opt>.+) \[END\]$", re.S
)

# Critique prompts written for these tests, in two header styles.
CRITIQUE_EQ = """You will compare two answers, then improve the instruction.

=== User instruction ===
{instruction}

=== Context given with the instruction ===
{context}

=== Answer 1 (the weaker answer) ===
It is hot.

=== Answer 2 (the stronger answer) ===
The weather is sunny with a high of 31 C; drink water and avoid the midday sun.

=== Reply format ===
Detailed Comparison Result: <comparison>
Optimized Instruction: <rewritten instruction> [END]"""

CRITIQUE_HASH = """### Instruction
{instruction}

### Bad response
No.

### Good response
Yes, here is how.

Compare the responses, then reply with "Detailed Comparison Result:" and
"Optimized Instruction: ... [END]"."""

JUDGE = """Compare the two answers to the question.

=== Question ===
{q}
=== End of question ===

=== Answer from Assistant A ===
{a}
=== End of answer A ===

=== Answer from Assistant B ===
{b}
=== End of answer B ===

Finish with [[A]] if A is better, [[B]] if B is better, [[C]] for a tie."""


def standin(tmp_path, name="c.sqlite"):
    return client_from_mapping(
        {"backend": "standin", "limits": {"max_concurrency": 4}}, tmp_path / name, "test", progress=False
    )


def chat(content, **kw):
    return ChatRequest(model="gpt-3.5-turbo", messages=[{"role": "user", "content": content}], **kw)


@pytest.fixture
def spy(monkeypatch):
    """Record what reaches the stand-in transport, i.e. what AsyncOpenAI sent."""
    seen = []

    class Spy(StandinTransport):
        async def handle_async_request(self, request):
            seen.append({"headers": dict(request.headers), "path": request.url.path})
            return await super().handle_async_request(request)

    monkeypatch.setattr(session_mod, "StandinTransport", Spy)
    return seen


def test_standin_runs_the_real_openai_client_path_and_labels_itself(tmp_path, spy, caplog):
    out = standin(tmp_path).run([chat("What is the capital of France?")])
    assert len(spy) == 1
    assert spy[0]["path"] == "/v1/chat/completions"
    assert spy[0]["headers"]["user-agent"].startswith("AsyncOpenAI/Python")
    assert spy[0]["headers"]["authorization"].startswith("Bearer ")
    r = out[0]
    assert r.status == "ok" and r.backend == "standin" and r.model == STANDIN_MODEL
    assert r.prompt_tokens > 0 and r.completion_tokens > 0
    assert "NOT a real model" in caplog.text
    with Cache(tmp_path / "c.sqlite") as cache:
        (row,) = cache.rows()
    assert row["backend"] == "standin" and row["response_model"] == STANDIN_MODEL


@pytest.mark.parametrize("template", [CRITIQUE_EQ, CRITIQUE_HASH])
def test_critique_prompts_get_a_parseable_rewrite_of_their_instruction(tmp_path, template):
    instructions = [
        "Tell me the weather in [protected]Paris[/protected] tomorrow.",
        "Write a haiku about rain",
        "why",
        "List three ways to save energy at home, with a short reason for each.",
    ]
    rs = [
        chat(template.replace("{instruction}", i).replace("{context}", "Forecast: sunny."), temperature=0.9)
        for i in instructions
    ]
    out = standin(tmp_path).run(rs)
    for inst, r in zip(instructions, out):
        m = CRITIQUE_FORMAT.match(r.text)
        assert m, r.text
        clean = inst.replace("[protected]", "").replace("[/protected]", "")
        opt = m.group("opt")
        assert clean.rstrip(".") in opt and "[protected]" not in opt
        assert "Forecast" not in opt, "the context must not be rewritten into the instruction"
        # inside the paper's length filter: not shorter, at most 6x the words
        assert len(clean.split()) <= len(opt.split()) <= 6 * len(clean.split())


def test_find_instruction_styles():
    assert find_instruction("[Instruction]\nDo X.\n\n[Bad Response]\nno") == "Do X."
    assert find_instruction("Instruction:\nDo Y.\nContext:\nz") == "Do Y."
    assert find_instruction("<instruction>\nDo Z.\n</instruction>") == "Do Z."
    assert find_instruction("no headers here") is None
    # no instruction header: still the critique format
    text = reply_text({"messages": [{"role": "user", "content": "Give Optimized Instruction: please"}]})
    assert CRITIQUE_FORMAT.match(text)


def test_judge_verdicts_vary_with_content_and_are_consistent_across_orders(tmp_path):
    answers = [
        "Paris.",
        "The capital of France is Paris, on the Seine.",
        "Lyon, I think.",
        "Paris is the capital and largest city of France.",
        "I do not know.",
        "France's capital: Paris.",
    ]
    pairs = [(a, b) for i, a in enumerate(answers) for b in answers[i + 1 :]]
    rs = [chat(JUDGE.format(q="What is the capital of France?", a=a, b=b), temperature=0.0) for a, b in pairs]
    swapped = [chat(JUDGE.format(q="What is the capital of France?", a=b, b=a), temperature=0.0) for a, b in pairs]
    out = standin(tmp_path).run(rs + swapped)
    verdicts = []
    for r in out:
        tokens = re.findall(r"\[\[[ABC]\]\]", r.text)
        assert len(tokens) == 1 and r.text.rstrip().endswith(tokens[0]), r.text
        verdicts.append(tokens[0][2])
    assert len(set(verdicts)) >= 2, "the stand-in judge must not always give the same verdict"
    flip = {"A": "B", "B": "A", "C": "C"}
    assert verdicts[len(pairs) :] == [flip[v] for v in verdicts[: len(pairs)]]
    same = standin(tmp_path, "d.sqlite").run([chat(JUDGE.format(q="q", a="same", b="same"))])
    assert same[0].text.endswith("[[C]]")


def test_plain_answers_are_deterministic_and_vary(tmp_path):
    rs = [
        chat("How do vaccines work?"),
        chat("Explain photosynthesis to a child."),
        chat("How do vaccines work?", seed=2),
    ]
    a = standin(tmp_path, "a.sqlite").run(rs)
    b = standin(tmp_path, "b.sqlite").run(rs)
    assert [r.text for r in a] == [r.text for r in b]
    assert len({r.text for r in a}) == 3
    assert all(not re.search(r"\[\[[ABC]\]\]|Optimized Instruction", r.text) for r in a)


def test_max_tokens_and_n(tmp_path):
    out = standin(tmp_path).run(
        [chat("Tell me a long story about the sea.", max_tokens=5), chat("Name a colour.", n=3, temperature=1.0)]
    )
    assert out[0].status == "truncated" and out[0].completion_tokens <= 5
    assert len(out[1].choices) == 3 and len(set(out[1].choices)) == 3 and out[1].text == out[1].choices[0]
    again = standin(tmp_path).run([chat("Name a colour.", n=3, temperature=1.0)])
    assert again[0].cached and again[0].choices == out[1].choices


def test_standin_answers_are_never_served_as_real_ones(tmp_path, monkeypatch):
    from bpo.llm import ReplayMiss

    rs = [chat("Same question")]
    standin(tmp_path).run(rs)
    # replay serves real answers only: the stand-in's row for the same request does not count
    with pytest.raises(ReplayMiss, match="1 of 1"):
        client_from_mapping({"backend": "replay"}, tmp_path / "c.sqlite", "test", progress=False).run(rs)
    monkeypatch.setenv("BPO_TEST_KEY2", "sk-x")
    with LoopbackServer(responder="echo") as srv:
        real = client_from_mapping(
            {"backend": "openai", "base_url": srv.base_url, "api_key_env": "BPO_TEST_KEY2"},
            tmp_path / "c.sqlite",
            "test",
            progress=False,
        ).run(rs)
        assert srv.total == 1 and not real[0].cached and real[0].backend == "openai"
    # both answers now live side by side, each served to its own kind of backend
    assert standin(tmp_path).run(rs)[0].text != real[0].text
    assert (
        client_from_mapping({"backend": "replay"}, tmp_path / "c.sqlite", "test", progress=False).run(rs)[0].text
        == real[0].text
    )


def test_completion_object_shape():
    body = {"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100}
    c = completion(body)
    assert c["object"] == "chat.completion" and c["model"] == STANDIN_MODEL
    assert c["usage"]["total_tokens"] == c["usage"]["prompt_tokens"] + c["usage"]["completion_tokens"]
    assert c == {**completion(body), "created": c["created"]}
