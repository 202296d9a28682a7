"""Secret redaction for every string that can leave the process (logs, stderr, error messages,
the cache's ``failures`` table, reports).

Two kinds of secret are masked:

* the values of known environment variables: each endpoint's ``api_key_env`` and every ``${VAR}``
  of its ``default_headers`` (registered by the LLM client, or for a whole config by
  :func:`register_config`), plus variables whose name says they hold a secret (``*_API_KEY``,
  ``*_TOKEN``, ``*_SECRET``, ...). Values are read from the environment when a string is
  redacted, so a key exported later is still masked.
* strings shaped like a credential (``sk-...``, ``Bearer ...``, ``hf_...``, GitHub and AWS keys),
  for servers that echo a key we never configured.

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
_WELL_KNOWN = ("OPENAI_API_KEY", "AZURE_OPENAI_API_KEY", "ANTHROPIC_API_KEY", "HF_TOKEN",
               "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY")

# Credential shapes. Word boundaries keep ordinary words ("task-force") and hex cache keys intact.
_SHAPES = re.compile(
    r"\bsk-[A-Za-z0-9_\-]{8,}"  # OpenAI / Anthropic / many proxies
    r"|\b(?:Bearer|Basic)\s+[A-Za-z0-9._~+/\-]{8,}=*"  # an Authorization header value
    r"|\bhf_[A-Za-z0-9]{8,}"  # Hugging Face
    r"|\bgh[pousr]_[A-Za-z0-9]{20,}"  # GitHub
    r"|\bgithub_pat_[A-Za-z0-9_]{20,}"
    r"|\bAKIA[0-9A-Z]{16}\b"  # AWS access key id
    r"|\bAIza[0-9A-Za-z_\-]{30,}"  # Google API key
    r"|\bxox[abprs]-[A-Za-z0-9\-]{10,}"  # Slack
)

_lock = threading.Lock()
_env_names: set[str] = set(_WELL_KNOWN)
_values: set[str] = set()


def register_env(*names: str | None) -> None:
    """Mask the value of each environment variable ``name`` (read at redaction time)."""
    with _lock:
        _env_names.update(n for n in names if n)


def register_value(*values: str | None) -> None:
    """Mask these literal strings (e.g. a key that did not come from the environment)."""
    with _lock:
        _values.update(v for v in values if v and len(v) >= MIN_SECRET_LEN)


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
    with _lock:
        names = set(_env_names)
        found = set(_values)
    for name, value in os.environ.items():
        if name in names or _SECRET_NAME.search(name):
            value = value.strip()
            if len(value) >= MIN_SECRET_LEN:
                found.add(value)
    return sorted(found, key=len, reverse=True)


def redact(text: Any) -> Any:
    """``text`` with every secret replaced by ``[REDACTED]`` (non-strings are returned as they are)."""
    if not isinstance(text, str) or not text:
        return text
    for value in secrets():
        if value in text:
            text = text.replace(value, MASK)
    return _SHAPES.sub(MASK, text)


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
