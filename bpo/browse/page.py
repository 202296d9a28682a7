"""``browse.html``: one self-contained page (data, script and style inline; no server, no
network) to read the evaluation's cases row by row.

The data travel as gzip + base64 JSON and are decompressed by the browser
(``DecompressionStream``): at paper scale (about 9,000 rows) the text is tens of MB raw but a
few MB compressed. Every string sits once in a string table that rows index into, since
original questions and answers repeat across optimizers and targets.
"""

from __future__ import annotations

import base64
import gzip
import html
import json
import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import fields
from importlib import resources

from bpo.atomic import write_text
from bpo.browse.data import Row, load_rows, load_turn_rows, load_winrates, with_comparison

log = logging.getLogger(__name__)

# Row fields in the page, in this order; text fields are indices into the string table (-1: null).
INT_FIELDS = ("len_original", "len_optimized")
FIELDS = tuple(f.name for f in fields(Row)) + INT_FIELDS


def asset(name: str) -> str:
    """A file shipped beside this module (the page's script and stylesheet)."""
    return resources.files("bpo.browse").joinpath(name).read_text(encoding="utf-8")


def encode(rows: Sequence[Row], winrates: Sequence[dict]) -> dict:
    """The page's data: a string table, rows as index arrays, the report's win-rate rows."""
    strings: list[str] = []
    index: dict[str, int] = {}

    def ref(s: str | None) -> int:
        if s is None:
            return -1
        i = index.get(s)
        if i is None:
            i = index[s] = len(strings)
            strings.append(s)
        return i

    text_fields = [f.name for f in fields(Row)]
    packed = []
    for r in rows:
        rec = [ref(getattr(r, f)) for f in text_fields]
        rec += [-1 if (v := getattr(r, f)) is None else v for f in INT_FIELDS]
        packed.append(rec)
    clean = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in w.items()} for w in winrates]
    return {"version": 1, "fields": list(FIELDS), "strings": strings, "rows": packed, "winrates": clean}


def render(data: dict, title: str) -> str:
    raw = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    # level 6: level 9 takes 3x the time for 4% fewer bytes
    blob = base64.b64encode(gzip.compress(raw, compresslevel=6, mtime=0)).decode("ascii")
    t = html.escape(title)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{t}</title>
<style>{asset("browse.css")}</style></head>
<body data-state="loading">
<header class="top"><h1>{t}</h1>
<div class="filters">
<select id="f-testset" aria-label="test set"></select><select id="f-optimizer" aria-label="optimizer"></select>
<select id="f-target" aria-label="target"></select><select id="f-outcome" aria-label="outcome"></select>
<select id="f-category" aria-label="category"></select><select id="f-language" aria-label="language"></select>
<select id="f-turn" aria-label="turn"></select>
<select id="f-fallback_reason" aria-label="fallback reason"></select>
<input id="search" type="search" placeholder="search questions, answers, verdicts, item ids" aria-label="search">
<button id="reset" type="button">reset</button></div>
<div id="summary" aria-live="polite">loading…</div></header>
<main><div class="pager"><button id="prev" type="button">‹ prev</button><span id="pageinfo"></span>
<button id="next" type="button">next ›</button></div>
<div id="rows"></div></main>
<script id="bpo-data" type="application/octet-stream">{blob}</script>
<script>{asset("browse.js")}</script>
</body></html>
"""


def write_browse(
    rows: Sequence[Row], winrates: Sequence[dict], out_html: str | os.PathLike, title: str = "BPO results browser"
) -> int:
    """Write the page; returns its size in bytes."""
    page = render(encode(rows, winrates), title)
    write_text(page, out_html)
    size = len(page.encode())
    log.info("browse: %d rows, %d bytes -> %s", len(rows), size, out_html)
    return size


def build_browse(
    optimized: Iterable[str | os.PathLike],
    answers: Iterable[str | os.PathLike],
    judgments: Iterable[str | os.PathLike],
    winrates: Iterable[str | os.PathLike],
    out_html: str | os.PathLike,
    title: str = "BPO results browser",
    *,
    conversations: Iterable[str | os.PathLike] = (),
    turn_judgments: Iterable[str | os.PathLike] = (),
) -> int:
    """Join the evaluation's Parquet artifacts (:func:`bpo.browse.data.load_rows`; multi-turn test
    sets: :func:`bpo.browse.data.load_turn_rows`, both conversations side by side) and write
    ``out_html``; returns its size in bytes."""
    rates = load_winrates(winrates)
    rows = load_rows(optimized, answers, judgments) + load_turn_rows(conversations, turn_judgments)
    return write_browse(with_comparison(rows, rates), rates, out_html, title)
