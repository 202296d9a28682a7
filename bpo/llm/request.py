"""Chat requests, their content key, results, and the token/cost arithmetic of estimates."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bpo.llm.errors import LLMError

# Bump when the key recipe changes: old cache rows then simply stop matching.
KEY_VERSION = "bpo-llm-v1"

# Completion length assumed for estimates when a request sets no max_tokens.
ASSUMED_COMPLETION_TOKENS = 512

# Body fields ChatRequest owns; `extra` may add any other answer-changing field.
_OWN_FIELDS = {"model", "messages", "temperature", "top_p", "max_tokens", "n", "seed", "stop"}
# Never part of a request body we send: streaming is not supported, auth lives in headers.
_FORBIDDEN_EXTRA = {"stream", "stream_options", "api_key", "headers", "extra_headers"}


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True, eq=False)
class ChatRequest:
    """One chat-completions call. ``key`` hashes everything that changes the answer.

    Auth, headers and the endpoint URL are deliberately not part of the request: the same
    question to the same model is the same call whoever pays for it.
    """

    model: str
    messages: Sequence[Mapping[str, Any]]
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    n: int = 1
    seed: int | None = None
    stop: Sequence[str] | str | None = None
    extra: Mapping[str, Any] | None = None
    _body: dict = field(default=None, init=False, repr=False)  # type: ignore[assignment]
    _json: str = field(default=None, init=False, repr=False)  # type: ignore[assignment]
    _key: str = field(default=None, init=False, repr=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise LLMError(f"ChatRequest: model must be a non-empty string, got {self.model!r}")
        if isinstance(self.messages, (str, bytes)) or not self.messages:
            raise LLMError("ChatRequest: messages must be a non-empty list of {role, content} dicts")
        messages = []
        for i, m in enumerate(self.messages):
            if not isinstance(m, Mapping) or "role" not in m or "content" not in m:
                raise LLMError(f"ChatRequest: message {i} must be a dict with 'role' and 'content', got {m!r:.80}")
            if not isinstance(m["role"], str):
                raise LLMError(f"ChatRequest: message {i} role must be a string")
            messages.append(dict(m))
        body: dict[str, Any] = {"model": self.model, "messages": messages}
        # Canonical number types so 1 and 1.0 give the same key.
        if self.temperature is not None:
            body["temperature"] = float(self.temperature)
        if self.top_p is not None:
            body["top_p"] = float(self.top_p)
        if self.max_tokens is not None:
            if int(self.max_tokens) < 1:
                raise LLMError(f"ChatRequest: max_tokens must be >= 1, got {self.max_tokens}")
            body["max_tokens"] = int(self.max_tokens)
        if int(self.n) < 1:
            raise LLMError(f"ChatRequest: n must be >= 1, got {self.n}")
        if int(self.n) != 1:
            body["n"] = int(self.n)
        if self.seed is not None:
            body["seed"] = int(self.seed)
        if self.stop is not None:
            body["stop"] = self.stop if isinstance(self.stop, str) else list(self.stop)
        for k, v in (self.extra or {}).items():
            if k in _OWN_FIELDS:
                raise LLMError(f"ChatRequest: extra[{k!r}] duplicates a ChatRequest field; set it directly")
            if k in _FORBIDDEN_EXTRA:
                raise LLMError(f"ChatRequest: extra[{k!r}] is not supported (no streaming; auth belongs in config)")
            if v is not None:
                body[k] = v
        try:
            canon = _canonical(body)
        except (TypeError, ValueError) as exc:
            raise LLMError(f"ChatRequest: request is not JSON-serialisable: {exc}") from None
        object.__setattr__(self, "_body", body)
        # one serialisation serves the key, the HTTP body and the cache row
        object.__setattr__(self, "_json", canon)
        object.__setattr__(self, "_key", hashlib.sha256(f"{KEY_VERSION}\n{canon}".encode()).hexdigest())

    @property
    def key(self) -> str:
        """sha256 hex of the request content (model, messages, sampling, n, extra)."""
        return self._key

    @property
    def body(self) -> dict:
        """The JSON body sent to ``/chat/completions`` (do not mutate)."""
        return self._body

    @property
    def body_json(self) -> str:
        """``body`` as canonical JSON (sorted keys): what is hashed, sent and cached."""
        return self._json

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ChatRequest) and other._key == self._key

    def __hash__(self) -> int:
        return hash(self._key)

    def prompt_text(self) -> str:
        parts = []
        for m in self._body["messages"]:
            c = m.get("content")
            if isinstance(c, str):
                parts.append(c)
            elif isinstance(c, list):
                parts.extend(p.get("text", "") for p in c if isinstance(p, Mapping))
        return "\n".join(parts)

    def estimated_prompt_tokens(self) -> int:
        # ~4 tokens of chat framing per message, as OpenAI's counting guide describes
        return count_tokens(self.prompt_text()) + 4 * len(self._body["messages"]) + 3

    def estimated_completion_tokens(self) -> int:
        """Upper bound when max_tokens is set, else ASSUMED_COMPLETION_TOKENS (per choice)."""
        per = self._body.get("max_tokens", ASSUMED_COMPLETION_TOKENS)
        return per * self._body.get("n", 1)


@dataclass(slots=True)
class ChatResult:
    """The answer to one ChatRequest (same order as the requests passed to ``run``)."""

    key: str
    status: str  # one of bpo.vocab.CALL_STATUSES: ok | truncated | refused | error
    text: str | None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached: bool = False
    error: str | None = None
    backend: str = "openai"  # openai | replay | standin | local
    model: str | None = None  # the model that answered, as the server reported it
    finish_reason: str | None = None
    choices: tuple = ()  # all choice texts when n > 1 (choices[0] == text)


# ---- tokens and prices ------------------------------------------------------------------

_ENCODER: Any = None


def _encoder():
    """tiktoken's cl100k_base when tiktoken is installed and its data loads; else False."""
    global _ENCODER
    if _ENCODER is None:
        try:  # optional: never a dependency, and its data download may be unreachable
            import tiktoken

            _ENCODER = tiktoken.get_encoding("cl100k_base")
        except Exception:  # noqa: BLE001
            _ENCODER = False
    return _ENCODER


def count_tokens(text: str) -> int:
    """Token count for estimates: tiktoken when available, else ~4 characters a token."""
    enc = _encoder()
    if enc:
        return len(enc.encode(text, disallowed_special=()))
    return (len(text) + 3) // 4


def price_for(prices: Mapping[str, Mapping[str, float]] | None, model: str) -> Mapping[str, float] | None:
    """USD per million tokens {input, output} for ``model`` (exact name), or None."""
    if not prices:
        return None
    return prices.get(model)


def cost_usd(
    price: Mapping[str, float] | None, prompt_tokens: int | None, completion_tokens: int | None
) -> float | None:
    if price is None:
        return None
    return ((prompt_tokens or 0) * float(price["input"]) + (completion_tokens or 0) * float(price["output"])) / 1e6


def call_request(call: Any, user: str, *, system: str | None = None) -> ChatRequest:
    """The one request builder of every stage: ``user`` as the user message, after ``system`` or
    else ``call.system_prompt`` when either is set, with the sampling of ``call`` (a
    :class:`bpo.settings.LLMCall`). Fields that are None stay out of the body, so the key of a
    request is what it was when the stage built it by hand."""
    system = system or call.system_prompt
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    return ChatRequest(
        model=call.model,
        messages=messages,
        temperature=call.temperature,
        top_p=call.top_p,
        max_tokens=call.max_tokens,
        n=1,
        seed=call.seed,
    )
