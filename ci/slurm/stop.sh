#!/usr/bin/env bash
# Tear down a cluster of ci/slurm/start.sh: cancel its jobs, wait (bounded) for their steps to end,
# then stop exactly the daemons start.sh recorded, by PID, newest first. STATE is kept (logs).
#   ci/slurm/stop.sh STATE
set -uo pipefail
[ $# -eq 1 ] || { echo "usage: stop.sh STATE" >&2; exit 2; }
STATE=$(cd "$1" 2>/dev/null && pwd) || { echo "slurm-stop: no folder $1" >&2; exit 1; }
[ -f "$STATE/pids" ] || { echo "slurm-stop: $STATE has no running cluster" >&2; exit 0; }
export SLURM_CONF=$STATE/slurm.conf

alive() { kill -0 "$1" 2>/dev/null; }
if [ -f "$SLURM_CONF" ] && scontrol ping >/dev/null 2>&1; then
  jobs=$(squeue -h -o %i 2>/dev/null)
  [ -z "$jobs" ] || scancel $jobs
  # Job steps (slurmstepd) leave their sockets in the spool folder until they have ended.
  for _ in $(seq 1 60); do
    [ -z "$(squeue -h -o %i 2>/dev/null)" ] && [ -z "$(ls "$STATE/spool/d" | grep '_[0-9]' )" ] && break
    sleep 0.5
  done
fi
tac "$STATE/pids" | while read -r name pid; do
  alive "$pid" || continue
  kill "$pid"
  for _ in $(seq 1 40); do alive "$pid" || break; sleep 0.25; done
  if alive "$pid"; then
    echo "slurm-stop: $name ($pid) ignored SIGTERM for 10 s; killed" >&2
    kill -9 "$pid"
  fi
done
mv "$STATE/pids" "$STATE/pids.stopped"
echo "slurm-stop: cluster in $STATE stopped"
