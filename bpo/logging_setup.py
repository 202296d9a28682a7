"""Logging for workflow scripts: everything goes to the rule's log file (and stderr)."""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from typing import Iterator


def setup_logging(log_path: str | None = None, level: int = logging.INFO) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    logging.captureWarnings(True)


@contextmanager
def exit_on(*errors: type[BaseException], logger: str = "bpo") -> Iterator[None]:
    """Turn the expected stops of a script (budget reached, failed calls, bad input) into one
    error line in the log and exit status 1, not a traceback; anything else still raises."""
    try:
        yield
    except errors as exc:
        logging.getLogger(logger).error("%s: %s", type(exc).__name__, exc)
        sys.exit(1)
