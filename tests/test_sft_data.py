"""The SFT-data experiment's parts: the students' data sets, their recipe, the pairing of their
answers, the "model B vs model A" comparison in the report and the browser, and the plan's checks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from bpo.browse import build_browse
from bpo.eval.report import build_report
from bpo.eval.sft_data import pair_model_answers, student_datasets
from bpo.schemas import JUDGMENTS, ORIGINAL_ANSWERS, SFT, read_table, write_table
from bpo.settings import SettingsError
from bpo.settings.config import load_config
from bpo.settings.evaluate import ReportSettings
from bpo.settings.plan import Plan
from bpo.settings.sft_data import StudentDataSettings, student_answer_settings, student_train_settings

REPO = Path(__file__).resolve().parent.parent
ON = {"eval": {"sft_rewrite": {"activate": True}}, "sft_data": {"activate": True}}


def _config(run_from_repo, extra=None):
    from bpo.settings.config import merge

    return load_config(overrides=merge(ON, extra or {}))


def _reproduce(tmp_path, records) -> Path:
    path = tmp_path / "reproduce.json"
    path.write_text(json.dumps(records))
    return path


RECORDS = [
    {"instruction": "Name a color.", "input": "", "output": "Blue.", "optimized_prompt": "x", "res": "Red, for one."},
    {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5", "optimized_prompt": "x", "res": "2+3=5"},
    {"instruction": "Say hi.", "input": "", "output": "  ", "optimized_prompt": "x", "res": "Hi!"},  # no original
    {
        "instruction": "Count.",
        "input": "",
        "output": "1 2 3",
        "optimized_prompt": "x",
        "res": None,
    },  # no rewrite answer
]


def test_keep_writes_the_same_records_for_both_students_and_counts_the_drops(tmp_path, caplog):
    out = {"student_original": tmp_path / "a.parquet", "student_bpo": tmp_path / "b.parquet"}
    stats = student_datasets(_reproduce(tmp_path, RECORDS), StudentDataSettings("keep", None), out)
    a, b = (read_table(out[s], SFT).to_pylist() for s in ("student_original", "student_bpo"))
    assert [r["prompt"] for r in a] == [r["prompt"] for r in b] == ["Name a color.", "Add the numbers.\n2 and 3"]
    assert [r["optimized_prompt"] for r in a] == ["Blue.", "5"]  # the file's own outputs
    assert [r["optimized_prompt"] for r in b] == ["Red, for one.", "2+3=5"]  # answers to the rewrites
    assert stats["dropped"] == {"no original answer (keep)": 1, "no answer to the rewritten instruction": 1}


def test_regenerate_asks_the_rewrite_target_for_the_originals(tmp_path, run_from_repo):
    from bpo.settings import LLMRuntime

    config = _config(
        run_from_repo, {"sft_data": {"answer_original": "regenerate"}, "llm": {"cache": str(tmp_path / "c.sqlite")}}
    )
    settings = StudentDataSettings.from_config(config)
    assert settings.target.name == "standin"  # eval.sft_rewrite.target
    out = {"student_original": tmp_path / "a.parquet", "student_bpo": tmp_path / "b.parquet"}
    runtime = LLMRuntime.from_config(config, "standin")
    student_datasets(_reproduce(tmp_path, RECORDS), settings, out, runtime)
    a = read_table(out["student_original"], SFT).to_pylist()
    assert len(a) == 3  # the blank original output no longer matters; the missing rewrite answer does
    assert all(r["optimized_prompt"] not in ("Blue.", "5") for r in a)


def test_a_reproduce_file_without_answers_is_an_error_naming_it(tmp_path):
    path = _reproduce(tmp_path, [{"instruction": "x", "input": ""}])
    with pytest.raises(ValueError, match=r"reproduce.json: record 0 lacks output, res"):
        student_datasets(path, StudentDataSettings("keep", None), {})


def test_student_recipe_is_train_with_the_student_section_over_it(run_from_repo):
    config = _config(run_from_repo, {"sft_data": {"student": {"train": {"learning_rate": 0.003, "max_steps": 2}}}})
    s = student_train_settings(config)
    assert (s.learning_rate, s.max_steps, s.prompt_format) == (0.003, 2, "instruction")
    assert s.base_model == config["sft_data"]["student"]["base_model"]
    assert s.global_batch_size == config["train"]["global_batch_size"]  # not overridden: train's
    with pytest.raises(SettingsError, match=r"config sft_data.student.train.learnin_rate: unknown key"):
        student_train_settings(_config(run_from_repo, {"sft_data": {"student": {"train": {"learnin_rate": 1}}}}))


def test_a_student_answers_as_a_local_hf_target(run_from_repo):
    config = _config(run_from_repo, {"sft_data": {"student": {"answer": {"max_tokens": 33}}}})
    s = student_answer_settings(config, "vicuna_eval", "student_bpo", "results/x/models/student_bpo")
    assert (s.target.name, s.target.model, s.target.generation.max_new_tokens) == (
        "student_bpo",
        "results/x/models/student_bpo",
        33,
    )
    with pytest.raises(SettingsError, match="unknown student 'teacher'"):
        student_answer_settings(config, "vicuna_eval", "teacher", "x")


def test_plan_checks_the_switch_and_the_names(run_from_repo):
    plan = Plan.from_config(_config(run_from_repo))
    assert plan.model_comparisons() == [(ts, "student_bpo", "student_original") for ts in plan.testsets]
    with pytest.raises(SettingsError, match="sft_data.activate: needs eval.sft_rewrite.activate"):
        Plan.from_config(load_config(overrides={"sft_data": {"activate": True}}))
    taken = {"eval": {"targets": {"student_bpo": {"kind": "endpoint", "endpoint": "standin", "model": "m"}}}}
    with pytest.raises(SettingsError, match="eval.targets.student_bpo: the name is the sft_data student's"):
        Plan.from_config(_config(run_from_repo, taken))
    assert Plan.from_config(load_config()).model_comparisons() == []


def _answers(path, target, texts):
    rows = [
        {
            "item_id": str(k),
            "testset": "ts",
            "target": target,
            "category": "math" if k % 2 else "prose",
            "question": f"question {k}",
            "answer": t,
            "status": "ok",
            "backend": "hf",
        }
        for k, t in enumerate(texts)
    ]
    write_table(rows, path, ORIGINAL_ANSWERS)
    return path


def test_pairing_puts_b_on_the_optimized_side_and_refuses_other_items(tmp_path):
    b = _answers(tmp_path / "b.parquet", "student_bpo", ["b0", "b1"])
    a = _answers(tmp_path / "a.parquet", "student_original", ["a0", "a1"])
    pair_model_answers(b, a, out_answers=tmp_path / "ans.parquet", out_prompts=tmp_path / "p.parquet")
    rows = pq.read_table(tmp_path / "ans.parquet").to_pylist()
    assert [(r["optimizer"], r["target"], r["answer_optimized"], r["answer_original"]) for r in rows] == [
        ("student_bpo", "student_original", "b0", "a0"),
        ("student_bpo", "student_original", "b1", "a1"),
    ]
    assert all(r["question_original"] == r["question_optimized"] for r in rows)
    short = _answers(tmp_path / "short.parquet", "student_original", ["a0"])
    with pytest.raises(ValueError, match="answer different items"):
        pair_model_answers(b, short, out_answers=tmp_path / "x.parquet", out_prompts=tmp_path / "y.parquet")


def _judged(tmp_path, n=24):
    b = _answers(tmp_path / "b.parquet", "student_bpo", [f"b answer {k} " * (1 + k % 3) for k in range(n)])
    a = _answers(tmp_path / "a.parquet", "student_original", [f"a answer {k}" for k in range(n)])
    pair_model_answers(b, a, out_answers=tmp_path / "answers.parquet", out_prompts=tmp_path / "prompts.parquet")
    outcomes = ["win", "win", "lose", "tie"]
    rows = [
        {
            "item_id": str(k),
            "testset": "ts",
            "optimizer": "student_bpo",
            "target": "student_original",
            "category": "math" if k % 2 else "prose",
            "judge_model": "j",
            "protocol": "both_orders",
            "verdict_optimized_first": "A",
            "verdict_original_first": "B",
            "outcome": outcomes[k % 4],
            "raw_optimized_first": "[[A]]",
            "raw_original_first": "[[B]]",
            "rule_optimized_first": "token",
            "rule_original_first": "token",
            "backend": "openai",
        }
        for k in range(n)
    ]
    write_table(rows, tmp_path / "judgments.parquet", JUDGMENTS)
    return tmp_path


def test_report_names_the_model_comparison_first(tmp_path, run_from_repo):
    d = _judged(tmp_path)
    settings = ReportSettings.from_config(_config(run_from_repo, {"eval": {"report": {"bootstrap_samples": 50}}}))
    assert settings.model_pairs == {("student_bpo", "student_original")}
    outs = {k: d / f"{k}.out" for k in ("table", "summary", "plot", "compare", "intrinsic", "html")}
    build_report(
        [d / "judgments.parquet"],
        [d / "answers.parquet"],
        [],
        settings,
        out_table=outs["table"],
        out_summary=outs["summary"],
        out_plot=d / "w.png",
        out_compare_plot=d / "c.png",
        out_intrinsic=outs["intrinsic"],
        out_summary_html=outs["html"],
    )
    rows = pq.read_table(outs["table"]).to_pylist()
    assert {r["comparison"] for r in rows} == {"model"} and len(rows) == 3  # overall + 2 categories
    overall = next(r for r in rows if r["category"] is None)
    assert (overall["n_win"], overall["n_lose"], overall["delta_wr"]) == (12, 6, 25.0)
    assert overall["lc_delta_wr"] is not None  # 24 valid pairs >= lc_min_pairs
    md = outs["summary"].read_text()
    first_page = md.split("\n## ")[0]
    assert "SFT data: student_bpo vs student_original" in first_page  # the title
    # the models table names both students, their base model and their data
    data = "resources/demo/sft_rewrite/alpaca.json"
    for name in ("student_bpo", "student_original"):
        line = next(x for x in first_page.splitlines() if f"| {name} |" in x)
        assert "SmolLM2-135M-Instruct" in line and data in line
    section = md.split("## SFT data: student_bpo vs student_original (model B vs model A on the same prompt)")[1]
    assert "| model B | model A | test set |" in section and "| student_bpo | student_original | ts |" in section
    assert "| model | student_bpo | ts | student_original | math |" in md  # the category rows say their kind


def test_browser_shows_the_students_side_by_side(tmp_path, run_from_repo):
    d = _judged(tmp_path, n=4)
    settings = ReportSettings.from_config(_config(run_from_repo, {"eval": {"report": {"bootstrap_samples": 10}}}))
    build_report(
        [d / "judgments.parquet"],
        [d / "answers.parquet"],
        [],
        settings,
        out_table=d / "winrates.parquet",
        out_summary=d / "s.md",
        out_plot=d / "w.png",
        out_compare_plot=d / "c.png",
        out_intrinsic=d / "i.json",
    )
    from bpo.browse.data import load_rows, load_winrates, with_comparison

    rows = with_comparison(
        load_rows([d / "prompts.parquet"], [d / "answers.parquet"], [d / "judgments.parquet"]),
        load_winrates([d / "winrates.parquet"]),
    )
    assert {r.comparison for r in rows} == {"model"} and rows[0].answer_optimized.startswith("b answer")
    build_browse(
        [d / "prompts.parquet"],
        [d / "answers.parquet"],
        [d / "judgments.parquet"],
        [d / "winrates.parquet"],
        d / "b.html",
    )
    page = (d / "b.html").read_text()
    # the page's script names the sides by model for a model comparison
    assert re.search(r'val\(r, "comparison"\) !== "model"', page) and "answer of ${esc(s[side])}" in page


def test_students_train_through_the_training_rules_script():
    """One code path: rule train_student runs the script train_optimizer runs (bpo.train's launcher)."""
    train = (REPO / "rules/train.smk").read_text()
    students = (REPO / "rules/sft_data.smk").read_text()

    def script(text, rule):
        body = text.split(f"rule {rule}:", 1)[1].split("\nrule ", 1)[0]
        return re.search(r'script:\s*"([^"]+)"', body).group(1)

    assert script(train, "train_optimizer") == script(students, "train_student") == "../workflow_scripts/train.py"
    assert "launch_training(spec" in (REPO / "workflow_scripts/train.py").read_text()


@pytest.mark.parametrize("extra", ["config/examples/sft-data.yaml", "config/paper.yaml"])
def test_the_shipped_configs_plan_the_experiment(run_from_repo, extra):
    """The example runs the students and nothing else of the evaluation; paper.yaml's section, switched
    on, is the 7B recipe on GPUs with vLLM answering."""
    config = load_config("config/config.yaml", extra, overrides=ON)
    plan = Plan.from_config(config)
    recipe = student_train_settings(config)
    assert recipe.prompt_format == "instruction" and plan.model_comparisons()
    answer = student_answer_settings(config, plan.testsets[0], "student_bpo", "m").target
    if extra.endswith("sft-data.yaml"):
        assert plan.triples() == [] and recipe.base_model.endswith("SmolLM2-135M-Instruct")
        assert json.loads(Path(config["eval"]["sft_rewrite"]["path"]).read_text())[199]  # 200 records
    else:
        assert recipe.base_model == "meta-llama/Llama-2-7b-hf" and recipe.global_batch_size == 128
        assert answer.generation.engine == "vllm"
