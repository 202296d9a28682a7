"""The conversation so far as the optimizer sees it (multi-turn BPO, issue 20): checked
(:func:`check_history`), rendered as text (:func:`render_history`: ``User: ...`` /
``Assistant: ...`` / ``System: ...`` blocks) and fitted to a token budget (:func:`fit_history`,
default :data:`HISTORY_TOKENS`). :mod:`bpo.prompt_format` puts the result into every prompt
format; training and inference both go through it, so they cut a conversation the same way.
"""

from __future__ import annotations

ROLES = ("user", "assistant", "system")
_ROLE_LABEL = {"user": "User", "assistant": "Assistant", "system": "System"}
# Token budget of the rendered history: bounds the optimizer's input (and so its cost per
# rewrite) however long the conversation. Training and inference use the same value. On CPU the
# prefill dominates a rewrite, so time grows with the input: 128 keeps six earlier turns within
# 2x the single-turn time (benchmarks/bench_multi_turn.py, README), and clipping (below) keeps
# the last answer's gist where whole turns no longer fit.
HISTORY_TOKENS = 128
# A turn that does not fit whole keeps its beginning and its end around this mark, when at least
# CLIP_MIN_TOKENS are left for it (a shorter stub says less than nothing); the end of the last
# answer is often the question the next message replies to ("Want more examples?" -> "Yes").
CLIP_MARK = " [...] "
CLIP_MIN_TOKENS = 24
# Without a tokenizer (a remote optimizer: bpo serve's rewriter) budgets count characters, this many a token.
CHARS_PER_TOKEN = 4


def check_history(history, where: str = "history") -> list[dict]:
    """``history`` as a list of ``{"role", "content"}`` dicts (None -> ``[]``); a clear error
    naming the turn otherwise. Extra keys (e.g. ``name``) are dropped."""
    if history is None:
        return []
    if not isinstance(history, (list, tuple)):
        raise TypeError(f"{where}: expected a list of {{role, content}} turns, got {type(history).__name__}")
    turns = []
    for i, turn in enumerate(history):
        if not isinstance(turn, dict):
            raise TypeError(f"{where}[{i}]: expected a {{role, content}} object, got {type(turn).__name__}")
        role, content = turn.get("role"), turn.get("content")
        if role not in ROLES:
            raise ValueError(f"{where}[{i}].role: {role!r} is not one of {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise TypeError(f"{where}[{i}].content: expected a str, got {type(content).__name__}")
        turns.append({"role": role, "content": content})
    return turns


def _render_turn(turn: dict) -> str:
    return f"{_ROLE_LABEL[turn['role']]}: {turn['content'].strip()}"


def render_history(history) -> str:
    """The conversation so far as the text the optimizer (and the critic) sees."""
    return "\n\n".join(_render_turn(t) for t in check_history(history))


def _measure(text: str, tokenizer) -> int:
    """Tokens of ``text`` with a ``tokenizer``, else characters."""
    return len(tokenizer(text, add_special_tokens=False).input_ids) if tokenizer is not None else len(text)


def history_length(history, tokenizer=None) -> int:
    """The rendered history's length: tokens with a ``tokenizer``, else characters."""
    text = render_history(history)
    return _measure(text, tokenizer) if text else 0


def _clip_content(content: str, tokenizer, room: int) -> str:
    """``content`` cut to about ``room`` tokens (characters without a tokenizer): its first and
    last halves around :data:`CLIP_MARK`, cut at token boundaries (character offsets, so a
    multi-byte character is never split)."""
    if tokenizer is None:
        head, tail = content[: room // 2], content[len(content) - (room - room // 2) :]
    else:
        try:
            spans = tokenizer(content, add_special_tokens=False, return_offsets_mapping=True).offset_mapping
        except (NotImplementedError, ValueError, TypeError):  # a Python (slow) tokenizer has no offsets
            spans = None
        n = len(spans) if spans is not None else len(ids := tokenizer(content, add_special_tokens=False).input_ids)
        room = min(room, n - 1)  # a turn just over the budget still loses a token
        first, last = room // 2, n - (room - room // 2)
        if spans is not None:
            head, tail = content[: spans[first - 1][1]], content[spans[last][0] :]
        else:  # decoded pieces: a character split at a cut decodes to U+FFFD, left out
            head, tail = (tokenizer.decode(part).replace("\ufffd", "") for part in (ids[:first], ids[last:]))
    return head.rstrip() + CLIP_MARK + tail.lstrip()


def _clip_turn(turn: dict, sep: str, tokenizer, budget: int) -> dict | None:
    """``turn`` clipped so that its rendering (with ``sep``) takes about ``budget``; None when
    less than :data:`CLIP_MIN_TOKENS` would be left for its content."""
    frame = _measure(f"{_ROLE_LABEL[turn['role']]}: {sep}", tokenizer) + _measure(CLIP_MARK, tokenizer)
    room = budget - frame - (2 if tokenizer is not None else 0)  # 2 tokens of slack for merges at the cuts
    if room < CLIP_MIN_TOKENS * (1 if tokenizer is not None else CHARS_PER_TOKEN):
        return None
    return {"role": turn["role"], "content": _clip_content(turn["content"].strip(), tokenizer, room)}


def fit_history(history, tokenizer, max_tokens: int = HISTORY_TOKENS) -> tuple[list[dict], int]:
    """``(kept_turns, n_cut)``: the conversation so far, fitted to ``max_tokens``.

    A history that fits is kept whole. Otherwise a turn longer than half the budget is clipped
    to half (:func:`_clip_content`: its beginning and end), so one long answer does not crowd
    out the question it answered; then turns are kept from the newest while they fit, and the
    first that does not is clipped to what is left (or dropped when under
    :data:`CLIP_MIN_TOKENS`), with every older turn. ``n_cut`` counts the turns dropped or
    clipped. Each turn is measured on its own (plus its separator), one tokenizer call per turn;
    the sum bounds the rendered length up to merges across the separators and the clips' edges.
    With ``tokenizer=None`` the budget (and the clip minimum, x :data:`CHARS_PER_TOKEN`) counts characters."""
    turns = check_history(history)
    if max_tokens is None or not turns:
        return turns, 0
    if max_tokens < 0:
        raise ValueError(f"history budget: expected a non-negative token count, got {max_tokens}")
    seps = ["\n\n"] * (len(turns) - 1) + [""]
    sizes = [_measure(_render_turn(t) + sep, tokenizer) for t, sep in zip(turns, seps)]
    if sum(sizes) <= max_tokens:
        return turns, 0
    kept: list[dict] = []
    total = n_clipped = 0
    for i in range(len(turns) - 1, -1, -1):
        turn, n = turns[i], sizes[i]
        if n > max_tokens // 2 and (capped := _clip_turn(turn, seps[i], tokenizer, max_tokens // 2)) is not None:
            turn, n = capped, max_tokens // 2
        if total + n > max_tokens:
            last = _clip_turn(turns[i], seps[i], tokenizer, max_tokens - total)
            if last is not None:
                kept.append(last)
                n_clipped += 1
            break
        kept.append(turn)
        total += n
        n_clipped += turn is not turns[i]
    kept.reverse()
    return kept, len(turns) - len(kept) + n_clipped
