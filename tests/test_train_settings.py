"""Training settings: built from the validated config only, one canonical rule param, a spec
that torchrun ranks rebuild exactly. Fast (no training)."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from bpo.settings import ConfigError, load_config
from bpo.settings.config import SCHEMA_PATH
from bpo.settings.train import CheckpointRuntime, TinySettings, TrainSettings
from bpo.train.spec import TrainSpec


def test_every_train_key_but_the_runtime_ones_is_a_result_setting():
    schema = yaml.safe_load(SCHEMA_PATH.read_text())["properties"]["train"]["properties"]
    fields = {f.name for f in dataclasses.fields(TrainSettings)}
    # history_tokens is no config key: the library's history budget, tracked while multi-turn
    assert fields == set(schema) - {"checkpoint", "report_to"} | {"history_tokens"}
    assert {f.name for f in dataclasses.fields(CheckpointRuntime)} == set(schema["checkpoint"]["properties"])


def test_the_history_budget_is_a_param_only_while_a_source_is_multi_turn():
    from bpo.history import HISTORY_TOKENS

    single = TrainSettings.from_config(load_config())
    assert single.history_tokens is None and "history_tokens" not in single.canonical()
    multi = TrainSettings.from_config(load_config(overrides={"sources": {"hh_rlhf": {"multi_turn": True}}}))
    assert multi.canonical()["history_tokens"] == HISTORY_TOKENS
    assert TrainSettings.from_params(multi.canonical()) == multi
    assert TrainSettings.from_params(single.canonical()) == single


def test_defaults_come_from_the_schema_and_edits_show_in_the_canonical_form():
    config = load_config(overrides={"train": {"learning_rate": 1e-4, "lora": {"r": 4}}})
    settings = TrainSettings.from_config(config)
    assert settings.learning_rate == 1e-4 and settings.lora.r == 4
    assert settings.lora.alpha == 32 and settings.lora.target_modules == ("q_proj", "k_proj", "v_proj", "o_proj")
    params = settings.canonical()
    assert list(params) == sorted(params) and "checkpoint" not in params
    assert params["lora"]["target_modules"] == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert TrainSettings.from_params(params) == settings
    # the runtime part is separate: editing it leaves the rule param untouched
    edited = load_config(
        overrides={"train": {"learning_rate": 1e-4, "lora": {"r": 4}, "checkpoint": {"save_steps": 7}}}
    )
    assert TrainSettings.from_config(edited).canonical() == params
    assert CheckpointRuntime.from_config(edited, "out/m").save_steps == 7
    # null: beside the model, named after it (two models trained side by side never share one)
    assert CheckpointRuntime.from_config(edited, "out/optimizer").dir == "out/optimizer_checkpoints"
    assert CheckpointRuntime.from_config(edited, "out/student_bpo").dir == "out/student_bpo_checkpoints"
    given = {**edited, "train": {**edited["train"], "checkpoint": {**edited["train"]["checkpoint"], "dir": "/ck"}}}
    assert CheckpointRuntime.from_config(given, "out/optimizer").dir == "/ck"  # as given, as always
    assert CheckpointRuntime.from_config(given, "out/student_bpo").dir == "/ck/student_bpo"


def test_spec_round_trips_through_its_file(tmp_path):
    config = load_config()
    spec = TrainSpec(
        settings=TrainSettings.from_config(config),
        checkpoint=CheckpointRuntime.from_config(config, "m"),
        train="a.parquet",
        val=None,
        model_dir="m",
        metrics="m.parquet",
        loss_curve="m.png",
    )
    spec.write(tmp_path / "spec.json")
    assert TrainSpec.read(tmp_path / "spec.json") == spec


def test_a_hand_sized_tiny_model_takes_the_schema_defaults_for_the_rest():
    tiny = TinySettings.sized({"hidden_size": 32})
    assert tiny.hidden_size == 32 and tiny.vocab_size == 2048 and tiny.num_layers == 2
    with pytest.raises(ConfigError, match="train.tiny"):
        TinySettings.sized({"hidden_sise": 32})
