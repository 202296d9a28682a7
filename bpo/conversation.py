"""OpenAI-style ``messages``: the last user message to rewrite and the earlier turns the optimizer
sees with it (multi-turn BPO), shared by ``bpo serve`` and ``bpo optimize --input`` (messages mode).

The last user message is rewritten; the messages before it are its history. Text is
taken from string contents and from the ``text`` parts of a content list (images and other
parts are not text the optimizer can read); ``developer`` counts as ``system`` (the OpenAI API's
newer name for it). System messages are included only when ``rewriter.include_system`` is on;
tool and function messages, and assistant turns with no text (a tool call), are left out: they
are not conversation the user can refer to in words. The request itself is never changed here.
"""

from __future__ import annotations

from typing import Any

_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}


def _text(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            p["text"]
            for p in content
            if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
        ]
        return "\n".join(parts) if parts else None
    return None


def last_user_text(messages: list) -> tuple[int, int | None, str] | None:
    """``(index, part, text)`` of the last user message's text (``part``: the index in a content
    list, None for a string content), or None when the last user message has no text."""
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if not isinstance(m, dict) or m.get("role") != "user":
            continue
        content = m.get("content")
        if isinstance(content, str):
            return (i, None, content) if content.strip() else None
        if isinstance(content, list):
            for j, part in enumerate(content):
                if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                    return (i, j, part["text"]) if part["text"].strip() else None
        return None
    return None


def replace_text(messages: list, index: int, part: int | None, text: str) -> list:
    """A copy of ``messages`` with that message's text replaced (nothing else changes)."""
    out = list(messages)
    msg = dict(out[index])
    if part is None:
        msg["content"] = text
    else:
        parts = list(msg["content"])
        parts[part] = {**parts[part], "text": text}
        msg["content"] = parts
    out[index] = msg
    return out


def earlier_turns(messages: list, index: int, include_system: bool) -> list[dict]:
    """``{role, content}`` turns of ``messages[:index]`` (the messages before the one rewritten)."""
    turns = []
    for m in messages[:index]:
        role = _ROLES.get(m.get("role")) if isinstance(m, dict) else None
        if role is None or (role == "system" and not include_system):
            continue
        text = _text(m.get("content"))
        if text is not None and text.strip():
            turns.append({"role": role, "content": text})
    return turns
