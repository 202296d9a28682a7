"""``GET /``: a playground page for the proxy. Type a prompt, see the optimizer's rewrite and,
optionally, the upstream's answers to the original and to the rewrite side by side.

The page is static and holds no secret: it calls ``/v1/rewrite`` and ``/v1/chat/completions``
like any client, with the client key typed into it (kept in the page's memory only). A
Content-Security-Policy pins its inline script and style by hash and allows requests to this
origin only.
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache
from importlib import resources

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route


def _asset(package: str, name: str) -> str:
    return resources.files(package).joinpath(name).read_text(encoding="utf-8")


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@lru_cache(maxsize=1)
def page() -> tuple[str, str]:
    """The page's HTML and its Content-Security-Policy."""
    css = _asset("bpo.browse", "browse.css")
    js = _asset("bpo.serve", "playground.js")
    html = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>BPO playground</title><style>{css}</style></head>
<body data-state="loading"><header class="top"><h1>BPO playground</h1>
<div class="filters">Type a prompt: the proxy's optimizer rewrites it; optionally the upstream answers both.</div>
</header>
<main class="play"><form id="form" autocomplete="off">
<textarea id="prompt" aria-label="prompt" placeholder="e.g. tell me about tides" required></textarea>
<div class="controls">
<label>client key <input id="key" type="password" autocomplete="off"
  placeholder="only if the proxy has client keys"></label>
<label><input id="answers" type="checkbox"> also ask the upstream</label>
<label>model <input id="model" type="text" placeholder="upstream model name"></label>
<button id="go" type="submit">rewrite</button></div></form>
<div id="error" role="alert"></div>
<div class="box"><h4>rewrite · <span id="status"></span></h4><p class="q" id="rewrite"></p></div>
<div class="box pair" id="answers-box" hidden>
<div><h4>answer to the original</h4><p class="a" id="answer-original"></p></div>
<div><h4>answer to the rewrite</h4><p class="a" id="answer-rewrite"></p></div></div>
</main><script>{js}</script></body></html>
"""
    csp = (
        f"default-src 'none'; script-src {_sha256(js)}; style-src {_sha256(css)}; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return html, csp


async def playground(request: Request) -> HTMLResponse:
    html, csp = page()
    return HTMLResponse(
        html,
        headers={
            "content-security-policy": csp,
            "x-content-type-options": "nosniff",
            "referrer-policy": "no-referrer",
            "cache-control": "no-store",
        },
    )


def playground_routes() -> list[Route]:
    return [Route("/", playground, methods=["GET"])]
