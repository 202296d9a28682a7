"""The cache: sharing through Parquet, the usage report, and the `bpo cache` / `bpo usage` commands."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
import yaml

from bpo.cli import main as bpo_main
from bpo.llm import ChatRequest, LLMError, client_from_mapping
from bpo.llm.cache import CACHE_EXPORT_SCHEMA, Cache
from bpo.llm.usage import usage_report


def reqs(n, model="gpt-3.5-turbo", tag="q"):
    return [
        ChatRequest(model=model, messages=[{"role": "user", "content": f"{tag} {i}"}], temperature=0.9)
        for i in range(n)
    ]


def fill(path, stage, model, n, tag="q"):
    # the stand-in is a real answer source for the cache's purposes (rows labelled standin)
    return client_from_mapping({"backend": "standin"}, path, stage, progress=False).run(reqs(n, model, tag))


def test_export_import_roundtrip_and_replay_from_the_import(tmp_path):
    a = tmp_path / "a.sqlite"
    out = fill(a, "critique", "gpt-3.5-turbo", 5)
    with Cache(a) as cache:
        assert cache.export_parquet(tmp_path / "share.parquet") == 5
    table = pq.read_table(tmp_path / "share.parquet")
    assert table.schema.equals(CACHE_EXPORT_SCHEMA, check_metadata=False)
    assert set(table.column("stage").to_pylist()) == {"critique"}
    b = tmp_path / "b.sqlite"
    with Cache(b) as cache:
        assert cache.import_parquet(tmp_path / "share.parquet") == (5, 0)
        assert cache.import_parquet(tmp_path / "share.parquet") == (0, 5)
    again = client_from_mapping({"backend": "standin"}, b, "critique", progress=False).run(reqs(5))
    assert all(r.cached for r in again)
    assert [r.text for r in again] == [r.text for r in out]


def test_import_rejects_what_is_not_a_cache_export(tmp_path):
    import pyarrow as pa

    pq.write_table(pa.table({"key": ["x"], "text": ["y"]}), tmp_path / "other.parquet")
    with Cache(tmp_path / "c.sqlite") as cache, pytest.raises(LLMError, match="missing columns"):
        cache.import_parquet(tmp_path / "other.parquet")
    (tmp_path / "junk.parquet").write_text("not parquet")
    with Cache(tmp_path / "c.sqlite") as cache, pytest.raises(LLMError, match="cannot read"):
        cache.import_parquet(tmp_path / "junk.parquet")
    fill(tmp_path / "d.sqlite", "s", "m", 1)
    with Cache(tmp_path / "d.sqlite") as cache:
        cache.export_parquet(tmp_path / "bad.parquet")
    t = pq.read_table(tmp_path / "bad.parquet").to_pylist()
    t[0]["backend"] = "gpt"
    pq.write_table(pa.Table.from_pylist(t, schema=CACHE_EXPORT_SCHEMA), tmp_path / "bad.parquet")
    with Cache(tmp_path / "c.sqlite") as cache:
        with pytest.raises(LLMError, match="row 0.*backend 'gpt'"):
            cache.import_parquet(tmp_path / "bad.parquet")
        assert cache.count() == 0  # checked before anything is written


def test_cli_cache_export_import(tmp_path, capsys):
    fill(tmp_path / "a.sqlite", "judge", "gpt-4", 3)
    assert bpo_main(["cache", "export", str(tmp_path / "x.parquet"), "--cache", str(tmp_path / "a.sqlite")]) == 0
    assert "exported 3" in capsys.readouterr().out
    assert bpo_main(["cache", "import", str(tmp_path / "x.parquet"), "--cache", str(tmp_path / "n.sqlite")]) == 0
    assert "imported 3" in capsys.readouterr().out
    assert bpo_main(["cache", "export", str(tmp_path / "y.parquet"), "--cache", str(tmp_path / "none.sqlite")]) == 1
    assert "no cache" in capsys.readouterr().err
    (tmp_path / "bad.parquet").write_text("nope")
    assert bpo_main(["cache", "import", str(tmp_path / "bad.parquet"), "--cache", str(tmp_path / "n.sqlite")]) == 1


def test_usage_report_per_stage_and_model(tmp_path, capsys):
    path = tmp_path / "c.sqlite"
    crit = fill(path, "critique", "gpt-3.5-turbo", 4)
    fill(path, "judge", "gpt-4", 2, tag="j")
    # the same calls as if a real endpoint had answered them (prices apply to those)
    with Cache(path) as cache:
        rows = list(cache.rows())
        for r in rows:
            r["backend"] = "openai"
        cache.put_many(rows)
    prices = {"gpt-3.5-turbo": {"input": 1.0, "output": 2.0}}
    report = {(r["stage"], r["model"], r["backend"]): r for r in usage_report(path, prices)}
    c = report[("critique", "gpt-3.5-turbo", "openai")]
    assert c["calls"] == 4 and c["ok"] == 4
    assert c["prompt_tokens"] == sum(r.prompt_tokens for r in crit)
    assert c["usd"] == pytest.approx((c["prompt_tokens"] * 1.0 + c["completion_tokens"] * 2.0) / 1e6)
    assert report[("judge", "gpt-4", "openai")]["usd"] is None  # no price
    assert report[("critique", "gpt-3.5-turbo", "standin")]["usd"] == 0.0
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({"llm": {"prices": prices}}))
    assert bpo_main(["usage", "--cache", str(path), "--config", str(cfg)]) == 0
    text = capsys.readouterr().out
    assert "critique" in text and "judge" in text and "gpt-4" in text
    assert f"{c['usd']:.4f}" in text and "no price in llm.prices for: gpt-4" in text and "(stand-in)" in text
    assert bpo_main(["usage", "--cache", str(tmp_path / "missing.sqlite")]) == 1


def test_unopenable_cache_names_the_config_key(tmp_path):
    bad = tmp_path / "not-a-db.sqlite"
    bad.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(LLMError, match="llm.cache"):
        Cache(bad)


def test_claims_are_exclusive_released_with_the_answer_and_taken_over_from_the_dead(tmp_path):
    import subprocess
    import sys

    from bpo.llm.cache import new_owner, owner_alive, result_row, retire_owner

    rs = reqs(5)
    k = [r.key for r in rs]
    me, other = new_owner(), new_owner()
    with Cache(tmp_path / "c.sqlite") as cache:
        assert cache.claim(k[:3], "openai", me) == (k[:3], {}, [])
        # a live owner's claims are held; the stand-in's rows are a separate source
        assert cache.claim(k, "openai", other) == (k[3:], {}, k[:3])
        assert cache.claim(k[:1], "standin", other)[0] == k[:1]
        # an answer releases its claim and is handed to the next claimant; a failure only releases it
        row = result_row(
            key=k[0],
            backend="openai",
            stage="s",
            model="gpt-3.5-turbo",
            request=rs[0].body_json,
            status="ok",
            text="answer",
            choices=None,
            finish_reason="stop",
            prompt_tokens=1,
            completion_tokens=1,
            error=None,
            response_model="m",
            latency_s=0.1,
            attempts=1,
        )
        fail = {
            "key": k[1],
            "backend": "openai",
            "stage": "s",
            "model": "gpt-3.5-turbo",
            "error": "HTTP 500",
            "attempts": 3,
        }
        cache.store([row], [fail], me)
        claimed, answered, held = cache.claim(k[:3], "openai", other)
        assert (claimed, list(answered), held) == ([k[1]], [k[0]], [k[2]])
        assert answered[k[0]]["text"] == "answer"
        # a finished run of this process, a dead process, another host's expired lease: taken over
        retire_owner(me)
        assert not owner_alive(me)
        assert cache.claim(k[2:3], "openai", other)[0] == k[2:3]
        dead = subprocess.run(
            [sys.executable, "-c", "from bpo.llm.cache import new_owner; print(new_owner())"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert not owner_alive(dead)
        assert owner_alive("elsewhere|1|1|x") and owner_alive(other)
        cache.release_claims(other)
        assert cache.claim(k[:1], "openai", dead)[0] == []  # answered: never claimed again
        assert cache.claim(k[3:], "openai", dead)[0] == k[3:]
        assert cache.claim(k[3:], "openai", other)[0] == k[3:]
        cache.claim(k[4:], "openai", "elsewhere|1|1|x", lease_s=-1)
        assert cache.claim(k[4:], "openai", other)[0] == k[4:]
        retire_owner(other)


def _plain_secret() -> str:
    import secrets
    import string

    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(40))  # no key shape


def test_cli_cache_export_config_masks_keys_of_an_old_cache(tmp_path):
    """`bpo cache export --config`: keys without a shape, held in a custom api_key_env or a
    ${VAR} header of the config, are masked in rows an older cache stored verbatim; without
    --config they are not (nothing says they are keys). Import follows the same rule; --cache
    defaults to the config's llm.cache; a bad or missing config is one line, exit 1."""
    import json
    import os
    import sqlite3
    import subprocess
    import sys

    from conftest import REPO

    from bpo import redact

    key, org = _plain_secret(), _plain_secret()
    env = {**os.environ, "PYTHONPATH": str(REPO), "BPO_ECHO_ACCESS": key, "BPO_ORG_HEADER_VAL": org}
    cfg = {
        "llm": {
            "cache": "c/llm.sqlite",
            "endpoints": {
                "mine": {
                    "backend": "openai",
                    "base_url": "http://127.0.0.1:9/v1",
                    "api_key_env": "BPO_ECHO_ACCESS",
                    "default_headers": {"X-Org": "${BPO_ORG_HEADER_VAL}"},
                }
            },
        }
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    fill(tmp_path / "c" / "llm.sqlite", "critique", "gpt-test", 3)
    with sqlite3.connect(tmp_path / "c" / "llm.sqlite") as db:  # what a cache from before redaction held
        db.execute("UPDATE calls SET text = text || ?, response_model = ?", (f" {key}", f"m {org}"))

    def bpo(*args):
        return subprocess.run(
            [sys.executable, "-m", "bpo.cli", "cache", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def values(path):
        return json.dumps(pq.read_table(tmp_path / path).to_pylist())

    plain = bpo("export", "plain.parquet", "--cache", "c/llm.sqlite")
    assert plain.returncode == 0, plain.stderr
    assert key in values("plain.parquet") and org in values("plain.parquet")  # the gap --config closes
    masked = bpo("export", "masked.parquet", "--config", "config.yaml")  # --cache from llm.cache
    assert masked.returncode == 0, masked.stderr
    assert "exported 3 cached calls from c/llm.sqlite" in masked.stdout
    text = values("masked.parquet")
    assert key not in text and org not in text and text.count(redact.MASK) == 6
    rows = pq.read_table(tmp_path / "plain.parquet")  # a shared file that holds the keys
    pq.write_table(rows, tmp_path / "incoming.parquet")
    imported = bpo("import", "incoming.parquet", "--config", "config.yaml", "--cache", "fresh.sqlite")
    assert imported.returncode == 0 and "imported 3 calls" in imported.stdout, imported.stderr
    with sqlite3.connect(tmp_path / "fresh.sqlite") as db:
        stored = json.dumps(db.execute("SELECT text, response_model FROM calls").fetchall())
    assert key not in stored and org not in stored and stored.count(redact.MASK) == 6
    # the neighbours: a config the schema refuses, a config that is not there
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"llm": {"cache": 3}}))
    for name in ("bad.yaml", "missing.yaml"):
        proc = bpo("export", "x.parquet", "--config", name)
        assert proc.returncode == 1 and not (tmp_path / "x.parquet").exists()
        assert proc.stderr.startswith(f"bpo cache: --config {name}: "), proc.stderr
        assert len(proc.stderr.splitlines()) == 1, proc.stderr
    for p in (tmp_path / "c").glob("llm.sqlite*"):  # holds the keys on purpose
        p.unlink()
    for p in ("plain.parquet", "incoming.parquet"):
        (tmp_path / p).unlink()
