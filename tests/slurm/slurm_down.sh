#!/usr/bin/env bash
# Stop the daemons that tests/slurm/slurm_up.sh started, by the PIDs it recorded (a munged
# that was already running is left alone), then removes the /etc/slurm files it wrote. Jobs
# still queued are cancelled first.
set -u
STATE=${BPO_SLURM_STATE:-/tmp/bpo-slurm}
[ -f "$STATE/started" ] || { echo "[slurm_down] nothing recorded in $STATE/started"; exit 0; }

MARK="# written by tests/slurm/slurm_up.sh (bpo CI)"
ours() { [ -f "$1" ] && [ "$(head -n1 "$1")" = "$MARK" ]; }
if ours /etc/slurm/slurm.conf && command -v scancel >/dev/null; then
  scancel --full --quiet --state=PENDING,RUNNING --partition=debug 2>/dev/null || true
fi

stop() { # name pid: TERM, wait up to 10 s, then KILL
  local name=$1 pid=$2
  kill -0 "$pid" 2>/dev/null || { echo "[slurm_down] $name (pid $pid) already gone"; return; }
  # A recycled PID belongs to someone else: only signal the process we started.
  if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != "$name" ]; then
    echo "[slurm_down] pid $pid is no longer $name: left alone"; return
  fi
  kill -TERM "$pid"
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid"
    echo "[slurm_down] $name (pid $pid) killed"
  else
    echo "[slurm_down] $name (pid $pid) stopped"
  fi
}

# Reverse start order: slurmd, slurmctld, then munged.
tac "$STATE/started" | while read -r name pid; do
  [ -n "${pid:-}" ] && stop "$name" "$pid"
done
rm -f "$STATE/started" "$STATE/slurmctld.pid" "$STATE/slurmd.pid"
for f in /etc/slurm/slurm.conf /etc/slurm/gres.conf; do
  if ours "$f"; then rm -f "$f"; fi
done
