"""``backend: local``: a tiny HF model folder (built here, no download) answers through the real
client path (AsyncOpenAI -> httpx2 -> local transport -> batching worker -> bpo.generation)."""

from __future__ import annotations

import json
import threading

import pytest
import yaml
from conftest import copy_workflow, job_counts, snakemake
from eval_helpers import save_tiny_model

from bpo.generation import GenerationSettings, generate_chat, load_model
from bpo.llm import ChatRequest, LLMError, make_client
from bpo.llm.cache import Cache
from bpo.llm.local import local_worker
from bpo.llm.usage import format_report, usage_report
from bpo.schemas import ANSWERS, OPTIMIZED, ORIGINAL_ANSWERS, read_table, write_table
from bpo.settings import EndpointSettings, LLMRuntime, SettingsError, load_config
from bpo.settings.evaluate import EndpointTargetSettings

PAIRS = [
    ("What is the capital of France?", "Paris is the capital of France."),
    ("Name a colour.", "Blue is a colour."),
] * 4


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny_local"), PAIRS)


def _config(tmp_path, model, **endpoint):
    ep = {"backend": "local", "model": model, **endpoint}
    return load_config(
        overrides={
            "llm": {"cache": str(tmp_path / "cache.sqlite"), "endpoints": {"loc": ep}},
            "eval": {
                "targets": {"loc": {"kind": "endpoint", "endpoint": "loc", "model": "tiny-label", "max_tokens": 6}}
            },
        }
    )


def _client(config, stage="answer"):
    return make_client(
        EndpointSettings.from_config(config, "loc"), LLMRuntime.from_config(config, "loc"), stage, progress=False
    )


def _requests(count, **kw):
    kw = {"temperature": 0, "max_tokens": 6, **kw}
    return [
        ChatRequest(model="tiny-label", messages=[{"role": "user", "content": f"Question number {i}?"}], **kw)
        for i in range(count)
    ]


class _Counter:
    """Counts the worker's generate_chat calls (the hook the worker offers for this)."""

    def __init__(self, worker):
        self.calls, self.sizes, self._lock = 0, [], threading.Lock()
        self.worker, self._old = worker, worker.on_generate
        worker.on_generate = self

    def __call__(self, n):
        with self._lock:
            self.calls += 1
            self.sizes.append(n)

    def close(self):
        self.worker.on_generate = self._old


def test_answers_statuses_usage_batching_and_cache(tiny, tmp_path):
    config = _config(tmp_path, tiny)
    client = _client(config)
    counter = _Counter(local_worker(tiny, "auto"))
    try:
        requests = _requests(8)
        results = client.run(requests)
        assert counter.calls < len(requests)  # the concurrent requests were batched
        assert sum(counter.sizes) == 8
        assert all(r.status == "truncated" and r.finish_reason == "length" for r in results)  # 6 tokens, no EOS
        assert all(r.completion_tokens == 6 and r.prompt_tokens > 0 and r.backend == "local" for r in results)
        assert all(r.model == tiny and not r.cached for r in results)
        assert client.last_stats["engines"] == ["lean bpo-0.1.0"]
        calls = counter.calls
        again = _client(config).run(requests)  # a new client, as a rerun of the stage
        assert counter.calls == calls  # zero generations
        assert [r.text for r in again] == [r.text for r in results] and all(r.cached for r in again)
    finally:
        counter.close()
    with Cache(config["llm"]["cache"]) as cache:
        rows = list(cache.rows())
    assert len(rows) == 8 and {r["backend"] for r in rows} == {client.source}
    assert client.source.startswith("local:") and len(client.source) == len("local:") + 16
    report = usage_report(config["llm"]["cache"])
    assert report[0]["completion_tokens"] == 48 and report[0]["usd"] == 0.0
    assert "(local)" in format_report(report)


def test_requests_with_other_decoding_are_generated_apart(tiny, tmp_path):
    """Sampled requests are grouped by their decoding (here the seed): one generate call never
    mixes settings."""
    config = _config(tmp_path, tiny)
    counter = _Counter(local_worker(tiny, "auto"))
    try:
        requests = [r for seed in (1, 2) for r in _requests(3, temperature=0.8, top_p=0.9, seed=seed)]
        results = _client(config).run(requests)
        assert counter.calls >= 2 and sum(counter.sizes) == 6 and max(counter.sizes) <= 3
    finally:
        counter.close()
    assert all(r.status in ("ok", "truncated") and r.text is not None for r in results)


@pytest.mark.parametrize("engine", ["auto", "hf-generate"])
def test_greedy_answers_equal_generate_chat(tiny, tmp_path, engine):
    config = _config(tmp_path, tiny, engine=engine)
    conversations = [
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}],
        [{"role": "user", "content": "What is the capital of France?"}],
    ]
    requests = [ChatRequest(model="x", messages=c, temperature=0, max_tokens=5) for c in conversations]
    client = _client(config)
    results = client.run(requests)
    settings = GenerationSettings(
        engine=engine, temperature=1.0, top_p=1.0, max_new_tokens=5, batch_size=1, seed=0, greedy=True
    )
    generated = generate_chat(load_model(tiny), conversations, settings)
    expected = generated.outputs
    assert client.last_stats["engines"] == [str(generated.engine)]  # the engine that ran, as EngineRecord says
    assert [r.text for r in results] == [g.text for g in expected]
    assert [r.completion_tokens for r in results] == [g.completion_tokens for g in expected]
    assert [r.prompt_tokens for r in results] == [g.prompt_tokens for g in expected]


def test_stop_cuts_the_reply_and_counts_its_tokens(tiny, tmp_path):
    config = _config(tmp_path, tiny)
    full = _client(config).run(_requests(1, max_tokens=8))[0]
    stop = full.text[3:5]  # a string inside the greedy reply
    cut = _client(config).run(_requests(1, max_tokens=8, stop=[stop]))[0]
    assert cut.status == "ok" and cut.finish_reason == "stop"
    assert cut.text == full.text[: full.text.find(stop)]
    assert cut.completion_tokens < full.completion_tokens


def test_unsupported_fields_are_errors_naming_them(tiny, tmp_path):
    config = _config(tmp_path, tiny)
    res = _client(config).run(_requests(1, n=2) + _requests(1, extra={"logprobs": True}))
    assert [r.status for r in res] == ["error", "error"]
    assert "n=2" in res[0].error and "'logprobs'" in res[1].error
    with Cache(config["llm"]["cache"]) as cache:
        assert cache.count() == 0  # errors are not answers: the next run tries again


def test_sources_separate_weights_and_never_serve_other_backends(tiny, tmp_path):
    """Rows of a local model are labelled with its weights: other weights, dtypes and the
    replay backend (which serves real-endpoint answers) never see them."""
    config = _config(tmp_path, tiny)
    _client(config).run(_requests(2))
    other = save_tiny_model(tmp_path / "other", list(reversed(PAIRS)) + [("Hi.", "Hello there.")])
    assert _client(_config(tmp_path, other)).source != _client(config).source
    assert _client(_config(tmp_path, tiny, dtype="float32")).source != _client(config).source
    replay = load_config(
        overrides={"llm": {"cache": config["llm"]["cache"], "endpoints": {"loc": {"backend": "replay"}}}}
    )
    from bpo.llm import ReplayMiss

    with pytest.raises(ReplayMiss):
        _client(replay).run(_requests(2))


def test_config_errors_name_the_key(tmp_path, tiny):
    bad = load_config(overrides={"llm": {"endpoints": {"loc": {"backend": "local"}}}})
    with pytest.raises(SettingsError, match=r"llm\.endpoints\.loc\.model is required"):
        EndpointSettings.from_config(bad, "loc")
    remote = load_config(overrides={"llm": {"endpoints": {"loc": {"backend": "openai", "model": tiny}}}})
    with pytest.raises(SettingsError, match=r"llm\.endpoints\.loc\.model is only for backend local"):
        EndpointSettings.from_config(remote, "loc")
    missing = _config(tmp_path, str(tmp_path / "no-such-model"))
    with pytest.raises(LLMError, match=r"llm\.endpoints\.loc\.model"):
        _client(missing).run(_requests(1))
    canon = EndpointSettings.from_config(_config(tmp_path, tiny, engine="hf-generate"), "loc").canonical()
    assert canon["local"] == {"model": tiny, "dtype": "auto", "engine": "hf-generate", "default_max_tokens": 1024}
    assert EndpointSettings.from_params(canon) == EndpointSettings.from_config(
        _config(tmp_path, tiny, engine="hf-generate"), "loc"
    )


def test_answer_stage_with_a_local_endpoint_target(tiny, tmp_path):
    """The answer stage's library entry point (rule answer) with a target on a local endpoint."""
    from bpo.eval.answer import answer_optimized, endpoint_answerer
    from bpo.schemas import ORIGINAL_ANSWERS

    pairs = [("Name a colour.", "Name one colour."), ("Capital of France?", "What is the capital of France?")]
    rows = [
        {
            "item_id": str(i),
            "testset": "demo",
            "optimizer": "trained",
            "category": None,
            "instruction": ins,
            "context": "",
            "optimized_instruction": opt,
            "fallback_reason": None,
            "reference_optimized": None,
        }
        for i, (ins, opt) in enumerate(pairs)
    ]
    write_table(rows, tmp_path / "optimized.parquet", OPTIMIZED)
    write_table(
        [
            {
                "item_id": str(i),
                "testset": "demo",
                "target": "loc",
                "category": None,
                "question": ins,
                "answer": "an earlier answer",
                "status": "ok",
                "backend": "standin",
            }
            for i, (ins, _) in enumerate(pairs)
        ],
        tmp_path / "original.parquet",
        ORIGINAL_ANSWERS,
    )
    config = _config(tmp_path, tiny)
    target = EndpointTargetSettings.from_config(config, "loc")
    runtime = LLMRuntime.from_config(config, "loc")
    answer_optimized(
        tmp_path / "optimized.parquet",
        tmp_path / "original.parquet",
        tmp_path / "answers.parquet",
        target.name,
        endpoint_answerer(target, runtime),
    )
    out = read_table(tmp_path / "answers.parquet", ANSWERS).to_pylist()
    assert [r["item_id"] for r in out] == ["0", "1"]
    assert all(
        r["backend"] == "local+standin" and r["status_optimized"] == "truncated" and r["answer_optimized"] for r in out
    )
    with Cache(config["llm"]["cache"]) as cache:
        body = json.loads(next(iter(cache.rows()))["request"])
    assert body["model"] == "tiny-label" and body["max_tokens"] == 6


@pytest.mark.parametrize("name", ["vllm-local.yaml", "local-endpoint.yaml"])
def test_example_configs_validate_and_build_their_endpoints(name):
    from pathlib import Path

    from bpo.settings.config import DEFAULT_CONFIG_PATH

    path = Path(DEFAULT_CONFIG_PATH).parent / "examples" / name
    config = load_config(DEFAULT_CONFIG_PATH, path)
    for target, t in config["eval"]["targets"].items():
        if t["kind"] == "endpoint":
            ep = EndpointTargetSettings.from_config(config, target).call.endpoint
            assert (ep.local is not None) == (ep.backend == "local")
    if name == "vllm-local.yaml":
        ep = EndpointSettings.from_config(config, "vllm")
        assert ep.base_url == "http://localhost:8000/v1" and ep.api_key_env is None and ep.backend == "openai"


@pytest.mark.slow
def test_answer_rule_under_snakemake_with_a_local_endpoint(tiny, tmp_path):
    """Rule answer_original runs end to end with a target on a local endpoint;
    the log names the cache source and the engine that ran."""
    wf = copy_workflow(tmp_path / "wf")
    (wf / "local.yaml").write_text(
        yaml.safe_dump(
            {
                "llm": {"endpoints": {"loc": {"backend": "local", "model": tiny}}},
                "eval": {"targets": {"loc": {"kind": "endpoint", "endpoint": "loc", "model": "tiny", "max_tokens": 6}}},
            }
        )
    )
    target = "results/demo/eval/dolly_eval/loc/original_answers.parquet"
    assert job_counts(snakemake(wf, "-n", "--cores", "1", target, "--configfile", "local.yaml")) == {
        "answer_original": 1
    }
    snakemake(wf, "--cores", "1", target, "--configfile", "local.yaml")
    out = read_table(wf / target, ORIGINAL_ANSWERS).to_pylist()
    assert out[0]["backend"] == "local" and out[0]["status"] == "truncated" and out[0]["answer"]
    log = (wf / "logs/demo/eval/answer_original_dolly_eval_loc.log").read_text()
    assert "cache source local:" in log and "engine lean" in log
