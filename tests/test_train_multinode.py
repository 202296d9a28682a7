"""The multi-node launch against fake ``scontrol`` and ``srun`` executables on PATH (the four
defects a real 2-node SLURM run showed): a failing scontrol is an error, the rendezvous uses the
NodeAddr, two jobs' ports differ and a taken port is skipped, the ranks' output reaches the
rule's log. Fast: nothing trains."""

from __future__ import annotations

import logging
import socket
import stat
from pathlib import Path

import pytest

from bpo.settings import load_config
from bpo.settings.train import CheckpointRuntime, TrainSettings
from bpo.train.launch import launch_training, plan_launch
from bpo.train.spec import TrainSpec

# Two NodeNames that do not resolve, both at 127.0.0.1 (as in tests/slurm's 2-node set-up).
SCONTROL_OK = """#!/bin/sh
case "$1 $2" in
  "show hostnames") echo nodea; echo nodeb ;;
  "show job") echo "JobId=$4 JobName=snakejob NumNodes=2 NumCPUs=2 NodeList=node[a-b] BatchHost=nodea" ;;
  "show node") echo "NodeName=$4 Arch=x86_64 NodeAddr=127.0.0.1 NodeHostName=$4 State=ALLOCATED" ;;
  *) echo "fake scontrol: unexpected $*" >&2; exit 2 ;;
esac
"""
SCONTROL_DOWN = """#!/bin/sh
echo "slurm_load_jobs error: Unable to contact slurm controller (connect failure)" >&2
exit 1
"""
# A stand-in for srun: records its command line, prints as two nodes' ranks would, exits $FAKE_SRUN_STATUS.
SRUN = """#!/bin/sh
echo "$@" > "$FAKE_SRUN_ARGS"
echo "0: rank0 INFO bpo.train.run: training: 48 examples"
echo "1: rank1 WARNING something only the second node saw" >&2
exit "${FAKE_SRUN_STATUS:-0}"
"""


def install(bin_dir: Path, name: str, text: str) -> None:
    path = bin_dir / name
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def fake_bin(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path('/usr/bin')}:{Path('/bin')}")
    return bin_dir


def step_env(job_id: str = "4242") -> dict:
    # What the Snakemake SLURM executor's one-task step sees: one node, though the job has two.
    return {"SLURM_JOB_ID": job_id, "SLURM_NNODES": "1", "SLURM_JOB_NODELIST": "nodea", "SLURM_GPUS_ON_NODE": "1"}


def test_a_failing_scontrol_is_an_error_not_a_one_node_run(fake_bin):
    install(fake_bin, "scontrol", SCONTROL_DOWN)
    with pytest.raises(RuntimeError, match="scontrol show job -o 4242.*exit status 1.*Unable to contact"):
        plan_launch(step_env(), cuda_devices=1)


def test_a_missing_scontrol_is_an_error(fake_bin, monkeypatch):
    monkeypatch.setenv("PATH", str(fake_bin))  # no scontrol anywhere
    with pytest.raises(RuntimeError, match="scontrol show job"):
        plan_launch(step_env(), cuda_devices=1)


def test_scontrol_without_the_allocation_is_an_error(fake_bin):
    install(fake_bin, "scontrol", "#!/bin/sh\necho JobId=$4 JobState=RUNNING\n")
    with pytest.raises(RuntimeError, match="NumNodes/NodeList"):
        plan_launch(step_env(), cuda_devices=1)


def test_the_rendezvous_host_is_the_first_nodes_node_addr(fake_bin):
    install(fake_bin, "scontrol", SCONTROL_OK)
    plan = plan_launch(step_env(), cuda_devices=1, python="PY")
    assert (plan.nnodes, plan.world_size, plan.master_addr) == (2, 2, "127.0.0.1")
    assert f"127.0.0.1:{plan.master_port}" in plan.command
    assert not any("nodea:" in arg for arg in plan.command)


def test_a_node_without_node_addr_is_an_error(fake_bin):
    install(fake_bin, "scontrol", SCONTROL_OK.replace("NodeAddr=127.0.0.1 ", ""))
    with pytest.raises(RuntimeError, match="show node -o nodea.*NodeAddr"):
        plan_launch(step_env(), cuda_devices=1)


def test_two_jobs_get_different_ports_and_a_taken_port_is_skipped(fake_bin):
    install(fake_bin, "scontrol", SCONTROL_OK)
    # `jobid % 10000` gave these two jobs the same port on the same rendezvous host
    first = plan_launch(step_env("4242"), cuda_devices=1).master_port
    second = plan_launch(step_env("14242"), cuda_devices=1).master_port
    assert first != second and 20000 <= min(first, second) and max(first, second) < 32000
    assert plan_launch(step_env("4242"), cuda_devices=1).master_port == first  # a function of the job
    with socket.socket() as held:  # another job's rendezvous store listens on that port
        held.bind(("127.0.0.1", first))
        held.listen()
        again = plan_launch(step_env("4242"), cuda_devices=1).master_port
    assert again != first


def _spec(tmp_path: Path) -> TrainSpec:
    train = tmp_path / "train.parquet"
    train.write_bytes(b"not read: the fake srun trains nothing")
    config = load_config(overrides={"train": {"deepspeed": None, "checkpoint": {"dir": str(tmp_path / "ckpt")}}})
    return TrainSpec(
        settings=TrainSettings.from_config(config),
        checkpoint=CheckpointRuntime.from_config(config),
        train=str(train),
        val=None,
        model_dir=str(tmp_path / "model"),
        metrics=str(tmp_path / "m.parquet"),
        loss_curve=str(tmp_path / "c.png"),
    )


@pytest.fixture
def rule_log(tmp_path):
    """The rule's log file, attached to the root logger as bpo.logging_setup attaches it."""
    path = tmp_path / "train_optimizer.log"
    handler = logging.FileHandler(path)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield path
    root.removeHandler(handler)
    root.setLevel(level)
    handler.close()


@pytest.mark.parametrize("status", [0, 3])
def test_every_nodes_output_reaches_the_rules_log(fake_bin, tmp_path, monkeypatch, rule_log, capfd, status):
    install(fake_bin, "scontrol", SCONTROL_OK)
    install(fake_bin, "srun", SRUN)
    monkeypatch.setenv("FAKE_SRUN_ARGS", str(tmp_path / "srun_args"))
    monkeypatch.setenv("FAKE_SRUN_STATUS", str(status))
    env = {**step_env(), "SLURM_GPUS_ON_NODE": ""}  # CPU ranks: torch here sees no GPU
    if status:
        with pytest.raises(RuntimeError, match="exit status 3"):
            launch_training(_spec(tmp_path), env=env)
    else:
        assert launch_training(_spec(tmp_path), env=env) is None
    text = rule_log.read_text()
    assert "0: rank0 INFO bpo.train.run: training: 48 examples" in text
    assert "1: rank1 WARNING something only the second node saw" in text  # stderr of another node
    args = (tmp_path / "srun_args").read_text().split()
    assert "--label" in args and any(a.startswith("127.0.0.1:") for a in args)
