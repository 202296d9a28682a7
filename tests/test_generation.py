"""bpo.generation: engine choice (auto), the record of the engine that ran, lean == hf-generate
under greedy decoding, chat prompts with token counts, vLLM imported only when chosen."""

from __future__ import annotations

import sys

import pytest
import torch
from eval_helpers import save_tiny_model

from bpo.generation import GenerationSettings, LocalModel, generate, generate_chat, load_model, resolve_engine

QUESTIONS = ["What is the capital of France?", "Name a colour.", "Why is the sky blue? Answer in one line.", "Hi"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random tiny Llama with a chat template (a target's layout)."""
    pairs = [(q, "A short answer.") for q in QUESTIONS] * 2
    path = save_tiny_model(tmp_path_factory.mktemp("tiny_chat"), pairs)
    model = load_model(path)
    model.tokenizer.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    with torch.no_grad():  # wider weights: outputs differ from prompt to prompt
        torch.manual_seed(0)
        for p in model.hf().parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.3)
    return model


def _settings(**kw):
    base = dict(engine="auto", temperature=0.0, top_p=1.0, max_new_tokens=10, batch_size=3, seed=0, greedy=True)
    return GenerationSettings(**{**base, **kw})


def test_auto_is_lean_for_a_plain_kv_cache_else_hf_generate(tiny):
    from transformers import MistralConfig, MistralForCausalLM

    assert resolve_engine("auto", tiny) == "lean"
    sliding = MistralForCausalLM(
        MistralConfig(
            vocab_size=32,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            sliding_window=8,
        )
    )
    windowed = LocalModel(name="sliding", tokenizer=tiny.tokenizer, device="cpu", dtype="auto", _hf=sliding)
    assert resolve_engine("auto", windowed) == "hf-generate"
    assert resolve_engine("hf-generate", windowed) == "hf-generate"
    with pytest.raises(ValueError, match="engine lean: sliding has no plain full-attention KV cache"):
        resolve_engine("lean", windowed)


def test_lean_and_hf_generate_give_identical_greedy_output(tiny):
    conversations = [[{"role": "user", "content": q}] for q in QUESTIONS]
    lean = generate_chat(tiny, conversations, _settings(engine="lean"))
    static = generate_chat(tiny, conversations, _settings(engine="hf-generate"))
    auto = generate_chat(tiny, conversations, _settings())
    assert lean.outputs == static.outputs == auto.outputs  # texts, limits and token counts
    assert len({g.text for g in lean.outputs}) > 2  # outputs depend on the prompt: the check has teeth
    assert (lean.engine.engine, static.engine.engine, auto.engine.engine) == ("lean", "hf-generate", "lean")
    assert auto.engine.requested == "auto" and str(auto.engine).startswith("lean bpo-")
    for conv, g in zip(conversations, lean.outputs):
        assert g.prompt_tokens == len(tiny.encode_chat(conv))
        assert g.completion_tokens == 10 if g.hit_limit else 1 <= g.completion_tokens <= 10


def test_chat_template_renders_the_turns(tiny):
    ids = tiny.encode_chat([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
    assert tiny.tokenizer.decode(ids) == "<|system|>Be brief.\n<|user|>Hi\n<|assistant|>"


def test_token_prompts_and_sampling_are_seeded(tiny):
    prompts = [tiny.encode_chat([{"role": "user", "content": q}]) for q in QUESTIONS]
    sampled = _settings(greedy=False, temperature=0.8, top_p=0.9, seed=5)
    a, b = generate(tiny, prompts, sampled), generate(tiny, prompts, sampled)
    c = generate(tiny, prompts, sampled.replace(seed=6))
    assert a.outputs == b.outputs and a.outputs != c.outputs
    with pytest.raises(ValueError, match="prompt 1: no tokens"):
        generate(tiny, [prompts[0], []], sampled)


def test_bad_settings_name_the_field():
    with pytest.raises(ValueError, match="engine must be one of auto, lean, hf-generate, vllm"):
        _settings(engine="hf")
    with pytest.raises(ValueError, match="batch_size"):
        _settings(batch_size=0)


class _ImportWatch:
    """A meta path finder that records (and refuses) every attempt to import vllm."""

    def __init__(self):
        self.attempts = []

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "vllm":
            self.attempts.append(name)
            raise ImportError("vllm blocked by the test")
        return None


def test_vllm_is_imported_only_when_chosen(tiny, monkeypatch):
    watch = _ImportWatch()
    monkeypatch.setattr(sys, "meta_path", [watch, *sys.meta_path])
    for name in [m for m in sys.modules if m.split(".")[0] == "vllm"]:
        monkeypatch.delitem(sys.modules, name)
    prompts = [tiny.encode_chat([{"role": "user", "content": "Hi"}])]
    for engine in ("auto", "lean", "hf-generate"):
        generate(tiny, prompts, _settings(engine=engine))
    assert watch.attempts == []
    with pytest.raises(ValueError, match="engine vllm: vLLM is not installed here.*envs/vllm.yaml"):
        generate(tiny, prompts, _settings(engine="vllm"))
    assert watch.attempts == ["vllm"]


def test_dtype_auto_picks_bf16_only_where_it_pays(tiny, monkeypatch):
    """auto: bf16 on a CPU with native bf16 for models of >= 50M parameters (SmolLM2 decodes 1.45x
    faster), float32 for small models and CPUs that would emulate bf16; a configured dtype wins.
    The dtype that ran goes into the artifact's metadata."""
    from bpo.generation.model import CPU_BF16_MIN_PARAMS, resolve_dtype

    monkeypatch.setattr("bpo.hardware.cpu_supports_bf16", lambda: True)
    assert resolve_dtype("auto", "cpu", 134_515_008)[0] == "bfloat16"
    assert resolve_dtype("auto", "cpu", CPU_BF16_MIN_PARAMS - 1)[0] == "float32"
    assert resolve_dtype("float32", "cpu", 134_515_008) == ("float32", "configured")
    monkeypatch.setattr("bpo.hardware.cpu_supports_bf16", lambda: False)
    assert resolve_dtype("auto", "cpu", 134_515_008) == ("float32", "auto: CPU without native bf16 (avx512_bf16/amx)")
    out = generate(tiny, [[1, 2, 3]], _settings())
    assert tiny.resolved_dtype == "float32" and out.engine.metadata()["generation_dtype"] == "float32"


def test_smollm2_runs_in_bf16_on_a_cpu_with_native_bf16(smollm2_dir):
    from bpo.hardware import cpu_supports_bf16

    if torch.cuda.is_available() or not cpu_supports_bf16():
        pytest.skip("needs a CPU with native bf16")
    model = load_model(str(smollm2_dir))
    assert model.hf().dtype == torch.bfloat16 and model.resolved_dtype == "bfloat16"
    out = generate(
        model,
        [model.encode_chat([{"role": "user", "content": "What is the capital of France?"}])],
        _settings(max_new_tokens=12),
    )
    assert "Paris" in out.outputs[0].text and out.engine.metadata()["generation_dtype"] == "bfloat16"
