"""The evaluation stages under Snakemake, offline: optimize -> answer -> judge -> report with
the stand-in target and judge, the optional SFT rewrite, rerun behaviour and the HTML report."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from conftest import edit_config, job_counts, snakemake
from eval_helpers import save_tiny_model

from bpo.templates import builtin_dir

pytestmark = pytest.mark.slow

EVAL_OUTPUTS = [
    "results/demo/report/winrates.parquet",
    "results/demo/report/summary.md",
    "results/demo/report/winrates.png",
    "results/demo/report/compare.png",
    "results/demo/report/intrinsic.json",
]
SFT_OUTPUTS = ["results/demo/sft_rewrite/reproduce.json", "results/demo/sft_rewrite/train.json"]
# What one target's edit reruns of the demo's multi-turn set (mt_bench): its original
# conversations, both optimizers' conversations with it and their per-turn judgments.
MT_TARGET = {"converse_original": 1, "converse": 2, "judge_turns": 2}


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A workflow copy whose evaluation ran once: a tiny untrained optimizer (kind model) next to
    identity, the stand-in as endpoint target and judge, a tiny local HF target."""
    from conftest import copy_workflow

    wf = copy_workflow(tmp_path_factory.mktemp("evalwf") / "wf")
    (wf / "config" / "judge.txt").write_bytes((builtin_dir() / "judge.txt").read_bytes())
    pairs = [("explain tides", "Please explain how tides work, step by step.")] * 4
    save_tiny_model(wf / "models" / "tiny_optimizer", pairs)

    def edit(cfg):
        optimizers = cfg["eval"]["optimizers"]
        optimizers["trained"]["activate"] = False  # no training run here
        optimizers["tiny"] = {
            **optimizers["trained"],
            "activate": True,
            "kind": "model",
            "model": "models/tiny_optimizer",
            "max_tokens": 16,
        }
        cfg["eval"]["sft_rewrite"].update(activate=True, optimizer="tiny")
        # an untrained optimizer's rewrites are all unusable, so both questions and answers are
        # the same; judging identical answers anyway makes the judge rule call the stand-in
        cfg["eval"]["judge"]["identical_as_tie"] = False
        # a user's own copy of the judge template (the built-in one belongs to the package), edited below
        cfg["eval"]["judge"]["template"] = "config/judge.txt"
        # a second target: a local HF model (rule answer_hf, not a local rule)
        cfg["eval"]["targets"]["tiny_hf"] = {
            "kind": "hf",
            "model": "models/tiny_optimizer",
            "max_tokens": 8,
            "batch_size": 4,
        }
        cfg["eval"]["targets"].pop("smollm2")  # the demo's real target: the full-demo test runs it
        # two of the five demo sets keep the test lean: one with contexts, one with references
        for name in ("vicuna_eval", "self_instruct", "oasst1_multilingual"):
            cfg["eval"]["testsets"][name]["activate"] = False

    edit_config(wf, edit)
    snakemake(wf, "--cores", "2", *EVAL_OUTPUTS, *SFT_OUTPUTS)
    return wf


def test_offline_evaluation_outputs(evaluated):
    wf = evaluated
    rows = pq.read_table(wf / "results/demo/report/winrates.parquet").to_pylist()
    table = [r for r in rows if r["category"] is None]  # the overall rows; the others break down by category
    assert len(table) == 8  # 2 test sets x 2 optimizers x 2 targets
    assert {r["category"] for r in rows} > {None}  # Dolly's categories
    assert {(r["testset"], r["target"]) for r in table} == {
        (ts, tg) for ts in ("dolly_eval", "bpo_test") for tg in ("standin", "tiny_hf")
    }
    for r in table:
        assert r["judge_model"] == "bpo-standin-judge"
        assert r["backend"] == "standin"
        assert r["n"] >= 5 and r["win"] + r["tie"] + r["lose"] == pytest.approx(100.0)
        if r["optimizer"] == "identity":
            assert r["tie"] == 100.0
        assert r["delta_wr_low"] <= r["delta_wr"] <= r["delta_wr_high"]
    summary = (wf / "results/demo/report/summary.md").read_text()
    assert "come from the offline stand-in, not from a model" in summary
    assert (wf / "results/demo/report/compare.png").stat().st_size > 0
    for ts in ("dolly_eval", "bpo_test"):
        for tg in ("standin", "tiny_hf"):
            # identity: every question unchanged, every answer compared with itself -> 100% ties
            # (judged here: identical_as_tie is off, and the stand-in's A/A is a tie)
            judged = pq.read_table(wf / f"results/demo/eval/{ts}/identity/{tg}/judgments.parquet").to_pylist()
            assert judged and {r["outcome"] for r in judged} == {"tie"}
            assert all(r["optimizer"] == "identity" and r["protocol"] == "both_orders" for r in judged)
    hf_answers = pq.read_table(wf / "results/demo/eval/bpo_test/tiny/tiny_hf/answers.parquet").to_pylist()
    assert len(hf_answers) == 5 and all(r["backend"] == "hf" for r in hf_answers)
    intrinsic = json.loads((wf / "results/demo/report/intrinsic.json").read_text())
    assert set(intrinsic) == {"tiny", "identity"} and intrinsic["tiny"]["bpo_test"]["n"] == 5
    judged = pq.read_table(wf / "results/demo/eval/dolly_eval/tiny/standin/judgments.parquet").to_pylist()
    assert len(judged) == 5 and all(r["outcome"] in ("win", "tie", "lose", "invalid") for r in judged)
    optimized = pq.read_table(wf / "results/demo/eval/dolly_eval/tiny/optimized.parquet").to_pylist()
    answers = pq.read_table(wf / "results/demo/eval/dolly_eval/tiny/standin/answers.parquet").to_pylist()
    source = {
        str(r["idx"]): r["category"] for r in json.loads((wf / "resources/demo/testsets/dolly_eval.json").read_text())
    }
    for o, a, j in zip(optimized, answers, judged):  # the context reaches the target verbatim
        assert a["question_original"] == (o["instruction"] + "\n" + o["context"] if o["context"] else o["instruction"])
        assert a["question_optimized"].endswith(o["context"])
        assert o["category"] == a["category"] == j["category"] == source[o["item_id"]]  # categories kept
    for log in (
        "optimize_dolly_eval_tiny",
        "optimize_dolly_eval_identity",
        "answer_original_dolly_eval_standin",
        "answer_dolly_eval_tiny_standin",
        "judge_dolly_eval_tiny_standin",
    ):
        assert (wf / "logs" / "demo" / "eval" / f"{log}.log").stat().st_size > 0
    sft = json.loads((wf / "results/demo/sft_rewrite/train.json").read_text())
    reproduce = json.loads((wf / "results/demo/sft_rewrite/reproduce.json").read_text())
    assert len(sft) == len(reproduce) == 4
    assert set(reproduce[0]) == {"instruction", "input", "output", "optimized_prompt", "res"}
    # the demo's multi-turn set through the rules: per turn, identity ties on both turns, both targets
    turns = pq.read_table(wf / "results/demo/report/winrates_turns.parquet").to_pylist()
    overall = {(r["optimizer"], r["target"], r["turn"]): r for r in turns if r["category"] is None}
    assert set(overall) == {(o, t, k) for o in ("tiny", "identity") for t in ("standin", "tiny_hf") for k in (1, 2)}
    assert all(overall[("identity", t, k)]["tie"] == 100.0 for t in ("standin", "tiny_hf") for k in (1, 2))
    conv = pq.read_table(wf / "results/demo/eval/mt_bench/tiny/tiny_hf/conversations.parquet").to_pylist()
    assert len(conv) == 10 and {r["turn"] for r in conv} == {1, 2} and all(r["backend"] for r in conv)
    assert "## Multi-turn, per turn" in summary


def _planned(wf, edit=None, template=None) -> dict[str, int]:
    """Jobs a dry run plans after ``edit`` of the config (and ``template``: new judge template
    text); both are restored afterwards, so the tests share one evaluated workflow."""
    config, judge = wf / "config" / "config.yaml", wf / "config" / "judge.txt"
    saved = config.read_text(), judge.read_text()
    try:
        if edit is not None:
            edit_config(wf, edit)
        if template is not None:
            judge.write_text(template(saved[1]))
        return job_counts(snakemake(wf, "-n", "--cores", "1", *EVAL_OUTPUTS, *SFT_OUTPUTS))
    finally:
        config.write_text(saved[0])
        judge.write_text(saved[1])


def test_changing_only_the_judge_model_reruns_only_judge_and_report(evaluated):
    wf = evaluated
    assert _planned(wf) == {}  # up to date
    # (judge_turns: the demo's multi-turn set, mt_bench x 2 optimizers x 2 targets)
    assert _planned(wf, lambda c: c["eval"]["judge"].update(model="another-judge")) == {
        "judge": 8,
        "judge_turns": 4,
        "report": 1,
    }
    assert _planned(wf) == {}  # back: up to date
    # one target's decoding: its answers (original once per test set, then each optimizer's),
    # judgments and the report (and the SFT rewrite it answers); not the other target, not optimize
    assert _planned(wf, lambda c: c["eval"]["targets"]["standin"].update(max_tokens=100)) == {
        "answer_original": 2,
        "answer": 4,
        "judge": 4,
        "report": 1,
        "sft_rewrite_answer": 1,
        **MT_TARGET,
    }
    # the judging protocol and the verdict parsing are the judge's settings
    assert _planned(wf, lambda c: c["eval"]["judge"].update(protocol="single_random")) == {
        "judge": 8,
        "judge_turns": 4,
        "report": 1,
    }
    assert _planned(wf, lambda c: c["eval"]["judge"].update(lenient_verdicts=True)) == {
        "judge": 8,
        "judge_turns": 4,
        "report": 1,
    }


def _use_another_sft_target(cfg):
    cfg["eval"]["targets"]["sft_only"] = {**cfg["eval"]["targets"]["standin"], "activate": False, "max_tokens": 64}
    cfg["eval"]["sft_rewrite"]["target"] = "sft_only"


@pytest.mark.parametrize(
    "edit, template, planned",
    [
        # answer: a target's sampling; the endpoint it calls is part of its settings too (as it
        # is of the judge's, here the same endpoint)
        (
            lambda c: c["eval"]["targets"]["standin"].update(system_prompt="Be brief."),
            None,
            {"answer_original": 2, "answer": 4, "judge": 4, "report": 1, "sft_rewrite_answer": 1, **MT_TARGET},
        ),
        (
            lambda c: c["llm"]["endpoints"]["standin"].update(default_headers={"X-Team": "eval"}),
            None,
            {
                "answer_original": 2,
                "answer": 4,
                "judge": 8,
                "report": 1,
                "sft_rewrite_answer": 1,
                **MT_TARGET,
                "judge_turns": 4,
            },
        ),
        # judge: its sampling, its template's content (the multi-turn template is another file)
        (lambda c: c["eval"]["judge"].update(max_tokens=512), None, {"judge": 8, "judge_turns": 4, "report": 1}),
        (None, lambda text: text + "\nKeep the explanation short.\n", {"judge": 8, "report": 1}),
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
    (evaluated / "config" / "judge.txt").touch()  # tracked by content, not mtime
    assert _planned(evaluated) == {}


def test_optimizer_and_hf_target_settings_rerun_their_stage_and_downstream(evaluated):
    """One settings param per rule: one optimizer's decoding edit reruns only its branch (its
    optimize, answers and judgments; the SFT rewrite it makes) and the report, never the original
    answers or another optimizer; an hf target's edit reruns its answers; runtime values rerun
    nothing."""
    wf = evaluated
    sft_outputs = ["results/demo/sft_rewrite/reproduce.json", "results/demo/sft_rewrite/train.json"]
    snakemake(wf, "--cores", "2", *EVAL_OUTPUTS, *sft_outputs)  # catch up with the earlier tests' edits
    assert job_counts(snakemake(wf, "-n", "--cores", "1", *EVAL_OUTPUTS, *sft_outputs)) == {}
    edit_config(wf, lambda c: c["llm"]["endpoints"]["standin"]["limits"].update(max_concurrency=2))
    assert job_counts(snakemake(wf, "-n", "--cores", "1", *EVAL_OUTPUTS, *sft_outputs)) == {}
    edit_config(wf, lambda c: c["eval"]["optimizers"]["tiny"].update(temperature=0.7))
    proc = snakemake(wf, "-n", "--cores", "1", *EVAL_OUTPUTS, *sft_outputs)
    assert job_counts(proc) == {
        "optimize_testset": 2,
        "answer": 2,
        "answer_hf": 2,
        "judge": 4,
        "report": 1,
        "sft_rewrite_optimize": 1,
        "sft_rewrite_answer": 1,
        "converse": 2,
        "judge_turns": 2,
    }
    outputs = [line.split("output:", 1)[1] for line in proc.stdout.splitlines() if line.strip().startswith("output:")]
    assert outputs and not any("/identity/" in o or "original_answers" in o for o in outputs)
    edit_config(wf, lambda c: c["eval"]["optimizers"]["tiny"].update(temperature=0.6))
    assert job_counts(snakemake(wf, "-n", "--cores", "1", *EVAL_OUTPUTS, *sft_outputs)) == {}
    edit_config(wf, lambda c: c["eval"]["targets"]["tiny_hf"].update(engine="hf-generate"))
    assert job_counts(snakemake(wf, "-n", "--cores", "1", *EVAL_OUTPUTS)) == {
        "answer_original_hf": 2,
        "answer_hf": 4,
        "judge": 4,
        "report": 1,
        **MT_TARGET,
    }
    edit_config(wf, lambda c: c["eval"]["targets"]["tiny_hf"].update(engine="auto"))
    assert job_counts(snakemake(wf, "-n", "--cores", "1", *EVAL_OUTPUTS)) == {}


def test_generation_engine_is_recorded(evaluated):
    from bpo.schemas import read_metadata

    for path in (
        "results/demo/eval/dolly_eval/tiny/optimized.parquet",
        "results/demo/eval/bpo_test/tiny_hf/original_answers.parquet",
        "results/demo/sft_rewrite/optimized.parquet",
    ):
        meta = read_metadata(evaluated / path)
        assert meta["generation_engine"].startswith("lean bpo-") and meta["generation_engine_requested"] == "auto"


def test_original_answers_are_scheduled_once_per_testset_and_target(workflow_copy):
    """More optimizers add their own answers and judgments, never another round of original answers."""

    def jobs(n_extra):
        def edit(cfg):
            for i in range(n_extra):
                cfg["eval"]["optimizers"][f"identity{i}"] = {"kind": "identity"}

        edit_config(workflow_copy, edit)
        return job_counts(snakemake(workflow_copy, "-n", "--cores", "1", *EVAL_OUTPUTS))

    two, four = jobs(0), jobs(2)  # the demo's trained + identity, then two identities more
    assert two["answer_original"] == four["answer_original"] == 5  # 5 demo test sets x 1 target
    assert (two["answer"], four["answer"]) == (10, 20)
    assert (two["judge"], four["judge"]) == (20, 40)  # x 2 targets: the stand-in and the SmolLM2 hf target
    assert (two["optimize_identity"], four["optimize_identity"]) == (5, 15)


def test_html_report(evaluated):
    wf = evaluated
    snakemake(wf, "--report", "report.html", *EVAL_OUTPUTS)
    html = (wf / "report.html").read_text(errors="replace")
    assert "winrates.png" in html and "summary.md" in html
