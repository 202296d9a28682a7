"""The LLMCall settings type and its one request builder: the demo's and the paper's calls keep
the cache keys they had before (no call is paid twice), and the stage's params stay flat."""

import json
from pathlib import Path

import pytest

from bpo.critique import build_requests
from bpo.eval.judge import judge_request
from bpo.eval.optimize import rewrite_request
from bpo.llm import call_request
from bpo.settings import CritiqueSettings, LLMCall, SettingsError, load_config
from bpo.settings.evaluate import EndpointTargetSettings, JudgeSettings
from bpo.settings.optimize import LLMRewriteSettings
from bpo.templates import load_critique as critique_template
from bpo.templates import load_judge as judge_template
from bpo.templates import load_rewrite

DATA = Path(__file__).parent / "data"
# the same inputs as tests/data/record_request_keys.py, which recorded the keys with the old code
from tests.data.record_request_keys import ANSWERS, CONFIGS, PAIRS, QUESTIONS, VARIANTS  # noqa: E402

RECORDED = json.loads((DATA / "request_keys.json").read_text())


def _keys(config: dict) -> dict:
    out = {}
    crit = CritiqueSettings.from_config(config)
    out["critique"] = [r.key for r in build_requests(PAIRS, critique_template(crit.template), crit.call)]
    for name, t in config["eval"]["targets"].items():
        if t["kind"] == "endpoint" and t["endpoint"]:
            call = EndpointTargetSettings.from_config(config, name).call
            out[f"answer/{name}"] = [call_request(call, q).key for q in QUESTIONS]
    judge = JudgeSettings.from_config(config)
    template = judge_template(judge.template)
    out["judge"] = [judge_request(judge, template, QUESTIONS[0], a, b).key for a, b in (ANSWERS, ANSWERS[::-1])]
    for name, o in config["eval"]["optimizers"].items():
        if o["kind"] == "llm_rewrite":
            s = LLMRewriteSettings.from_config(config, next(iter(config["eval"]["testsets"])), name)
            tpl = load_rewrite(s.template)
            out[f"llm_rewrite/{name}"] = [rewrite_request(s, tpl, q).key for q in QUESTIONS]
    return out


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("config_name", sorted(CONFIGS))
def test_request_keys_are_the_recorded_ones(config_name, variant):
    config = load_config(*CONFIGS[config_name], overrides=VARIANTS[variant])
    if variant:
        for t in config["eval"]["targets"].values():
            t["system_prompt"] = "Answer briefly."
    recorded = RECORDED[f"{config_name}{variant}"]
    assert _keys(config) == recorded
    assert sum(len(v) for v in recorded.values()) >= 6


def test_canonical_form_is_flat_and_round_trips():
    config = load_config(*CONFIGS["paper"])
    for settings in (
        CritiqueSettings.from_config(config),
        JudgeSettings.from_config(config),
        EndpointTargetSettings.from_config(config, "gpt-3.5-turbo"),
        LLMRewriteSettings.from_config(config, "vicuna_eval", "llm_rewrite"),
    ):
        canon = settings.canonical()
        assert "call" not in canon and canon["model"] == settings.call.model
        assert canon["endpoint"] == settings.call.endpoint.canonical() and list(canon) == sorted(canon)
        assert type(settings).from_params(canon) == settings


def test_system_prompt_of_the_template_wins_and_empty_sends_none():
    config = load_config(overrides={"critique": {"system_prompt": "Be strict."}})
    call = CritiqueSettings.from_config(config).call
    assert [m["role"] for m in call_request(call, "u").body["messages"]] == ["system", "user"]
    assert call_request(call, "u", system="Other.").body["messages"][0]["content"] == "Other."
    bare = call.replace(system_prompt="")
    assert call_request(bare, "u").body["messages"] == [{"role": "user", "content": "u"}]


def test_missing_endpoint_or_model_names_the_key():
    config = load_config(overrides={"critique": {"model": ""}})
    with pytest.raises(SettingsError, match="config critique.model: the critique stage needs a model name"):
        CritiqueSettings.from_config(config)
    config = load_config(overrides={"eval": {"judge": {"endpoint": "nowhere"}}})
    with pytest.raises(SettingsError, match="'nowhere' is not defined under llm.endpoints"):
        JudgeSettings.from_config(config)
    with pytest.raises(SettingsError, match="missing key"):
        LLMCall.from_mapping({"model": "m"}, "x")


def test_every_stage_keeps_its_params():
    """The canonical params of the critique, judge, answer, optimize and report stages are those
    recorded before LLMCall and the plan (tests/data/record_stage_params.py): nothing reruns."""
    from tests.data.record_stage_params import stage_params

    assert stage_params() == json.loads((DATA / "stage_params.json").read_text())


def test_a_later_optional_field_is_left_out_while_unset():
    config = load_config()
    crit = CritiqueSettings.from_config(config)
    assert "system_prompt" not in crit.canonical() and CritiqueSettings.from_params(crit.canonical()) == crit
    judge = JudgeSettings.from_config(config)
    assert judge.canonical()["system_prompt"] is None  # a judge always had one: kept as it was
    set_ = CritiqueSettings.from_config(load_config(overrides={"critique": {"system_prompt": "Be strict."}}))
    assert set_.canonical()["system_prompt"] == "Be strict." and CritiqueSettings.from_params(set_.canonical()) == set_
