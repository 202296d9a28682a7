"""Whole-workflow checks: the paper recipe builds its DAG offline, URL test sets are fetched by a rule."""

from __future__ import annotations

import pytest
import yaml
from conftest import edit_config, job_counts, snakemake


def test_paper_recipe_dry_run_offline(workflow_copy, monkeypatch):
    # Building the DAG must not touch the hub or any API (no key needed either).
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    proc = snakemake(workflow_copy, "-n", "--configfile", "config/paper.yaml")
    jobs = job_counts(proc)
    assert jobs["download_testset"] == 4
    assert jobs["pairs_source"] == 4 and jobs["critique"] == 4
    assert jobs["train_optimizer"] == 1
    # four optimizers side by side: trained and THUDM/BPO generate, identity copies, llm_rewrite asks an endpoint
    assert jobs["optimize_testset"] == 8 and jobs["optimize_identity"] == 4 and jobs["optimize_llm_rewrite"] == 4
    # two targets (gpt-3.5-turbo, claude-2) answer the original questions once per test set ...
    assert jobs["answer_original"] == 8
    # ... and each optimizer's questions: 4 optimizers x 2 targets x 4 test sets
    assert jobs["answer"] == 32 and jobs["judge"] == 32
    dag = proc.stdout
    for optimizer in ("trained", "thudm_bpo", "identity", "llm_rewrite"):
        assert f"results/paper/eval/vicuna_eval/{optimizer}/optimized.parquet" in dag
    config = yaml.safe_load((workflow_copy / "config" / "paper.yaml").read_text())["eval"]["optimizers"]
    assert config["thudm_bpo"] == {
        **config["thudm_bpo"],
        "kind": "model",
        "model": "THUDM/BPO",
        "prompt_format": "bpo-release",
    }


@pytest.mark.slow
def test_testset_by_url_is_downloaded_by_its_rule(workflow_copy, tmp_path):
    src = tmp_path / "published.jsonl"
    src.write_text('{"question_id": 7, "text": "Why is the sky blue?", "category": "generic"}\n')
    edit_config(
        workflow_copy,
        lambda cfg: cfg["eval"]["testsets"].update(vicuna_eval={"format": "vicuna", "path": None, "url": src.as_uri()}),
    )
    target = "data/testsets/vicuna_eval/published.jsonl"
    snakemake(workflow_copy, "--cores", "1", target)
    assert (workflow_copy / target).read_text() == src.read_text()
    # the optimize rules now read the downloaded copy
    proc = snakemake(workflow_copy, "-n", "results/demo/eval/vicuna_eval/identity/optimized.parquet")
    assert "input: " + target in proc.stdout


def test_workflow_passes_snakemake_lint(workflow_copy):
    proc = snakemake(workflow_copy, "--lint")
    assert "Congratulations" in proc.stdout + proc.stderr
