"""`bpo` errors are one line (`bpo: error: ...`, exit 1); the traceback only with --debug."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import REPO


def bpo(cwd, *args):
    return subprocess.run(
        [sys.executable, "-m", "bpo.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"},
    )


def test_missing_model_folder_is_one_line_naming_it(tmp_path):
    proc = bpo(tmp_path, "optimize", "--model", "results/models/nope", "Tell me a joke")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "bpo: error: --model results/models/nope does not exist (and is not a hub id: those read namespace/name)"
    ]
    assert proc.stdout == ""


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback(tmp_path, where):
    args = ["optimize", "--model", "results/models/nope", "hi"]
    proc = bpo(tmp_path, *(["--debug", *args] if where == "before" else [*args, "--debug"]))
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr
    assert "CLIError: --model results/models/nope does not exist" in proc.stderr
