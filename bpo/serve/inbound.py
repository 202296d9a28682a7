"""What clients send: the proxy's client keys, its OpenAI-style errors and the prompt to rewrite.

Request checks that need no server state: which keys the clients use (and setups refused
because they would expose the server or the upstream key), the error reply type, where the last
user message's text sits and how a client opts out of rewriting.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bpo.redact import redact, register_env, register_value
from bpo.settings.serve import ServeSettings

OPT_OUT_HEADER = "x-bpo-rewrite"


class ApiError(Exception):
    """An OpenAI-style error reply of the proxy's own."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        code: str | None = None,
        headers: dict | None = None,
        param: str | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.headers = status, message, type_, code, headers
        self.param = param

    def response(self) -> JSONResponse:
        body = {"error": {"message": redact(self.message), "type": self.type, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


class ClientGone(Exception):
    """The client closed its connection before its request body was complete."""


def client_keys(settings: ServeSettings, environ=os.environ) -> list[str]:
    """The clients' keys; refuses setups that would expose the server or the upstream key."""
    keys: list[str] = []
    if settings.api_keys_env:
        raw = environ.get(settings.api_keys_env, "")
        keys = [k.strip() for k in raw.split(",") if k.strip()]
        if not keys:
            raise ValueError(f"api_keys_env: environment variable {settings.api_keys_env} is empty or not set")
    elif settings.host not in ("127.0.0.1", "::1", "localhost"):
        raise ValueError(
            f"host {settings.host}: a server reachable from other machines needs client keys (--api-keys-env NAME)"
        )
    upstream_key = upstream_api_key(settings, environ)
    if upstream_key and upstream_key in keys:
        raise ValueError("a client key equals the upstream key: give clients keys of their own")
    return keys


def upstream_api_key(settings: ServeSettings, environ=os.environ) -> str | None:
    name = settings.upstream.api_key_env
    if not name:
        return None
    key = environ.get(name)
    if not key:
        raise ValueError(f"upstream.api_key_env: environment variable {name} is not set")
    return key


def register_secrets(settings: ServeSettings, environ) -> None:
    """Mask the upstream's and the remote rewriter's keys in everything returned or logged: by
    variable name (read from os.environ when redacting) and by value (``environ`` may be a
    mapping of its own, e.g. in tests)."""
    names = [settings.upstream.api_key_env, settings.rewriter.remote_api_key_env]
    register_env(*names)
    register_value(*(environ.get(n) for n in names if n))


@dataclass
class Located:
    """Where the text to rewrite sits: messages[index], its whole content or content[part]."""

    index: int
    part: int | None
    text: str


def locate_prompt(messages: Any) -> Located | None:
    """The last user message's text, or None when there is none to rewrite."""
    if not isinstance(messages, list):
        return None
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if not isinstance(m, dict) or m.get("role") != "user":
            continue
        content = m.get("content")
        if isinstance(content, str):
            return Located(i, None, content) if content.strip() else None
        if isinstance(content, list):
            for j, part in enumerate(content):
                if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                    return Located(i, j, part["text"]) if part["text"].strip() else None
        return None
    return None


def replace_prompt(messages: list, where: Located, text: str) -> list:
    """A copy of ``messages`` with the located text replaced (nothing else changes)."""
    out = list(messages)
    msg = dict(out[where.index])
    if where.part is None:
        msg["content"] = text
    else:
        parts = list(msg["content"])
        parts[where.part] = {**parts[where.part], "text": text}
        msg["content"] = parts
    out[where.index] = msg
    return out


def opted_out(request: Request, bpo_field: Any) -> bool:
    """Whether the client asked for no rewrite (the header, or ``"bpo": {"rewrite": false}``)."""
    if request.headers.get(OPT_OUT_HEADER, "").strip().lower() in ("off", "0", "false", "no"):
        return True
    return isinstance(bpo_field, dict) and bpo_field.get("rewrite") is False


# ---- handler plumbing: every route's reply counted, errors in OpenAI's shape ----------------
def endpoint(name: str):
    """Count every reply by endpoint and status; ApiError -> its OpenAI-style reply."""

    def wrap(fn):
        async def handler(request: Request) -> Response:
            state = request.app.state.serve
            try:
                resp = await fn(state, request)
            except ApiError as exc:
                resp = exc.response()
            except ClientGone:  # nobody to answer: one line, no traceback
                logging.getLogger("bpo.serve.app").info(
                    "%s: the client closed its connection before its request body was complete", name
                )
                resp = Response(status_code=499)
            state.metrics.requests.labels(name, str(resp.status_code)).inc()
            return resp

        handler.__name__ = fn.__name__
        return handler

    return wrap


async def http_error(request: Request, exc: HTTPException) -> Response:
    """Unknown paths and methods get OpenAI-style errors too."""
    return ApiError(
        exc.status_code, str(exc.detail), code="not_found" if exc.status_code == 404 else None, headers=exc.headers
    ).response()
