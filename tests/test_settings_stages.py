"""Settings of the data, critique and SFT stages: built from the default and the paper config,
no defaults of their own, and the canonical form (a rule's one param) rebuilds the same object."""

from __future__ import annotations

import dataclasses

import pytest
from conftest import REPO

from bpo.settings import (
    CleaningSettings,
    CritiqueEstimateSettings,
    CritiqueSettings,
    MergeSettings,
    PairsSourceSettings,
    SettingsError,
    SFTSettings,
    SourceSettings,
    load_config,
)

CONFIGS = {"default": (), "paper": (REPO / "config" / "config.yaml", REPO / "config" / "paper.yaml")}


pytestmark = pytest.mark.usefixtures("run_from_repo")


@pytest.mark.parametrize("name", CONFIGS)
def test_every_stage_settings_round_trip(name):
    config = load_config(*CONFIGS[name])
    built = [PairsSourceSettings.from_config(config, s) for s in config["sources"]]
    built += [
        MergeSettings.from_config(config),
        CritiqueSettings.from_config(config),
        CritiqueEstimateSettings.from_config(config),
        SFTSettings.from_config(config),
    ]
    for settings in built:
        params = settings.canonical()
        assert list(params) == sorted(params)
        assert type(settings).from_params(params) == settings


@pytest.mark.parametrize(
    "cls",
    [
        SourceSettings,
        CleaningSettings,
        PairsSourceSettings,
        MergeSettings,
        CritiqueSettings,
        CritiqueEstimateSettings,
        SFTSettings,
    ],
)
def test_no_defaults_outside_the_schema(cls):
    assert all(
        f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING for f in dataclasses.fields(cls)
    )


def test_bpo_dataset_only_in_that_mode():
    config = load_config(overrides={"sft": {"bpo_dataset": {"hub_id": "THUDM/BPO"}}})
    assert SFTSettings.from_config(config).bpo_dataset is None
    config = load_config(overrides={"sft": {"source": "bpo_dataset", "bpo_dataset": {"hub_id": "THUDM/BPO"}}})
    assert SFTSettings.from_config(config).bpo_dataset.hub_id == "THUDM/BPO"


def test_bad_params_name_the_key():
    params = SFTSettings.from_config(load_config()).canonical()
    del params["seed"]
    with pytest.raises(SettingsError, match="SFTSettings.seed"):
        SFTSettings.from_params(params)
    with pytest.raises(SettingsError, match="sources.nope"):
        PairsSourceSettings.from_config(load_config(), "nope")
