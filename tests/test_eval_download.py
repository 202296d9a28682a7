"""Test sets fetched by URL: a real HTTP fetch over loopback, atomic writes, clear errors."""

from __future__ import annotations

import functools
import http.server
import socket
import threading

import pytest

from bpo.eval.download import DownloadError, fetch
from bpo.eval.testsets import load_testset


@pytest.fixture
def http_dir(tmp_path):
    root = tmp_path / "site"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_fetch_over_http_then_load(http_dir, tmp_path):
    root, base = http_dir
    (root / "q.jsonl").write_text(
        '{"question_id": 1, "text": "Name three primes.", "category": "math"}\n'
        '{"question_id": 2, "text": "Say hello.", "category": "generic"}\n'
    )
    dest = fetch(f"{base}/q.jsonl", tmp_path / "out" / "q.jsonl")
    assert dest.read_text() == (root / "q.jsonl").read_text()
    assert not list(dest.parent.glob(".*part*"))
    testset = load_testset("vicuna_eval", dest, "vicuna")
    assert [it.instruction for it in testset.items] == ["Name three primes.", "Say hello."]


def test_missing_remote_file_is_a_clear_error_and_leaves_nothing(http_dir, tmp_path):
    _, base = http_dir
    dest = tmp_path / "out" / "gone.json"
    with pytest.raises(DownloadError, match=r"gone\.json.*set the test set's `path:`"):
        fetch(f"{base}/gone.json", dest)
    assert not dest.exists() and not list(dest.parent.iterdir())


def test_unreachable_host_is_a_clear_error(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match=f"127.0.0.1:{port}"):
        fetch(f"http://127.0.0.1:{port}/x.json", tmp_path / "x.json", timeout_s=5)
