#!/usr/bin/env bash
# A throw-away single-node Slurm cluster (Debian's slurm-wlm 22.05, as root, no systemd or cgroups):
# munged, MariaDB, slurmdbd (the accounting the Snakemake Slurm plugin reads job states from),
# slurmctld and slurmd, each with its own files under STATE and listening on 127.0.0.1 only.
#
#   ci/slurm/start.sh STATE [--cpus N] [--memory MB] [--gpus N] [--install]
#   export SLURM_CONF=STATE/slurm.conf USER=root    # then sbatch, sacct, snakemake --executor slurm
#   ci/slurm/stop.sh STATE                          # stops exactly these daemons, by PID
#
# The node is described as --cpus/--memory/--gpus say (default: what `slurmd -C` measures, no GPU),
# so a profile written for a bigger node can be run as it is; nothing is enforced (no cgroups), and
# the GPUs are stand-in files (nothing opens them). Partitions `cpu` (default) and `gpu` both hold the
# node, as profiles/slurm expects. Jobs run as root, account `ci`. --install first installs the
# Debian packages (about 30 s, 240 MB).
set -euo pipefail

die() { echo "slurm-start: $*" >&2; exit 1; }
[ $# -ge 1 ] || die "usage: start.sh STATE [--cpus N] [--memory MB] [--gpus N] [--install]"
STATE=$1; shift
CPUS="" MEMORY="" GPUS=0 INSTALL=0
while [ $# -gt 0 ]; do
  case $1 in --cpus | --memory | --gpus) [ $# -ge 2 ] || die "$1 needs a value" ;; esac
  case $1 in
    --cpus) CPUS=$2; shift 2 ;;
    --memory) MEMORY=$2; shift 2 ;;
    --gpus) GPUS=$2; shift 2 ;;
    --install) INSTALL=1; shift ;;
    *) die "unknown option $1" ;;
  esac
done
for n in "$CPUS" "$MEMORY" "$GPUS"; do [[ -z $n || $n =~ ^[0-9]+$ ]] || die "not a count: $n"; done
[ "$(id -u)" = 0 ] || die "needs root (the daemons run as root, with their own files)"
if [ $INSTALL = 1 ] && ! command -v slurmctld >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    slurm-wlm slurmdbd munge mariadb-server >/dev/null
fi
for tool in munged mungekey mariadbd mariadb-install-db slurmdbd slurmctld slurmd sacctmgr; do
  command -v $tool >/dev/null || die "$tool not found: apt-get install slurm-wlm slurmdbd munge mariadb-server"
done
# A new or empty folder: a cluster's files are its own (start.sh never reuses or replaces any).
[ ! -e "$STATE" ] || [ -d "$STATE" -a -z "$(ls -A "$STATE")" ] || die "$STATE is not empty (a new folder, please)"
mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)
mkdir -p "$STATE"/{munge,mysql-run,spool/ctld,spool/d,log}
: > "$STATE/pids"
# A start that fails half-way stops what it started.
UP=0
trap '[ $UP = 1 ] || "$(dirname "$0")/stop.sh" "$STATE" >&2' EXIT
LOG=$STATE/log

# Start a daemon in the background, keep its PID (stop.sh stops these and nothing else).
launch() {
  local name=$1; shift
  "$@" >> "$LOG/$name.out" 2>&1 &
  echo "$name $!" >> "$STATE/pids"
}
# Wait (bounded) until a command succeeds; name the daemon's log when it does not.
await() {
  local what=$1 log=$2; shift 2
  for _ in $(seq 1 120); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  tail -n 20 "$log" "${log%.log}.out" >&2 2>/dev/null || true
  die "$what did not come up within 60 s (log: $log)"
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# munge: own key and socket; its folder must be world-readable for clients.
MUNGE_SOCKET=$STATE/munge/munge.socket
mungekey --create --keyfile "$STATE/munge/munge.key" --force
chmod 755 "$STATE/munge"
launch munged munged --foreground --force --key-file "$STATE/munge/munge.key" --socket "$MUNGE_SOCKET" \
  --pid-file "$STATE/munge/munged.pid" --log-file "$LOG/munged.log" --seed-file "$STATE/munge/seed"
await munged "$LOG/munged.log" test -S "$MUNGE_SOCKET"

# MariaDB for slurmdbd: own data folder, TCP on 127.0.0.1 only, no grant checks (nothing else can
# reach it).
DB_PORT=$(free_port)
mariadb-install-db --no-defaults --datadir="$STATE/mysql" --user=root --auth-root-authentication-method=normal \
  > "$LOG/mariadb-install.log" 2>&1 || { tail "$LOG/mariadb-install.log" >&2; die "mariadb-install-db failed"; }
launch mariadbd mariadbd --no-defaults --datadir="$STATE/mysql" --user=root --bind-address=127.0.0.1 \
  --port="$DB_PORT" --socket="$STATE/mysql-run/mysqld.sock" --pid-file="$STATE/mysql-run/mysqld.pid" \
  --skip-grant-tables --log-error="$LOG/mariadb.log"
await mariadbd "$LOG/mariadb.log" python3 -c "import socket; socket.create_connection(('127.0.0.1', $DB_PORT), 1)"

# The node as asked (default: as measured), and two partitions on it.
MEASURED=$(slurmd -C | head -n 1)
NODE=$(sed -n 's/^NodeName=\([^ ]*\).*/\1/p' <<< "$MEASURED")
CPUS=${CPUS:-$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<< "$MEASURED")}
MEMORY=${MEMORY:-$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<< "$MEASURED")}
GRES_LINE="" NODE_GRES=""
if [ "$GPUS" -gt 0 ]; then
  GRES_LINE="GresTypes=gpu"
  NODE_GRES="Gres=gpu:$GPUS"
  # Stand-in device files: Slurm counts a GPU per file (nothing opens them).
  mkdir -p "$STATE/dev"
  for ((i = 0; i < GPUS; i++)); do : > "$STATE/dev/gpu$i"; done
  echo "NodeName=$NODE Name=gpu File=$STATE/dev/gpu[0-$((GPUS - 1))]" > "$STATE/gres.conf"
fi
CTLD_PORT=$(free_port) SLURMD_PORT=$(free_port) DBD_PORT=$(free_port)

cat > "$STATE/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
LogFile=$LOG/slurmdbd.log
PidFile=$STATE/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=root
StorageLoc=slurm_acct_db
EOF
chmod 600 "$STATE/slurmdbd.conf"

cat > "$STATE/slurm.conf" <<EOF
ClusterName=vaeedof-ci
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MailProg=/bin/true
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# The node is what this file says, whatever the machine has (a test cluster of a profile's shape).
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=300
KillWait=5
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
# slurmdbd connections ignore AuthInfo: the munge socket is named here.
AccountingStoragePass=$MUNGE_SOCKET
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
$GRES_LINE
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEMORY $NODE_GRES State=UNKNOWN
PartitionName=cpu Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$NODE MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$STATE/slurm.conf

launch slurmdbd slurmdbd -D  # reads slurmdbd.conf beside $SLURM_CONF
await slurmdbd "$LOG/slurmdbd.log" sacctmgr -i show cluster
sacctmgr -i add cluster vaeedof-ci >/dev/null
sacctmgr -i add account ci Cluster=vaeedof-ci Description=ci Organization=ci >/dev/null
sacctmgr -i add user root Account=ci DefaultAccount=ci >/dev/null

launch slurmctld slurmctld -D -f "$STATE/slurm.conf"
await slurmctld "$LOG/slurmctld.log" scontrol ping
launch slurmd slurmd -D -f "$STATE/slurm.conf"
await slurmd "$LOG/slurmd.log" bash -c "sinfo -h -N -o %T | grep -qx idle"
UP=1
echo "slurm-start: cluster vaeedof-ci up (node $NODE: $CPUS CPUs, $MEMORY MB, $GPUS GPUs); export SLURM_CONF=$SLURM_CONF"
