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
``str.__contains__``, and the shape regex only runs on text that holds one of its prefixes.

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

# Credential shapes, each led by its literal and then checked for a word boundary before it (a
# lookbehind): a regex whose branches all start with literals skips ahead to their first
# characters, where a \b-led alternation tries every branch at every position (3x slower).
# Boundaries keep ordinary words ("task-force", "ask-...") and hex cache keys intact. An
# Authorization value needs a digit or 24+ characters, so that model text such as "Basic
# arithmetic" or "Bearer authentication" stays as written (a configured key is masked by value).
_W = "[A-Za-z0-9_]"
_AUTH_TOKEN = r"\s+(?=[A-Za-z._~+/\-]*[0-9]|[A-Za-z0-9._~+/\-]{24})[A-Za-z0-9._~+/\-]{8,}=*"
_SHAPES = "|".join((
    rf"sk-(?<!{_W}sk-)[A-Za-z0-9_\-]{{8,}}",  # OpenAI / Anthropic / many proxies
    rf"Bearer(?<!{_W}Bearer){_AUTH_TOKEN}",  # an Authorization header value
    rf"Basic(?<!{_W}Basic){_AUTH_TOKEN}",
    rf"hf_(?<!{_W}hf_)[A-Za-z0-9]{{8,}}",  # Hugging Face
    rf"gh[pousr]_(?<!{_W}gh._)[A-Za-z0-9]{{20,}}",  # GitHub
    rf"github_pat_(?<!{_W}github_pat_)[A-Za-z0-9_]{{20,}}",
    rf"AKIA(?<!{_W}AKIA)[0-9A-Z]{{16}}\b",  # AWS access key id
    rf"AIza(?<!{_W}AIza)[0-9A-Za-z_\-]{{30,}}",  # Google API key
    rf"xox[abprs]-(?<!{_W}xox.-)[A-Za-z0-9\-]{{10,}}",  # Slack
))

_lock = threading.Lock()
_env_names: set[str] = set(_WELL_KNOWN)
_values: set[str] = set()
_version = 0  # bumped by every registration: the next redact() recomputes the secret values
# (registration version, environment keys, watched variable names, their raw values, secret
# values longest first, the one pattern of values and shapes): replaced whole, so readers never
# see a half-built state
_state: tuple | None = None
# os.environ's backing dict (bytes on POSIX): its keys and values compare in C, with no decoding
_ENV_DATA = getattr(os.environ, "_data", None)


def register_env(*names: str | None) -> None:
    """Mask the value of each environment variable ``name`` (read at redaction time)."""
    global _version
    with _lock:
        _env_names.update(n for n in names if n)
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
    env = _ENV_DATA if _ENV_DATA is not None else os.environ
    if (state is not None and state[0] == _version and env.keys() == state[1]
            and list(map(env.get, state[2])) == state[3]):
        return state
    return _rebuild(env)


def _rebuild(env) -> tuple:
    global _state
    with _lock:
        version = _version
        names = set(_env_names)
        found = set(_values)
    watched = []
    for name in os.environ:
        if name in names or _SECRET_NAME.search(name):
            watched.append(name)
            value = os.environ[name].strip()
            if len(value) >= MIN_SECRET_LEN:
                found.add(value)
    raw = [os.environ.encodekey(n) for n in watched] if env is _ENV_DATA else watched
    values = tuple(sorted(found, key=len, reverse=True))
    # values first and longest first: a key that contains another (or a shape) is masked whole
    pattern = re.compile("|".join([*map(re.escape, values), _SHAPES]))
    _state = (version, frozenset(env.keys()), raw, list(map(env.get, raw)), values, pattern)
    return _state


def redact(text: Any) -> Any:
    """``text`` with every secret replaced by ``[REDACTED]`` (non-strings are returned as they are)."""
    if not isinstance(text, str) or not text:
        return text
    return _current()[5].sub(MASK, text)


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
