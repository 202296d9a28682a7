"""ChatRequest content keys, validation and the estimate arithmetic."""

from __future__ import annotations

import pytest

from bpo.llm import ChatRequest, LLMError
from bpo.llm.request import ASSUMED_COMPLETION_TOKENS, cost_usd, count_tokens

MSG = [{"role": "user", "content": "Rewrite: how do plants grow?"}]


def req(**kw):
    base = dict(model="gpt-3.5-turbo", messages=MSG, temperature=0.9, top_p=1.0, max_tokens=256)
    base.update(kw)
    return ChatRequest(**base)


def test_key_is_stable_and_canonical():
    a = req()
    assert a.key == req().key
    assert len(a.key) == 64 and int(a.key, 16) >= 0
    # 1 and 1.0 are the same sampling parameter; n=1 is the default
    assert req(top_p=1).key == a.key
    assert req(n=1).key == a.key
    # a message given as another mapping type with the same content is the same request
    assert req(messages=[dict(role="user", content="Rewrite: how do plants grow?")]).key == a.key
    assert a == req() and hash(a) == hash(req())


@pytest.mark.parametrize(
    "change",
    [
        dict(model="gpt-4"),
        dict(messages=[{"role": "user", "content": "Rewrite: how do plants grow!"}]),
        dict(messages=[{"role": "system", "content": "x"}, *MSG]),
        dict(temperature=0.0),
        dict(top_p=0.9),
        dict(max_tokens=257),
        dict(n=2),
        dict(seed=1),
        dict(stop=["[END]"]),
        dict(extra={"presence_penalty": 0.5}),
    ],
)
def test_key_changes_with_everything_that_changes_the_answer(change):
    assert req(**change).key != req().key


def test_body_is_what_is_hashed_and_sent():
    r = req(seed=3, extra={"response_format": {"type": "text"}})
    assert r.body == {
        "model": "gpt-3.5-turbo",
        "messages": MSG,
        "temperature": 0.9,
        "top_p": 1.0,
        "max_tokens": 256,
        "seed": 3,
        "response_format": {"type": "text"},
    }
    import json

    assert json.loads(r.body_json) == r.body
    assert "temperature" not in req(temperature=None).body


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(model=""), "model"),
        (dict(messages=[]), "messages"),
        (dict(messages="hello"), "messages"),
        (dict(messages=[{"content": "x"}]), "message 0"),
        (dict(n=0), "n must be"),
        (dict(max_tokens=0), "max_tokens"),
        (dict(extra={"stream": True}), "stream"),
        (dict(extra={"api_key": "x"}), "api_key"),
        (dict(extra={"temperature": 1}), "duplicates"),
        (dict(extra={"x": object()}), "JSON"),
    ],
)
def test_bad_requests_are_clear_errors(kw, match):
    with pytest.raises(LLMError, match=match):
        req(**kw)


def test_estimates():
    r = req(messages=[{"role": "user", "content": "x" * 400}], max_tokens=100, n=2)
    assert count_tokens("x" * 400) in range(50, 120)  # heuristic or tiktoken: same ballpark
    assert r.estimated_prompt_tokens() >= count_tokens("x" * 400)
    assert r.estimated_completion_tokens() == 200
    assert req(max_tokens=None).estimated_completion_tokens() == ASSUMED_COMPLETION_TOKENS
    assert cost_usd({"input": 1.0, "output": 2.0}, 1_000_000, 500_000) == pytest.approx(2.0)
    assert cost_usd(None, 10, 10) is None
