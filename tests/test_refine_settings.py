"""Settings of the refinement loop: off by default, kind refined names a round that runs, the
candidate pool leaves out the SFT validation set and every test set question, and the eval's
existing optimizers keep their params (nothing reruns because the loop exists)."""

from __future__ import annotations

import pytest

from bpo.eval.testsets import load_configured
from bpo.refine.candidates import draw_pool
from bpo.schemas import PAIRS, SFT, write_table
from bpo.settings import SettingsError, load_config
from bpo.settings.optimize import optimizer_settings, refine_rounds, refined_round
from bpo.settings.plan import Plan, optimizer_model
from bpo.settings.refine import CandidateSettings, RefineTrainSettings

REFINED = {"eval": {"optimizers": {"ref": {"kind": "refined"}}}}


def test_off_by_default_and_kind_refined_needs_it():
    config = load_config()
    assert config["refine"]["activate"] is False and refine_rounds(config) == 0
    with pytest.raises(SettingsError, match="eval.optimizers.ref: kind refined needs refine.activate: true"):
        optimizer_settings(load_config(overrides=REFINED), "dolly_eval", "ref")


def test_refined_round_defaults_to_the_last_and_must_exist():
    config = load_config(overrides={**REFINED, "refine": {"activate": True, "rounds": 3}})
    assert refined_round(config, "ref") == 3 and optimizer_model(config, "ref") == "refined"
    assert Plan.from_config(config).trains_optimizer
    assert optimizer_settings(config, "dolly_eval", "ref").canonical()["round"] == 3
    config["eval"]["optimizers"]["ref"]["round"] = 4
    with pytest.raises(SettingsError, match=r"eval.optimizers.ref.round: 4 is not a round of refine.rounds \(3\)"):
        optimizer_settings(config, "dolly_eval", "ref")


def test_existing_optimizers_keep_their_params():
    # "round" is left out of the params while unset: the demo's optimize jobs do not rerun
    assert "round" not in optimizer_settings(load_config(), "dolly_eval", "trained").canonical()


def test_dpo_settings_extend_the_sft_run():
    config = load_config(overrides={"refine": {"train": {"learning_rate": 1e-6, "max_steps": 5}}})
    hp = RefineTrainSettings.from_config(config).trainer_settings("some/folder")
    assert hp.base_model == "some/folder" and hp.learning_rate == 1e-6 and hp.max_steps == 5
    assert hp.lora == RefineTrainSettings.from_config(config).train.lora and not hp.packing


def _pair(i: int, instruction: str) -> dict:
    return {
        "pair_id": f"id{i}",
        "source": "oasst1",
        "source_id": None,
        "instruction": instruction,
        "context": "",
        "good_response": "g",
        "bad_response": "b",
        "good_model": None,
        "bad_model": None,
        "language": None,
        "num_turns": 1,
        "history": [],
        "history_chars": 0,
    }


def test_pool_leaves_out_sft_validation_and_test_questions(tmp_path, run_from_repo):
    config = load_config()
    settings = CandidateSettings.from_config(config)
    test_question = load_configured(settings.excluded_testsets[0]).items[0].instruction
    multi_turn = {**_pair(12, "and in French?"), "history": [{"role": "user", "content": "Say hello"}], "num_turns": 2}
    pairs = [_pair(0, "val prompt"), _pair(1, "  " + test_question.upper() + " "), multi_turn] + [
        _pair(i, f"prompt {i}") for i in range(2, 12)
    ]
    write_table(pairs, tmp_path / "pairs.parquet", PAIRS)
    sft_row = {"pair_id": "id0", "source": "oasst1", "prompt": "p", "optimized_prompt": "o", "history": []}
    write_table([sft_row], tmp_path / "v", SFT)
    pool, stats = draw_pool(tmp_path / "pairs.parquet", tmp_path / "v", settings.replace(pool_size=5))
    assert stats["excluded"] == {"in the SFT validation set": 1, "a test set question": 1, "a multi-turn pair": 1}
    assert len(pool) == 5 and {p["pair_id"] for p in pool} <= {f"id{i}" for i in range(2, 12)}
    # the draw depends on the pair ids and the seed, not on the file's order
    write_table(pairs[::-1], tmp_path / "rev.parquet", PAIRS)
    again, _ = draw_pool(tmp_path / "rev.parquet", tmp_path / "v", settings.replace(pool_size=5))
    assert [p["pair_id"] for p in again] == [p["pair_id"] for p in pool]
