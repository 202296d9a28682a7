"""The cache: sharing through Parquet, the usage report, and the `bpo cache` / `bpo usage` commands."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
import yaml

from bpo.cli import main as bpo_main
from bpo.llm import ChatRequest, LLMClient, LLMError
from bpo.llm.cache import CACHE_EXPORT_SCHEMA, Cache
from bpo.llm.usage import usage_report


def reqs(n, model="gpt-3.5-turbo", tag="q"):
    return [ChatRequest(model=model, messages=[{"role": "user", "content": f"{tag} {i}"}], temperature=0.9)
            for i in range(n)]


def fill(path, stage, model, n, tag="q"):
    # the stand-in is a real answer source for the cache's purposes (rows labelled standin)
    return LLMClient({"backend": "standin"}, path, stage, progress=False).run(reqs(n, model, tag))


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
    again = LLMClient({"backend": "standin"}, b, "critique", progress=False).run(reqs(5))
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
