"""The refinement loop learns what the judge rewards (issue 22's Done-when).

A tiny optimizer is SFT-trained on rewrites of which about a quarter ask for a numbered list, so
its greedy rewrite (almost) never does. The judge (a loopback OpenAI-compatible server, the network
boundary) prefers an answer to a rewrite that asks for a numbered list and the target passes the
question through, so only that property separates candidates. One round of candidates -> answers
-> judgments -> preferences -> DPO (TRL) must raise the share of held-out prompts whose greedy
rewrite asks for a numbered list. With a judge that rewards nothing, no pair comes out, the
preferences report says so, and train_refined refuses to train on nothing.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path

import pytest
import torch
from eval_helpers import loopback_config
from loopback_server import LoopbackServer

from bpo.generation import GenerationSettings
from bpo.optimizer import optimize_prompts
from bpo.refine.candidates import sample_candidates
from bpo.refine.dpo import train_refined
from bpo.refine.outcomes import answer_candidates, judge_candidates
from bpo.refine.preferences import make_preferences
from bpo.schemas import PAIRS, PREFERENCES, SFT, read_table, write_table
from bpo.settings import LLMRuntime, load_config
from bpo.settings.evaluate import CandidateAnswerSettings, CandidateJudgeSettings
from bpo.settings.refine import CandidateSettings, PreferenceSettings, RefineTrainSettings
from bpo.settings.train import CheckpointRuntime, TrainSettings
from bpo.train.launch import launch_training
from bpo.train.spec import TrainSpec

pytestmark = pytest.mark.slow

PROPERTY = "numbered list"
TOPICS = [
    "photosynthesis", "volcanoes", "binary search", "tides", "vaccines", "recursion", "black holes",
    "the water cycle", "compound interest", "plate tectonics", "neural networks", "climate change",
    "the immune system", "supply and demand", "the printing press", "gravity", "magnets", "rainbows",
    "earthquakes", "bread baking",
]  # fmt: skip
POOL_ASKS = ["explain {t}", "tell me about {t}", "what is {t}?"]
HELD_OUT_ASKS = ["how does {t} work", "{t} summary pls"]
TRAIN = {
    "base_model": None,
    "prompt_format": "plain",
    "tiny": {"hidden_size": 48, "intermediate_size": 128, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2},
    "max_steps": 200,
    "global_batch_size": 8,
    "per_device_batch_size": 8,
    "learning_rate": 3e-3,
    "eval_steps": 0,
    "seed": 7,
}
REFINE = {
    "pool_size": 60,
    "k": 4,
    "temperature": 1.0,
    "top_p": 1.0,
    "max_tokens": 32,
    "seed": 3,
    "target": "loop",
    "train": {"learning_rate": 2e-3, "max_steps": 20, "global_batch_size": 8, "per_device_batch_size": 8, "beta": 0.1},
}


def rewrite(topic: str, with_property: bool) -> str:
    return f"Explain {topic} clearly" + (f" as a {PROPERTY}." if with_property else ".")


def _id(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def sft_optimizer(tmp_path_factory) -> tuple[Path, Path]:
    """(SFT optimizer folder, data folder with pairs.parquet and the SFT val set)."""
    root = tmp_path_factory.mktemp("refine")
    rng = random.Random(0)
    sft, pairs = [], []
    for topic in TOPICS:
        for ask in POOL_ASKS + HELD_OUT_ASKS:
            prompt = ask.format(t=topic)
            sft.append(
                {
                    "pair_id": _id(prompt),
                    "source": "alpaca_gpt4",
                    "prompt": prompt,
                    "optimized_prompt": rewrite(topic, rng.random() < 0.25),
                    "history": [],
                }
            )
        for ask in POOL_ASKS:
            prompt = ask.format(t=topic)
            pairs.append(
                {
                    "pair_id": _id(prompt),
                    "source": "alpaca_gpt4",
                    "source_id": None,
                    "instruction": prompt,
                    "context": "",
                    "good_response": "good",
                    "bad_response": "bad",
                    "good_model": None,
                    "bad_model": None,
                    "language": "en",
                    "num_turns": 1,
                    "history": [],
                    "history_chars": 0,
                }
            )
    write_table(sft, root / "train.parquet", SFT)
    write_table(sft[:1], root / "val.parquet", SFT)  # one pool prompt: excluded from the pool
    write_table(pairs, root / "pairs.parquet", PAIRS)
    config = load_config(overrides={"train": {**TRAIN, "checkpoint": {"dir": str(root / "sft_ckpt")}}})
    launch_training(
        TrainSpec(
            settings=TrainSettings.from_config(config),
            checkpoint=CheckpointRuntime.from_config(config),
            train=str(root / "train.parquet"),
            val=None,
            model_dir=str(root / "sft_model"),
            metrics=str(root / "sft_metrics" / "m.parquet"),
            loss_curve=str(root / "sft_metrics" / "loss.png"),
        )
    )
    return root / "sft_model", root


def share_with_property(model: Path) -> float:
    prompts = [ask.format(t=t) for t in TOPICS for ask in HELD_OUT_ASKS]
    greedy = GenerationSettings(
        engine="auto", temperature=1.0, top_p=1.0, max_new_tokens=32, batch_size=64, seed=0, greedy=True
    )
    results = optimize_prompts(str(model), prompts, greedy).results
    return sum(PROPERTY in (r.raw or "") for r in results) / len(prompts)


_ANSWER = re.compile(r"=== Answer from Assistant ([AB]) ===\n(.*?)\n=== End of answer", re.S)


def judge_rewarding_property(body: dict) -> tuple[str, str]:
    """Judge prompts: prefer the answer whose question asked for a numbered list (ties otherwise);
    anything else is the target, which passes the question through."""
    text = body["messages"][-1]["content"]
    answers = dict(_ANSWER.findall(text))
    if not answers:
        return f"Here is my answer to: {text}", "stop"
    a, b = (PROPERTY in answers["A"]), (PROPERTY in answers["B"])
    return "Comparison done.\n" + ("[[A]]" if a and not b else "[[B]]" if b and not a else "[[C]]"), "stop"


def judge_all_ties(body: dict) -> tuple[str, str]:
    text = body["messages"][-1]["content"]
    if "=== Answer from Assistant A ===" in text:
        return "Both are equally good.\n[[C]]", "stop"
    return f"Here is my answer to: {text}", "stop"


def run_round(root: Path, start: Path, responder, monkeypatch, tag: str) -> dict:
    with LoopbackServer(responder=responder) as srv:
        config = loopback_config(srv, monkeypatch, root / tag, eval={"judge": {"endpoint": "loop", "model": "j"}})
        config["eval"]["targets"]["loop"] = {
            **config["eval"]["targets"]["standin"],
            "endpoint": "loop",
            "model": "target",
        }
        config["train"].update({k: v for k, v in TRAIN.items() if k != "tiny"})
        config["refine"].update({k: v for k, v in REFINE.items() if k != "train"})
        config["refine"]["train"].update(REFINE["train"])
        for ts in config["eval"]["testsets"].values():
            ts["activate"] = False
        runtime = LLMRuntime.from_config(config, "loop")
        out = root / tag
        stats = {
            "candidates": sample_candidates(
                root / "pairs.parquet",
                root / "val.parquet",
                str(start),
                out / "c.parquet",
                CandidateSettings.from_config(config),
                1,
            ),  # fmt: skip
            "answers": answer_candidates(
                out / "c.parquet", out / "a.parquet", CandidateAnswerSettings.from_config(config), runtime
            ),
            "judgments": judge_candidates(
                out / "a.parquet", out / "j.parquet", CandidateJudgeSettings.from_config(config), runtime
            ),
            "report": make_preferences(
                out / "c.parquet",
                out / "j.parquet",
                out / "p.parquet",
                out / "report.json",
                PreferenceSettings.from_config(config),
            ),  # fmt: skip
            "calls": srv.total,
        }
    stats["config"] = config
    return stats


def dpo(folder: Path, start: Path, config: dict) -> dict:
    """Rule train_refined's call on the round in ``folder``."""
    out = folder / "model"
    return train_refined(
        str(folder / "p.parquet"),
        str(start),
        {"model": str(out), "metrics": str(folder / "m.parquet"), "loss_curve": str(folder / "l.png")},
        RefineTrainSettings.from_config(config),
        CheckpointRuntime.from_config(config, str(out)).replace(dir=str(folder / "ckpt")),
    )


def test_one_round_raises_the_share_of_rewrites_the_judge_rewards(sft_optimizer, monkeypatch, capsys):
    start, root = sft_optimizer
    before = share_with_property(start)
    stats = run_round(root, start, judge_rewarding_property, monkeypatch, "learn")
    assert stats["candidates"]["pool"] == len(TOPICS) * len(POOL_ASKS) - 1  # the SFT val pair is excluded
    report = stats["report"]
    assert report["pairs"] > 0 and report["message"] is None
    prefs = read_table(root / "learn" / "p.parquet", PREFERENCES).to_pylist()
    assert all(PROPERTY in p["chosen"] and PROPERTY not in p["rejected"] for p in prefs)
    out = root / "learn" / "model"
    summary = dpo(root / "learn", start, stats["config"])
    after = share_with_property(out)
    with capsys.disabled():
        print(
            f"\nheld-out greedy rewrites asking for a {PROPERTY}: before {before:.2f}, after {after:.2f} "
            f"({report['pairs']} pairs, DPO loss {summary['train_loss']:.3f})"
        )
    assert before <= 0.25
    assert after >= before + 0.4
    record = json.loads((out / "bpo_train_config.json").read_text())
    assert record["stage"] == "dpo" and record["start_model"] == str(start)
    assert (out / "bpo_prompt_format.json").exists()
    # no call is paid twice: the same round again asks the server nothing
    again = run_round(root, start, judge_rewarding_property, monkeypatch, "learn")
    assert again["calls"] == 0


def test_a_judge_that_rewards_nothing_gives_no_pairs_and_says_so(sft_optimizer, monkeypatch):
    start, root = sft_optimizer
    stats = run_round(root, start, judge_all_ties, monkeypatch, "ties")
    report = stats["report"]
    assert report["pairs"] == 0 and report["prompts_with_pairs"] == 0
    assert "no preference pairs" in report["message"]
    assert report["comparison_outcomes"].get("decisive", 0) == 0 and report["comparison_outcomes"]["tie"] > 0
    assert json.loads((root / "ties" / "report.json").read_text())["message"] == report["message"]
    assert read_table(root / "ties" / "p.parquet", PREFERENCES).num_rows == 0
    with pytest.raises(ValueError, match="no preference pairs to train on"):
        dpo(root / "ties", start, stats["config"])
    assert not (root / "ties" / "model").exists()
