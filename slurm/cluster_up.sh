#!/bin/bash
# Bring up a single-node SLURM cluster (slurmctld + slurmd + munge) on this machine, as root, without systemd:
# what .ci/run uses so that the SLURM tests submit to a real scheduler. Debian/Ubuntu packages; idempotent.
# Not needed on a real cluster. Stop it with slurm/cluster_down.sh.
set -euo pipefail
[ "$(id -u)" -eq 0 ] || { echo "cluster_up.sh: run as root (it installs packages and starts daemons)" >&2; exit 1; }
STATE=${SLURM_CI_STATE:-/run/slurm-ci}
mkdir -p "$STATE"
if scontrol ping >/dev/null 2>&1 && [ -n "$(sinfo -h -o %T 2>/dev/null | grep -E 'idle|mix|alloc')" ]; then
  echo "cluster_up.sh: a SLURM controller already answers"; sinfo; exit 0
fi
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge > "$STATE/apt.log" 2>&1
fi

# munge: the key comes with the package; /run/munge is not created without systemd's tmpfiles
[ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  su -s /bin/sh munge -c /usr/sbin/munged
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
fi

# slurm.conf for this one node; a short cred_expire and scheduler interval make a requeued job restart in ~30 s
H=$(hostname -s)
N=$(nproc)
M=$(free -m | awk '/^Mem:/{print int($7*0.9)}')
mkdir -p /etc/slurm /var/spool/slurmd /var/log/slurm
rm -rf /var/spool/slurmctld && mkdir -p /var/spool/slurmctld   # a clean cluster: no jobs from an earlier run
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=ci
SlurmctldHost=$H
SlurmUser=root
AuthType=auth/munge
AuthInfo=cred_expire=20
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=5,sched_interval=10
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
MinJobAge=600
KillWait=30
NodeName=$H CPUs=$N RealMemory=$M State=UNKNOWN
PartitionName=debug Nodes=$H Default=YES MaxTime=INFINITE State=UP
CONF

nohup slurmctld -D > /var/log/slurm/slurmctld.stdout 2>&1 &
echo $! > "$STATE/slurmctld.pid"
for _ in $(seq 100); do scontrol ping >/dev/null 2>&1 && break; sleep 0.2; done
nohup slurmd -D > /var/log/slurm/slurmd.stdout 2>&1 &
echo $! > "$STATE/slurmd.pid"
for _ in $(seq 150); do
  [ "$(sinfo -h -n "$H" -o %T 2>/dev/null)" = idle ] && break
  sleep 0.2
done
sinfo
[ "$(sinfo -h -n "$H" -o %T)" = idle ] || { echo "cluster_up.sh: node $H did not become idle" >&2; exit 1; }
