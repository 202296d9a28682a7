"""What the LLM calls cost: calls, tokens and estimated USD per stage, model and answer source,
read from the cache (every answered call is there, with its token usage)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

import yaml

from bpo.llm.cache import Cache
from bpo.llm.local import is_local_source
from bpo.llm.request import cost_usd, price_for
from bpo.vocab import STANDIN_BACKEND


def usage_report(cache_path: str | Path, prices: Mapping | None = None) -> list[dict]:
    """One row per (stage, model, backend): calls, status counts, failed (never answered) keys,
    tokens and ``usd`` (None when the model has no price; 0 for the stand-in and local models)."""
    with Cache(cache_path) as cache:
        rows = cache.usage()
    for r in rows:
        if r["backend"] == STANDIN_BACKEND or is_local_source(r["backend"]):
            r["usd"] = 0.0
        else:
            r["usd"] = cost_usd(price_for(prices, r["model"]), r["prompt_tokens"], r["completion_tokens"])
    return rows


def format_report(rows: list[dict]) -> str:
    if not rows:
        return "no LLM calls in the cache"
    head = [
        "stage",
        "model",
        "backend",
        "calls",
        "ok",
        "truncated",
        "refused",
        "failed",
        "prompt_tok",
        "completion_tok",
        "usd",
    ]
    table = [head]
    for r in rows:
        usd = "n/a (no price)" if r["usd"] is None else f"{r['usd']:.4f}"
        if r["backend"] == STANDIN_BACKEND:
            usd += " (stand-in)"
        elif is_local_source(r["backend"]):
            usd += " (local)"
        table.append(
            [
                r["stage"],
                r["model"],
                r["backend"],
                r["calls"],
                r["ok"],
                r["truncated"],
                r["refused"],
                r["failed"],
                r["prompt_tokens"],
                r["completion_tokens"],
                usd,
            ]
        )
    billable = [r for r in rows if r["backend"] != STANDIN_BACKEND]
    total_usd = sum(r["usd"] or 0.0 for r in billable)
    unpriced = sorted({r["model"] for r in billable if r["usd"] is None})
    table.append(
        [
            "TOTAL",
            "",
            "",
            sum(r["calls"] for r in rows),
            sum(r["ok"] for r in rows),
            sum(r["truncated"] for r in rows),
            sum(r["refused"] for r in rows),
            sum(r["failed"] for r in rows),
            sum(r["prompt_tokens"] for r in rows),
            sum(r["completion_tokens"] for r in rows),
            f"{total_usd:.4f}",
        ]
    )
    widths = [max(len(str(row[i])) for row in table) for i in range(len(head))]
    lines = [
        "  ".join(str(c).ljust(w) if i < 3 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
        for row in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.insert(-1, "  ".join("-" * w for w in widths))
    note = [
        "",
        "usd: estimated from llm.prices (USD per million tokens); the stand-in is free and not a real model; "
        "local models (backend local:<hash>) are free.",
    ]
    if unpriced:
        note.append(f"no price in llm.prices for: {', '.join(unpriced)} (not in the total)")
    return "\n".join(lines + note)


def _prices_from_config(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        return {}
    cfg = yaml.safe_load(path.read_text()) or {}
    return dict(((cfg.get("llm") or {}).get("prices")) or {})


def cli_usage(args) -> int:
    """``bpo usage [--cache PATH] [--config CONFIG]``: print the usage table."""
    cache = Path(args.cache)
    if not cache.exists():
        print(f"bpo usage: no LLM cache at {cache} (pass --cache with llm.cache of your config)", file=sys.stderr)
        return 1
    if not Path(args.config).exists():
        print(f"bpo usage: config {args.config} not found; costs shown without prices", file=sys.stderr)
    prices = _prices_from_config(args.config)
    print(format_report(usage_report(cache, prices)))
    return 0
