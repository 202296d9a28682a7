"""Prompt templates of every kind (critique, judge, rewrite): found, hashed, parsed and checked here.

A config names a template by a file path or as ``builtin:<file>``, one of the templates that
ship inside the package (``bpo/resources/templates/``, found through ``importlib.resources`` so
an installed wheel has them too). The settings carry the file's sha256, so an edit of its
content reruns the stage; the loaders take that hash back and refuse a file that changed after
the workflow was planned. Every problem is a :class:`TemplateError` naming the kind, the file
and, where it is missing, the config key. ``rules/common.smk`` checks every active template when
the workflow is parsed (:func:`template_problem`, through ``bpo.config_inputs``).

Each kind keeps its own text handling (comment lines, line endings) exactly as it was, so the
requests it builds, and with them the cache keys, stay byte for byte the same.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

BUILTIN = "builtin:"
# Where the error for a missing file points the user.
CONFIG_KEYS = {
    "critique": "critique.template",
    "judge": "eval.judge.template",
    "rewrite": "eval.optimizers.<name>.template",
}

CRITIQUE_PLACEHOLDERS = ("instruction", "context", "bad_response", "good_response")
JUDGE_PLACEHOLDERS = ("question", "answer_a", "answer_b")
REWRITE_PLACEHOLDER = "{prompt}"
# The parser and the offline stand-in both key on these: a template must ask for them.
CRITIQUE_REPLY_LABEL = "Optimized Instruction:"
VERDICT_TOKENS = ("[[A]]", "[[B]]", "[[C]]")
# Lines that split a judge template into a system and a user message.
SYSTEM_MARK, USER_MARK = "=== system ===", "=== user ==="

_IF, _END_IF = "{if_context}", "{end_if_context}"
_CRITIQUE_RE = re.compile(r"\{(" + "|".join(CRITIQUE_PLACEHOLDERS) + r")\}")
_JUDGE_RE = re.compile(r"\{(" + "|".join(JUDGE_PLACEHOLDERS) + r")\}")
# Anything that looks like a placeholder but is not one is a typo ("{good_res}") to report.
_CANDIDATE_RE = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


class TemplateError(ValueError):
    """A template that cannot be used (names the kind, the file and the problem)."""


# ---------------------------------------------------------------- finding and hashing


def builtin_dir() -> Path:
    """The folder of the templates that ship with the package."""
    return Path(str(files("bpo").joinpath("resources", "templates")))


def builtin_names() -> list[str]:
    return sorted(p.name for p in builtin_dir().iterdir() if p.suffix == ".txt")


def resolve(value: str | os.PathLike, kind: str = "critique") -> Path:
    """The file a config value names: ``builtin:<file>`` or a path (relative to the working folder)."""
    text = os.fspath(value)
    if not text.startswith(BUILTIN):
        return Path(text)
    name = text[len(BUILTIN) :]
    if name not in builtin_names():
        raise TemplateError(
            f"{kind} template {text}: no built-in template of that name "
            f"(built-in: {', '.join(BUILTIN + n for n in builtin_names())})"
        )
    return builtin_dir() / name


def template_sha256(value: str | os.PathLike, kind: str = "critique", key: str | None = None) -> str:
    """Hash of the template file's bytes (the settings carry it, so an edit reruns)."""
    path = resolve(value, kind)
    if not path.is_file():
        raise TemplateError(f"{kind} template {value}: no such file (config key {key or CONFIG_KEYS[kind]})")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read(value: str | os.PathLike, kind: str, sha256: str | None) -> tuple[bytes, str]:
    """The file's bytes and its hash, checked against ``sha256`` (the hash the settings were built with)."""
    path = resolve(value, kind)
    if not path.is_file():
        raise TemplateError(f"{kind} template {value}: no such file (config key {CONFIG_KEYS[kind]})")
    raw = path.read_bytes()
    sha = hashlib.sha256(raw).hexdigest()
    if sha256 is not None and sha != sha256:
        raise TemplateError(
            f"{kind} template {value}: the template changed after the workflow was planned "
            f"(sha256 {sha[:12]} != {sha256[:12]}); run again"
        )
    return raw, sha


def _decode(raw: bytes, value, kind: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TemplateError(f"{kind} template {value}: not UTF-8 text ({exc})") from exc


def _without_comments(text: str) -> str:
    """Judge and rewrite templates: '#' lines dropped, any line ending, outer blank lines stripped."""
    return "\n".join(line for line in text.splitlines() if not line.startswith("#")).strip("\n")


# ---------------------------------------------------------------- critique


@dataclass(frozen=True)
class CritiqueTemplate:
    """A parsed critique template: comment lines removed, the context block located."""

    path: str
    sha256: str
    body: str  # the template without comment lines, markers included

    def render(self, instruction: str, context: str, bad_response: str, good_response: str) -> str:
        has_context = bool(context and context.strip())
        lines: list[str] = []
        inside = False
        for line in self.body.split("\n"):
            marker = line.strip()
            if marker == _IF:
                inside = True
            elif marker == _END_IF:
                inside = False
            elif has_context or not inside:
                lines.append(line)
        text = "\n".join(lines).strip("\n")
        values = {
            "instruction": instruction,
            "context": context,
            "bad_response": bad_response,
            "good_response": good_response,
        }
        # One pass, so a response that itself contains "{context}" is never expanded.
        return _CRITIQUE_RE.sub(lambda m: values[m.group(1)], text)


def _check_context_block(body: str, where: str) -> int:
    """Check the {if_context} markers; returns how many {context} placeholders there are."""
    depth = count = 0
    for line in body.split("\n"):
        marker = line.strip()
        if marker == _IF:
            if depth:
                raise TemplateError(f"{where}: nested {_IF} blocks are not supported")
            depth = 1
        elif marker == _END_IF:
            if not depth:
                raise TemplateError(f"{where}: {_END_IF} without {_IF}")
            depth = 0
        elif _IF in line or _END_IF in line:
            raise TemplateError(f"{where}: {_IF} and {_END_IF} must stand on their own line")
        else:
            count += line.count("{context}")
    if depth:
        raise TemplateError(f"{where}: {_IF} is never closed by {_END_IF}")
    return count


def load_critique(value: str | os.PathLike, sha256: str | None = None) -> CritiqueTemplate:
    """Read and check a critique template (``builtin:critique.txt`` documents the syntax)."""
    where = f"critique template {value}"
    raw, sha = _read(value, "critique", sha256)
    text = _decode(raw, value, "critique")
    # universal newlines, as reading the file as text does
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    body = "\n".join(line for line in text.split("\n") if not line.startswith("#"))
    n_context = _check_context_block(body, where)
    found = set(_CRITIQUE_RE.findall(body))
    missing = [p for p in ("instruction", "bad_response", "good_response") if p not in found]
    if missing:
        raise TemplateError(f"{where}: missing placeholder(s) {', '.join('{' + m + '}' for m in missing)}")
    if not n_context:
        raise TemplateError(f"{where}: no {{context}} placeholder; pairs with a context would lose it")
    unknown = sorted(
        {name for name in _CANDIDATE_RE.findall(body) if name not in CRITIQUE_PLACEHOLDERS}
        - {"if_context", "end_if_context"}
    )
    if unknown:
        raise TemplateError(
            f"{where}: unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)} "
            f"(known: {', '.join('{' + p + '}' for p in CRITIQUE_PLACEHOLDERS)})"
        )
    if CRITIQUE_REPLY_LABEL.lower() not in body.lower():
        raise TemplateError(f"{where}: must ask for the reply label '{CRITIQUE_REPLY_LABEL}'")
    return CritiqueTemplate(path=os.fspath(value), sha256=sha, body=body)


# ---------------------------------------------------------------- judge


def fill_judge(template: str, *, question: str, answer_a: str, answer_b: str) -> str:
    """Single pass: text inside the answers is never treated as a placeholder."""
    values = {"question": question, "answer_a": answer_a, "answer_b": answer_b}
    return _JUDGE_RE.sub(lambda m: values[m.group(1)], template)


@dataclass(frozen=True)
class JudgeTemplate:
    """The judge prompt: an optional system message and the user message."""

    system: str | None
    user: str

    def fill(self, *, question: str, answer_a: str, answer_b: str) -> tuple[str | None, str]:
        values = dict(question=question, answer_a=answer_a, answer_b=answer_b)
        return (fill_judge(self.system, **values) if self.system is not None else None, fill_judge(self.user, **values))


def _split_system(text: str, where: str) -> tuple[str | None, str]:
    lines = text.splitlines()
    marks = [i for i, line in enumerate(lines) if line.strip() in (SYSTEM_MARK, USER_MARK)]
    if not marks:
        return None, text
    kinds = [lines[i].strip() for i in marks]
    if kinds != [SYSTEM_MARK, USER_MARK] or any(line.strip() for line in lines[: marks[0]]):
        raise TemplateError(
            f"{where}: a template with a system message starts with a '{SYSTEM_MARK}' line and "
            f"has one '{USER_MARK}' line after it (found {kinds})"
        )
    system = "\n".join(lines[marks[0] + 1 : marks[1]]).strip("\n")
    user = "\n".join(lines[marks[1] + 1 :]).strip("\n")
    if not system.strip() or not user.strip():
        raise TemplateError(f"{where}: the system and the user part must both have text")
    return system, user


def load_judge(value: str | os.PathLike, sha256: str | None = None) -> JudgeTemplate:
    """The judge prompt: '#' comment lines dropped, an optional system part split off,
    placeholders (each once, in either part) and verdict tokens checked."""
    where = f"judge template {value}"
    raw, _ = _read(value, "judge", sha256)
    # universal newlines, as reading the file as text does
    text = _decode(raw, value, "judge").replace("\r\n", "\n").replace("\r", "\n")
    system, user = _split_system(_without_comments(text), where)
    both = (system or "") + "\n" + user
    for name in JUDGE_PLACEHOLDERS:
        count = both.count("{" + name + "}")
        if count != 1:
            raise TemplateError(f"{where}: placeholder {{{name}}} must appear exactly once (found {count})")
    missing = [tok for tok in VERDICT_TOKENS if tok not in both]
    if missing:
        raise TemplateError(f"{where}: the judge must be told the verdict tokens; missing {missing}")
    return JudgeTemplate(system, user)


# ---------------------------------------------------------------- rewrite (kind llm_rewrite)


@dataclass(frozen=True)
class RewriteTemplate:
    """The rewrite request of an llm_rewrite optimizer, with exactly one ``{prompt}``."""

    text: str

    def fill(self, prompt: str) -> str:
        return self.text.replace(REWRITE_PLACEHOLDER, prompt)


def load_rewrite(value: str | os.PathLike, sha256: str | None = None) -> RewriteTemplate:
    """The rewrite request: '#' comment lines dropped, exactly one ``{prompt}``."""
    raw, _ = _read(value, "rewrite", sha256)
    text = _without_comments(_decode(raw, value, "rewrite"))
    if text.count(REWRITE_PLACEHOLDER) != 1:
        raise TemplateError(
            f"rewrite template {value}: placeholder {REWRITE_PLACEHOLDER} must appear exactly "
            f"once (found {text.count(REWRITE_PLACEHOLDER)})"
        )
    return RewriteTemplate(text)


# ---------------------------------------------------------------- checks when the config is parsed

LOADERS = {"critique": load_critique, "judge": load_judge, "rewrite": load_rewrite}


def template_problem(value: str, kind: str) -> str | None:
    """Why the template a config names cannot be used (missing file, a placeholder missing, ...), or None."""
    try:
        path = resolve(value, kind)
    except TemplateError as exc:
        return str(exc).split(": ", 1)[-1]
    if not path.exists():
        return f"{value} does not exist"
    if not path.is_file():
        return f"{value} is not a file"
    try:
        LOADERS[kind](value)
    except TemplateError as exc:
        return str(exc)
    return None
