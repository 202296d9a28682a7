"""Start optimizer training with the right number of ranks: in process, torchrun, or
torchrun on every node of a SLURM allocation. The ranks run :mod:`bpo.train.run` on a
:class:`~bpo.train.spec.TrainSpec` written to the checkpoint folder.

- One rank (a laptop, a CPU node, a 1-GPU job): train in this process. DeepSpeed still
  initialises torch.distributed, so RANK/LOCAL_RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT are
  set (without them it goes looking for mpi4py).
- Several ranks on one node: ``torchrun --standalone --nproc-per-node N``.
- Several SLURM nodes: ``srun --overlap --nodes N --ntasks-per-node 1 torchrun ...`` with a
  c10d rendezvous on the first node of the allocation. The Snakemake SLURM executor runs the
  rule inside a one-task job step that holds the allocation, hence ``--overlap``.

:func:`plan_launch` derives all of this from an environment mapping and is pure, so it is
unit-tested with fake SLURM environments.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import shlex
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bpo.train.checkpoint import prepare_checkpoint_dir
from bpo.train.spec import TrainSpec

log = logging.getLogger(__name__)


@dataclass
class LaunchPlan:
    nnodes: int
    nproc_per_node: int
    master_addr: str
    master_port: int
    use_cpu: bool
    under_slurm: bool
    rdzv_id: str = "bpo"
    command: list[str] = field(default_factory=list)  # empty: train in this process

    @property
    def world_size(self) -> int:
        return self.nnodes * self.nproc_per_node


def _count_devices(value: str | None) -> int | None:
    """Number of GPUs in SLURM_GPUS_ON_NODE ("4") or CUDA_VISIBLE_DEVICES ("0,1,2")."""
    if value is None or value.strip() == "":
        return None
    value = value.strip()
    if value.isdigit():
        return int(value)
    if value in ("NoDevFiles", "-1"):
        return 0
    return len([v for v in value.split(",") if v.strip()])


def slurm_hostnames(nodelist: str) -> list[str]:
    """Expand a compressed SLURM node list (``gpu[01-03]``) with ``scontrol show hostnames``."""
    try:
        out = subprocess.run(
            ["scontrol", "show", "hostnames", nodelist], check=True, capture_output=True, text=True, timeout=60
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise RuntimeError(f"cannot expand SLURM_JOB_NODELIST={nodelist!r} with scontrol: {exc}") from exc
    hosts = [h for h in out.split() if h]
    if not hosts:
        raise RuntimeError(f"scontrol show hostnames {nodelist!r} returned no host")
    return hosts


def _scontrol(*args: str) -> str:
    """stdout of ``scontrol ARGS``; any failure is an error (never a silent one-node guess)."""
    cmd = ["scontrol", *args]
    try:
        return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60).stdout
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(
            f"`{shlex.join(cmd)}` failed with exit status {exc.returncode}: {(exc.stderr or '').strip()}"
        ) from exc
    except (OSError, subprocess.SubprocessError) as exc:
        raise RuntimeError(f"`{shlex.join(cmd)}` failed: {exc}") from exc


def _scontrol_fields(out: str) -> dict[str, str]:
    return dict(tok.split("=", 1) for tok in out.split() if "=" in tok)


def slurm_job_allocation(job_id: str) -> tuple[int, str]:
    """(node count, node list) of the whole job, from slurmctld. Inside a job step (the
    Snakemake SLURM executor runs every rule under ``srun -n1``) SLURM_NNODES and
    SLURM_JOB_NODELIST describe the step, i.e. one node, not the allocation, so an unanswered
    ``scontrol`` is an error: guessing would train a multi-node job on one node."""
    fields = _scontrol_fields(_scontrol("show", "job", "-o", job_id))
    try:
        return int(fields["NumNodes"].split("-")[0]), fields["NodeList"]
    except (KeyError, ValueError) as exc:
        raise RuntimeError(f"`scontrol show job -o {job_id}` gave no NumNodes/NodeList: {exc}") from exc


def slurm_node_addr(node: str) -> str:
    """The address of SLURM node ``node`` (its NodeAddr): a NodeName need not resolve."""
    addr = _scontrol_fields(_scontrol("show", "node", "-o", node)).get("NodeAddr")
    if not addr:
        raise RuntimeError(f"`scontrol show node -o {node}` gave no NodeAddr")
    return addr


# Rendezvous ports of SLURM jobs: below Linux's ephemeral range (32768+, where outgoing
# connections take their ports) and above the usual service ports.
SLURM_PORT_RANGE = (20000, 32000)


def port_free(addr: str, port: int) -> bool | None:
    """Whether ``port`` can be bound on ``addr``; None when ``addr`` is not this machine's (the
    launcher runs on another node than the rendezvous host: nothing to check here)."""
    try:
        infos = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM)
    except OSError:
        return None
    family, _, _, _, sockaddr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind(sockaddr)
        except OSError as exc:
            return False if exc.errno == errno.EADDRINUSE else None
    return True


def slurm_rdzv_port(job_id: str, addr: str, free: Callable[[str, int], bool | None] = port_free) -> int:
    """The job's rendezvous port: spread over SLURM_PORT_RANGE by a hash of the job id (jobs
    whose ids differ by a round number do not meet, as with ``id % 10000``), then the next free
    one where the rendezvous host is this machine. The launcher passes it to every node on the
    srun command line, so the nodes never have to agree on it by themselves."""
    lo, hi = SLURM_PORT_RANGE
    span = hi - lo
    start = int.from_bytes(hashlib.sha256(f"bpo-rdzv-{job_id}".encode()).digest()[:8], "big") % span
    for i in range(64):
        port = lo + (start + i) % span
        if free(addr, port) is not False:
            if i:
                log.info("rendezvous port %d taken on %s: using %d", lo + start, addr, port)
            return port
    raise RuntimeError(f"no free rendezvous port on {addr} in 64 tries from {lo + start}")


def plan_launch(
    env: Mapping[str, str],
    *,
    cuda_devices: int,
    cpu_ranks: int = 1,
    spec_path: str = "SPEC.json",
    python: str = sys.executable,
    hostnames: Callable[[str], list[str]] = slurm_hostnames,
    allocation: Callable[[str], tuple[int, str]] = slurm_job_allocation,
    node_addr: Callable[[str], str] = slurm_node_addr,
    free_port: Callable[[], int] | None = None,
    port_check: Callable[[str, int], bool | None] = port_free,
) -> LaunchPlan:
    """How to start training, from the environment.

    ``cuda_devices`` is what torch sees in this process; under SLURM the allocation's
    ``SLURM_GPUS_ON_NODE`` wins (it is per node, the same on every node). Without GPUs,
    ``cpu_ranks`` processes per node train on CPU (gloo).
    """
    under_slurm = "SLURM_JOB_ID" in env
    nnodes = int(env.get("SLURM_JOB_NUM_NODES") or env.get("SLURM_NNODES") or 1) if under_slurm else 1
    job_nodelist = None
    if under_slurm:
        nnodes, job_nodelist = allocation(env["SLURM_JOB_ID"])
    gpus = None
    if under_slurm:
        gpus = _count_devices(env.get("SLURM_GPUS_ON_NODE"))
        if gpus and not cuda_devices:
            log.warning(
                "the SLURM allocation has %d GPU(s) per node but torch sees none (a CPU build of torch?): "
                "training on CPU",
                gpus,
            )
            gpus = 0
    if gpus is None:
        gpus = cuda_devices
    use_cpu = gpus == 0
    nproc = gpus if gpus > 0 else max(1, int(cpu_ranks))

    if under_slurm and nnodes > 1:
        nodelist = job_nodelist or env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
        if not nodelist:
            raise RuntimeError("SLURM_NNODES > 1 but SLURM_JOB_NODELIST is not set")
        master = node_addr(hostnames(nodelist)[0])
    else:
        master = "127.0.0.1"
    if under_slurm:
        port = slurm_rdzv_port(env["SLURM_JOB_ID"], master, port_check)
    else:
        port = int(env["MASTER_PORT"]) if env.get("MASTER_PORT") else (free_port or _free_port)()
    rdzv_id = f"bpo-{env['SLURM_JOB_ID']}" if under_slurm else "bpo-local"
    plan = LaunchPlan(
        nnodes=nnodes,
        nproc_per_node=nproc,
        master_addr=master,
        master_port=port,
        use_cpu=use_cpu,
        under_slurm=under_slurm,
        rdzv_id=rdzv_id,
    )
    if plan.world_size == 1:
        return plan

    entry = ["-m", "bpo.train.run", "--spec", spec_path]
    if nnodes == 1:
        plan.command = [
            python,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nnodes",
            "1",
            "--nproc-per-node",
            str(nproc),
            *entry,
        ]
    else:
        plan.command = [
            "srun",
            f"--jobid={env['SLURM_JOB_ID']}",
            "--overlap",
            f"--nodes={nnodes}",
            # the job's CPUs per node for each node's torchrun (a step task defaults to one)
            *([f"--cpus-per-task={env['SLURM_CPUS_PER_TASK']}"] if env.get("SLURM_CPUS_PER_TASK") else []),
            "--ntasks-per-node=1",
            f"--ntasks={nnodes}",
            "--kill-on-bad-exit=1",
            "--label",  # each output line starts with its node's task number
            python,
            "-m",
            "torch.distributed.run",
            "--nnodes",
            str(nnodes),
            "--nproc-per-node",
            str(nproc),
            "--rdzv-backend",
            "c10d",
            "--rdzv-endpoint",
            f"{master}:{port}",
            "--rdzv-id",
            rdzv_id,
            *entry,
        ]
    return plan


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def single_process_env(plan: LaunchPlan):
    """torch.distributed env of a world of one, restored afterwards (tests run in process)."""
    values = {
        "RANK": "0",
        "LOCAL_RANK": "0",
        "WORLD_SIZE": "1",
        "LOCAL_WORLD_SIZE": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(plan.master_port),
    }
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def launch_training(spec: TrainSpec, env: Mapping[str, str] | None = None, threads: int | None = None) -> dict | None:
    """Train the optimizer described by ``spec``: plan the ranks, prepare the checkpoint folder,
    then run in this process (one rank) or start torchrun/srun on :mod:`bpo.train.run`.

    ``threads``: CPU threads granted to a CPU-only job (Snakemake's ``threads``), split
    between CPU ranks; ignored with GPUs; None leaves torch's default. Returns the training summary when it ran in
    this process, else None (the ranks wrote the outputs; a failing rank raises here).
    """
    import torch

    env = dict(os.environ if env is None else env)
    cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    spec_path = Path(spec.checkpoint.dir) / "bpo_spec.json"
    plan = plan_launch(env, cuda_devices=cuda, cpu_ranks=spec.settings.cpu_ranks, spec_path=str(spec_path))
    log.info(
        "launch: %d node(s) x %d rank(s) on %s%s",
        plan.nnodes,
        plan.nproc_per_node,
        "CPU" if plan.use_cpu else "GPU",
        f", master {plan.master_addr}:{plan.master_port}" if plan.world_size > 1 else "",
    )
    resume = prepare_checkpoint_dir(spec, plan.world_size)
    if not plan.command:
        return _run_in_process(spec, plan, resume, threads)

    spec.write(spec_path)
    cmd = list(plan.command)
    if resume:
        cmd += ["--resume-from", resume]
    log.info("launch: %s", shlex.join(cmd))
    child_env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    if plan.nnodes > 1:
        # The step's own SLURM_* (one node, one task) would confine the inner srun to it.
        keep = {"SLURM_JOB_ID", "SLURM_JOBID", "SLURM_CONF"}
        child_env = {
            k: v for k, v in child_env.items() if not k.startswith(("SLURM_", "SRUN_", "SBATCH_")) or k in keep
        }
    if plan.use_cpu:
        # Split the cores between the CPU ranks instead of oversubscribing them.
        cores = int(threads) if threads else (os.cpu_count() or 1)
        child_env["OMP_NUM_THREADS"] = str(max(1, cores // plan.nproc_per_node))
    status = run_ranks(cmd, child_env)
    if status != 0:
        raise RuntimeError(f"training ranks failed with exit status {status}: {shlex.join(cmd)}")
    return None


def run_ranks(cmd: list[str], env: Mapping[str, str]) -> int:
    """Run the ranks' launcher and pass every line it and the ranks print (srun forwards every
    node's) to the ``bpo.train.ranks`` logger, so they reach the rule's log: inherited file
    descriptors would write past the log to the terminal, i.e. to SLURM's own output file."""
    rank_log = logging.getLogger("bpo.train.ranks")
    with subprocess.Popen(
        cmd, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1
    ) as proc:
        for line in proc.stdout:
            rank_log.info("%s", line.rstrip("\n"))
        return proc.wait()


def _run_in_process(spec: TrainSpec, plan: LaunchPlan, resume: str | None, threads: int | None) -> dict:
    import torch

    if threads and plan.use_cpu:
        # Only on CPU: on GPU nodes the CPU threads serve DeepSpeed's offloaded Adam.
        torch.set_num_threads(max(1, int(threads)))
    # DeepSpeed needs a (one-process) torch.distributed world; the plain Trainer does not,
    # and with these variables set it would wrap the model in a pointless DDP.
    env_ctx = single_process_env(plan) if spec.settings.deepspeed else contextlib.nullcontext()
    with env_ctx:
        try:
            return spec.run_function()(spec, resume_from=resume)
        finally:
            import torch.distributed as dist
            from transformers.integrations.deepspeed import unset_hf_deepspeed_config

            unset_hf_deepspeed_config()  # later model loads in this process: not ZeRO-3

            # Without it one rank in ~6 aborted at exit in DeepSpeed CPU runs.
            if dist.is_available() and dist.is_initialized():
                dist.destroy_process_group()
