"""The earlier turns of a chat request, as the optimizer sees them (multi-turn BPO).

``bpo serve`` rewrites the last user message; the messages before it are its history. Text is
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
        parts = [p["text"] for p in content
                 if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)]
        return "\n".join(parts) if parts else None
    return None


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
