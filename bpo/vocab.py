"""Words several modules must spell the same: judge protocols, verdicts, outcomes, call statuses.

Defined once here (a leaf module, importing nothing of the project) so the judge, the verdict
parser, the report and the offline stand-in cannot drift apart.
"""

from __future__ import annotations

# eval.judge.protocol: both presentation orders (MT-bench rule) or one seeded order (the BPO paper).
BOTH_ORDERS, SINGLE_RANDOM = "both_orders", "single_random"
PROTOCOLS = (BOTH_ORDERS, SINGLE_RANDOM)

# What a judge decides: Assistant A, Assistant B, or C for a tie; asked for as [[A]] / [[B]] / [[C]].
VERDICTS = ("A", "B", "C")
VERDICT_TOKENS = tuple(f"[[{v}]]" for v in VERDICTS)

# A judged pair, seen from the optimized prompt's side.
OUTCOMES = ("win", "tie", "lose", "invalid")

# How an LLM call ended (the cache's and every result table's status column).
CALL_STATUSES = ("ok", "truncated", "refused", "error")

# The label a critique reply must carry before the rewritten instruction; the parser, the
# template check and the stand-in all key on it.
CRITIQUE_REPLY_LABEL = "Optimized Instruction:"

# Backend names: the offline stand-in's, and the one of rows decided without any call.
STANDIN_BACKEND = "standin"
NO_CALL = "none"

# Test set layouts whose items are conversations, evaluated turn by turn (bpo.eval.conversation).
MULTI_TURN_FORMATS = frozenset({"mt_bench"})
