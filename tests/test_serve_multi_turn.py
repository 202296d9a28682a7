"""Multi-turn `bpo serve` (issue 20): the real openai client through the proxy under uvicorn, a
loopback upstream as the chat API and as the served optimizer (its /v1/completions records every
optimizer input, which is how the test observes what the rewriter saw)."""

from __future__ import annotations

import hashlib
import json

import httpx
import openai
import pytest
from serve_upstream import REWRITE_PREFIX, ChatUpstream
from test_serve import CLIENT_KEY, ENV, settings, upstream_bodies

from bpo.conversation import earlier_turns
from bpo.prompt_format import PLAIN, build_prompt, format_prompt
from bpo.serve.app import create_app
from bpo.serve.cache import cache_key
from bpo.serve.server import ServerThread

CONVERSATION = [
    {"role": "system", "content": "You are a patient cooking teacher."},
    {"role": "user", "content": "Give me a simple recipe for pancakes."},
    {"role": "assistant", "content": "Mix 200 g flour, 2 eggs and 300 ml milk, then fry ladlefuls in butter."},
    {"role": "user", "content": "Rewrite your previous response, starting every sentence with A."},
]


@pytest.fixture
def upstream():
    with ChatUpstream() as srv:
        yield srv


def _client(proxy):
    return openai.OpenAI(base_url=proxy.base_url, api_key=CLIENT_KEY, max_retries=0)


def test_three_turn_conversation_reaches_the_rewriter_with_its_earlier_turns(upstream, tmp_path):
    with ServerThread(create_app(settings(upstream, tmp_path), environ=ENV)) as proxy:
        reply = _client(proxy).chat.completions.create(model="loopback-chat", messages=CONVERSATION)
    last = CONVERSATION[-1]["content"]
    # the rewriter's input: the two earlier turns, in order, then the last message to rewrite
    (seen,) = upstream.completion_prompts
    turns = earlier_turns(CONVERSATION, 3, include_system=False)
    assert turns == [
        {"role": "user", "content": CONVERSATION[1]["content"]},
        {"role": "assistant", "content": CONVERSATION[2]["content"]},
    ]
    assert seen == format_prompt(last, PLAIN, history=turns)
    assert (
        seen.index("User: Give me a simple recipe")
        < seen.index("Assistant: Mix 200 g flour")
        < seen.index("[Original prompt]\n" + last)
    )
    assert CONVERSATION[0]["content"] not in seen  # include_system is off by default
    # the upstream: every earlier message byte for byte, only the last user message changed
    (sent,) = upstream_bodies(upstream)
    assert sent["messages"][:3] == CONVERSATION[:3]
    assert sent["messages"][3] == {"role": "user", "content": REWRITE_PREFIX + last}
    assert reply.bpo["rewrite"] == "rewritten" and reply.bpo["prompt"] == REWRITE_PREFIX + last


def test_system_message_included_by_setting_and_history_off_is_single_turn(upstream, tmp_path):
    with ServerThread(
        create_app(settings(upstream, tmp_path, rewriter={"include_system": True}), environ=ENV)
    ) as proxy:
        _client(proxy).chat.completions.create(model="loopback-chat", messages=CONVERSATION)
    assert upstream.completion_prompts[-1].count("System: You are a patient cooking teacher.") == 1
    with ServerThread(
        create_app(settings(upstream, tmp_path / "off", rewriter={"history": False}), environ=ENV)
    ) as proxy:
        _client(proxy).chat.completions.create(model="loopback-chat", messages=CONVERSATION)
    assert upstream.completion_prompts[-1] == build_prompt(CONVERSATION[-1]["content"])


def test_single_turn_request_gives_todays_input_rewrite_and_cache_key(upstream, tmp_path):
    single = [{"role": "user", "content": "what is a tide"}]
    with ServerThread(create_app(settings(upstream, tmp_path), environ=ENV)) as proxy:
        reply = _client(proxy).chat.completions.create(model="loopback-chat", messages=single)
        # a system message alone is no history either (include_system off)
        _client(proxy).chat.completions.create(
            model="loopback-chat", messages=[{"role": "system", "content": "Be brief."}, *single]
        )
    assert upstream.completion_prompts == [build_prompt("what is a tide")]  # second answered from the cache
    assert reply.bpo == {
        "prompt": REWRITE_PREFIX + "what is a tide",
        "rewrite": "rewritten",
        "fallback_reason": None,
        "cached": False,
    }
    import sqlite3

    ((key, ident, prompt),) = (
        sqlite3.connect(tmp_path / "rewrites.sqlite").execute("SELECT key, rewriter, prompt FROM rewrites").fetchall()
    )
    # the key formula of before multi-turn: sha256 of [identity, prompt]
    assert key == hashlib.sha256(json.dumps([ident, prompt], ensure_ascii=False).encode()).hexdigest()
    assert key == cache_key(ident, prompt) == cache_key(ident, prompt, []) == cache_key(ident, prompt, None)


def test_cache_is_keyed_on_the_history_too(upstream, tmp_path):
    follow = {"role": "user", "content": "And how long does it take?"}
    a = [{"role": "user", "content": "How do I boil an egg?"}, {"role": "assistant", "content": "Put it in water."}]
    b = [{"role": "user", "content": "How do I bake bread?"}, {"role": "assistant", "content": "Knead dough."}]
    with ServerThread(create_app(settings(upstream, tmp_path), environ=ENV)) as proxy:
        c = _client(proxy)
        first = c.chat.completions.create(model="loopback-chat", messages=[*a, follow])
        other = c.chat.completions.create(model="loopback-chat", messages=[*b, follow])
        again = c.chat.completions.create(model="loopback-chat", messages=[*a, follow])
    assert len(upstream.completion_prompts) == 2  # same last message, two histories: two rewrites
    assert "boil an egg" in upstream.completion_prompts[0] and "bake bread" in upstream.completion_prompts[1]
    assert (first.bpo["cached"], other.bpo["cached"], again.bpo["cached"]) == (False, False, True)


def test_a_rewrite_that_repeats_the_history_falls_back(upstream, tmp_path, monkeypatch):
    import serve_upstream

    earlier = "The best time to visit the mountains is early in the summer when the trails are dry."
    messages = [
        {"role": "user", "content": "When should I visit the mountains?"},
        {"role": "assistant", "content": earlier},
        {"role": "user", "content": "Why then?"},
    ]
    # the served optimizer restates the assistant's answer instead of rewriting the question
    monkeypatch.setattr(serve_upstream, "fake_rewrite", lambda prompt: f"Explain why: {earlier.lower()}")
    with ServerThread(create_app(settings(upstream, tmp_path), environ=ENV)) as proxy:
        reply = _client(proxy).chat.completions.create(model="loopback-chat", messages=messages)
    assert reply.bpo["rewrite"] == "fallback" and reply.bpo["fallback_reason"] == "repeats_history"
    (sent,) = upstream_bodies(upstream)
    assert sent["messages"] == messages  # the original goes through, nothing changed


def test_earlier_turns_text_parts_roles_and_tool_messages():
    messages = [
        {"role": "developer", "content": "rules"},
        {"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {}}]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]},
        {"role": "tool", "content": "42", "tool_call_id": "1"},
        {"role": "assistant", "content": "It is 42."},
        {"role": "user", "content": "   "},
        {"role": "user", "content": "why?"},
    ]
    assert earlier_turns(messages, 6, include_system=True) == [
        {"role": "system", "content": "rules"},
        {"role": "user", "content": "look"},
        {"role": "assistant", "content": "It is 42."},
    ]
    assert earlier_turns(messages, 6, include_system=False)[0] == {"role": "user", "content": "look"}


def test_rewrite_endpoint_is_unchanged_single_turn(upstream, tmp_path):
    h = {"authorization": f"Bearer {CLIENT_KEY}"}
    with ServerThread(create_app(settings(upstream, tmp_path), environ=ENV)) as proxy:
        r = httpx.post(proxy.base_url + "/rewrite", json={"prompt": "what is a tide"}, headers=h).json()
    assert r["prompt"] == REWRITE_PREFIX + "what is a tide"
    assert upstream.completion_prompts == [build_prompt("what is a tide")]
