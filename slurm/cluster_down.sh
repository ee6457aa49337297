#!/bin/bash
# Stop the daemons slurm/cluster_up.sh started (by their recorded PIDs).
STATE=${SLURM_CI_STATE:-/run/slurm-ci}
scancel --user="$(id -un)" 2>/dev/null
sleep 1
for d in slurmd slurmctld; do
  [ -s "$STATE/$d.pid" ] && kill "$(cat "$STATE/$d.pid")" 2>/dev/null && rm -f "$STATE/$d.pid"
done
sleep 1
[ -s /run/munge/munged.pid ] && kill "$(cat /run/munge/munged.pid)" 2>/dev/null
true
