"""Secret redaction for every string that can leave the process: logs, stderr, error messages,
every text column of the LLM cache (``calls`` and ``failures``) and its Parquet export, every
reply the LLM client returns (so every artifact column built from model text), reports.

Two kinds of secret are masked:

* the values of known environment variables: each endpoint's ``api_key_env`` and every ``${VAR}``
  of its ``default_headers`` (registered by the LLM client, or for a whole config by
  :func:`register_config`), plus variables whose name says they hold a secret (``*_API_KEY``,
  ``*_TOKEN``, ``*_SECRET``, ...), whatever the value looks like. Values are read from the
  environment, so a key exported later is still masked.
* strings shaped like a credential (``sk-...``, ``Bearer ...``, ``hf_...``, GitHub and AWS keys),
  for servers that echo a key we never configured.

:func:`redact` runs on every stored reply and every log write, so it is cheap: the secret values
are recomputed only when the registrations or the environment change (a C-level comparison of
the environment's keys and of the watched values per call), each value is looked for with
``str.__contains__``, and the shape regex only stops at characters rare in prose
(``benchmarks/bench_redact.py``).

No heavy imports: the logging setup of every workflow script imports this before anything else.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Mapping
from typing import Any

MASK = "[REDACTED]"
# Shorter values are not masked: replacing "1" or "dev" everywhere would garble logs, not hide a key.
MIN_SECRET_LEN = 8

# Variable names that hold secrets by convention (checked even when no config names them).
_SECRET_NAME = re.compile(r"(?i)(?:^|_)(?:API_?KEY|KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?)$")
_WELL_KNOWN = (
    "OPENAI_API_KEY",
    "AZURE_OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "WANDB_API_KEY",
)

# Credential shapes. Each branch starts at a character that is rare in prose ("-", "_", "B",
# "A") and checks the key's prefix and a word boundary before it with a lookbehind: the regex
# then only stops at those characters (1.5x faster than a \b-led alternation, which stops at
# every "s", "h", "g"...), and text without any of them skips it (four memchr calls). A match
# is widened back over its prefix ("sk", "ghp", ...) when masked. Boundaries keep ordinary words
# ("task-force", "ask-...") and hex cache keys intact. An Authorization value needs a digit or
# 24+ characters, so that model text such as "Basic arithmetic" or "Bearer authentication"
# stays as written (a configured key is masked by its value whatever its shape).
_AUTH_TOKEN = r"\s+(?=[A-Za-z._~+/\-]*[0-9]|[A-Za-z0-9._~+/\-]{24})[A-Za-z0-9._~+/\-]{8,}=*"
_SHAPES = re.compile(
    "|".join(
        (
            r"-(?<=\bsk-)[A-Za-z0-9_\-]{8,}",  # OpenAI / Anthropic / many proxies
            rf"B(?<!\wB)(?:earer|asic){_AUTH_TOKEN}",  # an Authorization header value
            r"_(?<=\bhf_)[A-Za-z0-9]{8,}",  # Hugging Face
            r"_(?<=\bgh[pousr]_)[A-Za-z0-9]{20,}",  # GitHub
            r"_(?<=\bgithub_pat_)[A-Za-z0-9_]{20,}",
            r"A(?<!\wA)(?:KIA[0-9A-Z]{16}\b|Iza[0-9A-Za-z_\-]{30,})",  # AWS access key id, Google API key
            r"-(?<=\bxox[abprs]-)[A-Za-z0-9\-]{10,}",  # Slack
        )
    )
)
_WORD_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")

_lock = threading.Lock()
_env_names: set[str] = set(_WELL_KNOWN)
_values: set[str] = set()
_version = 0  # bumped by every registration: the next redact() recomputes the secret values
# (registration version, environment keys, watched variable names, their raw values, secret
# values longest first, the environment mapping read): replaced whole, so readers never see a
# half-built state
_state: tuple | None = None


def register_env(*names: str | None) -> None:
    """Mask the value of each environment variable ``name`` (read at redaction time)."""
    global _version
    with _lock:
        new = {n for n in names if n} - _env_names
        if new:
            _env_names.update(new)
            _version += 1


def register_value(*values: str | None) -> None:
    """Mask these literal strings (e.g. a key that did not come from the environment)."""
    global _version
    with _lock:
        new = {v for v in values if v and len(v) >= MIN_SECRET_LEN} - _values
        if new:
            _values.update(new)
            _version += 1


def header_env_names(headers: Mapping[str, Any] | None) -> list[str]:
    """The ``VAR`` of every ``${VAR}`` header value."""
    out = []
    for v in (headers or {}).values():
        v = str(v)
        if v.startswith("${") and v.endswith("}"):
            out.append(v[2:-1])
    return out


def register_endpoint(endpoint: Mapping[str, Any]) -> None:
    """Mask the secrets of one ``llm.endpoints.<name>`` entry (its key and ${VAR} headers)."""
    if not isinstance(endpoint, Mapping):
        return
    register_env(endpoint.get("api_key_env", "OPENAI_API_KEY"), *header_env_names(endpoint.get("default_headers")))


def register_config(config: Mapping[str, Any] | None) -> None:
    """Mask the secrets of every endpoint under ``llm.endpoints`` of a workflow config."""
    endpoints = ((config or {}).get("llm") or {}).get("endpoints") or {}
    if isinstance(endpoints, Mapping):
        for ep in endpoints.values():
            register_endpoint(ep)


def secrets() -> list[str]:
    """Every secret value to mask now, longest first (so a key containing another is masked whole)."""
    return list(_current()[4])


def _current() -> tuple:
    """The current state, recomputed only when a registration or the environment changed."""
    state = _state
    # os.environ's backing dict (bytes on POSIX): its keys and values compare in C, no decoding
    env = getattr(os.environ, "_data", os.environ)
    if (
        state is not None
        and state[0] == _version
        and state[5] is env
        and env.keys() == state[1]
        and list(map(env.get, state[2])) == state[3]
    ):
        return state
    return _rebuild(env)


def _rebuild(env) -> tuple:
    global _state
    environ = os.environ
    with _lock:
        version = _version
        names = set(_env_names)
        found = set(_values)
    watched = []
    for name in environ:
        if name in names or _SECRET_NAME.search(name):
            watched.append(name)
            value = environ[name].strip()
            if len(value) >= MIN_SECRET_LEN:
                found.add(value)
    raw = [environ.encodekey(n) for n in watched] if env is not environ else watched
    values = tuple(sorted(found, key=len, reverse=True))
    _state = (version, frozenset(env.keys()), raw, list(map(env.get, raw)), values, env)
    return _state


def redact(text: Any) -> Any:
    """``text`` with every secret replaced by ``[REDACTED]`` (non-strings are returned as they are)."""
    if not isinstance(text, str) or not text:
        return text
    # values first, longest first: a key that contains another (or a shape) is masked whole.
    # str.__contains__ skips ahead by the needle's length: ~1 us per 40-char key and 2 KB.
    for value in _current()[4]:
        if value in text:
            text = text.replace(value, MASK)
    if "-" in text or "_" in text or "B" in text or "A" in text:
        return _mask_shapes(text)
    return text


def _mask_shapes(text: str) -> str:
    out: list[str] = []
    pos = 0
    for m in _SHAPES.finditer(text):
        start = m.start()
        while start > pos and text[start - 1] in _WORD_CHARS:  # the prefix the lookbehind checked
            start -= 1
        out += (text[pos:start], MASK)
        pos = m.end()
    if not out:
        return text
    out.append(text[pos:])
    return "".join(out)


class RedactingFormatter(logging.Formatter):
    """A formatter whose output (message, arguments and traceback alike) is redacted."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class RedactingStream:
    """A text stream wrapper that redacts each write (for sys.stderr / sys.stdout: progress bars,
    prints and the traceback of an uncaught exception, which Snakemake copies into its log)."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, s: str) -> int:
        self._stream.write(redact(s))
        return len(s)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    def __getattr__(self, name):
        return getattr(self._stream, name)
