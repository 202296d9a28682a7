"""BPO for SFT data (the paper's ``alpaca_reproduce``): optimize the instructions of an
Alpaca-format dataset and have a target LLM answer the optimized instructions.

Step 1 is :func:`bpo.eval.optimize.optimize_testset` with ``format: alpaca`` (context = the
``input`` field, never rewritten). Step 2 (:func:`answer_sft`) writes two files:

- ``reproduce``: ``{instruction, input, output, optimized_prompt, res}`` per record, the
  layout the BPO authors published (original fields, the optimized instruction, the new
  response);
- ``sft``: plain Alpaca ``{instruction, input, output}`` with the ORIGINAL instruction and
  the new response, ready for instruction tuning.

Records whose answer failed are left out of both files and counted in the log and stats.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from bpo.atomic import write_json
from bpo.eval.answer import answer_questions
from bpo.eval.testsets import read_records, render_question
from bpo.schemas import OPTIMIZED, read_table
from bpo.settings import LLMRuntime
from bpo.settings.evaluate import SFTRewriteSettings

log = logging.getLogger(__name__)


def answer_sft(
    optimized_path: str | Path,
    source_path: str | Path,
    settings: SFTRewriteSettings,
    runtime: LLMRuntime,
    *,
    out_reproduce: str | Path,
    out_sft: str | Path,
) -> dict:
    """Answer the optimized instructions; write the reproduce and the SFT file. Returns counts."""
    target = settings.target
    optimized = read_table(optimized_path, OPTIMIZED).to_pylist()
    # item_id of the alpaca format is the record number in the file (dropped records counted)
    records = read_records(source_path)
    source = dict(zip(records.numbers, records.rows))
    questions = [render_question(r["optimized_instruction"], r["context"]) for r in optimized]
    results = answer_questions(questions, target, runtime, stage="sft_rewrite")
    reproduce, sft, dropped = [], [], Counter()
    for rec, (text, status, _backend) in zip(optimized, results):
        if not isinstance(text, str) or not text.strip():
            dropped[f"answer {status}"] += 1
            continue
        original = source[int(rec["item_id"])]
        reproduce.append(
            {
                "instruction": rec["instruction"],
                "input": rec["context"],
                "output": original.get("output"),
                "optimized_prompt": rec["optimized_instruction"],
                "res": text,
            }
        )
        sft.append({"instruction": rec["instruction"], "input": rec["context"], "output": text})
    if not sft:
        raise RuntimeError(f"SFT rewrite: no record got an answer from target '{target.name}' ({dict(dropped)})")
    write_json(reproduce, out_reproduce, indent=1)
    write_json(sft, out_sft, indent=1)
    stats = {
        "records": len(optimized),
        "written": len(sft),
        "dropped": dict(dropped),
        "rewritten": sum(r["fallback_reason"] is None for r in optimized),
    }
    log.info("SFT rewrite with %s: %s", target.name, stats)
    return stats
