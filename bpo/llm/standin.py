"""The offline LLM stand-in: NOT a real model.

It plugs in as an `httpx2` transport under `AsyncOpenAI`, so an offline run goes through the
same client code as a paid one (request building, auth header, status handling, parsing,
caching). Replies are deterministic functions of the request content and name themselves
``bpo-standin``; every result carries ``backend="standin"``. What it answers:

* a critique prompt (one that asks for ``Optimized Instruction:``): ``Detailed Comparison
  Result: ...`` then ``Optimized Instruction: <the prompt's instruction, lightly reworded and
  made more specific> [END]``. The instruction is the text under the first section header
  that names an instruction (``=== User instruction ===``, ``### Instruction``,
  ``[Instruction]``, ``Instruction:`` alone on a line, ``<instruction>``).
* a judge prompt (one mentioning ``[[A]]``, ``[[B]]`` and ``[[C]]``): a short rationale and
  one verdict token on the last line. Each answer gets a pseudo-quality from its own text (a
  hash plus a mild preference for fuller answers), so verdicts vary with content and a pair
  judged in both orders gets consistent verdicts.
* anything else: a plain, deterministic answer whose length grows with the question's detail.

``max_tokens`` is honoured (longer replies are cut, finish_reason ``length``); ``n`` gives n
different choices; usage is filled with ~4-characters-a-token counts.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from typing import Any

import httpx2

from bpo.vocab import CRITIQUE_REPLY_LABEL, VERDICT_TOKENS

STANDIN_MODEL = "bpo-standin"
STANDIN_BASE_URL = "http://bpo-standin.invalid/v1"

# A line that is a section header: "=== T ===", "### T", "[T]", "<t>", "T:" (short, alone).
_HEADER = re.compile(
    r"^[ \t]*(?:={2,}[ \t]*(?P<a>[^=\n]{1,100}?)[ \t]*={2,}"
    r"|#{1,6}[ \t]+(?P<b>[^\n]{1,100}?)"
    r"|\[(?P<c>[^\[\]\n]{1,100})\]"
    r"|</?(?P<d>[A-Za-z][\w \-]{0,60})>"
    r"|(?P<e>[A-Z][\w'\- ]{0,60}):)[ \t]*$",
    re.MULTILINE,
)


def _h(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).digest()[:8], "big")


def _pick(options, seed: int, salt: str):
    return options[_h(seed, salt) % len(options)]


def _sections(text: str) -> list[tuple[str, str]]:
    """(header title, body) pairs of a prompt split at header lines."""
    out = []
    matches = list(_HEADER.finditer(text))
    for i, m in enumerate(matches):
        title = next(g for g in m.groups() if g is not None).strip()
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        out.append((title, text[m.end() : end].strip()))
    return out


def _prompt(body: dict) -> str:
    parts = []
    for m in body.get("messages") or []:
        c = m.get("content")
        if isinstance(c, list):
            c = "".join(p.get("text", "") for p in c if isinstance(p, dict))
        parts.append(str(c or ""))
    return "\n\n".join(parts)


def find_instruction(prompt: str) -> str | None:
    for title, text in _sections(prompt):
        low = title.lower()
        if "instruction" in low and not any(w in low for w in ("rewrite", "optimi", "step", "format", "rule")):
            text = re.sub(r"\[/?protected\]", "", text).strip()
            if text:
                return text
    return None


# ---- critique ---------------------------------------------------------------------------

_COMPARISON = [
    "The stronger answer follows the instruction more closely and gets the key facts right, "
    "while the weaker one {weak}.",
    "The weaker answer {weak}; the stronger answer is correct, better organised and more directly useful to the user.",
    "On correctness the stronger answer wins: the weaker one {weak}. "
    "It is also more helpful, with a clearer structure.",
]
_WEAK = [
    "misses part of what was asked",
    "stays vague and gives no concrete guidance",
    "contains a factual slip and skips the reasoning",
    "is too short to be helpful",
    "drifts away from the user's actual question",
]
_SPECIFIC = [
    "Be specific and accurate.",
    "Answer step by step.",
    "Explain your reasoning clearly and concisely.",
    "Give a clear, well-structured answer with a short example.",
    "Cover the key points in a logical order and keep the answer relevant.",
    "Make sure the answer is correct, complete and easy to follow for a non-expert.",
    "Provide a detailed, helpful answer, and point out any important caveats or safety considerations.",
]
_PREFIX = ["", "", "Please help with the following. ", "I need a careful answer. "]


def _rewrite(instruction: str, seed: int) -> str:
    words = len(instruction.split())
    budget = max(2, 3 * words)  # extra words kept well inside the paper's 6x length filter
    fitting = [s for s in _SPECIFIC if len(s.split()) <= budget] or ["Be specific."]
    extra = _pick(fitting, seed, "specific")
    prefix = _pick(_PREFIX, seed, "prefix")
    if len(prefix.split()) + len(extra.split()) > budget:
        prefix = ""
    base = instruction.strip()
    if base and base[-1] not in ".?!:;\"')":
        base += "."
    return f"{prefix}{base} {extra}".strip()


def _critique(prompt: str, seed: int) -> str:
    instruction = find_instruction(prompt)
    comparison = _pick(_COMPARISON, seed, "cmp").format(weak=_pick(_WEAK, seed, "weak"))
    if instruction is None:
        optimized = "Please answer the request above helpfully, accurately and in a clear structure."
    else:
        optimized = _rewrite(instruction, seed)
    return f"Detailed Comparison Result: {comparison}\n\n{CRITIQUE_REPLY_LABEL} {optimized} [END]"


# ---- judge ------------------------------------------------------------------------------


def _answers(prompt: str) -> tuple[str, str] | None:
    a = b = None
    for title, text in _sections(prompt):
        low = title.lower()
        if low.startswith("end") or "end of" in low:
            continue
        if re.search(r"\b(assistant|answer|response|output)\s*a\b", low) or re.search(r"\ba's\b", low):
            a = text if a is None else a
        elif re.search(r"\b(assistant|answer|response|output)\s*b\b", low) or re.search(r"\bb's\b", low):
            b = text if b is None else b
    return (a, b) if a is not None and b is not None else None


def _quality(answer: str) -> float:
    # Own text only, so swapping the answers swaps the verdict; fuller answers score a bit higher.
    return (_h("quality", answer) % 1000) / 1000.0 + 0.35 * math.log1p(len(answer.split())) / math.log(200)


def _judge(prompt: str, seed: int) -> str:
    pair = _answers(prompt)
    if pair is not None:
        qa, qb = _quality(pair[0]), _quality(pair[1])
        if pair[0].strip() == pair[1].strip() or abs(qa - qb) < 0.08:
            verdict = "C"
        else:
            verdict = "A" if qa > qb else "B"
    else:
        verdict = "ABCAB"[seed % 5]
    why = {
        "A": "Assistant A answers the question more directly and its content is more accurate and complete; "
        "Assistant B is vaguer.",
        "B": "Assistant B is more accurate and better organised and covers what the user asked; "
        "Assistant A leaves gaps.",
        "C": "Both answers are of similar quality: each covers the main point with comparable accuracy and detail.",
    }[verdict]
    return f"{why}\n\n[[{verdict}]]"


# ---- plain answers ----------------------------------------------------------------------

_OPENERS = [
    "Here is a clear answer to your question about {topic}.",
    "Good question about {topic}; here is what matters most.",
    "Let me go through {topic} step by step.",
]
_BODY = [
    "First, consider the main goal and what a good outcome looks like.",
    "The key facts are well established, so start from them.",
    "A concrete example helps: apply the idea to a small, simple case first.",
    "Keep the steps in a logical order and check each result before moving on.",
    "Watch for the common mistakes, which usually come from skipping the basics.",
    "If anything is unclear, state your assumptions explicitly.",
    "Safety and accuracy come first; verify important details with a reliable source.",
    "Finally, summarise the answer in one or two sentences.",
]


def _plain(prompt: str, seed: int) -> str:
    words = prompt.split()
    topic = " ".join(words[:8]).strip(" .?!:") or "your request"
    if len(words) > 8:
        topic += "..."
    # more detailed questions get fuller answers (what a better prompt tends to earn)
    n_body = min(len(_BODY), 2 + len(words) // 12 + seed % 2)
    start = seed % len(_BODY)
    body = [_BODY[(start + i) % len(_BODY)] for i in range(n_body)]
    return " ".join([_pick(_OPENERS, seed, "open").format(topic=f'"{topic}"'), *body])


def reply_text(body: dict, choice: int = 0) -> str:
    """The stand-in's reply to a chat-completions request body (deterministic)."""
    prompt = _prompt(body)
    seed = _h(
        body.get("model"), body.get("messages"), body.get("temperature"), body.get("top_p"), body.get("seed"), choice
    )
    if CRITIQUE_REPLY_LABEL in prompt:
        return _critique(prompt, seed)
    if all(t in prompt for t in VERDICT_TOKENS):
        return _judge(prompt, seed)
    return _plain(prompt, seed)


def completion(body: dict) -> dict:
    """A full chat.completion object for ``body``, as an OpenAI-compatible server returns it."""
    n = int(body.get("n") or 1)
    max_tokens = body.get("max_tokens")
    prompt_tokens = (
        sum(len(str(m.get("content") or "")) for m in body.get("messages") or []) // 4
        + 4 * len(body.get("messages") or [])
        + 3
    )
    choices = []
    completion_tokens = 0
    for i in range(n):
        text = reply_text(body, i)
        finish = "stop"
        if max_tokens is not None and (len(text) + 3) // 4 > int(max_tokens):
            text = text[: int(max_tokens) * 4]
            finish = "length"
        completion_tokens += (len(text) + 3) // 4
        choices.append(
            {
                "index": i,
                "finish_reason": finish,
                "logprobs": None,
                "message": {"role": "assistant", "content": text, "refusal": None},
            }
        )
    key = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:24]
    return {
        "id": f"chatcmpl-standin-{key}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": STANDIN_MODEL,
        "system_fingerprint": "bpo-standin-offline-not-a-real-model",
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


class StandinTransport(httpx2.AsyncBaseTransport):
    """Answers ``POST .../chat/completions`` in-process; counts what it was asked."""

    def __init__(self) -> None:
        self.requests = 0
        self.last_headers: dict[str, str] = {}

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        self.requests += 1
        self.last_headers = {k.lower(): v for k, v in request.headers.items() if k.lower() != "authorization"}
        if request.method != "POST" or not request.url.path.rstrip("/").endswith("/chat/completions"):
            return httpx2.Response(
                404,
                json={
                    "error": {
                        "message": f"stand-in serves only chat completions, not {request.url.path}",
                        "type": "invalid_request_error",
                    }
                },
            )
        try:
            body = json.loads(await request.aread())
        except ValueError:
            return httpx2.Response(
                400, json={"error": {"message": "body is not JSON", "type": "invalid_request_error"}}
            )
        if not body.get("messages"):
            return httpx2.Response(
                400, json={"error": {"message": "messages is required", "type": "invalid_request_error"}}
            )
        return httpx2.Response(200, json=completion(body))
