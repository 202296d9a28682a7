"""Who holds a claim: the owner id of a run (host, pid, process start, nonce) and whether that run is still alive.

A key is claimed in the cache (bpo.llm.cache) before it is sent, so another run awaits it
instead of paying for it again; a claim of an owner that is over is free at once, others
expire with their lease.
"""

from __future__ import annotations

import os
import socket
import uuid

# A claim lives this long unless its owner renews it (every CLAIM_LEASE_S / 4 while it runs).
CLAIM_LEASE_S = 60.0


def _proc_start(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot; tells a reused pid apart), or
    None when it is not running (a zombie counts as dead). "?" where /proc is unavailable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except FileNotFoundError:
        return None
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return "?"
    fields = stat[stat.rfind(b")") + 2 :].split()  # after "pid (comm) "
    if fields[0] in (b"Z", b"X"):
        return None
    return fields[19].decode()  # field 22 of stat


_HOST = socket.gethostname()
_ACTIVE_OWNERS: set[str] = set()  # claim owners of this process that are still running


def new_owner() -> str:
    """A claim owner id for one run: host|pid|process start|nonce."""
    pid = os.getpid()
    owner = f"{_HOST}|{pid}|{_proc_start(pid) or '?'}|{uuid.uuid4().hex[:12]}"
    _ACTIVE_OWNERS.add(owner)
    return owner


def retire_owner(owner: str) -> None:
    """``owner``'s run is over: its leftover claims (if any) are free for others at once."""
    _ACTIVE_OWNERS.discard(owner)


def owner_alive(owner: str) -> bool:
    """False when ``owner`` is a run on this host that is over (process dead, pid reused, or a
    finished run of this very process); True otherwise (other hosts: the lease decides)."""
    try:
        host, pid_s, start, _nonce = owner.split("|")
        pid = int(pid_s)
    except ValueError:
        return True
    if host != _HOST:
        return True
    if pid == os.getpid():
        return owner in _ACTIVE_OWNERS
    now = _proc_start(pid)
    return now is not None and (start == "?" or now == "?" or now == start)
