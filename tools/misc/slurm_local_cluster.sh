#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine (Debian's slurmctld, slurmd, slurm-client and
# munge), for trying tools/slurm_train.sh and for the tests. Needs root.
#
#   tools/misc/slurm_local_cluster.sh up      # install if needed, start, wait for the node
#   tools/misc/slurm_local_cluster.sh down    # cancel jobs, stop what `up` started, nothing else
#   tools/misc/slurm_local_cluster.sh env     # print `export SLURM_CONF=...` for srun/sbatch
#
# State (config, pids, logs) lives in $MMHIRE_SLURM_DIR (default /tmp/mmhire-slurm); the
# partition is $MMHIRE_SLURM_PARTITION (default mmhire).
set -euo pipefail

STATE=${MMHIRE_SLURM_DIR:-/tmp/mmhire-slurm}
PARTITION=${MMHIRE_SLURM_PARTITION:-mmhire}
CONF="$STATE/slurm.conf"
NODE=$(hostname -s)

log() { printf '[slurm_local_cluster] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
        && command -v srun >/dev/null && command -v munged >/dev/null; then
        return
    fi
    command -v apt-get >/dev/null || die "slurm is not installed and there is no apt-get"
    log "installing slurmctld, slurmd, slurm-client and munge"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        slurmctld slurmd slurm-client munge >/dev/null
}

start_munge() {
    if pgrep -x munged >/dev/null; then
        log "munged already runs; using it"
        return
    fi
    if [ ! -s /etc/munge/munge.key ]; then
        mkdir -p /etc/munge
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
        chown munge:munge /etc/munge/munge.key
        chmod 0400 /etc/munge/munge.key
    fi
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge
    chmod 0755 /run/munge
    # munged runs as the munge user, so its pid file goes where that user may write.
    rm -f /run/munge/munged.pid
    runuser -u munge -- munged --pid-file=/run/munge/munged.pid --force
    for _ in $(seq 50); do alive /run/munge/munged.pid && break; sleep 0.1; done
    alive /run/munge/munged.pid || die "munged did not start; see /var/log/munge/munged.log"
    cp /run/munge/munged.pid "$STATE/munged.pid"
    echo started > "$STATE/munged.ours"
}

write_conf() {
    mkdir -p "$STATE/spool/ctld" "$STATE/spool/d" "$STATE/log"
    cat > "$CONF" <<EOF
ClusterName=mmhire
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldPort=${MMHIRE_SLURMCTLD_PORT:-6817}
SlurmdPort=${MMHIRE_SLURMD_PORT:-6818}
MpiDefault=none
KillWait=5
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc) State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
}

up() {
    [ "$(id -u)" = 0 ] || die "must run as root"
    mkdir -p "$STATE"
    if alive "$STATE/slurmctld.pid" && alive "$STATE/slurmd.pid"; then
        log "already up ($CONF)"
        return
    fi
    install_packages
    if ! getent hosts "$NODE" >/dev/null; then
        echo "127.0.0.1 $NODE" >> /etc/hosts
        echo "$NODE" > "$STATE/hosts.ours"
    fi
    start_munge
    write_conf
    export SLURM_CONF="$CONF"
    slurmctld -f "$CONF"
    slurmd -f "$CONF"
    for _ in $(seq 100); do
        state=$(timeout 5 sinfo -h -p "$PARTITION" -o %T 2>/dev/null | head -n 1 || true)
        [ "$state" = idle ] && break
        sleep 0.2
    done
    [ "${state:-}" = idle ] || die "node did not become idle (state: ${state:-none}); see $STATE/log"
    log "up: partition $PARTITION on $NODE; export SLURM_CONF=$CONF"
}

down() {
    if [ -f "$CONF" ] && alive "$STATE/slurmctld.pid"; then
        SLURM_CONF="$CONF" scancel -p "$PARTITION" 2>/dev/null || true
        sleep 1
    fi
    for daemon in slurmd slurmctld; do
        if alive "$STATE/$daemon.pid"; then
            kill "$(cat "$STATE/$daemon.pid")"
            for _ in $(seq 50); do alive "$STATE/$daemon.pid" || break; sleep 0.1; done
        fi
        rm -f "$STATE/$daemon.pid"
    done
    if [ -f "$STATE/munged.ours" ]; then
        alive "$STATE/munged.pid" && kill "$(cat "$STATE/munged.pid")"
        rm -f "$STATE/munged.ours" "$STATE/munged.pid"
    fi
    if [ -f "$STATE/hosts.ours" ]; then
        sed -i "/^127\.0\.0\.1 $(cat "$STATE/hosts.ours")\$/d" /etc/hosts
        rm -f "$STATE/hosts.ours"
    fi
    log "down"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *) echo "usage: $0 up|down|env" >&2; exit 2 ;;
esac
