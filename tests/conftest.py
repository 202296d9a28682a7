"""Shared test helpers: repo paths, the real-data folder, temp copies of the workflow."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from smollm2_fixture import smollm2_dir  # noqa: F401 (a session fixture, registered here for every test module)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# What a temp copy of the workflow needs (never results/, logs/ or caches).
WORKFLOW_FILES = ["Snakefile", "config", "rules", "workflow_scripts", "envs", "profiles", "resources", "report"]


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data subsets not found at {SHARED_DATA}")
    return SHARED_DATA


def copy_workflow(dest: Path) -> Path:
    """Copy the workflow (not its outputs) to ``dest`` so a test can run and edit it freely."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy2(src, dest / name)
    return dest


# The tiny from-scratch optimizer the demo trained before it fine-tuned SmolLM2: what fast
# workflow tests train (seconds instead of minutes), and no SmolLM2 target.
TINY_TRAIN = {"base_model": None, "prompt_format": "plain", "learning_rate": 3.0e-3, "max_steps": 12}


def use_tiny_optimizer(cfg: dict) -> None:
    """Edit a loaded config.yaml mapping in place to train the tiny optimizer (no real model)."""
    cfg["train"].update(TINY_TRAIN)
    cfg["eval"]["targets"].pop("smollm2", None)


@pytest.fixture
def workflow_copy(tmp_path: Path) -> Path:
    return copy_workflow(tmp_path / "wf")


def snakemake(workdir: Path, *args: str, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run the snakemake CLI in ``workdir`` (same interpreter as the tests)."""
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


def dry_run_jobs(proc: subprocess.CompletedProcess) -> dict[str, int]:
    """Job counts per rule from a ``snakemake -n`` run's stats table (empty when nothing is to be done)."""
    counts = {}
    for line in proc.stdout.splitlines():
        m = re.fullmatch(r"(\w+)\s+(\d+)", line.strip())
        if m and m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
    return counts
