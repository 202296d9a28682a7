"""Rule train_optimizer through Snakemake with the embedded default config (tiny model)."""

from __future__ import annotations

import json
import re

import pytest

from bpo.schemas import TRAIN_METRICS, read_frame

from conftest import snakemake
from sft_fixture import write_sft

pytestmark = pytest.mark.slow


def test_train_rule_trains_the_default_tiny_optimizer_and_reruns_on_a_param_edit(workflow_copy):
    wf = workflow_copy
    write_sft(wf / "results" / "sft", n_train=40, n_val=8)
    target = "results/models/optimizer_metrics/train_metrics.parquet"
    snakemake(wf, target, "--cores", "2", "--allowed-rules", "train_optimizer")

    model = wf / "results" / "models" / "optimizer"
    record = json.loads((model / "bpo_train_config.json").read_text())
    assert record["base"]["kind"] == "tiny_from_scratch" and record["hparams"]["deepspeed"] is None
    assert record["global_steps"] == record["hparams"]["max_steps"]
    assert {"model.safetensors", "tokenizer.json", "config.json"} <= {p.name for p in model.iterdir()}
    metrics = read_frame(wf / target, TRAIN_METRICS)
    assert metrics["loss"].notna().sum() == record["hparams"]["max_steps"]
    assert (wf / "results/models/optimizer_metrics/loss_curve.png").stat().st_size > 1000
    assert (wf / "logs/train/train_optimizer.log").read_text().count("saved the optimizer") == 1
    assert (wf / "benchmarks/train/train_optimizer.tsv").exists()
    assert not (wf / "results/models/optimizer_checkpoints").exists()  # removed after success

    # Nothing to do now; an edited hyper-parameter retrains, an edited checkpoint setting does not.
    dry = snakemake(wf, target, "-n", "--allowed-rules", "train_optimizer")
    assert "train_optimizer" not in dry.stdout + dry.stderr or "Nothing to be done" in dry.stdout + dry.stderr
    cfg = wf / "config" / "config.yaml"
    text = cfg.read_text()
    cfg.write_text(text.replace("save_steps: 500", "save_steps: 7"))
    dry = snakemake(wf, target, "-n", "--allowed-rules", "train_optimizer")
    assert "Nothing to be done" in dry.stdout + dry.stderr
    cfg.write_text(re.sub(r"learning_rate: 3\.0e-3", "learning_rate: 1.0e-3", text, count=1))
    dry = snakemake(wf, target, "-n", "--allowed-rules", "train_optimizer")
    out = dry.stdout + dry.stderr
    assert "train_optimizer" in out and "params" in out.lower()
