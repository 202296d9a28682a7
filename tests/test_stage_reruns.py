"""Rerun triggers of the data, critique and SFT stages: each rule passes one settings param, so a
result edit reruns its stage and everything downstream, while a runtime edit (LLM limits, cache,
prices, budget, error tolerance) or a reformatted config reruns nothing.

One demo run up to the SFT dataset in a temp copy of the workflow; every case is a dry run on it."""

from __future__ import annotations

import pytest
import yaml
from conftest import copy_workflow, edited_config, job_counts, snakemake
from test_data_workflow import planned_sources

pytestmark = pytest.mark.slow

TARGET = "results/demo/sft/train.parquet"
SOURCES = {"hh_rlhf", "oasst1", "chatbot_arena", "alpaca_gpt4"}
CRITIQUE_AND_SFT = {"critique": 4, "sft": 1}


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    wf = copy_workflow(tmp_path_factory.mktemp("stage-reruns") / "wf")
    proc = snakemake(wf, "--cores", "2", TARGET)
    assert job_counts(proc) == {"pairs_source": 4, "pairs_merge": 1, **CRITIQUE_AND_SFT}
    assert job_counts(snakemake(wf, "-n", "--cores", "1", TARGET)) == {}
    return wf


def _set(*keys_and_value):
    *keys, last, value = keys_and_value

    def edit(cfg):
        for key in keys:
            cfg = cfg[key]
        cfg[last] = value

    return edit


def _reorder(cfg):
    """The same config with every section's keys in reverse order."""
    for name in ("sources", "pairs", "critique", "sft"):
        section = cfg[name]
        if name == "sources":
            for source in section:
                section[source] = dict(reversed(list(section[source].items())))
        cfg[name] = dict(reversed(list(section.items()))) if name != "sources" else section


RESULT_EDITS = [
    # pairs_source: that source, the merge, and everything that reads all.parquet
    (
        "sources.hh_rlhf.multi_turn",
        _set("sources", "hh_rlhf", "multi_turn", True),
        {"pairs_source": 1, "pairs_merge": 1, **CRITIQUE_AND_SFT},
        {"hh_rlhf"} | SOURCES,
    ),
    (
        "pairs.min_chars",
        _set("pairs", "min_chars", 2),
        {"pairs_source": 4, "pairs_merge": 1, **CRITIQUE_AND_SFT},
        SOURCES,
    ),
    # pairs_merge
    ("pairs.dedup", _set("pairs", "dedup", False), {"pairs_merge": 1, **CRITIQUE_AND_SFT}, SOURCES),
    # critique: the endpoint and sampling are results; every source's critiques and the SFT set rerun
    ("critique.temperature", _set("critique", "temperature", 0.5), CRITIQUE_AND_SFT, SOURCES),
    (
        "llm.endpoints.standin.default_headers",
        _set("llm", "endpoints", "standin", "default_headers", {"X-Team": "a"}),
        CRITIQUE_AND_SFT,
        SOURCES,
    ),
    # sft
    ("sft.val_fraction", _set("sft", "val_fraction", 0.2), {"sft": 1}, set()),
    ("sft.protected_markers", _set("sft", "protected_markers", ["[protected", "<keep>"]), {"sft": 1}, set()),
]

RUNTIME_EDITS = [
    ("llm.endpoints.standin.limits", _set("llm", "endpoints", "standin", "limits", {"max_concurrency": 2, "rpm": 600})),
    ("llm.cache", _set("llm", "cache", ".bpo-cache/other.sqlite")),
    ("llm.prices", _set("llm", "prices", {"bpo-standin": {"input": 1.0, "output": 2.0}})),
    ("critique.budget_usd", _set("critique", "budget_usd", 5.0)),
    ("critique.max_error_fraction", _set("critique", "max_error_fraction", 0.5)),
    # not read in critiques mode, so not part of the sft settings
    ("sft.bpo_dataset.path", _set("sft", "bpo_dataset", "path", "data/elsewhere.jsonl")),
    ("key order", _reorder),
]


@pytest.mark.parametrize("edit, jobs, sources", [c[1:] for c in RESULT_EDITS], ids=[c[0] for c in RESULT_EDITS])
def test_result_edit_reruns_its_stage_and_downstream(ran, edit, jobs, sources):
    with edited_config(ran, edit):
        proc = snakemake(ran, "-n", "--cores", "1", TARGET)
    assert job_counts(proc) == jobs
    assert planned_sources(proc) == sources
    assert "Params have changed since last execution" in proc.stdout + proc.stderr


@pytest.mark.parametrize("edit", [c[1] for c in RUNTIME_EDITS], ids=[c[0] for c in RUNTIME_EDITS])
def test_runtime_edit_reruns_nothing(ran, edit):
    with edited_config(ran, edit):
        proc = snakemake(ran, "-n", "--cores", "1", TARGET)
    assert job_counts(proc) == {}


def test_critique_estimate_follows_the_active_sources(ran):
    snakemake(ran, "--cores", "1", "results/demo/critiques/estimate.json")
    assert job_counts(snakemake(ran, "-n", "--cores", "1", "results/demo/critiques/estimate.json")) == {}
    with edited_config(ran, _set("critique", "budget_usd", 1.0)):  # runtime: nothing
        assert job_counts(snakemake(ran, "-n", "--cores", "1", "results/demo/critiques/estimate.json")) == {}
    with edited_config(ran, _set("sources", "oasst1", "activate", False)):
        proc = snakemake(ran, "-n", "--cores", "1", "results/demo/critiques/estimate.json")
    assert job_counts(proc) == {"pairs_merge": 1, "critique_estimate": 1}  # the merge reads one file less
    cfg = yaml.safe_load((ran / "config" / "config.yaml").read_text())
    assert cfg["sources"]["oasst1"]["activate"] is True  # the edit was undone
