"""Tiny synthetic SFT data for the training and inference tests (written for this project).

The rewrites follow a learnable pattern (the prompt's topic is restated with a fixed
request for detail), so a tiny model's loss falls within a few steps.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

from bpo.schemas import SFT, write_table

TOPICS = [
    "photosynthesis",
    "the French revolution",
    "binary search",
    "compound interest",
    "volcanoes",
    "the water cycle",
    "black holes",
    "vaccines",
    "supply and demand",
    "recursion",
    "plate tectonics",
    "the immune system",
    "climate change",
    "neural networks",
    "the printing press",
    "tides",
]
ASKS = ["tell me about {t}", "explain {t}", "what is {t}?", "how does {t} work", "{t} summary pls"]
EXTRA = [
    "",
    " for a school project",
    " in simple words",
    " and why it matters",
    " I keep forgetting the details and my exam is next week, so help me understand the main ideas",
]


def sft_rows(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        prompt = rng.choice(ASKS).format(t=topic) + rng.choice(EXTRA)
        optimized = (
            f"Please give a clear and accurate explanation of {topic}. "
            f"Cover the key ideas step by step and include one concrete example."
        )
        pid = hashlib.sha256(f"{i}:{prompt}".encode()).hexdigest()[:16]
        rows.append({"pair_id": pid, "source": "alpaca_gpt4", "prompt": prompt, "optimized_prompt": optimized})
    return rows


def write_sft(folder: Path, n_train: int = 48, n_val: int = 8) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    train, val = folder / "train.parquet", folder / "val.parquet"
    write_table(sft_rows(n_train, seed=1), train, SFT)
    write_table(sft_rows(n_val, seed=2), val, SFT)
    return train, val
