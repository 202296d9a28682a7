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

EVAL_OUTPUTS = ["results/demo/report/winrates.parquet", "results/demo/report/summary.md", "results/demo/report/winrates.png",
                "results/demo/report/intrinsic.json"]
SFT_OUTPUTS = ["results/demo/sft_rewrite/reproduce.json", "results/demo/sft_rewrite/train.json"]


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
        cfg["eval"]["targets"].pop("smollm2")  # the demo's real target: the full-demo test runs it
        # two of the four demo sets keep the test lean: one with contexts, one with references
        for name in ("vicuna_eval", "self_instruct"):
            cfg["eval"]["testsets"][name]["activate"] = False

    _edit_config(wf, edit)
    snakemake(wf, "--cores", "2", *EVAL_OUTPUTS, *SFT_OUTPUTS)
    return wf


def test_offline_evaluation_outputs(evaluated):
    wf = evaluated
    table = pq.read_table(wf / "results/demo/report/winrates.parquet").to_pylist()
    assert {(r["testset"], r["target"]) for r in table} == {
        (ts, tg) for ts in ("dolly_eval", "bpo_test") for tg in ("standin", "tiny_hf")}
    for r in table:
        assert r["judge_model"] == "bpo-standin-judge"
        assert r["backend"] == "standin"
        assert r["n"] >= 5 and r["win"] + r["tie"] + r["lose"] == pytest.approx(100.0)
        assert r["delta_wr_low"] <= r["delta_wr"] <= r["delta_wr_high"]
    summary = (wf / "results/demo/report/summary.md").read_text()
    assert "come from the offline stand-in, not from a model" in summary
    assert "unusable for every prompt" in summary  # and it says the comparison is void
    hf_answers = pq.read_table(wf / "results/demo/eval/bpo_test/tiny_hf/answers.parquet").to_pylist()
    assert len(hf_answers) == 5 and all(r["backend"] == "hf" for r in hf_answers)
    intrinsic = json.loads((wf / "results/demo/report/intrinsic.json").read_text())
    assert set(intrinsic) == {"bpo_test"} and intrinsic["bpo_test"]["n"] == 5
    judged = pq.read_table(wf / "results/demo/eval/dolly_eval/standin/judgments.parquet").to_pylist()
    assert len(judged) == 5 and all(r["outcome"] in ("win", "tie", "lose", "invalid") for r in judged)
    optimized = pq.read_table(wf / "results/demo/eval/dolly_eval/optimized.parquet").to_pylist()
    answers = pq.read_table(wf / "results/demo/eval/dolly_eval/standin/answers.parquet").to_pylist()
    for o, a in zip(optimized, answers):  # the context reaches the target verbatim
        assert a["question_original"] == (o["instruction"] + "\n" + o["context"] if o["context"] else o["instruction"])
        assert a["question_optimized"].endswith(o["context"])
    for log in ("optimize_dolly_eval", "answer_dolly_eval_standin", "judge_dolly_eval_standin"):
        assert (wf / "logs" / "eval" / f"{log}.log").stat().st_size > 0
    sft = json.loads((wf / "results/demo/sft_rewrite/train.json").read_text())
    reproduce = json.loads((wf / "results/demo/sft_rewrite/reproduce.json").read_text())
    assert len(sft) == len(reproduce) == 4
    assert set(reproduce[0]) == {"instruction", "input", "output", "optimized_prompt", "res"}


def _planned(wf, edit=None, template=None) -> dict[str, int]:
    """Jobs a dry run plans after ``edit`` of the config (and ``template``: new judge template
    text); both are restored afterwards, so the tests share one evaluated workflow."""
    config, judge = wf / "config" / "config.yaml", wf / "config" / "templates" / "judge.txt"
    saved = config.read_text(), judge.read_text()
    try:
        if edit is not None:
            _edit_config(wf, edit)
        if template is not None:
            judge.write_text(template(saved[1]))
        return dry_run_jobs(snakemake(wf, "-n", "--cores", "1", *EVAL_OUTPUTS, *SFT_OUTPUTS))
    finally:
        config.write_text(saved[0])
        judge.write_text(saved[1])


def test_changing_only_the_judge_model_reruns_only_judge_and_report(evaluated):
    wf = evaluated
    assert _planned(wf) == {}  # up to date
    assert _planned(wf, lambda c: c["eval"]["judge"].update(model="another-judge")) == {"judge": 4, "report": 1}
    assert _planned(wf) == {}  # back: up to date
    # one target's decoding: its answers, judgments and the report (and the SFT rewrite it
    # answers); not the other target, not optimize
    assert _planned(wf, lambda c: c["eval"]["targets"]["standin"].update(max_tokens=100)) == {
        "answer": 2, "judge": 2, "report": 1, "sft_rewrite_answer": 1}


def _use_another_sft_target(cfg):
    cfg["eval"]["targets"]["sft_only"] = {**cfg["eval"]["targets"]["standin"], "activate": False, "max_tokens": 64}
    cfg["eval"]["sft_rewrite"]["target"] = "sft_only"


@pytest.mark.parametrize(
    "edit, template, planned",
    [
        # answer: a target's sampling; the endpoint it calls is part of its settings too (as it
        # is of the judge's, here the same endpoint)
        (lambda c: c["eval"]["targets"]["standin"].update(system_prompt="Be brief."), None,
         {"answer": 2, "judge": 2, "report": 1, "sft_rewrite_answer": 1}),
        (lambda c: c["llm"]["endpoints"]["standin"].update(default_headers={"X-Team": "eval"}), None,
         {"answer": 2, "judge": 4, "report": 1, "sft_rewrite_answer": 1}),
        # judge: its sampling, its template's content
        (lambda c: c["eval"]["judge"].update(max_tokens=512), None, {"judge": 4, "report": 1}),
        (None, lambda text: text + "\nKeep the explanation short.\n", {"judge": 4, "report": 1}),
        # report: the bootstrap only
        (lambda c: c["eval"]["report"].update(bootstrap_samples=50), None, {"report": 1}),
        # sft_rewrite_answer: another target for the SFT answers (an inactive one: no eval rows)
        (_use_another_sft_target, None, {"sft_rewrite_answer": 1}),
    ],
    ids=["answer-target", "answer-judge-endpoint", "judge-sampling", "judge-template", "report", "sft_rewrite"],
)
def test_result_edit_reruns_its_stage_and_downstream(evaluated, edit, template, planned):
    assert _planned(evaluated, edit, template) == planned


@pytest.mark.parametrize(
    "edit",
    [
        lambda c: c["llm"]["endpoints"]["standin"]["limits"].update(max_concurrency=3, rpm=600, timeout_s=30),
        lambda c: c["llm"].update(prices={"bpo-standin": {"input": 1.0, "output": 2.0}}),
        lambda c: c["llm"].update(cache="elsewhere/llm.sqlite"),
    ],
    ids=["limits", "prices", "cache-path"],
)
def test_runtime_edit_reruns_nothing(evaluated, edit):
    """Throughput, cost accounting and where the cache lives never change an answer, a verdict or
    the report: answer, judge, report and sft_rewrite_answer all stay up to date."""
    assert _planned(evaluated, edit) == {}


def test_judge_template_touch_reruns_nothing(evaluated):
    (evaluated / "config" / "templates" / "judge.txt").touch()  # tracked by content, not mtime
    assert _planned(evaluated) == {}


def test_optimizer_and_hf_target_settings_rerun_their_stage_and_downstream(evaluated):
    """One settings param per rule: a decoding edit reruns optimize (both rules) and everything
    after it; an hf target's edit reruns its answers; runtime values rerun nothing."""
    wf = evaluated
    sft_outputs = ["results/demo/sft_rewrite/reproduce.json", "results/demo/sft_rewrite/train.json"]
    snakemake(wf, "--cores", "2", *EVAL_OUTPUTS, *sft_outputs)  # catch up with the earlier tests' edits
    assert dry_run_jobs(snakemake(wf, "-n", "--cores", "1", *EVAL_OUTPUTS, *sft_outputs)) == {}
    _edit_config(wf, lambda c: c["llm"]["endpoints"]["standin"]["limits"].update(max_concurrency=2))
    assert dry_run_jobs(snakemake(wf, "-n", "--cores", "1", *EVAL_OUTPUTS, *sft_outputs)) == {}
    _edit_config(wf, lambda c: c["eval"]["optimizer"].update(temperature=0.7))
    assert dry_run_jobs(snakemake(wf, "-n", "--cores", "1", *EVAL_OUTPUTS, *sft_outputs)) == {
        "optimize_testset": 2, "answer": 2, "answer_hf": 2, "judge": 4, "report": 1,
        "sft_rewrite_optimize": 1, "sft_rewrite_answer": 1}
    _edit_config(wf, lambda c: c["eval"]["optimizer"].update(temperature=0.6))
    assert dry_run_jobs(snakemake(wf, "-n", "--cores", "1", *EVAL_OUTPUTS, *sft_outputs)) == {}
    _edit_config(wf, lambda c: c["eval"]["targets"]["tiny_hf"].update(engine="hf-generate"))
    assert dry_run_jobs(snakemake(wf, "-n", "--cores", "1", *EVAL_OUTPUTS)) == {"answer_hf": 2, "judge": 2, "report": 1}
    _edit_config(wf, lambda c: c["eval"]["targets"]["tiny_hf"].update(engine="auto"))
    assert dry_run_jobs(snakemake(wf, "-n", "--cores", "1", *EVAL_OUTPUTS)) == {}


def test_generation_engine_is_recorded(evaluated):
    from bpo.schemas import read_metadata

    for path in ("results/demo/eval/dolly_eval/optimized.parquet", "results/demo/eval/bpo_test/tiny_hf/answers.parquet",
                 "results/demo/sft_rewrite/optimized.parquet"):
        meta = read_metadata(evaluated / path)
        assert meta["generation_engine"].startswith("lean bpo-") and meta["generation_engine_requested"] == "auto"


def test_html_report(evaluated):
    wf = evaluated
    snakemake(wf, "--report", "report.html", *EVAL_OUTPUTS)
    html = (wf / "report.html").read_text(errors="replace")
    assert "winrates.png" in html and "summary.md" in html
