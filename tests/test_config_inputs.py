"""Every configured local input is checked before planning: one line per problem naming the
config key and the path; a hub id is not a path; inputs the run does not use are not checked."""

from __future__ import annotations

import pytest

from bpo.config_inputs import check_inputs, input_problems, is_hub_id, model_location_problem
from bpo.settings import ConfigError, load_config

MISSING = "nowhere/at/all/x.jsonl"


def problems(overrides):
    return input_problems(load_config(overrides=overrides))


def test_default_and_paper_configs_have_no_input_problems():
    assert problems({}) == []
    assert input_problems(load_config("config/config.yaml", "config/paper.yaml")) == []


@pytest.mark.parametrize(
    "overrides, line",
    [
        ({"sources": {"hh_rlhf": {"path": MISSING}}}, f"config sources.hh_rlhf.path: {MISSING} does not exist"),
        (
            {"sources": {"alpaca_gpt4": {"bad_path": MISSING}}},
            f"config sources.alpaca_gpt4.bad_path: {MISSING} does not exist",
        ),
        ({"sources": {"oasst1": {"path": None}}}, "config sources.oasst1: set path or hub_id"),
        (
            {"sft": {"source": "bpo_dataset", "bpo_dataset": {"path": MISSING}}},
            f"config sft.bpo_dataset.path: {MISSING} does not exist",
        ),
        (
            {"eval": {"testsets": {"vicuna_eval": {"path": MISSING}}}},
            f"config eval.testsets.vicuna_eval.path: {MISSING} does not exist",
        ),
        (
            {"eval": {"sft_rewrite": {"activate": True, "path": MISSING}}},
            f"config eval.sft_rewrite.path: {MISSING} does not exist",
        ),
        ({"eval": {"sft_rewrite": {"activate": True, "path": None}}}, "config eval.sft_rewrite.path: not set"),
        (
            {"critique": {"template": "my_templates/nope.txt"}},
            "config critique.template: my_templates/nope.txt does not exist",
        ),
        (
            {"eval": {"judge": {"template": "my_templates/nope.txt"}}},
            "config eval.judge.template: my_templates/nope.txt does not exist",
        ),
        (
            {"eval": {"optimizers": {"mine": {"kind": "model", "model": "results/models/nope"}}}},
            "config eval.optimizers.mine.model: results/models/nope does not exist (and is not a hub id",
        ),
        (
            {"eval": {"targets": {"local": {"kind": "hf", "model": "./models/nope"}}}},
            "config eval.targets.local.model: ./models/nope does not exist (and is not a hub id",
        ),
        (
            {"train": {"base_model": "/models/llama/nope"}},
            "config train.base_model: /models/llama/nope does not exist (and is not a hub id",
        ),
        (
            {"train": {"deepspeed": "config/deepspeed/nope.json"}},
            "config train.deepspeed: config/deepspeed/nope.json does not exist",
        ),
        ({"train": {"deepspeed": "config/deepspeed"}}, "config train.deepspeed: config/deepspeed is not a file"),
        (
            {"sources": {"oasst1": {"path": "bpo/resources/templates"}}},
            "config sources.oasst1.path: bpo/resources/templates: folder holds no data files",
        ),
    ],
    ids=lambda v: next(iter(v)) if isinstance(v, dict) else None,
)
def test_missing_configured_input_names_key_and_path(overrides, line):
    found = problems(overrides)
    assert len(found) == 1 and found[0].startswith(line), found


def test_every_problem_is_one_line_and_check_inputs_raises_them_all():
    config = load_config(
        overrides={"sources": {"hh_rlhf": {"path": MISSING}}, "train": {"deepspeed": "config/deepspeed/nope.json"}}
    )
    with pytest.raises(ConfigError) as err:
        check_inputs(config)
    assert str(err.value).splitlines() == [
        f"config sources.hh_rlhf.path: {MISSING} does not exist",
        "config train.deepspeed: config/deepspeed/nope.json does not exist",
    ]


def test_hub_ids_and_unused_inputs_are_not_checked():
    assert (
        problems(
            {
                "eval": {
                    "optimizers": {"bpo": {"kind": "model", "model": "THUDM/BPO"}},
                    "targets": {"llama": {"kind": "hf", "model": "gpt2"}},
                },
                "train": {"base_model": "meta-llama/Llama-2-7b-chat-hf"},
                "sources": {
                    "hh_rlhf": {"path": MISSING, "hub_id": "Anthropic/hh-rlhf"},  # the hub id replaces path
                    "oasst1": {"activate": False, "path": MISSING},
                },
                "sft": {"bpo_dataset": {"path": MISSING}},  # sft.source is critiques
            }
        )
        == []
    )
    # nothing is evaluated without an active target: test sets and the judge are unused
    assert (
        problems(
            {
                "eval": {
                    "targets": {"standin": {"activate": False}, "smollm2": {"activate": False}},
                    "testsets": {"vicuna_eval": {"path": MISSING}},
                }
            }
        )
        == []
    )


@pytest.mark.parametrize(
    "value, hub",
    [
        ("gpt2", True),
        ("THUDM/BPO", True),
        ("meta-llama/Llama-2-7b-chat-hf", True),
        ("results/models/nope", False),
        ("./x", False),
        ("/abs/x", False),
        ("../x", False),
        ("a/../b", False),
        ("~/x", False),
    ],
)
def test_is_hub_id(value, hub):
    assert is_hub_id(value) is hub


def test_model_location_of_an_existing_file_is_a_problem(tmp_path):
    (tmp_path / "f").write_text("x")
    assert model_location_problem(str(tmp_path / "f")) == f"{tmp_path / 'f'} is not a folder"
    assert model_location_problem(str(tmp_path)) is None
