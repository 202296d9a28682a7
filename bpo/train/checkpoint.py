"""Checkpoints for resuming a requeued or failed run, and only the same run.

:func:`prepare_checkpoint_dir` runs once, before the ranks start: it keeps the checkpoints of an
interrupted run whose fingerprint (settings, data digests, rank layout, template and data code)
matches, and wipes those of any other run (never resume into a different experiment).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

from bpo.atomic import write_json
from bpo.prompt_format import TEMPLATE_VERSION
from bpo.train.spec import TrainSpec

log = logging.getLogger(__name__)

FINGERPRINT_NAME = "bpo_fingerprint.json"


def _file_digest(path: str | None) -> str | None:
    if not path:
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _code_digest() -> str:
    from bpo import prompt_format
    from bpo.train import data, tiny_model

    h = hashlib.sha256()
    for module in (prompt_format, data, tiny_model):
        h.update(Path(module.__file__).read_bytes())
    return h.hexdigest()


def fingerprint(spec: TrainSpec, world_size: int) -> dict:
    """What a checkpoint must match to be resumed: settings, data and rank layout."""
    return {
        "hparams": spec.settings.canonical(),
        "train": _file_digest(spec.train),
        "val": _file_digest(spec.val),
        "deepspeed": _file_digest(spec.settings.deepspeed),
        "world_size": world_size,
        "template_version": TEMPLATE_VERSION,
        # The code that turns data into tokens and builds the tiny model: a checkpoint made by
        # other code (an upgrade between requeues) would not load, so it is not resumed.
        "code": _code_digest(),
    }


def last_complete_checkpoint(ckpt_dir: str | os.PathLike) -> str | None:
    """Newest ``checkpoint-N`` folder that was written to the end (trainer_state.json is the
    Trainer's last write), so a job killed mid-save resumes from the previous one."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return None
    found = []
    for p in ckpt_dir.iterdir():
        if p.is_dir() and p.name.startswith("checkpoint-") and p.name.split("-")[-1].isdigit():
            if (p / "trainer_state.json").exists():
                found.append((int(p.name.split("-")[-1]), p))
    return str(max(found)[1]) if found else None


def prepare_checkpoint_dir(spec: TrainSpec, world_size: int) -> str | None:
    """Run once before training starts. Returns the checkpoint to resume from, if any."""
    ckpt_dir = Path(spec.checkpoint.dir)
    fp = fingerprint(spec, world_size)
    fp_path = ckpt_dir / FINGERPRINT_NAME
    if ckpt_dir.exists() and any(ckpt_dir.iterdir()):
        try:
            old = json.loads(fp_path.read_text())
        except (OSError, ValueError):
            old = None
        if old != fp:
            log.warning("checkpoints in %s belong to different settings or data: removed", ckpt_dir)
            shutil.rmtree(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    write_json(fp, fp_path, indent=1, sort_keys=True)
    last = last_complete_checkpoint(ckpt_dir)
    if last:
        log.info("resuming from %s", last)
    return last
