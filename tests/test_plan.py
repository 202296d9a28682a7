"""The plan of what runs (bpo.settings.plan) and the registry of optimizer kinds: one place
decides what is active, and an optimizer runs through the function its kind registers."""

from __future__ import annotations

import pytest
from conftest import REPO

from bpo.eval.optimize import run_optimizer
from bpo.schemas import OPTIMIZED, read_metadata, read_table
from bpo.settings import ConfigError, SettingsError, load_config
from bpo.settings.critique import CritiqueEstimateSettings
from bpo.settings.evaluate import model_roles
from bpo.settings.optimize import OPTIMIZER_KINDS, optimizer_kind, optimizer_settings
from bpo.settings.plan import Plan, optimizer_model

PAPER = (REPO / "config" / "config.yaml", REPO / "config" / "paper.yaml")


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    monkeypatch.chdir(REPO)  # template paths are relative to the repository root


def test_default_and_paper_plans():
    demo = Plan.from_config(load_config())
    assert demo.optimizers == {"trained": "trained", "identity": "identity"} and demo.trains_optimizer
    assert demo.targets_of("hf") == ["smollm2"] and demo.targets_of("endpoint") == ["standin"]
    assert len(demo.triples()) == len(demo.testsets) * 2 * 2
    paper = Plan.from_config(load_config(*PAPER))
    assert paper.targets_of() == ["gpt-3.5-turbo", "claude-2"] and paper.sources
    generating = [n for n, k in paper.optimizers.items() if k in ("trained", "model")]
    assert paper.optimizers_of("trained", "model") == generating


def test_switching_off_removes_everywhere():
    """One switch, every reader: the estimate's sources, the models table and the triples."""
    config = load_config(
        overrides={
            "sources": {"oasst1": {"activate": False}},
            "eval": {"targets": {"standin": {"activate": False}}, "optimizers": {"trained": {"activate": False}}},
        }
    )
    plan = Plan.from_config(config)
    assert "oasst1" not in plan.sources and CritiqueEstimateSettings.from_config(config).sources == plan.sources
    roles = {(r.role, r.name) for r in model_roles(config)}
    assert ("target", "standin") not in roles and ("critic", "critic") not in roles  # nothing trained: no critic
    assert not plan.trains_optimizer and all(opt != "trained" for _, opt, _ in plan.triples())


def test_model_input_by_kind():
    config = load_config(
        overrides={
            "eval": {
                "optimizers": {
                    "hub": {"kind": "model", "model": "THUDM/BPO"},
                    "rw": {"kind": "llm_rewrite", "endpoint": "standin", "model": "m"},
                }
            }
        }
    )
    assert optimizer_model(config, "trained") == "trained" and optimizer_model(config, "hub") == "THUDM/BPO"
    assert optimizer_model(config, "identity") is None and optimizer_model(config, "rw") is None
    with pytest.raises(SettingsError, match="eval.optimizers has no optimizer 'nope'"):
        optimizer_model(config, "nope")


def test_unknown_kind_names_the_key():
    with pytest.raises(ConfigError, match="eval.optimizers.x.kind: 'truncate' is not one of"):
        load_config(overrides={"eval": {"optimizers": {"x": {"kind": "truncate"}}}})
    config = load_config()
    config["eval"]["optimizers"]["identity"]["kind"] = "truncate"  # past the schema (a config built in code)
    with pytest.raises(SettingsError, match="eval.optimizers.identity.kind: 'truncate' is not one of"):
        Plan.from_config(config)


def test_every_kind_runs_through_its_registered_function(tmp_path):
    assert set(OPTIMIZER_KINDS) == {"trained", "model", "identity", "llm_rewrite", "refined"}
    config = load_config(overrides={"eval": {"optimizers": {"none": {"kind": "identity"}}}})
    params = optimizer_settings(config, "dolly_eval", "none").canonical()
    stats = run_optimizer(tmp_path / "o.parquet", config, params)
    rows = read_table(tmp_path / "o.parquet", OPTIMIZED).to_pylist()
    assert rows and all(r["optimized_instruction"] == r["instruction"] for r in rows) and stats
    assert read_metadata(tmp_path / "o.parquet")["optimizer_kind"] == "identity"
    assert optimizer_kind(config, "none").run == "bpo.eval.optimize:identity_testset"
