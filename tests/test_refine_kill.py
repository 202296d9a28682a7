"""A kill -9 during candidate_answers or candidate_judgments re-pays at most the calls in flight:
the stages go through the LLM layer's cache and claims, so the rerun sends exactly the calls the
killed run had not got answered (counted at a loopback server, the network boundary)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from loopback_server import LoopbackServer

from bpo.schemas import CANDIDATES, write_table

REPO = Path(__file__).resolve().parents[1]
PROMPTS, K, CONCURRENCY = 10, 3, 4

DRIVER = (
    textwrap.dedent(
        """
    import sys
    from bpo.refine.outcomes import answer_candidates, judge_candidates
    from bpo.settings import LLMRuntime, load_config
    from bpo.settings.evaluate import CandidateAnswerSettings, CandidateJudgeSettings

    stage, base_url, folder = sys.argv[1:4]
    endpoint = {"backend": "openai", "base_url": base_url, "api_key_env": "BPO_KILL_KEY",
                "limits": {"max_concurrency": %d, "timeout_s": 30}}
    config = load_config(overrides={
        "llm": {"cache": folder + "/llm.sqlite", "endpoints": {"loop": endpoint}},
        "eval": {"targets": {"loop": {"kind": "endpoint", "endpoint": "loop", "model": "target"}},
                 "judge": {"endpoint": "loop", "model": "judge"}},
        "refine": {"target": "loop"},
    })
    runtime = LLMRuntime.from_config(config, "loop")
    if stage == "answers":
        answer_candidates(folder + "/c.parquet", folder + "/a.parquet",
                          CandidateAnswerSettings.from_config(config), runtime)
    else:
        judge_candidates(folder + "/a.parquet", folder + "/j.parquet",
                         CandidateJudgeSettings.from_config(config), runtime)
    print("done")
    """
    )
    % CONCURRENCY
)


def _candidates(path: Path) -> None:
    rows = [
        {
            "prompt_id": f"p{i}",
            "candidate_id": f"p{i}:{j}",
            "round": 1,
            "instruction": f"Question number {i}",
            "context": "",
            "completion": f"Question number {i}, answered in style {j}",
            "optimized_instruction": f"Question number {i}, answered in style {j}",
            "drop_reason": None,
            "raw": None,
        }
        for i in range(PROMPTS)
        for j in range(K)
    ]
    write_table(rows, path, CANDIDATES)


def _start(stage: str, srv, folder: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(folder / "driver.py"), stage, srv.base_url, str(folder)],
        cwd=REPO,  # the default config's paths are relative to the repository
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.parametrize("stage, calls", [("answers", PROMPTS * (K + 1)), ("judgments", PROMPTS * K * 2)])
def test_kill_9_mid_stage_then_rerun_pays_only_the_missing_calls(tmp_path, stage, calls):
    (tmp_path / "driver.py").write_text(DRIVER)
    _candidates(tmp_path / "c.parquet")
    env = {**os.environ, "BPO_KILL_KEY": "sk-kill-test", "PYTHONPATH": str(REPO)}
    with LoopbackServer(latency_s=0.2) as srv:
        if stage == "judgments":  # the answers first, whole
            assert _start("answers", srv, tmp_path, env).wait(120) == 0
        start = srv.total
        proc = _start(stage, srv, tmp_path, env)
        deadline = time.time() + 60
        while srv.total - start < calls // 2 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.01)
        assert proc.poll() is None, f"driver ended early: {proc.communicate()}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        time.sleep(0.3)  # the server finishes answering the dead client's last requests
        before, received = dict(srv.counts), srv.total - start
        rerun = _start(stage, srv, tmp_path, env)
        out, err = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, err.decode()[-3000:]
        sent_again = {p: c - before.get(p, 0) for p, c in srv.counts.items() if c - before.get(p, 0)}
        repaid = [p for p in sent_again if before.get(p, 0)]  # in flight when the first run died
        assert 0 < received < calls and all(c == 1 for c in sent_again.values())
        assert len(repaid) <= CONCURRENCY
        assert srv.total - start == calls + len(repaid)  # every call once, plus the ones in flight
