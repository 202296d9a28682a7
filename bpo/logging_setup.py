"""Logging for workflow scripts: everything goes to the rule's log file (and stderr), redacted.

Every string that leaves a script goes through :mod:`bpo.redact`: log records (both handlers),
whatever is written to stderr (and, with a log file, stdout: progress bars, prints) and, with a
log file, the traceback of an uncaught exception, which is also logged so it reaches the rule's
log and not only the terminal.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from bpo import redact


def _log_uncaught(exc_type, exc, tb) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, tb)
        return
    # through the root logger: redacted, to the log file and to (redacted) stderr
    text = "".join(traceback.format_exception(exc_type, exc, tb)).rstrip()
    logging.getLogger("bpo").error("uncaught exception:\n%s", text)


def setup_logging(
    log_path: str | None = None, level: int = logging.INFO, config: Mapping[str, Any] | None = None
) -> None:
    """Log to stderr and ``log_path``; ``config`` (optional): the workflow config, whose endpoints'
    key variables are masked too (those of an LLM client are masked once it is built)."""
    redact.register_config(config)
    # stdout too in a workflow script (it ends up in the terminal and Snakemake's log), not in
    # a CLI like `bpo optimize`, whose stdout is the user's data
    for name in ("stdout", "stderr") if log_path else ("stderr",):
        stream = getattr(sys, name)
        if not isinstance(stream, redact.RedactingStream):
            setattr(sys, name, redact.RedactingStream(stream))
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        handlers.append(logging.FileHandler(log_path, mode="w"))
    formatter = redact.RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    for h in handlers:
        h.setFormatter(formatter)
    logging.basicConfig(level=level, handlers=handlers, force=True)
    logging.captureWarnings(True)
    if log_path:
        sys.excepthook = _log_uncaught


@contextmanager
def exit_on(*errors: type[BaseException], logger: str = "bpo") -> Iterator[None]:
    """Turn the expected stops of a script (budget reached, failed calls, bad input) into one
    error line in the log and exit status 1, not a traceback; anything else still raises."""
    try:
        yield
    except errors as exc:
        logging.getLogger(logger).error("%s: %s", type(exc).__name__, exc)
        sys.exit(1)
