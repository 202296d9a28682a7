"""An error raised inside a workflow script reaches the rule's log file, redacted: an unexpected
exception (its traceback, through the excepthook that setup_logging installs with a log file)
and an expected stop (``exit_on``: one line, exit status 1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import REPO

KEY_ENV = "BPO_SCRIPT_ERROR_TEST_KEY"
SECRET = "planted-0123456789-secret-value"  # no key shape: masked because the config names its variable

SNAKEFILE = """
rule all:
    input: "results/unexpected.txt", "results/stop.txt"

rule unexpected:
    output: "results/unexpected.txt"
    log: "logs/unexpected.log"
    script: "unexpected.py"

rule stop:
    output: "results/stop.txt"
    log: "logs/stop.log"
    script: "stop.py"
"""

UNEXPECTED = f"""
import os
from bpo.logging_setup import setup_logging

setup_logging(snakemake.log[0], config=snakemake.config)
raise RuntimeError("unexpected failure, key " + os.environ["{KEY_ENV}"])
"""

STOP = f"""
import os
from bpo.logging_setup import exit_on, setup_logging
from bpo.readers import ReadError

setup_logging(snakemake.log[0], config=snakemake.config)
with exit_on(ReadError):
    raise ReadError("data/x.jsonl: expected stop, key " + os.environ["{KEY_ENV}"])
"""


def test_script_errors_reach_the_rule_log_redacted(tmp_path):
    wf = tmp_path / "wf"
    wf.mkdir()
    (wf / "Snakefile").write_text(SNAKEFILE)
    (wf / "unexpected.py").write_text(UNEXPECTED)
    (wf / "stop.py").write_text(STOP)
    (wf / "config.yaml").write_text(json.dumps({"llm": {"endpoints": {"remote": {"api_key_env": KEY_ENV}}}}))
    env = {**os.environ, KEY_ENV: SECRET, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "1", "--keep-going", "--configfile", "config.yaml"],
        cwd=wf,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode != 0
    unexpected = (wf / "logs" / "unexpected.log").read_text()
    assert "uncaught exception" in unexpected and "Traceback" in unexpected
    assert "RuntimeError: unexpected failure, key [REDACTED]" in unexpected
    stop = (wf / "logs" / "stop.log").read_text()
    assert "ReadError: data/x.jsonl: expected stop, key [REDACTED]" in stop
    assert "Traceback" not in stop  # an expected stop is one line
    written = [p for p in wf.rglob("*") if p.is_file() and SECRET in p.read_text(errors="replace")]
    assert written == []
    assert SECRET not in proc.stdout + proc.stderr
