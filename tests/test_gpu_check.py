"""benchmarks/gpu_check.sh in its dry mode (tiny sizes on CPU, the same code paths as on a GPU), its
budget and skip handling, and the device kit's package selection. The dry run keeps the GPU check
from rotting between the GPU machines it is run on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import gpu_check_kit  # noqa: E402


def run_check(out: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--out", str(out), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


@pytest.mark.slow
def test_dry_run_runs_every_section_and_writes_json_and_markdown(tmp_path):
    proc = run_check(tmp_path, "--dry")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    sections = report["sections"]
    assert list(sections) == ["prepare", "train", "train_lora", "decode_smollm2", "decode_1b", "serve", "launch"]
    assert all(s["status"] == "ok" for s in sections.values()), sections
    for name in ("train", "train_lora"):
        fig = sections[name]["figures"]
        assert fig["tokens_per_second"] > 0 and fig["steps"] == 4 and fig["tokens_seen"] > 0
        assert fig["mfu"] is None  # no GPU peak to divide by on CPU
    for name in ("decode_smollm2", "decode_1b"):
        fig = sections[name]["figures"]
        for key in ("hf-generate batch 1", "lean batch 1", "hf-generate batch 64", "lean batch 64"):
            assert fig[key]["output_tokens_per_second"] > 0, (name, key)
    assert sections["serve"]["figures"]["rewrites_per_second"] > 0
    launch = sections["launch"]["figures"]
    assert (launch["backend"], launch["all_reduce_ok"], launch["train_world_size"]) == ("gloo", True, 1)
    table = (tmp_path / "gpu_check.md").read_text()
    assert "| train | tokens_per_second |" in table and "[dry run" in table
    assert (tmp_path / "logs" / "train.log").stat().st_size > 0
    assert not (tmp_path / "work").exists()  # models and data removed


def test_a_spent_budget_skips_sections_with_the_reason_and_fails(tmp_path):
    proc = run_check(tmp_path, "--dry", "--budget", "1", "--only", "serve", timeout=60)
    assert proc.returncode == 1
    sections = json.loads((tmp_path / "gpu_check.json").read_text())["sections"]
    assert sections["prepare"] == {"status": "skipped", "seconds": 0.0, "reason": "overall budget of 1 s spent"}
    assert sections["serve"]["reason"] == "prepare failed: no model to run"
    assert "| serve | skipped (0 s) | prepare failed: no model to run |" in (tmp_path / "gpu_check.md").read_text()


def test_an_unknown_section_is_refused(tmp_path):
    proc = run_check(tmp_path, "--dry", "--only", "trian", timeout=60)
    assert proc.returncode == 2 and "unknown section(s) ['trian']" in proc.stderr


def test_the_kit_holds_what_the_gpu_image_lacks_at_the_locked_versions():
    pins = gpu_check_kit.lock_pins()
    kit = gpu_check_kit.kit_packages(gpu_check_kit.image_packages(), pins)
    for name in (
        "deepspeed",
        "snakemake",
        "jsonschema",
        "datasets",
        "openai",
        "gguf",
        "starlette",
        "uvicorn",
        "transformers",
        "hjson",
        "pydantic",
    ):
        assert kit[name] == pins[name], name
    for name in (
        "torch",
        "pandas",
        "pyarrow",
        "accelerate",
        "statsmodels",
        "tensorboard",
        "numpy",
        "triton",
        "pytest",
        "selenium",
    ):  # in the image, or not needed there (dev tools)
        assert name not in kit, name
    assert not any(n.startswith("nvidia-") for n in kit)


def test_the_kit_accepts_only_wheels_for_cpython_312_on_x86_64():
    ok = gpu_check_kit.supported_on_target
    assert ok("tokenizers-0.23.3-cp310-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")
    assert ok("humanfriendly-10.0-py2.py3-none-any.whl")
    assert ok("pydantic_core-2.46.4-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")
    assert not ok("pydantic_core-2.46.4-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")
    assert not ok("pydantic_core-2.46.4-cp312-cp312-manylinux_2_17_aarch64.whl")
    assert not ok("pydantic_core-2.46.4-cp312-cp312-macosx_11_0_arm64.whl")
