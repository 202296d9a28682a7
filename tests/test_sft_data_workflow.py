"""The SFT-data experiment under Snakemake, offline and small: a tiny untrained optimizer rewrites
the demo's Alpaca file, the stand-in answers, two tiny students are trained from scratch with one
recipe, answer one test set and are judged by the stand-in. Then the rerun promises: an edit of
the students' recipe reruns both students and what follows them, nothing else; an edit of how
they answer reruns their answers and what follows; a runtime edit reruns nothing."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from conftest import copy_workflow, edit_config, edited_config, job_counts, snakemake
from eval_helpers import save_tiny_model
from test_browse import _embedded

pytestmark = pytest.mark.slow

OUTPUTS = ["results/demo/report/summary.md", "results/demo/report/browse.html"]
AFTER_STUDENTS = {"pair_students": 1, "judge": 1, "report": 1, "browse": 1}


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    wf = copy_workflow(tmp_path_factory.mktemp("sft-data") / "wf")
    save_tiny_model(wf / "models" / "tiny_optimizer", [("explain tides", "Please explain how tides work.")] * 4)

    def edit(cfg):
        ev = cfg["eval"]
        for name in ev["optimizers"]:
            ev["optimizers"][name]["activate"] = False  # the students are the only comparison
        ev["optimizers"]["tiny"] = {
            "kind": "model",
            "activate": False,
            "model": "models/tiny_optimizer",
            "max_tokens": 8,
        }
        ev["sft_rewrite"].update(activate=True, optimizer="tiny", target="standin")
        for name in ev["targets"]:
            ev["targets"][name]["activate"] = False
        for name in ev["testsets"]:
            ev["testsets"][name]["activate"] = name == "dolly_eval"
        ev["report"].update(bootstrap_samples=50, lc_min_pairs=2)
        cfg["sft_data"] = {
            "activate": True,
            "student": {
                "base_model": None,  # the tiny Llama from scratch: seconds, not minutes
                "train": {"max_steps": 2, "learning_rate": 0.003, "global_batch_size": 2, "per_device_batch_size": 2},
                "answer": {"max_tokens": 8, "batch_size": 4},
            },
        }

    edit_config(wf, edit)
    proc = snakemake(wf, "--cores", "2", *OUTPUTS)
    assert job_counts(proc) == {
        "sft_rewrite_optimize": 1,
        "sft_rewrite_answer": 1,
        "sft_data_sets": 1,
        "train_student": 2,
        "answer_student": 2,
        **AFTER_STUDENTS,
    }
    assert job_counts(snakemake(wf, "-n", "--cores", "1", *OUTPUTS)) == {}
    return wf


def test_the_students_are_judged_and_reported_as_a_model_comparison(ran):
    rows = pq.read_table(ran / "results/demo/report/winrates.parquet").to_pylist()
    overall = [r for r in rows if r["category"] is None]
    assert [(r["comparison"], r["optimizer"], r["target"], r["testset"]) for r in overall] == [
        ("model", "student_bpo", "student_original", "dolly_eval")
    ]
    assert overall[0]["n"] == 5
    for student in ("student_bpo", "student_original"):
        assert (ran / f"results/demo/models/{student}/config.json").is_file()
        assert (ran / f"results/demo/models/{student}_metrics/train_metrics.parquet").is_file()
    summary = (ran / "results/demo/report/summary.md").read_text()
    assert summary.startswith(
        "# BPO evaluation: answers to optimized prompts vs answers to the original prompts; SFT data"
    )
    assert "| student (B) | student_bpo |" in summary and "| student (A) | student_original |" in summary
    data = _embedded(ran / "results/demo/report/browse.html")
    fields, strings = data["fields"], data["strings"]
    rows = [
        {
            f: strings[v] if isinstance(v, int) and v >= 0 and f not in ("len_original", "len_optimized") else v
            for f, v in zip(fields, r)
        }
        for r in data["rows"]
    ]
    assert len(rows) == 5 and {(r["comparison"], r["optimizer"], r["target"]) for r in rows} == {
        ("model", "student_bpo", "student_original")
    }
    assert all(r["question_original"] == r["question_optimized"] for r in rows)  # one question, two models


def _set(path, value):
    def edit(cfg):
        node = cfg
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value

    return edit


@pytest.mark.parametrize(
    "path, value, jobs",
    [
        # the recipe: both students, then everything after them
        (("sft_data", "student", "train", "learning_rate"), 0.001, {"train_student": 2, "answer_student": 2}),
        (("sft_data", "student", "train", "max_steps"), 3, {"train_student": 2, "answer_student": 2}),
        # how they answer: their answers and what follows
        (("sft_data", "student", "answer", "max_tokens"), 6, {"answer_student": 2}),
        # the baseline's data: both data sets are one job, so both students retrain
        (("sft_data", "answer_original", "regenerate"), None, None),
    ],
    ids=["learning_rate", "max_steps", "answer.max_tokens", "answer_original"],
)
def test_a_student_edit_reruns_the_students_and_what_follows_only(ran, path, value, jobs):
    if jobs is None:  # answer_original: the value is the last path element
        path, value, jobs = path[:-1], path[-1], {"sft_data_sets": 1, "train_student": 2, "answer_student": 2}
    with edited_config(ran, _set(path, value)):
        assert job_counts(snakemake(ran, "-n", "--cores", "1", *OUTPUTS)) == {**jobs, **AFTER_STUDENTS}


def test_a_runtime_edit_reruns_nothing(ran):
    with edited_config(ran, _set(("train", "checkpoint", "save_steps"), 7)):
        assert job_counts(snakemake(ran, "-n", "--cores", "1", *OUTPUTS)) == {}
