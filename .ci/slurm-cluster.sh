#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for testing the workflow's Slurm profile
# (tests/test_slurm.py, .ci/run). Needs root and Debian's `slurm-wlm` and `munge` packages:
#
#   apt-get install -y slurm-wlm munge
#   .ci/slurm-cluster.sh up       # configure and start munged, slurmctld, slurmd (idempotent)
#   .ci/slurm-cluster.sh status   # daemons, node state (exit 0 only when the node takes jobs)
#   .ci/slurm-cluster.sh env      # prints `export SLURM_CONF=...` for sbatch/squeue/snakemake
#   .ci/slurm-cluster.sh down     # stops the daemons this script started (by its PID files)
#
# Everything (configuration, munge key and socket, state, logs, PID files) lives in one
# directory the script owns, $STARFM_SLURM_DIR (default /tmp/starfm-slurm), and `down` never
# stops a daemon it did not start. One file outside it: Slurm's default configuration path
# /etc/slurm/slurm.conf becomes a symlink to ours while the cluster is up (the Snakemake plugin's
# job step drops SLURM_CONF before calling srun, so jobs only find the default path); an
# existing slurm.conf that is not our symlink is never replaced (`up` stops instead). One node (this
# host, 2 CPUs, memory a bit under the real one), select/cons_tres, proctrack/linuxproc,
# task/none, one `debug` partition, no accounting database: the Snakemake Slurm plugin must
# then query job states with `squeue` (slurm-status-command: squeue), which MinJobAge keeps
# reliable (finished jobs stay visible for an hour: >= 3x the plugin's initial status delay,
# and long enough for the test to check every job of its run).
set -euo pipefail

DIR=${STARFM_SLURM_DIR:-/tmp/starfm-slurm}
CONF=$DIR/etc/slurm.conf
SYSTEM_CONF=/etc/slurm/slurm.conf
RUN=$DIR/run
NODE=$(hostname -s)
CPUS=2
MIN_JOB_AGE=3600

die() { echo "slurm-cluster: $*" >&2; exit 1; }

# pid from a PID file if that process is alive and is the expected daemon, else nothing
live_pid() {
    local file=$1 name=$2 pid
    [[ -s $file ]] || return 0
    pid=$(tr -dc 0-9 < "$file")
    [[ -n $pid && -r /proc/$pid/comm ]] || return 0
    [[ $(cat "/proc/$pid/comm") == "$name"* ]] && echo "$pid"
    return 0
}

node_state() {
    SLURM_CONF=$CONF sinfo -h -n "$NODE" -o %T 2>/dev/null | head -1
}

configure() {
    mkdir -p "$DIR"/{etc,log,state/ctld,state/d,run}
    chmod 755 "$DIR" "$DIR/etc" "$DIR/run"
    # munge: its own key, socket, PID, log and seed files, owned by the munge user
    mkdir -p "$DIR/munge"
    chown munge:munge "$DIR/munge"
    chmod 700 "$DIR/munge"
    if [[ ! -s $DIR/munge/munge.key ]]; then
        dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
    fi
    chown munge:munge "$DIR/munge/munge.key"
    chmod 400 "$DIR/munge/munge.key"
    # the socket lives in a directory everyone may enter (clients connect to it)
    mkdir -p "$DIR/munge-socket"
    chown munge:munge "$DIR/munge-socket"
    chmod 755 "$DIR/munge-socket"

    local mem_mb
    mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
    cat > "$CONF.tmp" <<EOF
# Written by .ci/slurm-cluster.sh: a single-node test cluster (no accounting database).
ClusterName=starfm-test
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge-socket/munge.socket.2
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$DIR/state/ctld
SlurmdSpoolDir=$DIR/state/d
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
# finished jobs stay visible to squeue this long (the plugin needs >= 3x its initial status delay)
MinJobAge=$MIN_JOB_AGE
ReturnToService=2
SlurmdParameters=config_overrides
SchedulerParameters=sched_interval=2
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$CONF.tmp" "$CONF"
    if [[ -L $SYSTEM_CONF && $(readlink "$SYSTEM_CONF") == "$CONF" ]]; then
        :
    elif [[ -e $SYSTEM_CONF || -L $SYSTEM_CONF ]]; then
        die "$SYSTEM_CONF exists and is not this script's (a real Slurm installation?); not replacing it"
    else
        mkdir -p "$(dirname "$SYSTEM_CONF")"
        ln -s "$CONF" "$SYSTEM_CONF"
    fi
}

up() {
    [[ $(id -u) == 0 ]] || die "needs root (slurmctld and slurmd run as root)"
    for bin in munged slurmctld slurmd sinfo sbatch squeue scontrol runuser; do
        command -v "$bin" >/dev/null || die "$bin not found (apt-get install -y slurm-wlm munge)"
    done
    configure
    if [[ -z $(live_pid "$DIR/munge/munged.pid" munged) ]]; then
        runuser -u munge -- munged \
            --socket="$DIR/munge-socket/munge.socket.2" --key-file="$DIR/munge/munge.key" \
            --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log" \
            --seed-file="$DIR/munge/munged.seed"
    fi
    if [[ -z $(live_pid "$RUN/slurmctld.pid" slurmctld) ]]; then
        slurmctld -f "$CONF" -c    # -c: start with no saved jobs
    fi
    if [[ -z $(live_pid "$RUN/slurmd.pid" slurmd) ]]; then
        slurmd -f "$CONF"
    fi
    # wait until the node takes jobs (a node left down by an earlier run is resumed)
    local state=""
    for _ in $(seq 1 60); do
        state=$(node_state)
        case $state in
            idle*|mixed*|allocated*) echo "slurm-cluster: up ($NODE $state, SLURM_CONF=$CONF)"; return 0 ;;
            down*|drain*) SLURM_CONF=$CONF scontrol update nodename="$NODE" state=resume 2>/dev/null || true ;;
        esac
        sleep 0.5
    done
    tail -n 20 "$DIR"/log/*.log >&2 || true
    die "node $NODE did not become idle (state: ${state:-none}); logs in $DIR/log"
}

down() {
    local stopped=0 pid name file
    for entry in "slurmd:$RUN/slurmd.pid" "slurmctld:$RUN/slurmctld.pid" "munged:$DIR/munge/munged.pid"; do
        name=${entry%%:*} file=${entry#*:}
        pid=$(live_pid "$file" "$name")
        if [[ -n $pid ]]; then
            kill "$pid"
            for _ in $(seq 1 50); do [[ -d /proc/$pid ]] || break; sleep 0.1; done
            [[ -d /proc/$pid ]] && kill -9 "$pid"
            stopped=$((stopped + 1))
        fi
        rm -f "$file"
    done
    if [[ -L $SYSTEM_CONF && $(readlink "$SYSTEM_CONF") == "$CONF" ]]; then
        rm -f "$SYSTEM_CONF"
    fi
    echo "slurm-cluster: down ($stopped daemons stopped)"
}

status() {
    local rc=0 pid
    for entry in "munged:$DIR/munge/munged.pid" "slurmctld:$RUN/slurmctld.pid" "slurmd:$RUN/slurmd.pid"; do
        pid=$(live_pid "${entry#*:}" "${entry%%:*}")
        echo "${entry%%:*}: ${pid:-not running}"
        [[ -n $pid ]] || rc=1
    done
    local state=""
    [[ $rc == 0 ]] && state=$(node_state || true)
    echo "node $NODE: ${state:-unknown}"
    case $state in idle*|mixed*|allocated*) ;; *) rc=1 ;; esac
    return $rc
}

case ${1:-} in
    up) up ;;
    down) down ;;
    status) status ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *) echo "usage: $0 up|down|status|env" >&2; exit 2 ;;
esac
