"""Rule train_optimizer through Snakemake with the embedded default config switched to the tiny
model (the default's SmolLM2 fine-tune runs in the full-demo test of test_eval_workflow)."""

from __future__ import annotations

import json
import re

import pytest
from conftest import edit_config, edited_config, job_counts, snakemake, use_tiny_optimizer
from sft_fixture import write_sft

from bpo.schemas import TRAIN_METRICS, read_frame

pytestmark = pytest.mark.slow


def test_train_rule_trains_the_tiny_optimizer_and_reruns_on_a_param_edit(workflow_copy):
    wf = workflow_copy
    cfg = wf / "config" / "config.yaml"
    edit_config(wf, use_tiny_optimizer)
    write_sft(wf / "results" / "demo" / "sft", n_train=40, n_val=8)
    target = "results/demo/models/optimizer_metrics/train_metrics.parquet"
    snakemake(wf, target, "--cores", "2", "--allowed-rules", "train_optimizer")

    model = wf / "results" / "demo" / "models" / "optimizer"
    record = json.loads((model / "bpo_train_config.json").read_text())
    assert record["base"]["kind"] == "tiny_from_scratch" and record["hparams"]["deepspeed"] is None
    assert record["global_steps"] == record["hparams"]["max_steps"]
    assert {"model.safetensors", "tokenizer.json", "config.json"} <= {p.name for p in model.iterdir()}
    metrics = read_frame(wf / target, TRAIN_METRICS)
    assert metrics["loss"].notna().sum() == record["hparams"]["max_steps"]
    assert (wf / "results/demo/models/optimizer_metrics/loss_curve.png").stat().st_size > 1000
    assert (wf / "logs/demo/train/train_optimizer.log").read_text().count("saved the optimizer") == 1
    assert (wf / "benchmarks/demo/train/train_optimizer.tsv").exists()
    assert not (wf / "results/demo/models/optimizer_checkpoints").exists()  # removed after success

    # Nothing to do now; an edited hyper-parameter retrains, an edited checkpoint setting does not.
    dry = snakemake(wf, target, "-n", "--allowed-rules", "train_optimizer")
    assert "train_optimizer" not in dry.stdout + dry.stderr or "Nothing to be done" in dry.stdout + dry.stderr
    text = cfg.read_text()
    cfg.write_text(text.replace("save_steps: 500", "save_steps: 7"))
    dry = snakemake(wf, target, "-n", "--allowed-rules", "train_optimizer")
    assert "Nothing to be done" in dry.stdout + dry.stderr
    cfg.write_text(re.sub(r"learning_rate: 0\.003", "learning_rate: 0.001", text, count=1))
    dry = snakemake(wf, target, "-n", "--allowed-rules", "train_optimizer")
    out = dry.stdout + dry.stderr
    assert "train_optimizer" in out and "params" in out.lower()


UPSTREAM = {"pairs_source", "pairs_merge", "critique", "critique_estimate", "sft", "download_testset"}
# all: the target rule; answer_hf: the demo's SmolLM2 target; converse, judge_turns: the demo's
# multi-turn set (MT-bench layout), whose optimized conversations use the trained optimizer
DOWNSTREAM = {
    "train_optimizer",
    "optimize_testset",
    "answer",
    "answer_hf",
    "judge",
    "converse",
    "judge_turns",
    "report",
    "browse",
    "all",
}


def test_demo_reruns_training_and_what_follows_on_a_result_edit_and_nothing_on_a_runtime_edit(workflow_copy, capsys):
    """After a demo run (two test sets, to stay lean): train.learning_rate is in the rule's one
    settings param, so it retrains and reruns every evaluation job that uses the optimizer, and
    nothing upstream; train.checkpoint.save_steps is read at run time and reruns nothing.
    Also what a user sees after the demo: a fluent rewrite from `bpo optimize`, fallbacks
    counted by reason, and the report's first page naming the real models and the stand-in."""
    from bpo.cli import main as bpo_main
    from bpo.optimizer.fallback import degenerate_reason

    def two_testsets(cfg):
        for name in ("vicuna_eval", "self_instruct", "oasst1_multilingual"):
            cfg["eval"]["testsets"][name]["activate"] = False

    wf = workflow_copy
    edit_config(wf, two_testsets)
    snakemake(wf, "--cores", "2", timeout=1800)
    assert job_counts(snakemake(wf, "-n")) == {}

    prompt = "Tell me about Harry Potter"
    capsys.readouterr()
    assert bpo_main(["optimize", "--model", str(wf / "results/demo/models/optimizer"), prompt]) == 0
    rewrite = capsys.readouterr().out.strip()
    # neither the original (a fallback prints it) nor junk nor an answer, and the name is kept
    assert rewrite != prompt and "Harry Potter" in rewrite and degenerate_reason(rewrite, False, prompt) is None
    summary = (wf / "results/demo/report/summary.md").read_text()
    assert "| optimizer | test set | prompts | rewritten | kept original (reason: count) |" in summary
    page = (wf / "results/demo/report/summary.html").read_text()
    first = page[: page.index("<h2>Win rates</h2>")]
    assert (
        "<td>target</td><td>smollm2</td><td>.bpo-cache/models/SmolLM2-135M-Instruct</td>"
        "<td>local model (kind hf)</td><td>yes</td>"
    ) in first
    assert "<td>optimizer</td><td>trained</td>" in first and "fine-tuned from .bpo-cache/models/SmolLM2" in first
    for role in ("judge", "critic"):
        assert f"<td>{role}</td><td>{role}</td>" in first
    assert first.count("<td>NO (stand-in)</td>") == 3  # the stand-in target, the critic, the judge

    def dry_run_after(edit):
        with edited_config(wf, lambda cfg: edit(cfg["train"])):
            return job_counts(snakemake(wf, "-n"))

    assert dry_run_after(lambda t: t["checkpoint"].update(save_steps=7, keep=True)) == {}
    jobs = dry_run_after(lambda t: t.update(learning_rate=1.0e-3))
    assert set(jobs) == DOWNSTREAM and not set(jobs) & UPSTREAM
    assert jobs["train_optimizer"] == 1 and jobs["optimize_testset"] == 2 and jobs["report"] == 1
    # two targets (stand-in endpoint, SmolLM2 hf) x two test sets, the trained branch only: identity and the
    # original answers stay
    assert jobs["answer"] == 2 and jobs["answer_hf"] == 2 and jobs["judge"] == 4
