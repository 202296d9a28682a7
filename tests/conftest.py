"""Shared test helpers: repo paths, the real-data folder, temp copies of the workflow and edits of their
config, Snakemake runs and their job table, the tiny target model, running from the repository root."""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from smollm2_fixture import smollm2_dir  # noqa: F401 (a session fixture, registered here for every test module)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# What a temp copy of the workflow needs (never results/, logs/ or caches).
WORKFLOW_FILES = ["Snakefile", "config", "rules", "workflow_scripts", "envs", "profiles", "resources", "report"]


@pytest.fixture(autouse=True)
def _restore_logging_and_streams() -> Iterator[None]:
    """An in-process CLI call (`bpo optimize` via ``main()``) sets up logging on the stderr pytest
    captures and wraps it; pytest closes that stream after the test, so restore both, or a later
    test's log records fail with "I/O operation on closed file"."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    streams = sys.stdout, sys.stderr, sys.excepthook
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    sys.stdout, sys.stderr, sys.excepthook = streams


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


def job_counts(proc: subprocess.CompletedProcess) -> dict[str, int]:
    """Jobs per rule from the "Job stats" table Snakemake prints before it runs (or with ``-n``);
    empty when there is nothing to be done."""
    text = proc.stdout + proc.stderr
    if "Job stats:" not in text or "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:", 1)[1].split("\ntotal", 1)[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)}


def edit_config(workdir: Path, edit: Callable[[dict], object]) -> dict:
    """Let ``edit`` change a workflow copy's config/config.yaml in place; returns the edited mapping."""
    path = workdir / "config" / "config.yaml"
    cfg = yaml.safe_load(path.read_text())
    edit(cfg)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return cfg


@contextlib.contextmanager
def edited_config(workdir: Path, edit: Callable[[dict], object]) -> Iterator[dict]:
    """:func:`edit_config` for the ``with`` block only: the file is restored as it was after it."""
    path = workdir / "config" / "config.yaml"
    original = path.read_text()
    try:
        yield edit_config(workdir, edit)
    finally:
        path.write_text(original)


@pytest.fixture
def run_from_repo(monkeypatch):
    """Run the test in the repository root: the config's demo and template paths are relative to it."""
    monkeypatch.chdir(REPO)


@pytest.fixture(scope="module")
def tiny_target(tmp_path_factory) -> str:
    """A randomly initialised tiny Llama saved like a hub model (no download), one per test module."""
    from eval_helpers import save_tiny_model

    pairs = [
        ("What is the capital of France?", "Paris is the capital of France."),
        ("Name a colour.", "Blue is a colour."),
    ] * 4
    return save_tiny_model(tmp_path_factory.mktemp("tiny_target"), pairs)
