"""Rerun triggers of the refinement stages (rules/refine.smk): each rule passes one settings param,
so editing refine.k reruns the candidates and everything after them, editing the judge's model
reruns the judgments and after, editing the margin only the preferences, and a runtime edit (LLM
limits, cache, checkpointing) or refine's training values rerun none of these.

One run of the demo with the tiny optimizer up to round 1's preference report in a temp copy of
the workflow; every case is a dry run on it."""

from __future__ import annotations

import json

import pytest
from conftest import copy_workflow, edit_config, edited_config, job_counts, snakemake, use_tiny_optimizer

pytestmark = pytest.mark.slow

TARGET = "results/demo/refine/round1/preferences_report.json"
AFTER_CANDIDATES = {"candidates": 1, "candidate_answers": 1, "candidate_judgments": 1, "preferences": 1}
REFINE = {"activate": True, "pool_size": 12, "k": 3, "max_tokens": 32}


def _set(*keys_and_value):
    *keys, last, value = keys_and_value

    def edit(cfg):
        for key in keys:
            cfg = cfg.setdefault(key, {})
        cfg[last] = value

    return edit


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    wf = copy_workflow(tmp_path_factory.mktemp("refine-reruns") / "wf")

    def setup(cfg):
        use_tiny_optimizer(cfg)
        cfg["refine"] = dict(REFINE)

    edit_config(wf, setup)
    proc = snakemake(wf, "--cores", "2", TARGET)
    assert {k: v for k, v in job_counts(proc).items() if k in AFTER_CANDIDATES} == AFTER_CANDIDATES
    assert job_counts(snakemake(wf, "-n", "--cores", "1", TARGET)) == {}
    return wf


def test_the_round_writes_its_report(ran):
    report = json.loads((ran / TARGET).read_text())
    assert report["prompts"] <= REFINE["pool_size"] and report["candidates"] == report["prompts"] * REFINE["k"]
    assert report["settings"] == {"margin": 1, "pairs_per_prompt": 2}
    assert sum(report["comparison_outcomes"].values()) == report["comparisons"]


RESULT_EDITS = [
    ("refine.k", _set("refine", "k", 2), AFTER_CANDIDATES),
    ("refine.temperature", _set("refine", "temperature", 0.7), AFTER_CANDIDATES),
    ("refine.pool_size", _set("refine", "pool_size", 8), AFTER_CANDIDATES),
    (
        "the refine target (eval.targets.standin)",
        _set("eval", "targets", "standin", "max_tokens", 256),
        {"candidate_answers": 1, "candidate_judgments": 1, "preferences": 1},
    ),
    ("eval.judge.model", _set("eval", "judge", "model", "other-judge"), {"candidate_judgments": 1, "preferences": 1}),
    ("refine.compare", _set("refine", "compare", "round_robin"), {"candidate_judgments": 1, "preferences": 1}),
    ("refine.margin", _set("refine", "margin", 2), {"preferences": 1}),
    ("refine.pairs_per_prompt", _set("refine", "pairs_per_prompt", 1), {"preferences": 1}),
    # the SFT optimizer changes: it is retrained and round 1 samples again
    ("train.learning_rate", _set("train", "learning_rate", 1e-3), {"train_optimizer": 1, **AFTER_CANDIDATES}),
]

RUNTIME_EDITS = [
    ("llm.endpoints.standin.limits", _set("llm", "endpoints", "standin", "limits", {"max_concurrency": 2})),
    ("llm.cache", _set("llm", "cache", ".bpo-cache/other.sqlite")),
    ("train.checkpoint", _set("train", "checkpoint", "save_steps", 7)),
    ("refine.rounds", _set("refine", "rounds", 2)),  # round 1 is the same round
    ("refine.train.beta", _set("refine", "train", "beta", 0.3)),  # DPO only: not before the preferences
]


@pytest.mark.parametrize("edit, jobs", [c[1:] for c in RESULT_EDITS], ids=[c[0] for c in RESULT_EDITS])
def test_result_edit_reruns_its_stage_and_downstream(ran, edit, jobs):
    with edited_config(ran, edit):
        proc = snakemake(ran, "-n", "--cores", "1", TARGET)
    assert job_counts(proc) == jobs
    assert "Params have changed since last execution" in proc.stdout + proc.stderr


@pytest.mark.parametrize("edit", [c[1] for c in RUNTIME_EDITS], ids=[c[0] for c in RUNTIME_EDITS])
def test_runtime_edit_reruns_nothing(ran, edit):
    with edited_config(ran, edit):
        proc = snakemake(ran, "-n", "--cores", "1", TARGET)
    assert job_counts(proc) == {}
