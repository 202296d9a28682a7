"""Checks of a Snakemake run through the SLURM executor, for tests/slurm/run_slurm_ci.sh.

Reads Snakemake's own log of the run, then asks SLURM (squeue --states=all, scontrol, the
jobcomp text log) about every job id the log names, so "went through sbatch" is confirmed by
the cluster and not only by Snakemake. Standard library only.

    python3 slurm_ci_check.py run LOG --jobcomp FILE [--expect-rules a,b] [--gpu-rule R]
    python3 slurm_ci_check.py plan LOG --expect-rules a,b     # a `snakemake -n` output
    python3 slurm_ci_check.py edit CONFIG KEY=VALUE           # set a nested config value
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

# Lines of Snakemake 9 / snakemake-executor-plugin-slurm 2.8 output that this relies on.
RULE_RE = re.compile(r"^(local)?rule (\w+):$")
JOBID_RE = re.compile(r"^\s+jobid: (\d+)$")
RESOURCES_RE = re.compile(r"^\s+resources: (.*)$")
SUBMIT_RE = re.compile(r"^Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (.+)\)\.$")
FINISHED_RE = re.compile(r"^Finished jobid: (\d+) \(Rule: (\w+)\)$")
RUN_ID_RE = re.compile(r"^SLURM run ID: (\S+)$")
STATS_ROW_RE = re.compile(r"^(\w+)\s+(\d+)$")


@dataclass
class Job:
    jobid: int
    rule: str
    local: bool
    resources: str = ""
    slurm_id: str | None = None
    slurm_log: str | None = None
    finished: bool = False


@dataclass
class Run:
    run_id: str | None = None
    jobs: dict[int, Job] = field(default_factory=dict)

    @property
    def remote(self) -> list[Job]:
        return [j for j in self.jobs.values() if not j.local]

    @property
    def local(self) -> list[Job]:
        return [j for j in self.jobs.values() if j.local]


def parse_run_log(text: str) -> Run:
    """Jobs of one `snakemake` run (not a dry run): rule, local or not, SLURM job id."""
    run = Run()
    current: tuple[str, bool] | None = None
    pending: Job | None = None
    for line in text.splitlines():
        line = line.rstrip()
        if m := RUN_ID_RE.match(line):
            run.run_id = m.group(1)
        elif m := RULE_RE.match(line):
            current = (m.group(2), bool(m.group(1)))
            pending = None
        elif current and (m := JOBID_RE.match(line)):
            pending = Job(jobid=int(m.group(1)), rule=current[0], local=current[1])
            run.jobs[pending.jobid] = pending
        elif pending and (m := RESOURCES_RE.match(line)):
            pending.resources = m.group(1)
        elif m := SUBMIT_RE.match(line):
            job = run.jobs.get(int(m.group(1)))
            if job is None:
                raise SystemExit(f"log names SLURM job {m.group(2)} for unknown snakemake job {m.group(1)}")
            job.slurm_id, job.slurm_log = m.group(2), m.group(3)
        elif m := FINISHED_RE.match(line):
            job = run.jobs.get(int(m.group(1)))
            if job is not None:
                job.finished = True
    return run


def parse_plan(text: str) -> dict[str, int]:
    """Rule -> job count from the 'Job stats' table of `snakemake -n` (empty: nothing to do)."""
    counts: dict[str, int] = {}
    in_table = False
    for line in text.splitlines():
        if line.startswith("Job stats:"):
            in_table, counts = True, {}
        elif in_table:
            if line.startswith(("job ", "----")):
                continue
            m = STATS_ROW_RE.match(line.strip())
            if not m:
                in_table = False
            elif m.group(1) != "total":
                counts[m.group(1)] = int(m.group(2))
    return counts


def squeue_info(slurm_id: str) -> dict[str, str]:
    out = subprocess.run(
        ["squeue", "-h", "--states=all", "-j", slurm_id, "-o", "%i|%T|%j|%k"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()
    if not out:
        return {}
    jid, state, name, comment = out.splitlines()[0].split("|", 3)
    return {"id": jid, "state": state, "name": name, "comment": comment.strip()}


def scontrol_info(slurm_id: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "job", "-o", slurm_id], capture_output=True, text=True, timeout=60).stdout
    return dict(tok.split("=", 1) for tok in out.split() if "=" in tok)


def jobcomp_states(path: Path) -> dict[str, str]:
    """JobId -> JobState from SLURM's jobcomp/filetxt log (every job that ended)."""
    states = {}
    if path.exists():
        for line in path.read_text().splitlines():
            fields = dict(tok.split("=", 1) for tok in line.split() if "=" in tok)
            if "JobId" in fields:
                states[fields["JobId"]] = fields.get("JobState", "")
    return states


def has_api(resources: str) -> bool:
    return re.search(r"(^|, )api=\d+", resources) is not None


def check_run(log: Path, jobcomp: Path, expect_rules: set[str] | None, gpu_rule: str | None) -> list[str]:
    run = parse_run_log(log.read_text())
    problems: list[str] = []
    if not run.jobs:
        return [f"{log}: no jobs found in the snakemake log"]
    if not run.run_id:
        problems.append("no 'SLURM run ID' line: was the slurm executor used?")
    comp = jobcomp_states(jobcomp)
    rows = []
    for job in sorted(run.jobs.values(), key=lambda j: j.jobid):
        if not job.finished:
            problems.append(f"job {job.jobid} ({job.rule}) never finished")
        if job.local:
            if job.slurm_id:
                problems.append(f"local job {job.jobid} ({job.rule}) was submitted as SLURM job {job.slurm_id}")
            rows.append((job.rule, "submit host", "-", "-"))
            continue
        if has_api(job.resources):
            problems.append(f"rule {job.rule} calls an LLM (api resource) but ran on a compute node")
        if not job.slurm_id:
            problems.append(f"remote job {job.jobid} ({job.rule}) has no SLURM job id in the log")
            continue
        sq = squeue_info(job.slurm_id)
        if sq.get("state") != "COMPLETED":
            problems.append(f"SLURM job {job.slurm_id} ({job.rule}): squeue state {sq.get('state')!r}")
        if run.run_id and sq.get("name") != run.run_id:
            problems.append(f"SLURM job {job.slurm_id}: name {sq.get('name')!r} is not the run id")
        if not sq.get("comment", "").startswith(f"rule_{job.rule}"):
            problems.append(f"SLURM job {job.slurm_id}: comment {sq.get('comment')!r} does not name rule {job.rule}")
        if comp.get(job.slurm_id) != "COMPLETED":
            problems.append(f"SLURM job {job.slurm_id} ({job.rule}): jobcomp log says {comp.get(job.slurm_id)!r}")
        if not Path(job.slurm_log).exists():
            problems.append(f"SLURM log {job.slurm_log} missing")
        rows.append((job.rule, f"sbatch {job.slurm_id}", sq.get("state", "?"), comp.get(job.slurm_id, "?")))
        if job.rule == gpu_rule:
            sc = scontrol_info(job.slurm_id)
            if "gpu" not in sc.get("TresPerJob", "") + sc.get("TresPerNode", ""):
                problems.append(f"{gpu_rule} (SLURM job {job.slurm_id}) got no GPU: {sc.get('TresPerJob')!r}")
            if sc.get("Requeue") != "1":
                problems.append(f"{gpu_rule} (SLURM job {job.slurm_id}) is not requeueable (slurm_extra --requeue)")
    if gpu_rule and not any(j.rule == gpu_rule and not j.local for j in run.jobs.values()):
        problems.append(f"rule {gpu_rule} did not run as a SLURM job")
    if expect_rules is not None:
        ran = {j.rule for j in run.jobs.values()} - {"all"}
        if ran != expect_rules:
            problems.append(f"rules run {sorted(ran)} != expected {sorted(expect_rules)}")
    width = max(len(r[0]) for r in rows)
    print(f"  SLURM run id {run.run_id}: {len(run.remote)} sbatch job(s), {len(run.local)} local job(s)")
    for rule, where, state, comp_state in rows:
        print(f"    {rule:<{width}}  {where:<16} squeue={state:<10} jobcomp={comp_state}")
    return problems


def check_plan(log: Path, expect_rules: set[str]) -> list[str]:
    counts = parse_plan(log.read_text())
    planned = set(counts) - {"all"}
    print(f"  dry run plans: {json.dumps(counts, sort_keys=True)}")
    if planned != expect_rules:
        return [f"dry run plans rules {sorted(planned)}, expected exactly {sorted(expect_rules)}"]
    return []


def edit_config(path: Path, assignment: str) -> None:
    """Set a nested key (a.b.c=VALUE, VALUE parsed as YAML) the way a user edits the file."""
    import yaml

    key, _, raw = assignment.partition("=")
    if not key or not _:
        raise SystemExit(f"edit: expected KEY=VALUE, got {assignment!r}")
    cfg = yaml.safe_load(path.read_text())
    node = cfg
    *parents, last = key.split(".")
    for part in parents:
        if not isinstance(node, dict) or part not in node:
            raise SystemExit(f"edit: config has no key {key!r} (missing {part!r})")
        node = node[part]
    if last not in node:
        raise SystemExit(f"edit: config has no key {key!r}")
    old, node[last] = node[last], yaml.safe_load(raw)
    if old == node[last]:
        raise SystemExit(f"edit: {key} is already {old!r}")
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    print(f"  config edit: {key}: {old!r} -> {node[last]!r}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("log", type=Path)
    r.add_argument("--jobcomp", type=Path, required=True)
    r.add_argument("--expect-rules")
    r.add_argument("--gpu-rule")
    p = sub.add_parser("plan")
    p.add_argument("log", type=Path)
    p.add_argument("--expect-rules", required=True)
    e = sub.add_parser("edit")
    e.add_argument("config", type=Path)
    e.add_argument("assignment")
    args = ap.parse_args(argv)

    def rules(s: str | None) -> set[str] | None:
        return None if s is None else {x for x in s.split(",") if x}

    if args.cmd == "edit":
        edit_config(args.config, args.assignment)
        return 0
    if args.cmd == "run":
        problems = check_run(args.log, args.jobcomp, rules(args.expect_rules), args.gpu_rule)
    else:
        problems = check_plan(args.log, rules(args.expect_rules))
    for msg in problems:
        print(f"  FAIL: {msg}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
