"""The evaluation stages under Snakemake, offline: optimize -> answer -> judge -> report with
the stand-in target and judge, the optional SFT rewrite, rerun behaviour and the HTML report."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import yaml

from conftest import dry_run_jobs, snakemake
from eval_helpers import save_tiny_model

pytestmark = pytest.mark.slow

EVAL_OUTPUTS = ["results/report/winrates.parquet", "results/report/summary.md", "results/report/winrates.png",
                "results/report/intrinsic.json"]


def _edit_config(wf, edit):
    path = wf / "config" / "config.yaml"
    cfg = yaml.safe_load(path.read_text())
    edit(cfg)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A workflow copy whose evaluation ran once (tiny untrained optimizer, stand-in LLM)."""
    from conftest import copy_workflow

    wf = copy_workflow(tmp_path_factory.mktemp("evalwf") / "wf")
    pairs = [("explain tides", "Please explain how tides work, step by step.")] * 4
    save_tiny_model(wf / "models" / "tiny_optimizer", pairs)

    def edit(cfg):
        cfg["eval"]["optimizer"].update(model="models/tiny_optimizer", max_new_tokens=16)
        cfg["eval"]["sft_rewrite"]["activate"] = True
        # an untrained optimizer's rewrites are all unusable, so both questions and answers are
        # the same; judging identical answers anyway makes the judge rule call the stand-in
        cfg["eval"]["judge"]["identical_as_tie"] = False
        # a second target: a local HF model (rule answer_hf, not a local rule)
        cfg["eval"]["targets"]["tiny_hf"] = {"kind": "hf", "model": "models/tiny_optimizer", "max_tokens": 8,
                                             "batch_size": 4}
        # two of the four demo sets keep the test lean: one with contexts, one with references
        for name in ("vicuna_eval", "self_instruct"):
            cfg["eval"]["testsets"][name]["activate"] = False

    _edit_config(wf, edit)
    targets = EVAL_OUTPUTS + ["results/sft_rewrite/reproduce.json", "results/sft_rewrite/train.json"]
    snakemake(wf, "--cores", "2", *targets)
    return wf


def test_offline_evaluation_outputs(evaluated):
    wf = evaluated
    table = pq.read_table(wf / "results/report/winrates.parquet").to_pylist()
    assert {(r["testset"], r["target"]) for r in table} == {
        (ts, tg) for ts in ("dolly_eval", "bpo_test") for tg in ("standin", "tiny_hf")}
    for r in table:
        assert r["judge_model"] == "bpo-standin-judge"
        assert r["backend"] == "standin"
        assert r["n"] >= 5 and r["win"] + r["tie"] + r["lose"] == pytest.approx(100.0)
        assert r["delta_wr_low"] <= r["delta_wr"] <= r["delta_wr_high"]
    summary = (wf / "results/report/summary.md").read_text()
    assert "come from the offline stand-in, not from a model" in summary
    assert "unusable for every prompt" in summary  # and it says the comparison is void
    hf_answers = pq.read_table(wf / "results/eval/bpo_test/tiny_hf/answers.parquet").to_pylist()
    assert len(hf_answers) == 5 and all(r["backend"] == "hf" for r in hf_answers)
    intrinsic = json.loads((wf / "results/report/intrinsic.json").read_text())
    assert set(intrinsic) == {"bpo_test"} and intrinsic["bpo_test"]["n"] == 5
    judged = pq.read_table(wf / "results/eval/dolly_eval/standin/judgments.parquet").to_pylist()
    assert len(judged) == 5 and all(r["outcome"] in ("win", "tie", "lose", "invalid") for r in judged)
    optimized = pq.read_table(wf / "results/eval/dolly_eval/optimized.parquet").to_pylist()
    answers = pq.read_table(wf / "results/eval/dolly_eval/standin/answers.parquet").to_pylist()
    for o, a in zip(optimized, answers):  # the context reaches the target verbatim
        assert a["question_original"] == (o["instruction"] + "\n" + o["context"] if o["context"] else o["instruction"])
        assert a["question_optimized"].endswith(o["context"])
    for log in ("optimize_dolly_eval", "answer_dolly_eval_standin", "judge_dolly_eval_standin"):
        assert (wf / "logs" / "eval" / f"{log}.log").stat().st_size > 0
    sft = json.loads((wf / "results/sft_rewrite/train.json").read_text())
    reproduce = json.loads((wf / "results/sft_rewrite/reproduce.json").read_text())
    assert len(sft) == len(reproduce) == 4
    assert set(reproduce[0]) == {"instruction", "input", "output", "optimized_prompt", "res"}


def test_changing_only_the_judge_model_reruns_only_judge_and_report(evaluated):
    wf = evaluated
    assert dry_run_jobs(snakemake(wf, "-n", "--cores", "1", *EVAL_OUTPUTS)) == {}  # up to date
    # runtime settings are not results: new limits rerun nothing
    _edit_config(wf, lambda c: c["llm"]["endpoints"]["standin"]["limits"].update(max_concurrency=3))
    assert dry_run_jobs(snakemake(wf, "-n", "--cores", "1", *EVAL_OUTPUTS)) == {}
    _edit_config(wf, lambda c: c["eval"]["judge"].update(model="another-judge"))
    assert dry_run_jobs(snakemake(wf, "-n", "--cores", "1", *EVAL_OUTPUTS)) == {"judge": 4, "report": 1}
    _edit_config(wf, lambda c: c["eval"]["judge"].update(model="bpo-standin-judge"))  # back: up to date
    assert dry_run_jobs(snakemake(wf, "-n", "--cores", "1", *EVAL_OUTPUTS)) == {}
    # one target's decoding: its answers, judgments and the report; not the other target, not optimize
    _edit_config(wf, lambda c: c["eval"]["targets"]["standin"].update(max_tokens=100))
    assert dry_run_jobs(snakemake(wf, "-n", "--cores", "1", *EVAL_OUTPUTS)) == {"answer": 2, "judge": 2, "report": 1}
    _edit_config(wf, lambda c: c["eval"]["report"].update(bootstrap_samples=50))
    assert dry_run_jobs(snakemake(wf, "-n", "--cores", "1", *EVAL_OUTPUTS))["report"] == 1


def test_optimizer_and_hf_target_settings_rerun_their_stage_and_downstream(evaluated):
    """One settings param per rule: a decoding edit reruns optimize (both rules) and everything
    after it; an hf target's edit reruns its answers; runtime values rerun nothing."""
    wf = evaluated
    sft_outputs = ["results/sft_rewrite/reproduce.json", "results/sft_rewrite/train.json"]
    snakemake(wf, "--cores", "2", *EVAL_OUTPUTS, *sft_outputs)  # catch up with the earlier tests' edits
    assert _jobs(snakemake(wf, "-n", "--cores", "1", *EVAL_OUTPUTS, *sft_outputs)) == {}
    _edit_config(wf, lambda c: c["llm"]["endpoints"]["standin"]["limits"].update(max_concurrency=2))
    assert _jobs(snakemake(wf, "-n", "--cores", "1", *EVAL_OUTPUTS, *sft_outputs)) == {}
    _edit_config(wf, lambda c: c["eval"]["optimizer"].update(temperature=0.7))
    assert _jobs(snakemake(wf, "-n", "--cores", "1", *EVAL_OUTPUTS, *sft_outputs)) == {
        "optimize_testset": 2, "answer": 2, "answer_hf": 2, "judge": 4, "report": 1,
        "sft_rewrite_optimize": 1, "sft_rewrite_answer": 1}
    _edit_config(wf, lambda c: c["eval"]["optimizer"].update(temperature=0.6))
    assert _jobs(snakemake(wf, "-n", "--cores", "1", *EVAL_OUTPUTS, *sft_outputs)) == {}
    _edit_config(wf, lambda c: c["eval"]["targets"]["tiny_hf"].update(engine="hf-generate"))
    assert _jobs(snakemake(wf, "-n", "--cores", "1", *EVAL_OUTPUTS)) == {"answer_hf": 2, "judge": 2, "report": 1}
    _edit_config(wf, lambda c: c["eval"]["targets"]["tiny_hf"].update(engine="auto"))
    assert _jobs(snakemake(wf, "-n", "--cores", "1", *EVAL_OUTPUTS)) == {}


def test_generation_engine_is_recorded(evaluated):
    from bpo.schemas import read_metadata

    for path in ("results/eval/dolly_eval/optimized.parquet", "results/eval/bpo_test/tiny_hf/answers.parquet",
                 "results/sft_rewrite/optimized.parquet"):
        meta = read_metadata(evaluated / path)
        assert meta["generation_engine"].startswith("lean bpo-") and meta["generation_engine_requested"] == "auto"


def test_html_report(evaluated):
    wf = evaluated
    snakemake(wf, "--report", "report.html", *EVAL_OUTPUTS)
    html = (wf / "report.html").read_text(errors="replace")
    assert "winrates.png" in html and "summary.md" in html
