"""Atomic writes for every artifact (Parquet, JSON, text, PNG): write a hidden temp file beside the
target, then ``os.replace`` it, so a killed job never leaves a half-written output that Snakemake or
a rerun would take for finished."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path next to ``path``; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the suffix is kept so writers that look at it (matplotlib, pyarrow) pick the right format
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(text: str, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(
    obj: Any,
    path: str | os.PathLike,
    *,
    indent: int | None = 2,
    sort_keys: bool = False,
    ensure_ascii: bool = False,
    default=None,
) -> None:
    """JSON with a trailing newline; the formatting arguments are json.dumps's."""
    write_text(
        json.dumps(obj, indent=indent, sort_keys=sort_keys, ensure_ascii=ensure_ascii, default=default) + "\n", path
    )


def save_figure(fig, path: str | os.PathLike, **savefig_kwargs) -> None:
    """A matplotlib figure (format from the suffix of ``path``)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, **savefig_kwargs)
