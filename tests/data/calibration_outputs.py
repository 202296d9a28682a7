"""Outputs of an optimizer on the fallback calibration prompts, as rows to label by hand.

The prompts are those of ``fallback_calibration.jsonl`` (each once, in file order). Decoding is
the demo's (``eval.optimizers.trained``: nucleus sampling, top-p 0.9, temperature 0.6, 128 new
tokens, batch 32, seed 42), in the prompt format the model folder records. Each row gets the
detector's current verdict as a *proposed* label ("good" when it keeps the output): check every
row by hand and fix the label before appending the rows to the calibration set.

    python tests/data/calibration_outputs.py results/demo/models/optimizer smollm2-ft/chat-template > rows.jsonl

The rows of source ``smollm2-base/chat-template-multilingual`` (indices 75-90) came the same way
from SmolLM2-135M-Instruct (the wheel's model, bpo.base_models) on 16 further prompts in zh, ja,
ko, ru, ar, es, fr, de, it, pt, pl, tr, written for the language work (issue 21); each label was
checked by hand and names the output's content (a truncated loop is ``repetition``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bpo.generation import GenerationSettings, generate
from bpo.optimizer.fallback import degenerate_reason
from bpo.optimizer.rewrite import load_optimizer
from bpo.prompt_format import encode_prompt, resolve_prompt_format

CALIBRATION = Path(__file__).with_name("fallback_calibration.jsonl")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir")
    ap.add_argument("source", help="the rows' source label, e.g. smollm2-ft/chat-template")
    args = ap.parse_args()
    prompts = list(dict.fromkeys(json.loads(line)["prompt"] for line in CALIBRATION.open(encoding="utf-8")))
    fmt, _ = resolve_prompt_format(args.model_dir, override=None, configured=None)
    model = load_optimizer(args.model_dir)
    settings = GenerationSettings(
        engine="auto", temperature=0.6, top_p=0.9, max_new_tokens=128, batch_size=32, seed=42, greedy=False
    )
    out = generate(model, [encode_prompt(p, fmt, model.tokenizer) for p in prompts], settings)
    for i, (prompt, gen) in enumerate(zip(prompts, out.outputs)):
        label = degenerate_reason(gen.text, gen.hit_limit, prompt) or "good"
        row = {
            "source": args.source,
            "index": i,
            "prompt": prompt,
            "output": gen.text.strip(),
            "hit_limit": gen.hit_limit,
            "label": label,
        }
        sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
