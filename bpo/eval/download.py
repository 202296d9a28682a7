"""Fetch a published test set once, atomically, with a clear error when it cannot be had."""

from __future__ import annotations

import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

log = logging.getLogger(__name__)


class DownloadError(RuntimeError):
    """A test set could not be fetched."""


def fetch(url: str, dest: str | os.PathLike, timeout_s: float = 60.0) -> Path:
    """Download ``url`` (http, https or file) to ``dest``; a partial download never lands."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part-{os.getpid()}")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp, open(tmp, "wb") as out:
            size = 0
            while chunk := resp.read(1 << 16):
                out.write(chunk)
                size += len(chunk)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        tmp.unlink(missing_ok=True)
        raise DownloadError(
            f"could not fetch {url} ({exc}); without network access, download it elsewhere and set "
            f"the test set's `path:` in config instead of `url:`"
        ) from exc
    if size == 0:
        tmp.unlink(missing_ok=True)
        raise DownloadError(f"{url}: empty response")
    os.replace(tmp, dest)
    log.info("fetched %s -> %s (%d bytes)", url, dest, size)
    return dest
