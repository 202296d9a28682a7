"""Multi-turn evaluation (MT-bench): each test item is a conversation of user messages, played
turn by turn twice per target.

- The ORIGINAL conversation (:func:`original_conversations`, once per test set and target): turn
  k's message is sent after the original messages and the target's answers of turns 1..k-1.
- The OPTIMIZED conversation (:func:`optimized_conversations`, per optimizer and target): turn
  k's message is first rewritten by the optimizer seeing the OPTIMIZED conversation so far (its
  own earlier rewrites and the target's answers to them), then answered after that history.

Turn k of every item is one batch (rewrite, then answer), so a local model is loaded once per
stage. While an optimized conversation is still equal to the original one (identity, fallbacks),
its answer IS the original answer: the same conversation is the same call, and identity then
ties on every turn by construction. An item whose answer of some turn is missing cannot go on:
its later turns are recorded as ``skipped`` (no answer; the judge counts them invalid).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bpo.eval.answer import Answer
from bpo.eval.testsets import TestItem, TestSetError, load_configured
from bpo.schemas import CONVERSATIONS, ORIGINAL_CONVERSATIONS, read_table, write_table

log = logging.getLogger(__name__)

Message = dict[str, str]  # {"role": "user" | "assistant", "content": ...}
# How a target answers conversations: one Answer per conversation (its last message is the user's).
ChatAnswerer = Callable[[Sequence[Sequence[Message]]], tuple[list[Answer], Any]]
# How an optimizer rewrites one turn: the turn's items (instruction = the message) and one history
# each -> (optimized message, fallback reason) per item, and the engine (or None).
TurnRewriter = Callable[[Sequence[TestItem], Sequence[Sequence[Message]]], tuple[list[tuple[str, str | None]], Any]]

SKIPPED = "skipped"  # the status of a turn not asked because an earlier turn has no answer


def load_conversations(settings) -> list[TestItem]:
    """The items of a multi-turn test set (bpo.settings.testsets.TestsetSettings); an item
    without turns is an error naming it (the layout must give every item a list of messages)."""
    ts = load_configured(settings)
    flat = [it.item_id for it in ts.items if not it.turns]
    if flat:
        raise TestSetError(
            f"test set {settings.name} ({settings.path}): items {flat[:5]} have no list of turns; "
            f"format {settings.format} is read as conversations"
        )
    return ts.items


def _user(text: str) -> Message:
    return {"role": "user", "content": text}


def _assistant(text: str) -> Message:
    return {"role": "assistant", "content": text}


def _usable(answer: str | None) -> bool:
    return isinstance(answer, str) and bool(answer.strip())


def original_conversations(
    items: Sequence[TestItem], testset: str, target: str, answer: ChatAnswerer
) -> tuple[list[dict], Any]:
    """ORIGINAL_CONVERSATIONS rows: every item's original messages answered turn by turn."""
    history: dict[str, list[Message]] = {it.item_id: [] for it in items}
    alive = {it.item_id for it in items}
    rows, engine = [], None
    for k in range(max(len(it.turns) for it in items)):
        turn_items = [it for it in items if k < len(it.turns)]
        asked = [it for it in turn_items if it.item_id in alive]
        if asked:
            results, eng = answer([history[it.item_id] + [_user(it.turns[k])] for it in asked])
            engine = eng or engine
            got = dict(zip((it.item_id for it in asked), results, strict=True))
        else:
            got = {}
        for it in turn_items:
            text, status, backend = got.get(it.item_id, (None, SKIPPED, "none"))
            rows.append(
                {
                    "item_id": it.item_id,
                    "testset": testset,
                    "target": target,
                    "category": it.category,
                    "turn": k + 1,
                    "question": it.turns[k],
                    "answer": text,
                    "status": status,
                    "backend": backend,
                }
            )
            if _usable(text):
                history[it.item_id] += [_user(it.turns[k]), _assistant(text)]
            else:
                alive.discard(it.item_id)
    return rows, engine


def _by_turn(rows: Sequence[Mapping]) -> dict[tuple[str, int], Mapping]:
    return {(r["item_id"], r["turn"]): r for r in rows}


def optimized_conversations(
    items: Sequence[TestItem],
    original: Sequence[Mapping],
    *,
    testset: str,
    optimizer: str,
    target: str,
    rewrite: TurnRewriter,
    answer: ChatAnswerer,
) -> tuple[list[dict], dict[str, Any]]:
    """CONVERSATIONS rows: the optimized conversation of every item next to its original one
    (``original``: the target's ORIGINAL_CONVERSATIONS rows of the same items); and the engines."""
    orig = _by_turn(original)
    for it in items:
        for k, message in enumerate(it.turns):
            row = orig.get((it.item_id, k + 1))
            if row is None:
                raise ValueError(f"no original answer of item {it.item_id} turn {k + 1} ({testset}, target {target})")
            if row["question"] != message or row["target"] != target:
                raise ValueError(
                    f"item {it.item_id} turn {k + 1}: the original conversation was asked differently "
                    "(were both made from the same test set and target settings?)"
                )
    history: dict[str, list[Message]] = {it.item_id: [] for it in items}
    same = {it.item_id for it in items}  # optimized conversation still equal to the original
    alive = {it.item_id for it in items}
    rows, engines = [], {"optimizer": None, "target": None}
    for k in range(max(len(it.turns) for it in items)):
        turn_items = [it for it in items if k < len(it.turns)]
        asked = [it for it in turn_items if it.item_id in alive]
        rewritten: dict[str, tuple[str, str | None]] = {}
        if asked:
            turn_view = [TestItem(it.item_id, it.turns[k], "", None, it.category) for it in asked]
            out, eng = rewrite(turn_view, [list(history[it.item_id]) for it in asked])
            if len(out) != len(asked):
                raise RuntimeError(f"optimizer {optimizer} returned {len(out)} rewrites for {len(asked)} messages")
            engines["optimizer"] = eng or engines["optimizer"]
            rewritten = dict(zip((it.item_id for it in asked), out))
        pending = [it for it in asked if not (it.item_id in same and rewritten[it.item_id][0] == it.turns[k])]
        got: dict[str, Answer] = {}
        if pending:
            results, eng = answer([history[it.item_id] + [_user(rewritten[it.item_id][0])] for it in pending])
            engines["target"] = eng or engines["target"]
            got = dict(zip((it.item_id for it in pending), results, strict=True))
        for it in turn_items:
            o = orig[(it.item_id, k + 1)]
            message, reason = rewritten.get(it.item_id, (it.turns[k], None))
            if it.item_id not in alive:
                text, status, backend = None, SKIPPED, "none"
            elif it.item_id in got:
                text, status, backend = got[it.item_id]
                same.discard(it.item_id)
            else:  # the same conversation as the original so far: its answer
                text, status, backend = o["answer"], o["status"], o["backend"]
            rows.append(
                {
                    "item_id": it.item_id,
                    "testset": testset,
                    "optimizer": optimizer,
                    "target": target,
                    "category": it.category,
                    "turn": k + 1,
                    "question_original": it.turns[k],
                    "question_optimized": message,
                    "fallback_reason": reason,
                    "answer_original": o["answer"],
                    "answer_optimized": text,
                    "status_original": o["status"],
                    "status_optimized": status,
                    "backend": "+".join(sorted({o["backend"], backend})),
                }
            )
            if it.item_id in alive and _usable(text):
                history[it.item_id] += [_user(message), _assistant(text)]
            else:
                alive.discard(it.item_id)
    return rows, engines


# --- the rules' entry points -------------------------------------------------------------


def write_original(out_path: str | Path, testset_settings, target: str, answer: ChatAnswerer) -> dict:
    """Rule converse_original: the target's original conversations -> ORIGINAL_CONVERSATIONS."""
    items = load_conversations(testset_settings)
    rows, engine = original_conversations(items, testset_settings.name, target, answer)
    write_table(rows, out_path, ORIGINAL_CONVERSATIONS, metadata=engine.metadata() if engine else None)
    stats = {"items": len(items), "turns": len(rows), "statuses": dict(Counter(r["status"] for r in rows))}
    log.info("target %s: original conversations of %s: %s", target, testset_settings.name, stats)
    return stats


def turn_rewriter(config: Mapping[str, Any], params: Mapping[str, Any], model_input: str | None = None) -> TurnRewriter:
    """The optimizer whose canonical settings are ``params`` as a :data:`TurnRewriter`
    (:func:`bpo.eval.optimize.optimizer_entry`, ``turn``)."""
    from bpo.eval.optimize import optimizer_entry

    bound = optimizer_entry(config, params, model_input, "turn")
    if bound is None:
        raise ValueError(
            f"eval.optimizers.{params['name']}: its kind cannot rewrite conversations (multi-turn test sets)"
        )
    fn, settings, extra = bound
    return lambda turn_items, histories: fn(turn_items, histories, settings, **extra)


def write_optimized(
    out_path: str | Path,
    original_path: str | Path,
    testset_settings,
    optimizer: str,
    target: str,
    rewrite: TurnRewriter,
    answer: ChatAnswerer,
) -> dict:
    """Rule converse: one optimizer's conversations with one target -> CONVERSATIONS."""
    items = load_conversations(testset_settings)
    original = read_table(original_path, ORIGINAL_CONVERSATIONS).to_pylist()
    rows, engines = optimized_conversations(
        items,
        original,
        testset=testset_settings.name,
        optimizer=optimizer,
        target=target,
        rewrite=rewrite,
        answer=answer,
    )
    metadata = {f"{role}_{k}": v for role, eng in engines.items() if eng for k, v in eng.metadata().items()}
    write_table(rows, out_path, CONVERSATIONS, metadata=metadata or None)
    stats = {
        "items": len(items),
        "turns": len(rows),
        "fallbacks": dict(Counter(r["fallback_reason"] for r in rows if r["fallback_reason"])),
        "statuses": dict(Counter(r["status_optimized"] for r in rows)),
    }
    log.info("%s x %s: optimized conversations of %s: %s", optimizer, target, testset_settings.name, stats)
    return stats


def chat_answerer(config: Mapping[str, Any], target: Mapping[str, Any]) -> ChatAnswerer:
    """The target whose settings are ``target`` (``kind`` plus its canonical settings) as a
    :data:`ChatAnswerer`; an endpoint's runtime (limits, cache, prices) comes from ``config``."""
    params = {k: v for k, v in target.items() if k != "kind"}
    if target["kind"] == "hf":
        from bpo.eval.hf_target import hf_chat_answerer
        from bpo.settings.hf_target import HFTargetSettings

        return hf_chat_answerer(HFTargetSettings.from_params(params))
    from bpo.eval.answer import endpoint_chat_answerer
    from bpo.settings import LLMRuntime
    from bpo.settings.evaluate import EndpointTargetSettings

    settings = EndpointTargetSettings.from_params(params)
    return endpoint_chat_answerer(settings, LLMRuntime.from_config(config, settings.call.endpoint.name))
