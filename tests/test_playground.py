"""`bpo serve`'s playground page (GET /) in headless Chromium: a typed prompt comes back rewritten,
with the upstream's answers to the original and to the rewrite side by side. The proxy runs under
uvicorn on a loopback port; a loopback upstream is the LLM API and the served optimizer."""

from __future__ import annotations

import json

import httpx
import pytest
from headless import chromium, missing_reason, screenshot, wait_state
from serve_upstream import REWRITE_PREFIX, ChatUpstream

from bpo.serve.app import create_app
from bpo.serve.server import ServerThread
from bpo.settings.serve import load_serve_config

CLIENT_KEY = "client-key-playground"
UPSTREAM_KEY = "sk-upstream-secret-PLAY"
ENV = {"BPO_TEST_CLIENT_KEYS": CLIENT_KEY, "BPO_TEST_UPSTREAM_KEY": UPSTREAM_KEY}


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    with ChatUpstream() as upstream:
        settings = load_serve_config(
            None,
            {
                "api_keys_env": "BPO_TEST_CLIENT_KEYS",
                "cache": str(tmp_path_factory.mktemp("play") / "rewrites.sqlite"),
                "upstream": {"base_url": upstream.base_url, "api_key_env": "BPO_TEST_UPSTREAM_KEY"},
                "rewriter": {"kind": "remote", "optimizer": "optimizer", "remote_base_url": upstream.base_url},
                "batching": {"max_wait_ms": 5},
            },
        )
        with ServerThread(create_app(settings, environ=ENV)) as srv:
            yield srv, upstream


def test_page_is_static_and_pinned(proxy):
    srv, _ = proxy
    r = httpx.get(srv.url + "/")  # no key needed: the page holds no secret
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp and "'unsafe-inline'" not in csp
    assert UPSTREAM_KEY not in r.text and CLIENT_KEY not in r.text
    assert httpx.post(srv.url + "/").status_code == 405


def test_prompt_shows_rewrite_and_both_answers(proxy):
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    srv, upstream = proxy
    prompt = "tell me about tides"
    with chromium(1200, 700) as driver:
        driver.get(srv.url + "/")
        wait_state(driver, "ready")
        # without the client key: the proxy's 401 shows on the page
        driver.find_element("id", "prompt").send_keys(prompt)
        driver.find_element("id", "go").click()
        wait_state(driver, "done")
        assert "HTTP 401" in driver.find_element("id", "error").text
        driver.execute_script("document.body.dataset.state = 'ready'")

        driver.find_element("id", "key").send_keys(CLIENT_KEY)
        driver.find_element("id", "answers").click()
        driver.find_element("id", "model").send_keys("loopback-chat")
        driver.find_element("id", "go").click()
        wait_state(driver, "done")
        text = {
            i: driver.find_element("id", i).text
            for i in ("rewrite", "status", "answer-original", "answer-rewrite", "error")
        }
        screenshot(driver, "playground.png")
        assert driver.get_log("browser") == [] or all("401" in e["message"] for e in driver.get_log("browser"))
    assert text["error"] == ""
    assert text["rewrite"] == REWRITE_PREFIX + prompt and text["status"].lower().startswith("rewritten")
    assert text["answer-original"] == f"loopback reply to: {prompt}"
    assert text["answer-rewrite"] == f"loopback reply to: {REWRITE_PREFIX}{prompt}"
    sent = [json.loads(r.body) for r in upstream.requests if r.path.endswith("/chat/completions")]
    assert sorted(m["messages"][-1]["content"] for m in sent) == sorted([prompt, REWRITE_PREFIX + prompt])
    assert all("bpo" not in body for body in sent)  # the opt-out field stays at the proxy
