"""No key is stored, through any channel: an upstream that echoes the keys it was sent (in 200
replies' text, an extra JSON field, the model name, error bodies and response headers) leaves
no trace of them in results, the LLM cache (with its WAL), `bpo cache export`, logs or
Snakemake's log. Two keys: a shapeless random one in a custom ``api_key_env`` (found only by
its value) and an ``sk-`` one in a ``${VAR}`` header (by value and by shape). Redaction never
costs a call: a redacted cached reply is the cached answer to its request.

The loopback server is the network boundary only; the client, the cache, the critique stage,
Snakemake and the CLI are the real ones.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import string
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import copy_workflow, edit_config, snakemake
from loopback_server import LoopbackServer, standin_responder

from bpo import redact
from bpo.llm import ChatRequest, client_from_mapping
from bpo.llm.cache import Cache

KEY_ENV = "BPO_UPSTREAM_AUTH"  # a name that does not look secret: only the config says it is
ORG_ENV = "BPO_UPSTREAM_ORG"
# A fresh random key per run: no shape, 40 characters (nothing but its value can find it).
SHAPELESS = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(40))
SK_KEY = "sk-proj-" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(32))
KEYS = (SHAPELESS, SK_KEY)


class EchoKeyServer(LoopbackServer):
    """Answers like the loopback server, and quotes the keys it received everywhere it can
    (``odd=True``: also in fields of the wrong type, where a string or a number belongs)."""

    def __init__(self, odd: bool = False, **kw):
        super().__init__(responder=self._reply, **kw)
        self._seen = ""
        self.odd = odd

    def _reply(self, body: dict) -> tuple[str, str]:
        text, finish = standin_responder(body)
        return f"{text}\n\n(Your key {self._seen} was accepted.)", finish

    def _respond(self, proto, req, rule, seq, rec):
        self._seen = " / ".join(
            (rec.headers.get("authorization", "").removeprefix("Bearer "), rec.headers.get("x-upstream-org", ""))
        )
        send = proto._send

        def echoing_send(status, body, extra=None, content_type="application/json"):
            data = json.loads(body)
            if status == 200:
                data["system_fingerprint"] = self._seen  # an extra field
                data["echo"] = {"headers": rec.headers}
                data["model"] = f"{data['model']} for {self._seen}"
                if self.odd:
                    data["model"] = {"id": data["model"]}
                    data["usage"] = {"prompt_tokens": self._seen, "completion_tokens": [self._seen]}
                    choice = data["choices"][0]
                    choice["finish_reason"] = {"reason": self._seen}
                    if "refuse" in req["messages"][-1]["content"]:
                        choice["message"].update(content=None, refusal={"detail": self._seen})
            else:
                data["error"]["message"] += f" (key {self._seen})"
            send(status, json.dumps(data).encode(), {**(extra or {}), "x-echo-key": self._seen}, content_type)

        proto._send = echoing_send
        try:
            super()._respond(proto, req, rule, seq, rec)
        finally:
            proto._send = send


def _endpoint(base_url: str) -> dict:
    return {
        "backend": "openai",
        "base_url": base_url,
        "api_key_env": KEY_ENV,
        "default_headers": {"X-Upstream-Org": f"${{{ORG_ENV}}}"},
        "limits": {"max_concurrency": 4, "max_retries": 3, "backoff_base_s": 0.01, "timeout_s": 10},
    }


@pytest.fixture
def keys(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SHAPELESS)
    monkeypatch.setenv(ORG_ENV, SK_KEY)


def _leaks(root: Path) -> list[str]:
    """Every file under ``root`` holding a key: its raw bytes (the SQLite files and their WAL
    store text uncompressed), and the decoded cells of Parquet files (whose pages are compressed)."""
    hits = []
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
        data = path.read_bytes()
        hits += [f"{path} (bytes)" for k in KEYS if k.encode() in data or k[3:].encode() in data]
        if data[:4] == b"PAR1":
            cells = json.dumps(pq.read_table(path).to_pylist(), default=str)
            hits += [f"{path} (parquet cells)" for k in KEYS if k in cells]
    return hits


def _reqs(n: int) -> list[ChatRequest]:
    return [ChatRequest(model="gpt-test", messages=[{"role": "user", "content": f"question {i}"}]) for i in range(n)]


def test_echoed_keys_are_stored_nowhere_and_a_rerun_pays_nothing(tmp_path, keys, monkeypatch):
    cache_path = tmp_path / "cache" / "llm.sqlite"
    with EchoKeyServer() as srv:
        srv.fail("400", times=1, match="question 0")  # one call fails for good: the failures table
        srv.fail("500", times=2, match="question 1")  # retried, then answered
        client = client_from_mapping(_endpoint(srv.base_url), cache_path, "critique", name="echo", progress=False)
        first = client.run(_reqs(6))
        paid = srv.total
        assert srv.requests[0].headers["authorization"] == f"Bearer {SHAPELESS}"  # the keys were sent...
        assert SHAPELESS in srv._seen and SK_KEY in srv._seen  # ...and echoed back
        # a rerun, and one after the keys were rotated (the cache key never holds a key)
        again = client_from_mapping(_endpoint(srv.base_url), cache_path, "critique", name="echo", progress=False).run(
            _reqs(6)
        )
        monkeypatch.setenv(KEY_ENV, "".join(reversed(SHAPELESS)))
        rotated = client_from_mapping(_endpoint(srv.base_url), cache_path, "critique", name="echo", progress=False).run(
            _reqs(6)
        )
        # the failed call is retried once (failures are not answers); the 5 answers cost nothing
        assert srv.total == paid + 1, f"{srv.total - paid - 1} answered calls were paid again"
    assert paid == 1 + 3 + 4
    assert [r.status for r in first] == ["error"] + ["ok"] * 5
    assert all(r.cached for r in again[1:]) and all(r.cached for r in rotated)
    assert [r.text for r in again[1:]] == [r.text for r in first[1:]]
    for r in first[1:]:
        assert r.text.endswith(f"(Your key {redact.MASK} / {redact.MASK} was accepted.)"), r.text
        assert r.model == f"gpt-test for {redact.MASK} / {redact.MASK}"
    assert first[0].error.count(redact.MASK) == 2
    Cache(cache_path).export_parquet(tmp_path / "cache" / "export.parquet")
    exported = pq.read_table(tmp_path / "cache" / "export.parquet").to_pylist()
    assert len(exported) == 6 and all(redact.MASK in r["text"] and redact.MASK in r["response_model"] for r in exported)
    with sqlite3.connect(cache_path) as db:
        assert db.execute("SELECT COUNT(*) FROM failures WHERE error LIKE '%[REDACTED]%[REDACTED]%'").fetchone()[0] == 1
    assert _leaks(tmp_path) == []


def test_keys_in_fields_of_the_wrong_type_are_not_stored(tmp_path, keys):
    """The neighbours: a key in a dict where the model name belongs, in a finish_reason object,
    a refusal object, and as token counts. The run answers, stores, exports, and leaks nothing."""
    cache_path = tmp_path / "llm.sqlite"
    reqs = _reqs(3) + [ChatRequest(model="gpt-test", messages=[{"role": "user", "content": "please refuse"}])]
    with EchoKeyServer(odd=True) as srv:
        out = client_from_mapping(_endpoint(srv.base_url), cache_path, "critique", name="echo", progress=False).run(
            reqs
        )
        assert SHAPELESS in srv._seen
    assert [r.status for r in out] == ["ok"] * 3 + ["refused"]
    assert all(r.model == "gpt-test" and r.finish_reason is None for r in out)
    assert all(isinstance(r.prompt_tokens, int) and isinstance(r.completion_tokens, int) for r in out)
    assert out[3].text == json.dumps({"detail": f"{redact.MASK} / {redact.MASK}"})
    with Cache(cache_path) as cache:
        assert cache.export_parquet(tmp_path / "export.parquet") == 4
    assert _leaks(tmp_path) == []


def test_rows_written_before_redaction_are_masked_on_read_export_and_import(tmp_path, keys):
    """A cache filled by an older version (keys verbatim in its rows): replies read from it, its
    export and an import of a file holding a key are all redacted, and still served from cache."""
    cache_path = tmp_path / "old.sqlite"
    with EchoKeyServer() as srv:
        client = client_from_mapping(_endpoint(srv.base_url), cache_path, "critique", name="echo", progress=False)
        client.run(_reqs(3))
        with sqlite3.connect(cache_path) as db:  # what an unredacted cache held
            db.execute(
                "UPDATE calls SET text = text || ?, choices = ?",
                (f" {SHAPELESS} {SK_KEY}", json.dumps([SHAPELESS, SK_KEY])),
            )
        paid = srv.total
        out = client_from_mapping(_endpoint(srv.base_url), cache_path, "critique", name="echo", progress=False).run(
            _reqs(3)
        )
        assert srv.total == paid
    assert all(r.cached and r.text.endswith(f"{redact.MASK} {redact.MASK}") for r in out)
    with Cache(cache_path) as cache:
        cache.export_parquet(tmp_path / "share" / "export.parquet")
    rows = pq.read_table(tmp_path / "share" / "export.parquet").to_pylist()
    assert all(json.loads(r["choices"]) == [redact.MASK, redact.MASK] for r in rows)
    # a shared file that holds a key (exported by an older version) is redacted on import
    schema = pq.read_schema(tmp_path / "share" / "export.parquet")
    pq.write_table(
        pa.Table.from_pylist([{**r, "text": f"{r['text']} {SHAPELESS}"} for r in rows], schema=schema),
        tmp_path / "incoming.parquet",
    )
    with Cache(tmp_path / "fresh" / "llm.sqlite") as fresh:
        assert fresh.import_parquet(tmp_path / "incoming.parquet") == (3, 0)
    (tmp_path / "old.sqlite").unlink()  # holds the keys on purpose
    for p in tmp_path.glob("old.sqlite-*"):
        p.unlink()
    (tmp_path / "incoming.parquet").unlink()
    assert _leaks(tmp_path) == []


def test_redaction_follows_the_environment_and_registrations(monkeypatch):
    """Values are re-read when the environment changes: a key exported, changed or registered
    after a first redact() call is masked at the next one."""
    fresh = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(40))  # never registered
    assert redact.redact(f"a {fresh} b") == f"a {fresh} b"  # not configured, no shape
    monkeypatch.setenv("BPO_LATE_SERVICE_TOKEN", fresh)  # a secret-looking name, exported late
    assert redact.redact(f"a {fresh} b") == f"a {redact.MASK} b"
    monkeypatch.setenv("BPO_LATE_SERVICE_TOKEN", fresh[::-1])  # changed value
    assert redact.redact(f"a {fresh[::-1]} b") == f"a {redact.MASK} b"
    monkeypatch.delenv("BPO_LATE_SERVICE_TOKEN")
    monkeypatch.setenv("BPO_PLAIN_NAME", fresh[:20])
    assert redact.redact(f"x{fresh[:20]}x") == f"x{fresh[:20]}x"
    redact.register_env("BPO_PLAIN_NAME")
    assert redact.redact(f"x{fresh[:20]}x") == f"x{redact.MASK}x"
    # a key that contains another secret value is masked whole, regex characters are literal
    redact.register_value("a.b*c+d?e(f)g", "a.b*c+d?e(f)g[h]{2}")
    assert redact.redact("1 a.b*c+d?e(f)g[h]{2} 2 aXb*c+d?e(f)g") == f"1 {redact.MASK} 2 aXb*c+d?e(f)g"
    assert redact.redact(None) is None and redact.redact("") == ""


# ---- Done when: the critique stage through Snakemake, then `bpo cache export` ------------------


@pytest.mark.slow
def test_critique_stage_and_export_write_no_echoed_key(tmp_path, keys):
    wf = copy_workflow(tmp_path / "wf")
    with EchoKeyServer() as srv:
        srv.fail("400", times=1)  # one pair's call fails: parse_error, failures table, rule log
        srv.fail("500", times=3)  # echoed in errors that are retried

        def use_echo(cfg):
            cfg["llm"]["endpoints"]["echo"] = _endpoint(srv.base_url)
            cfg["critique"].update(endpoint="echo", model="gpt-test", max_error_fraction=0.5)

        cfg = edit_config(wf, use_echo)
        sources = [s for s, v in cfg["sources"].items() if v.get("activate")]
        targets = [f"results/demo/critiques/{s}.parquet" for s in sources]
        proc = snakemake(wf, "--cores", "2", *targets)
        (wf / "terminal.txt").write_text(proc.stdout + proc.stderr)
        paid = srv.total
        assert SHAPELESS in srv._seen and SK_KEY in srv._seen  # the upstream saw and echoed both
    export = subprocess.run(
        [sys.executable, "-m", "bpo.cli", "cache", "export", "shared/cache.parquet", "--cache", cfg["llm"]["cache"]],
        cwd=wf,
        capture_output=True,
        text=True,
        env=os.environ.copy(),
    )
    assert export.returncode == 0, export.stderr
    (wf / "export-terminal.txt").write_text(export.stdout + export.stderr)

    rows = [r for t in targets for r in pq.read_table(wf / t).to_pylist()]
    answered = [r for r in rows if r["status"] == "ok"]
    assert paid == len(rows) + 3 and len(answered) == len(rows) - 1
    assert all(r["raw_reply"].endswith(f"(Your key {redact.MASK} / {redact.MASK} was accepted.)") for r in answered)
    failed = [r for r in rows if r["status"] == "error"]
    assert len(failed) == 1 and failed[0]["parse_error"].count(redact.MASK) == 2
    shared = pq.read_table(wf / "shared" / "cache.parquet").to_pylist()
    assert len(shared) == len(answered) and all(redact.MASK in r["text"] for r in shared)
    assert list((wf / ".snakemake" / "log").glob("*.snakemake.log"))
    assert list(Path(wf, cfg["llm"]["cache"]).parent.glob("*.sqlite*"))
    assert _leaks(wf) == []
