"""The package works installed from its wheel, outside the checkout, as a serving host installs it.

The wheel is built from a copy of the package sources, installed without dependencies into a
fresh venv that sees the environment's site-packages (torch and the rest come from there,
offline), and every command runs from an empty temp folder with no PYTHONPATH. The editable
install of the main checkout also sits in site-packages, so the first check is that the venv
imports the wheel's ``bpo``; the schemas and templates then have to come from the wheel too.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import REPO

from bpo.llm import ChatRequest, client_from_mapping

pytestmark = pytest.mark.slow  # builds a wheel and a venv: about 30 s on 2 cores


def _run(cmd, cwd, env, timeout=300, check=True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv bin folder, environment, empty working folder) with the wheel installed."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"  # only what the build reads: the checkout stays free of build/ and egg-info
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "bpo", src / "bpo", ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(root / "dist"),
            str(src),
        ],
        root,
        env,
    )
    (wheel,) = (root / "dist").glob("bpo_workflow-*.whl")
    _run([sys.executable, "-m", "venv", "--system-site-packages", str(root / "venv")], root, env)
    bin_dir = root / "venv" / "bin"
    _run([str(bin_dir / "python"), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], root, env)
    work = root / "work"  # no config/, no bpo/ here: nothing of the checkout to fall back on
    work.mkdir()
    return bin_dir, env, work


def test_the_venv_imports_the_wheel_with_its_resources(installed):
    bin_dir, env, work = installed
    out = _run(
        [
            str(bin_dir / "python"),
            "-c",
            "import bpo, bpo.settings.config as c, bpo.templates as t; "
            "print(bpo.__file__); print(c.SCHEMA_PATH); print(t.resolve('builtin:judge.txt'))",
        ],
        work,
        env,
    ).stdout.split()
    site = str(bin_dir.parent / "lib")
    assert all(line.startswith(site) for line in out), out
    assert str(REPO) not in " ".join(out)


def test_config_validation_and_builtin_templates(installed):
    bin_dir, env, work = installed
    (work / "typo.yaml").write_text("critique:\n  temperture: 0.5\n")
    (work / "mine.yaml").write_text("run_name: mine\nllm:\n  endpoints:\n    standin: {backend: standin}\n")
    script = (
        "from bpo.settings import ConfigError, load_config\n"
        "from bpo.settings.critique import CritiqueSettings\n"
        "from bpo.settings.evaluate import JudgeSettings\n"
        "try:\n"
        "    load_config('typo.yaml')\n"
        "except ConfigError as exc:\n"
        "    print(exc)\n"
        "config = load_config('mine.yaml')\n"
        "print(CritiqueSettings.from_config(config).template_sha256)\n"
        "print(JudgeSettings.from_config(config).template)\n"
    )
    # a typo is reported by key with a suggestion: the schema came with the wheel
    lines = _run([str(bin_dir / "python"), "-c", script], work, env).stdout.splitlines()
    assert lines[0] == "config critique.temperture: unknown key (did you mean 'temperature'?)"
    from bpo.templates import template_sha256

    assert lines[1] == template_sha256("builtin:critique.txt")  # the packaged template, same bytes
    assert lines[2] == "builtin:judge.txt"


def test_bpo_optimize_help_and_usage(installed, tmp_path):
    bin_dir, env, work = installed
    help_text = _run([str(bin_dir / "bpo"), "optimize", "--help"], work, env).stdout
    assert "--model" in help_text and "--max-tokens" in help_text
    cache = tmp_path / "llm.sqlite"  # one stand-in call: a cache with a row to count
    client = client_from_mapping(
        {"backend": "standin", "limits": {"max_concurrency": 1}}, cache, "critique", progress=False
    )
    (result,) = client.run([ChatRequest(model="gpt-3.5-turbo", messages=[{"role": "user", "content": "Hi?"}])])
    assert result.status == "ok"
    usage = _run([str(bin_dir / "bpo"), "usage", "--cache", str(cache)], work, env)
    assert "critique" in usage.stdout and "gpt-3.5-turbo" in usage.stdout and "standin" in usage.stdout
    assert "costs shown without prices" in usage.stderr  # no config/config.yaml here, said plainly


def test_bpo_serve_identity_answers_health(installed):
    bin_dir, env, work = installed
    port = _free_port()
    proc = subprocess.Popen(
        [
            str(bin_dir / "bpo"),
            "serve",
            "--rewriter",
            "identity",
            "--upstream",
            "http://127.0.0.1:9/v1",
            "--port",
            str(port),
        ],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        body, deadline = None, time.monotonic() + 60
        while body is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                    body = resp.read().decode()
            except OSError:
                time.sleep(0.3)
        if body is None:
            proc.kill()
            raise AssertionError(f"bpo serve never answered /health:\n{proc.communicate()[0][-3000:]}")
        assert '"status":"ok"' in body and '"rewriter":"identity"' in body
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_no_default_config_outside_the_workflow_is_one_clear_error(installed):
    bin_dir, env, work = installed
    proc = _run(
        [str(bin_dir / "python"), "-c", "from bpo.settings import load_config; load_config()"], work, env, check=False
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f"bpo.settings.config.ConfigError: no config/config.yaml in the working folder {work}: run from the "
        "workflow's folder or pass the config file"
    )
