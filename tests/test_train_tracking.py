"""train.report_to: a runtime setting (never a rule param), a missing tracker package is a config
error at parse time, and a real TensorBoard run whose event files hold train_metrics.parquet's
losses and the settings."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from sft_fixture import write_sft

from bpo.schemas import TRAIN_METRICS, read_frame
from bpo.settings import SettingsError, load_config
from bpo.settings.train import CheckpointRuntime, TrackingRuntime, TrainSettings
from bpo.train.launch import launch_training
from bpo.train.spec import TrainSpec


def test_report_to_is_runtime_not_a_rule_param():
    base = TrainSettings.from_config(load_config()).canonical()
    config = load_config(overrides={"run_name": "sweep3", "train": {"report_to": "tensorboard"}})
    assert TrainSettings.from_config(config).canonical() == base  # editing it retrains nothing
    tracking = TrackingRuntime.from_config(config, "logs/sweep3/train/tensorboard/x")
    assert (tracking.report_to, tracking.run_name) == ("tensorboard", "sweep3/train")
    assert TrackingRuntime.from_config(load_config()).report_to == "none"


@pytest.mark.parametrize("tracker", ["tensorboard", "wandb", "mlflow"])
def test_a_missing_tracker_package_is_a_config_error_at_parse_time(monkeypatch, tracker):
    monkeypatch.setitem(sys.modules, tracker, None)  # find_spec then reports it absent
    config = load_config(overrides={"train": {"report_to": tracker}})
    # TrainSettings.from_config is what the rule's params call while Snakemake parses
    for build in (lambda: TrainSettings.from_config(config), lambda: TrackingRuntime.from_config(config)):
        with pytest.raises(SettingsError, match=rf"train.report_to: '{tracker}' needs the {tracker} package.*tracking"):
            build()


def test_an_unknown_tracker_is_a_schema_error():
    with pytest.raises(ValueError, match="train.report_to: 'tensorbord' is not one of.*did you mean 'tensorboard'"):
        load_config(overrides={"train": {"report_to": "tensorbord"}})


def test_the_spec_carries_tracking_to_the_ranks(tmp_path):
    config = load_config(overrides={"train": {"report_to": "tensorboard"}})
    spec = TrainSpec(
        settings=TrainSettings.from_config(config),
        checkpoint=CheckpointRuntime.from_config(config, "m"),
        train="a.parquet",
        val=None,
        model_dir="m",
        metrics="m.parquet",
        loss_curve="m.png",
        tracking=TrackingRuntime.from_config(config, str(tmp_path / "tb")),
    )
    spec.write(tmp_path / "spec.json")
    assert TrainSpec.read(tmp_path / "spec.json") == spec


@pytest.mark.slow
def test_tensorboard_event_files_hold_the_metrics_losses_and_the_settings(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train, val = write_sft(tmp_path / "sft", n_train=24, n_val=4)
    config = load_config(
        overrides={
            "run_name": "tb",
            "train": {
                "base_model": None,
                "prompt_format": "plain",
                "deepspeed": None,
                "max_steps": 6,
                "global_batch_size": 4,
                "per_device_batch_size": 4,
                "learning_rate": 3e-3,
                "seed": 3,
                "report_to": "tensorboard",
                "tiny": {
                    "hidden_size": 32,
                    "intermediate_size": 64,
                    "num_layers": 1,
                    "num_heads": 2,
                    "num_kv_heads": 1,
                },
                "checkpoint": {"dir": str(tmp_path / "ckpt"), "save_steps": 0},
            },
        }
    )
    tb_dir = tmp_path / "logs" / "tensorboard" / "run1"
    spec = TrainSpec(
        settings=TrainSettings.from_config(config),
        checkpoint=CheckpointRuntime.from_config(config),
        train=str(train),
        val=str(val),
        model_dir=str(tmp_path / "model"),
        metrics=str(tmp_path / "metrics.parquet"),
        loss_curve=str(tmp_path / "loss.png"),
        tracking=TrackingRuntime.from_config(config, str(tb_dir)),
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        launch_training(spec)
    finally:
        torch.set_num_threads(threads)

    assert list(tb_dir.glob("events.out.tfevents.*")), "no event file in the tracking folder"
    assert not (tmp_path / "ckpt").exists()  # the checkpoint folder (the Trainer's default) is gone
    events = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    logged = {e.step: e.value for e in events.Scalars("train/loss")}
    metrics = read_frame(spec.metrics, TRAIN_METRICS).dropna(subset=["loss"])
    expected = dict(zip(metrics["step"].astype(int), metrics["loss"]))
    assert sorted(logged) == sorted(expected) == list(range(1, 7))
    for step, loss in expected.items():
        assert logged[step] == pytest.approx(loss, rel=1e-6)  # TensorBoard stores float32
    text = events.Tensors("bpo_settings/text_summary")[0].tensor_proto.string_val[0].decode()
    assert json.loads(text.strip("`\n"))["learning_rate"] == 3e-3
