"""The data stage through Snakemake, in a temp copy of the workflow: dry run, a real run on
the demo data, and reruns of exactly the jobs a config or input edit affects."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from conftest import copy_workflow, edited_config, job_counts, snakemake

from bpo.schemas import PAIRS, read_table

pytestmark = pytest.mark.slow

TARGET = "results/demo/pairs/all.parquet"
SOURCES = ["hh_rlhf", "oasst1", "chatbot_arena", "alpaca_gpt4"]


def _out(proc) -> str:
    return proc.stdout + proc.stderr


def planned_sources(proc) -> set[str]:
    return set(re.findall(r"wildcards: source=(\w+)", _out(proc)))


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """A workflow copy with the data stage run once."""
    wf = copy_workflow(tmp_path_factory.mktemp("data-stage") / "wf")
    proc = snakemake(wf, "--cores", "2", TARGET)
    assert job_counts(proc) == {"pairs_source": 4, "pairs_merge": 1}
    return wf


def test_dry_run_plans_the_data_stage_with_local_files_as_inputs(workflow_copy):
    proc = snakemake(workflow_copy, "-n", "--cores", "1", TARGET)
    assert job_counts(proc) == {"pairs_source": 4, "pairs_merge": 1}
    assert planned_sources(proc) == set(SOURCES)
    text = _out(proc)
    assert "input: resources/demo/hh-rlhf/train.jsonl\n" in text
    assert "input: resources/demo/alpaca-gpt4/alpaca_gpt4.json, resources/demo/alpaca-gpt4/alpaca_davinci.json" in text
    assert not (workflow_copy / "results" / "demo" / "pairs").exists()


def test_paper_sources_build_the_data_dag_offline(workflow_copy):
    """Hub ids are params, not inputs: building the DAG reads nothing and needs no network.
    Only the data sections of config/paper.yaml are applied here (the whole paper config is
    checked with the other stages)."""
    paper = yaml.safe_load((workflow_copy / "config" / "paper.yaml").read_text())
    data_only = {k: paper[k] for k in ("sources", "pairs") if k in paper}
    (workflow_copy / "config" / "paper_data.yaml").write_text(yaml.safe_dump(data_only))
    # the target goes first: --configfile takes every argument after it
    proc = snakemake(workflow_copy, TARGET, "-n", "--cores", "1", "--configfile", "config/paper_data.yaml")
    assert job_counts(proc) == {"pairs_source": 4, "pairs_merge": 1}
    assert "resources/demo" not in _out(proc)


def test_folder_path_expands_to_its_files(workflow_copy):
    with edited_config(workflow_copy, lambda c: c["sources"]["oasst1"].__setitem__("path", "resources/demo/oasst1")):
        proc = snakemake(workflow_copy, "-n", "--cores", "1", "results/demo/pairs/oasst1.parquet")
    assert "input: resources/demo/oasst1/train.jsonl\n" in _out(proc)


def test_missing_local_file_fails_at_dag_build_naming_it(workflow_copy):
    with edited_config(workflow_copy, lambda c: c["sources"]["hh_rlhf"].__setitem__("path", "data/missing.jsonl")):
        proc = snakemake(workflow_copy, "-n", "--cores", "1", TARGET, check=False)
    assert proc.returncode != 0 and "data/missing.jsonl" in _out(proc)


def test_missing_input_is_an_error_even_when_outputs_exist(ran):
    """Once outputs exist Snakemake would take them as plain inputs of the merge when the job
    reading the missing file cannot be planned ("Nothing to be done", rc 0): the config's paths
    are checked before planning instead."""
    with edited_config(ran, lambda c: c["sources"]["hh_rlhf"].__setitem__("path", "data/missing.jsonl")):
        proc = snakemake(ran, "-n", "--cores", "1", TARGET, check=False)
    assert proc.returncode != 0
    assert "config sources.hh_rlhf.path: data/missing.jsonl does not exist" in _out(proc)
    assert "Nothing to be done" not in _out(proc)


def test_real_run_writes_pairs_stats_and_logs(ran):
    merged = read_table(ran / TARGET, PAIRS)
    stats = json.loads((ran / "results/demo/pairs/all.stats.json").read_text())
    assert merged.num_rows == stats["pairs"] > 40
    assert set(merged.column("source").to_pylist()) == set(SOURCES)
    assert len(set(merged.column("pair_id").to_pylist())) == merged.num_rows
    assert stats["duplicates_across_sources"] == 1  # the demo repeats one hh-rlhf pair in chatbot_arena
    for source in SOURCES:
        st = json.loads((ran / f"results/demo/pairs/{source}.stats.json").read_text())
        assert read_table(ran / f"results/demo/pairs/{source}.parquet", PAIRS).num_rows == st["pairs"] >= 10
        log = (ran / f"logs/demo/data/pairs_source.{source}.log").read_text()
        assert all(f"{reason} {n}" in log for reason, n in st["dropped"].items())
        assert (ran / f"benchmarks/demo/data/pairs_source.{source}.tsv").exists()
    assert "duplicates across sources dropped" in (ran / "logs/demo/data/pairs_merge.log").read_text()
    assert job_counts(snakemake(ran, "-n", "--cores", "1", TARGET)) == {}


@pytest.mark.parametrize(
    "edit, jobs, sources",
    [
        (
            lambda c: c["sources"]["oasst1"].__setitem__("languages", ["en", "es"]),
            {"pairs_source": 1, "pairs_merge": 1},
            {"oasst1"},
        ),
        (
            lambda c: c["sources"]["chatbot_arena"].__setitem__("sample", 5),
            {"pairs_source": 1, "pairs_merge": 1},
            {"chatbot_arena"},
        ),
        (
            lambda c: c["pairs"].__setitem__("max_response_chars", 5000),
            {"pairs_source": 4, "pairs_merge": 1},
            set(SOURCES),
        ),
        (lambda c: c["pairs"].__setitem__("dedup", False), {"pairs_merge": 1}, set()),
    ],
    ids=["oasst1.languages", "chatbot_arena.sample", "pairs.max_response_chars", "pairs.dedup"],
)
def test_config_edit_reruns_only_the_affected_jobs(ran, edit, jobs, sources):
    with edited_config(ran, edit):
        proc = snakemake(ran, "-n", "--cores", "1", TARGET)
    assert job_counts(proc) == jobs
    assert planned_sources(proc) == sources
    assert "Params have changed since last execution" in _out(proc)


def test_input_file_edit_reruns_only_that_source(ran):
    # Snakemake compares checksums when an mtime changes, so the content must change
    path = ran / "resources/demo/chatbot_arena/train.jsonl"
    original = path.read_bytes()
    row = json.loads(original.splitlines()[1])
    row["question_id"] = "demo-arena-extra"
    path.write_bytes(original + (json.dumps(row) + "\n").encode())
    try:
        proc = snakemake(ran, "-n", "--cores", "1", TARGET)
    finally:
        path.write_bytes(original)
    assert job_counts(proc) == {"pairs_source": 1, "pairs_merge": 1}
    assert planned_sources(proc) == {"chatbot_arena"}


def test_real_rerun_after_a_config_edit_touches_only_the_affected_outputs(ran):
    untouched = {s: (ran / f"results/demo/pairs/{s}.parquet").stat().st_mtime_ns for s in SOURCES if s != "oasst1"}
    with edited_config(ran, lambda c: c["sources"]["oasst1"].__setitem__("languages", ["en", "es", "de"])):
        proc = snakemake(ran, "--cores", "2", TARGET)
        assert job_counts(proc) == {"pairs_source": 1, "pairs_merge": 1}
        langs = read_table(ran / "results/demo/pairs/oasst1.parquet", PAIRS).column("language").to_pylist()
        assert {"es", "de"} <= set(langs)
        assert {s: (ran / f"results/demo/pairs/{s}.parquet").stat().st_mtime_ns for s in untouched} == untouched
        merged = read_table(ran / TARGET, PAIRS)
        assert {"es", "de"} <= set(merged.column("language").to_pylist())
    # back to the original config: the same two jobs again, nothing else
    assert job_counts(snakemake(ran, "--cores", "2", TARGET)) == {"pairs_source": 1, "pairs_merge": 1}
