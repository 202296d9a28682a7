#!/usr/bin/env bash
# Bring up a real single-node SLURM cluster on localhost for CI: munged + slurmctld + slurmd
# from the Debian packages (slurm 22.05, munge 0.5), no systemd, no cgroups, no slurmdbd.
#
# The config goes where every SLURM command looks for it, /etc/slurm/slurm.conf (the snakemake
# job step clears SLURM_* variables, SLURM_CONF included, before its inner srun), marked as
# ours; an existing config that is not ours makes this script skip. Spool, logs and pid files
# live in one state folder, and slurm_down.sh stops exactly the daemons this script started.
#
#   tests/slurm/slurm_up.sh       # state in $BPO_SLURM_STATE or /tmp/bpo-slurm
#   tests/slurm/slurm_down.sh     # stop them, remove our /etc/slurm files
#
# Environment:
#   BPO_SLURM_STATE   state folder (default /tmp/bpo-slurm)
#   BPO_SLURM_CPUS    CPUs the node advertises (default 2 x nproc): CI jobs mostly wait on
#                     Python start-up and status polls, so the cores are oversubscribed
#   BPO_SLURM_GPUS    placeholder "gpu" GRES on the node (default 4): jobs ask for --gpus
#                     as on a GPU cluster; no device is behind them (CUDA stays unavailable)
#   BPO_SLURM_PORT    slurmctld port; slurmd uses PORT+1 (default 6817)
#
# Exit status 3 means "cannot run here" (not root, no apt-get, ports taken): callers skip.
set -euo pipefail

STATE=${BPO_SLURM_STATE:-/tmp/bpo-slurm}
GPUS=${BPO_SLURM_GPUS:-4}
CPUS=${BPO_SLURM_CPUS:-$((2 * $(nproc)))}
PORT=${BPO_SLURM_PORT:-6817}
T0=$(date +%s%N)
say() {
  local ms=$((($(date +%s%N) - T0) / 1000000))
  printf '[slurm_up %3d.%03ds] %s\n' $((ms / 1000)) $((ms % 1000)) "$*"
}
skip() { say "SKIP: $*"; exit 3; }
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

[ "$(id -u)" = 0 ] || skip "needs root (daemons run as root/slurm/munge users)"

# 1. packages ------------------------------------------------------------------------------
need=()
command -v slurmctld >/dev/null || need+=(slurmctld)
command -v slurmd >/dev/null || need+=(slurmd)
command -v sbatch >/dev/null || need+=(slurm-client)
command -v munged >/dev/null || need+=(munge)
if [ ${#need[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || skip "SLURM is not installed and there is no apt-get"
  say "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || skip "apt-get update failed (no package mirror reachable?)"
  # The postinst scripts try to start services and are refused (no systemd): harmless.
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
    skip "apt-get install ${need[*]} failed"
fi
say "packages: $(slurmd -V), $(munged -V 2>&1 | head -n1)"

# 2. state folder: a cluster of ours already up is reused --------------------------------
CONF=/etc/slurm/slurm.conf
MARK="# written by tests/slurm/slurm_up.sh (bpo CI)"
if [ -e "$CONF" ] && [ "$(head -n1 "$CONF")" != "$MARK" ]; then
  skip "$CONF exists and is not ours: not touching a real SLURM installation"
fi
mkdir -p "$STATE"
if alive "$STATE/slurmctld.pid" && alive "$STATE/slurmd.pid"; then
  say "cluster already up in $STATE (slurmctld $(cat "$STATE/slurmctld.pid"), slurmd $(cat "$STATE/slurmd.pid"))"
  exit 0
fi
# Refuse to fight a SLURM that is not ours for the ports.
for p in "$PORT" $((PORT + 1)); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    skip "port $p is in use (another slurmctld/slurmd?); set BPO_SLURM_PORT"
  fi
done
rm -rf "$STATE/spool" "$STATE/ctld" "$STATE/log"
install -d -m 0755 "$STATE/spool" /etc/slurm
install -d -o slurm -g slurm -m 0755 "$STATE/ctld" "$STATE/log"
: >"$STATE/started"   # "name pid" of each daemon this script started (slurm_down.sh reads it)

# 3. munge: reuse a working one, else start our own -------------------------------------
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  say "munged already running: reused (not stopped by slurm_down.sh)"
else
  [ -s /etc/munge/munge.key ] || mungekey --create --force
  chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
  install -d -o munge -g munge -m 0755 /run/munge
  install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
  runuser -u munge -- /usr/sbin/munged # forks; writes /run/munge/munged.pid
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
  munge -n | unmunge >/dev/null
  echo "munged $(cat /run/munge/munged.pid)" >>"$STATE/started"
  say "munged started (pid $(cat /run/munge/munged.pid))"
fi

# 4. slurm.conf ------------------------------------------------------------------------------
# RealMemory above what slurmd detects would drain the node: leave 512 MB of slack.
MEM_MB=$(($(awk '/MemTotal/{print $2}' /proc/meminfo) / 1024 - 512))
GRES_LINE="" NODE_GRES=""
if [ "$GPUS" -gt 0 ]; then
  GRES_LINE="GresTypes=gpu"
  NODE_GRES="Gres=gpu:$GPUS"
  # slurmd drops file-less GPUs, so each gets an empty placeholder file; no real device is
  # bound (CUDA stays unavailable) but the scheduler allocates and accounts for them.
  echo "$MARK" >/etc/slurm/gres.conf
  for i in $(seq 0 $((GPUS - 1))); do
    : >"$STATE/fakegpu$i"
    echo "NodeName=localhost Name=gpu File=$STATE/fakegpu$i" >>/etc/slurm/gres.conf
  done
fi
cat >"$CONF" <<EOF
$MARK
ClusterName=bpoci
SlurmctldHost=localhost
SlurmUser=slurm
SlurmdUser=root
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
# No cgroups in containers without systemd:
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# No slurmdbd (sacct does not work): finished jobs stay visible to 'squeue --states=all'
# for MinJobAge seconds (the snakemake plugin trusts squeue when MinJobAge >= 3 x its
# init-seconds-before-status-checks), and every finished job is appended to a text log.
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/log/jobcomp.txt
MinJobAge=600
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
# Trust the CPU count below rather than the hardware (it may advertise more than nproc).
SlurmdParameters=config_overrides
$GRES_LINE
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB $NODE_GRES State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
say "slurm.conf: CPUs=$CPUS (nproc $(nproc)) RealMemory=${MEM_MB}MB gpu=$GPUS (placeholder) port=$PORT"

# 5. daemons -------------------------------------------------------------------------------
/usr/sbin/slurmctld # forks
for _ in $(seq 50); do alive "$STATE/slurmctld.pid" && break; sleep 0.1; done
alive "$STATE/slurmctld.pid" || { tail -n 30 "$STATE/log/slurmctld.log"; exit 1; }
echo "slurmctld $(cat "$STATE/slurmctld.pid")" >>"$STATE/started"
# The host name is not "localhost": tell slurmd which node it is.
/usr/sbin/slurmd -N localhost
for _ in $(seq 50); do alive "$STATE/slurmd.pid" && break; sleep 0.1; done
alive "$STATE/slurmd.pid" || { tail -n 30 "$STATE/log/slurmd.log"; exit 1; }
echo "slurmd $(cat "$STATE/slurmd.pid")" >>"$STATE/started"
for _ in $(seq 100); do
  sinfo -h -o %T 2>/dev/null | grep -qx idle && break
  sleep 0.2
done
if ! sinfo -h -o %T | grep -qx idle; then
  sinfo -N -l || true
  tail -n 30 "$STATE/log/slurmctld.log" "$STATE/log/slurmd.log"
  exit 1
fi
say "slurmctld (pid $(cat "$STATE/slurmctld.pid")) and slurmd (pid $(cat "$STATE/slurmd.pid")) up, node idle"

# 6. smoke test: one batch job with a job step ----------------------------------------------
jid=$(sbatch --parsable -p debug -n1 -c1 --mem=100 -o "$STATE/log/smoke-%j.out" --wrap 'srun -n1 hostname')
state=""
for _ in $(seq 150); do
  state=$(squeue -h -j "$jid" --states=all -o %T 2>/dev/null || true)
  case "$state" in COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY) break ;; esac
  sleep 0.2
done
if [ "$state" != COMPLETED ]; then
  say "smoke job $jid ended as '$state'"
  tail -n 30 "$STATE/log/slurmctld.log" "$STATE/log/slurmd.log"
  exit 1
fi
say "smoke test: sbatch job $jid COMPLETED"
