"""`snakemake refine_estimate` (rules/refine.smk): round 1's calls, tokens and USD of
candidate_answers and candidate_judgments, from the pool alone, with nothing sent.

The target and the judge are a loopback OpenAI-compatible server (the network boundary), which
counts every request: the estimate sends none (and needs no API key), and the same round, run for
real on candidates of the same pool, sends exactly the calls the estimate counted."""

from __future__ import annotations

import json

import pytest
from conftest import copy_workflow, edit_config, edited_config, job_counts, snakemake
from loopback_server import LoopbackServer, standin_responder

from bpo.schemas import CANDIDATES, SFT, write_table

ESTIMATE = "results/demo/refine/estimate.json"
KEY_ENV = "BPO_REFINE_ESTIMATE_TEST_KEY"
POOL, K = 12, 3
PRICES = {"target-m": {"input": 1.0, "output": 2.0}, "judge-m": {"input": 10.0, "output": 30.0}}


def _set(*keys_and_value):
    *keys, last, value = keys_and_value

    def edit(cfg):
        for key in keys:
            cfg = cfg.setdefault(key, {})
        cfg[last] = value

    return edit


def _responder(body: dict) -> tuple[str, str]:
    """The judge's verdicts are the stand-in's; the target's answers quote the whole question, so
    no two are the same (a repeated answer would be one judge call, below the estimate's bound)."""
    if body["model"] == "judge-m":
        return standin_responder(body)
    return f"An answer to: {body['messages'][-1]['content']}", "stop"


@pytest.fixture(scope="module")
def server():
    with LoopbackServer(responder=_responder) as srv:
        yield srv


@pytest.fixture(scope="module")
def wf(tmp_path_factory, server):
    wf = copy_workflow(tmp_path_factory.mktemp("refine-estimate") / "wf")

    def setup(cfg):
        endpoint = {"backend": "openai", "base_url": server.base_url, "api_key_env": KEY_ENV}
        cfg["llm"]["endpoints"]["loop"] = {**endpoint, "limits": {"max_concurrency": 4, "timeout_s": 30}}
        cfg["llm"]["prices"] = PRICES
        cfg["eval"]["targets"]["loop"] = {"kind": "endpoint", "endpoint": "loop", "model": "target-m", "max_tokens": 64}
        # identical answers would be ties without a call: the estimate's bound, not what this test compares
        cfg["eval"]["judge"].update(endpoint="loop", model="judge-m", max_tokens=32, identical_as_tie=False)
        cfg["refine"] = {"activate": True, "target": "loop", "pool_size": POOL, "k": K}
        cfg["sft"]["val_fraction"] = 0.0  # the real round below draws with an empty SFT validation set

    edit_config(wf, setup)
    snakemake(wf, "--cores", "1", "refine_estimate")
    assert server.total == 0  # nothing sent, and no API key was set
    return wf


def _estimate(wf) -> dict:
    return json.loads((wf / ESTIMATE).read_text())


def _candidates(wf, path) -> None:
    """k distinct rewrites of every prompt of the pool the candidates rule draws (all kept)."""
    from bpo.refine.candidates import draw_pool
    from bpo.settings import load_config
    from bpo.settings.refine import CandidateSettings

    write_table([], wf / "val.parquet", SFT)
    settings = CandidateSettings.from_config(load_config(wf / "config" / "config.yaml"))
    pool, _ = draw_pool(wf / "results/demo/pairs/all.parquet", wf / "val.parquet", settings)
    rows = [
        {
            "prompt_id": p["pair_id"],
            "candidate_id": f"{p['pair_id']}:{j}",
            "round": 1,
            "instruction": p["instruction"],
            "context": p["context"],
            "completion": f"{p['instruction']} Rewrite {j}: answer in detail.",
            "optimized_instruction": f"{p['instruction']} Rewrite {j}: answer in detail.",
            "drop_reason": None,
            "raw": None,
        }
        for p in pool
        for j in range(K)
    ]
    write_table(rows, path, CANDIDATES)


def test_a_real_round_pays_the_calls_the_estimate_counted(wf, server, monkeypatch):
    from bpo.refine.outcomes import answer_candidates, judge_candidates
    from bpo.settings import LLMRuntime, load_config
    from bpo.settings.evaluate import CandidateAnswerSettings, CandidateJudgeSettings

    est = _estimate(wf)
    assert est["pool"]["pool"] == POOL and est["k"] == K and est["compare"] == "vs_original"
    answers, judgments = est["stages"]["candidate_answers"], est["stages"]["candidate_judgments"]
    assert (answers["model"], judgments["model"]) == ("target-m", "judge-m")
    assert answers["requests"] == POOL * (K + 1) and judgments["requests"] == 2 * POOL * K
    assert answers["cached"] == 0 and answers["completion_tokens"] == 64 * answers["calls"]
    assert judgments["completion_tokens"] == 32 * judgments["calls"]
    assert est["total"]["calls"] == answers["calls"] + judgments["calls"]
    usd = (answers["prompt_tokens"] * 1.0 + answers["completion_tokens"] * 2.0) / 1e6
    assert answers["usd"] == pytest.approx(usd, abs=1e-6) and est["by_model"]["target-m"]["usd"] == answers["usd"]
    assert est["total"]["usd"] == pytest.approx(answers["usd"] + judgments["usd"], abs=1e-6)
    assert any("approximated by its prompt's instruction" in n for n in est["notes"])

    monkeypatch.chdir(wf)  # the config's test set paths are relative to the workflow
    monkeypatch.setenv(KEY_ENV, "sk-estimate-test")
    cfg = load_config(wf / "config" / "config.yaml")
    _candidates(wf, wf / "c.parquet")
    start = server.total
    runtime = LLMRuntime.from_config(cfg, "loop")
    answer_candidates(wf / "c.parquet", wf / "a.parquet", CandidateAnswerSettings.from_config(cfg), runtime)
    assert server.total - start == answers["calls"]
    start = server.total
    judge_candidates(wf / "a.parquet", wf / "j.parquet", CandidateJudgeSettings.from_config(cfg), runtime)
    assert server.total - start == judgments["calls"]


def test_asked_again_the_cached_original_answers_are_not_counted(wf, server):
    before = _estimate(wf)["stages"]["candidate_answers"]
    start = server.total
    snakemake(wf, "--cores", "1", "-f", "refine_estimate")
    assert server.total == start
    after = _estimate(wf)["stages"]["candidate_answers"]
    originals = before["parts"]["originals"]["unique"]
    assert after["cached"] == originals == after["parts"]["originals"]["cached"]
    assert after["calls"] == before["calls"] - originals and after["usd"] < before["usd"]
    assert after["parts"]["candidates"] == before["parts"]["candidates"]  # never keyed, never cached


def test_a_price_edit_reestimates_and_changes_the_usd(wf, server):
    before, start = _estimate(wf), server.total
    doubled = {**PRICES, "judge-m": {"input": 20.0, "output": 60.0}}
    with edited_config(wf, _set("llm", "prices", doubled)):
        assert job_counts(snakemake(wf, "-n", "--cores", "1", "refine_estimate")) == {"refine_estimate": 1}
        snakemake(wf, "--cores", "1", "refine_estimate")
    after = _estimate(wf)
    j0, j1 = before["stages"]["candidate_judgments"], after["stages"]["candidate_judgments"]
    assert j1["calls"] == j0["calls"] and j1["usd"] == pytest.approx(2 * j0["usd"], rel=1e-6)
    assert after["stages"]["candidate_answers"]["usd"] == before["stages"]["candidate_answers"]["usd"]
    with edited_config(wf, _set("llm", "prices", {"target-m": PRICES["target-m"]})):  # the judge unpriced
        snakemake(wf, "--cores", "1", "refine_estimate")
    unpriced = _estimate(wf)
    assert unpriced["stages"]["candidate_judgments"]["usd"] is None and unpriced["total"]["usd"] is None
    assert unpriced["stages"]["candidate_judgments"]["unpriced_models"] == ["judge-m"]
    assert server.total == start  # re-estimating sends nothing either


@pytest.mark.parametrize(
    "edit, key",
    [
        (_set("refine", "target", "nope"), "refine.target"),
        (_set("refine", "compare", "sideways"), "refine.compare"),
        (_set("refine", "k", 1), "refine.k"),
    ],
    ids=["missing target", "unknown compare", "k below 2"],
)
def test_bad_config_names_the_key(wf, server, edit, key):
    start = server.total
    with edited_config(wf, edit):
        proc = snakemake(wf, "--cores", "1", "-f", "refine_estimate", check=False)
    assert proc.returncode != 0 and key in proc.stdout + proc.stderr
    assert "Traceback (most recent call last)" not in proc.stdout + proc.stderr  # no bare Python traceback
    assert server.total == start


@pytest.mark.usefixtures("run_from_repo")
def test_settings_round_trip_and_carry_only_the_two_models_prices():
    from conftest import REPO

    from bpo.settings import load_config
    from bpo.settings.refine import RefineEstimateSettings

    paper = load_config(REPO / "config" / "config.yaml", REPO / "config" / "paper.yaml")
    settings = RefineEstimateSettings.from_config(paper)
    assert RefineEstimateSettings.from_params(settings.canonical()) == settings
    assert set(settings.prices) == {"gpt-3.5-turbo", "gpt-4"}  # claude-2's price changes nothing here
    assert settings.sft_val_fraction == paper["sft"]["val_fraction"]
    ready_made = load_config(overrides={"sft": {"source": "bpo_dataset", "bpo_dataset": {"hub_id": "THUDM/BPO"}}})
    assert RefineEstimateSettings.from_config(ready_made).sft_val_fraction is None  # its ids are not the pairs'


def test_the_sft_split_rule_keeps_its_val_pairs_out_of_the_pool(wf, server, tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    from bpo.refine.estimate import estimate_refine
    from bpo.settings import LLMRuntime, load_config
    from bpo.settings.refine import RefineEstimateSettings
    from bpo.sft.core import is_val

    monkeypatch.chdir(wf)
    cfg = load_config(
        wf / "config" / "config.yaml", overrides={"sft": {"val_fraction": 0.3}, "refine": {"pool_size": 500}}
    )
    pairs = wf / "results/demo/pairs/all.parquet"
    runtime, start = LLMRuntime.from_config(cfg, "loop"), server.total
    est = estimate_refine(
        RefineEstimateSettings.from_config(cfg), runtime, runtime, pairs_path=pairs, output=tmp_path / "e.json"
    )
    in_val = sum(is_val(p, cfg["sft"]["seed"], 0.3) for p in pq.read_table(pairs).column("pair_id").to_pylist())
    assert 0 < est["pool"]["excluded"]["in the SFT validation set"] == in_val
    assert est["pool"]["pool"] == est["pool"]["eligible"] < 500  # every eligible pair, with a warning
    assert est["stages"]["candidate_answers"]["requests"] == est["pool"]["pool"] * (K + 1)
    assert json.loads((tmp_path / "e.json").read_text()) == json.loads(json.dumps(est))
    assert server.total == start  # nothing sent
