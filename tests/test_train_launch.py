"""How training is started, derived from (fake) local and SLURM environments."""

from __future__ import annotations

import os

import pytest

from bpo.train.launch import SLURM_PORT_RANGE, LaunchPlan, plan_launch, single_process_env


def fake_hostnames(nodelist):
    assert nodelist == "gpu[07-08]"
    return ["gpu07", "gpu08"]


def plan(env, **kw):
    kw.setdefault("cuda_devices", 0)
    # no slurmctld to ask: the job is what the step's environment says
    kw.setdefault("allocation", lambda job_id: (int(env.get("SLURM_NNODES", 1)), env.get("SLURM_JOB_NODELIST")))
    kw.setdefault("node_addr", lambda name: {"gpu07": "10.0.0.7"}.get(name, name))
    return plan_launch(
        env, spec_path="/ckpt/spec.json", python="PY", hostnames=fake_hostnames, free_port=lambda: 40000, **kw
    )


def test_laptop_without_gpu_trains_in_process():
    p = plan({})
    assert p.command == [] and p.world_size == 1 and p.use_cpu and not p.under_slurm
    assert (p.master_addr, p.master_port) == ("127.0.0.1", 40000)


def test_several_cpu_ranks_use_standalone_torchrun():
    p = plan({}, cpu_ranks=2)
    assert p.use_cpu and p.world_size == 2
    assert p.command == [
        "PY",
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes",
        "1",
        "--nproc-per-node",
        "2",
        "-m",
        "bpo.train.run",
        "--spec",
        "/ckpt/spec.json",
    ]


def test_local_gpus_get_one_rank_each():
    p = plan({"MASTER_PORT": "29999"}, cuda_devices=4, cpu_ranks=3)
    assert (
        not p.use_cpu
        and p.nproc_per_node == 4
        and p.command[:4] == ["PY", "-m", "torch.distributed.run", "--standalone"]
    )


def test_one_gpu_slurm_job_trains_in_process():
    env = {"SLURM_JOB_ID": "1234", "SLURM_NNODES": "1", "SLURM_JOB_NODELIST": "gpu07", "SLURM_GPUS_ON_NODE": "1"}
    p = plan(env, cuda_devices=1)
    assert p.command == [] and p.world_size == 1 and not p.use_cpu and p.under_slurm


def test_single_node_slurm_allocation_uses_its_gpus():
    # The allocation says 4 GPUs even if this process was started seeing a different number.
    env = {"SLURM_JOB_ID": "77", "SLURM_NNODES": "1", "SLURM_JOB_NODELIST": "gpu07", "SLURM_GPUS_ON_NODE": "4"}
    p = plan(env, cuda_devices=8)
    assert p.nnodes == 1 and p.nproc_per_node == 4
    assert "--standalone" in p.command and "srun" not in p.command


def test_multi_node_slurm_job_runs_torchrun_on_every_node_with_c10d_rendezvous():
    env = {
        "SLURM_JOB_ID": "4242",
        "SLURM_NNODES": "2",
        "SLURM_JOB_NODELIST": "gpu[07-08]",
        "SLURM_GPUS_ON_NODE": "8",
        "SLURM_NODEID": "0",
    }
    p = plan(env, cuda_devices=8)
    assert (p.nnodes, p.nproc_per_node, p.world_size) == (2, 8, 16)
    assert p.master_addr == "10.0.0.7" and SLURM_PORT_RANGE[0] <= p.master_port < SLURM_PORT_RANGE[1]
    assert p.command == [
        "srun",
        "--jobid=4242",
        "--overlap",
        "--nodes=2",
        "--ntasks-per-node=1",
        "--ntasks=2",
        "--kill-on-bad-exit=1",
        "--label",
        "PY",
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "2",
        "--nproc-per-node",
        "8",
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        f"10.0.0.7:{p.master_port}",
        "--rdzv-id",
        "bpo-4242",
        "-m",
        "bpo.train.run",
        "--spec",
        "/ckpt/spec.json",
    ]


def test_inside_a_job_step_the_whole_allocation_comes_from_slurmctld():
    # The Snakemake SLURM executor runs the rule in a one-node, one-task step: the step's
    # SLURM_NNODES / SLURM_JOB_NODELIST say one node, the job (scontrol) says two.
    env = {
        "SLURM_JOB_ID": "4242",
        "SLURM_NNODES": "1",
        "SLURM_JOB_NODELIST": "gpu07",
        "SLURM_GPUS_ON_NODE": "4",
        "SLURM_CPUS_PER_TASK": "32",
    }
    asked = []
    p = plan(env, cuda_devices=4, allocation=lambda job_id: asked.append(job_id) or (2, "gpu[07-08]"))
    assert asked == ["4242"]
    assert (p.nnodes, p.world_size, p.master_addr) == (2, 8, "10.0.0.7")
    assert p.command[:5] == ["srun", "--jobid=4242", "--overlap", "--nodes=2", "--cpus-per-task=32"]


def test_gpu_count_from_cuda_visible_devices_style_values():
    env = {"SLURM_JOB_ID": "5", "SLURM_NNODES": "1", "SLURM_GPUS_ON_NODE": "0,1,2"}
    assert plan(env, cuda_devices=3).nproc_per_node == 3
    cpu_job = {"SLURM_JOB_ID": "5", "SLURM_NNODES": "1"}  # no GPU in the allocation
    p = plan(cpu_job, cpu_ranks=2)
    assert p.use_cpu and p.nproc_per_node == 2


def test_gpus_allocated_but_invisible_to_torch_fall_back_to_cpu(caplog):
    env = {"SLURM_JOB_ID": "5", "SLURM_NNODES": "1", "SLURM_GPUS_ON_NODE": "1"}
    p = plan(env, cuda_devices=0)
    assert p.use_cpu and p.command == []
    assert "torch sees none" in caplog.text


def test_multi_node_without_nodelist_is_a_clear_error():
    with pytest.raises(RuntimeError, match="SLURM_JOB_NODELIST"):
        plan({"SLURM_JOB_ID": "5", "SLURM_NNODES": "2", "SLURM_GPUS_ON_NODE": "4"})


def test_single_process_env_is_set_for_deepspeed_and_restored(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.setenv("MASTER_PORT", "1")
    p = LaunchPlan(
        nnodes=1, nproc_per_node=1, master_addr="127.0.0.1", master_port=41234, use_cpu=True, under_slurm=False
    )
    with single_process_env(p):
        assert (os.environ["RANK"], os.environ["WORLD_SIZE"], os.environ["MASTER_PORT"]) == ("0", "1", "41234")
    assert "RANK" not in os.environ and os.environ["MASTER_PORT"] == "1"
