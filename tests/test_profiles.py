"""Snakemake profiles: they parse with Snakemake's own CLI, the SLURM profile has what a cluster
run needs, LLM rules stay on the submit host, and the CI override mirrors the real profile.

The live check on a real SLURM cluster is tests/slurm/run_slurm_ci.sh (run by .ci/run)."""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, copy_workflow, snakemake

PROFILES = REPO / "profiles"
LLM_RULES = {"critique", "answer", "judge", "sft_rewrite_answer"}  # rules that send LLM requests
GPU_RULE = "train_optimizer"
TRAIN_RESOURCES = {"gpu", "cpus_per_task", "mem_mb", "runtime", "slurm_extra"}


def _profile(name: str) -> dict:
    return yaml.safe_load((PROFILES / name / "config.yaml").read_text())


def _unquote(value) -> str:
    """A profile string resource is a Python expression ("'--requeue'"): its value."""
    return ast.literal_eval(value) if isinstance(value, str) else value


@pytest.fixture(scope="module")
def workflow(tmp_path_factory):
    """The parsed workflow (rules with their declared resources, the localrules set), from a
    temp copy: parsing writes under .snakemake/ of its working directory."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import OutputSettings, ResourceSettings

    wf_dir = copy_workflow(tmp_path_factory.mktemp("wf"))
    cwd = os.getcwd()
    try:
        with SnakemakeApi(OutputSettings()) as api:
            wf_api = api.workflow(resource_settings=ResourceSettings(), snakefile=wf_dir / "Snakefile", workdir=wf_dir)
            # _workflow is the parsed Workflow (snakemake pinned to 9.27 in pyproject.toml)
            wf = wf_api._workflow
            rules = {r.name: {k: getattr(v, "raw", v) for k, v in r.resources.items()} for r in wf.rules}
            return {"rules": rules, "localrules": set(wf._localrules)}
    finally:
        os.chdir(cwd)


# --- the profiles as Snakemake reads them ------------------------------------------------


@pytest.mark.parametrize(
    "profiles",
    [[], ["profiles/slurm"], ["profiles/slurm", "profiles/slurm-ci"]],
    ids=["default", "slurm", "slurm+ci"],
)
def test_snakemake_cli_accepts_profiles(profiles, monkeypatch):
    """Every key is a real Snakemake/plugin option with a valid value (a typo would fail here;
    profiles/default is picked up by Snakemake itself as the workflow profile)."""
    from snakemake.cli import parse_args

    monkeypatch.chdir(REPO)
    argv = [a for p in profiles for a in ("--profile", p)] + ["--dry-run"]
    _, args = parse_args(argv)
    assert args.rerun_incomplete is True and args.keep_going is False
    assert "api" in args.resources  # the API concurrency cap applies to every run
    if profiles:
        assert args.executor == "slurm"
        assert args.retries >= 1 and args.latency_wait >= 5
        assert {"slurm_partition", "mem_mb", "runtime", "cpus_per_task"} <= set(args.default_resources)
        assert TRAIN_RESOURCES <= set(args.set_resources[GPU_RULE])
    if "profiles/slurm-ci" in profiles:
        # without slurmdbd, sacct fails and the plugin would poll forever
        assert args.slurm_status_command == "squeue"
        assert "slurm_account" not in args.default_resources


def test_slurm_profile_has_cluster_settings():
    prof = _profile("slurm")
    assert prof["executor"] == "slurm"
    assert prof["jobs"] >= 10
    assert prof["latency-wait"] >= 30  # shared filesystems lag
    assert prof["retries"] >= 1
    res = prof["default-resources"]
    # partition and account are placeholders the user edits, never baked into rules
    assert "EDIT_ME" in str(res["slurm_partition"]) and "EDIT_ME" in str(res["slurm_account"])
    assert {"mem_mb", "runtime", "cpus_per_task"} <= set(res)
    for rule, res in prof["set-resources"].items():  # GPU jobs: the GPU partition, to edit
        assert "EDIT_ME" in str(res["slurm_partition"]) and int(res["gpu"]) >= 1, rule
    train = prof["set-resources"][GPU_RULE]
    assert TRAIN_RESOURCES <= set(train)
    assert int(train["gpu"]) >= 1 and int(train["cpus_per_task"]) >= 8
    assert "--requeue" in _unquote(train["slurm_extra"])  # resume from checkpoints on requeue


def test_no_profile_key_is_shadowed_by_the_workflow_profile():
    """Snakemake loads profiles/default on every run and its keys win over --profile ones:
    a key in both would be silently ignored in the SLURM profile."""
    default = set(_profile("default"))
    for name in ("slurm", "slurm-ci"):
        assert not default & set(_profile(name)), f"profiles/{name} repeats keys of profiles/default"


def test_slurm_extra_holds_no_option_the_plugin_manages():
    from snakemake_executor_plugin_slurm.validation import get_forbidden_slurm_options

    for name in ("slurm", "slurm-ci"):
        for rule, res in _profile(name).get("set-resources", {}).items():
            extra = _unquote(res.get("slurm_extra", "''"))
            for pattern, what in get_forbidden_slurm_options().items():
                assert not re.search(pattern, extra), f"profiles/{name} {rule}: {what} in slurm_extra"


def test_ci_profile_mirrors_the_real_one():
    """slurm-ci restates default-resources/set-resources (top-level keys replace), so keep
    them in step: same rules and resource names, only the account dropped."""
    real, ci = _profile("slurm"), _profile("slurm-ci")
    assert set(ci["default-resources"]) == set(real["default-resources"]) - {"slurm_account"}
    assert set(ci["set-resources"]) == set(real["set-resources"])
    for rule, res in real["set-resources"].items():
        assert set(ci["set-resources"][rule]) == set(res), rule
        assert _unquote(ci["set-resources"][rule].get("slurm_extra")) == _unquote(res.get("slurm_extra"))


# --- the workflow as the profiles see it --------------------------------------------------


def test_llm_rules_run_on_the_submit_host(workflow):
    api_rules = {name for name, res in workflow["rules"].items() if "api" in res}
    assert api_rules, "no rule declares the api resource"
    assert LLM_RULES & set(workflow["rules"]) <= api_rules, "an LLM rule lacks resources: api=1"
    not_local = api_rules - workflow["localrules"]
    assert not not_local, f"LLM-calling rules not in localrules (would run on compute nodes): {not_local}"


def test_profile_rule_names_exist(workflow):
    """set-resources for a misspelt rule is silently ignored by Snakemake."""
    for name in ("slurm", "slurm-ci"):
        unknown = set(_profile(name).get("set-resources", {})) - set(workflow["rules"])
        assert not unknown, f"profiles/{name} sets resources of unknown rules {unknown}"


def test_training_rule_declares_its_resources(workflow):
    declared = workflow["rules"][GPU_RULE]
    assert TRAIN_RESOURCES <= set(declared), f"{GPU_RULE} declares {sorted(declared)}"
    assert GPU_RULE not in workflow["localrules"]


@pytest.mark.slow
def test_dry_run_with_slurm_profile_applies_training_resources(workflow_copy):
    proc = snakemake(workflow_copy, "-n", "--profile", "profiles/slurm")
    text = proc.stdout + proc.stderr
    block = text[text.index(f"rule {GPU_RULE}:") :]
    resources = re.search(r"resources: (.*)", block).group(1)
    train = _profile("slurm")["set-resources"][GPU_RULE]
    assert f"gpu={train['gpu']}" in resources
    assert f"mem_mb={train['mem_mb']}" in resources
    assert f"slurm_extra={_unquote(train['slurm_extra'])}" in resources
    assert "slurm_partition=EDIT_ME_gpu_partition" in resources


# --- the log parser of the live CI check --------------------------------------------------

_spec = importlib.util.spec_from_file_location("slurm_ci_check", REPO / "tests" / "slurm" / "slurm_ci_check.py")
slurm_ci_check = importlib.util.module_from_spec(_spec)
sys.modules["slurm_ci_check"] = slurm_ci_check  # dataclasses look their module up there
_spec.loader.exec_module(slurm_ci_check)

RUN_LOG = """\
SLURM run ID: 1234-abcd
[Sat Nov 21 13:32:35 2026]
localrule judge:
    input: results/eval/a/standin/answers.parquet
    jobid: 3
    reason: Params have changed since last execution
    resources: tmpdir=/tmp, mem_mb=1000, api=1
[Sat Nov 21 13:32:35 2026]
rule report:
    output: results/report/summary.md
    jobid: 2
    reason: Input files updated by another job
    resources: tmpdir=<TBD>, mem_mb=2000, slurm_partition=debug
Finished jobid: 3 (Rule: judge)
Job 2 has been submitted with SLURM jobid 17 (log: /w/.snakemake/slurm_logs/rule_report/17.log).
Finished jobid: 2 (Rule: report)
"""

PLAN_LOG = """\
Job stats:
job        count
-------  -------
judge          4
report         1
all            1
total          6

Reasons:
"""


def test_ci_log_parser_reads_jobs_and_slurm_ids():
    run = slurm_ci_check.parse_run_log(RUN_LOG)
    assert run.run_id == "1234-abcd"
    judge, report = run.jobs[3], run.jobs[2]
    assert (judge.rule, judge.local, judge.slurm_id) == ("judge", True, None)
    assert slurm_ci_check.has_api(judge.resources)
    assert (report.rule, report.local, report.slurm_id) == ("report", False, "17")
    assert report.slurm_log.endswith("rule_report/17.log") and report.finished
    assert slurm_ci_check.parse_plan(PLAN_LOG) == {"judge": 4, "report": 1, "all": 1}
    assert slurm_ci_check.parse_plan("Building DAG of jobs...\nNothing to be done.\n") == {}


def test_ci_config_edit_sets_a_nested_key(tmp_path: Path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("eval:\n  judge:\n    model: a\n    temperature: 0.0\n")
    slurm_ci_check.edit_config(cfg, "eval.judge.model=b")
    assert yaml.safe_load(cfg.read_text()) == {"eval": {"judge": {"model": "b", "temperature": 0.0}}}
    with pytest.raises(SystemExit, match="no key"):
        slurm_ci_check.edit_config(cfg, "eval.judge.modle=c")
