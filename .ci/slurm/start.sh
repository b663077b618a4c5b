#!/usr/bin/env bash
# Start a single-node Slurm on this machine, as root and without systemd: munged, MariaDB
# (socket only), slurmdbd, slurmctld, slurmd; waits until the node is idle. State, logs and pid
# files go under $MASC_SLURM_STATE (default /tmp/masc-slurm); .ci/slurm/stop.sh ends them by pid.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
STATE=${MASC_SLURM_STATE:-/tmp/masc-slurm}
PACKAGES="slurmctld slurmd slurm-client slurmdbd munge mariadb-server"
WAIT=60  # seconds for each daemon to answer

[ "$(id -u)" = 0 ] || { echo "start.sh: must run as root" >&2; exit 1; }
if sinfo -h -N -o %t 2>/dev/null | grep -qx idle; then echo "Slurm is already up"; exit 0; fi
if ! command -v slurmctld >/dev/null || ! command -v slurmdbd >/dev/null \
        || ! command -v mariadbd >/dev/null || ! command -v munged >/dev/null; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $PACKAGES
fi
mkdir -p "$STATE"/{ctld,spool,log}

wait_for() {  # wait_for WHAT COMMAND...: retry COMMAND until it succeeds or WAIT seconds pass
    local what=$1; shift
    for _ in $(seq $((WAIT * 2))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
    echo "start.sh: $what did not come up; logs in $STATE/log" >&2; exit 1
}

# munge: its key owned by munge, mode 0400
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge
[ -s /etc/munge/munge.key ] || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 2>/dev/null
chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
if ! munge -n >/dev/null 2>&1; then
    runuser -u munge -- munged --pid-file=/run/munge/munged.pid
    cp /run/munge/munged.pid "$STATE/munged.pid" 2>/dev/null || true
fi
wait_for munged sh -c 'munge -n | unmunge'
[ -f "$STATE/munged.pid" ] || cp /run/munge/munged.pid "$STATE/munged.pid"

# MariaDB: socket only
mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
[ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --skip-test-db >/dev/null
if ! mysqladmin ping >/dev/null 2>&1; then
    mariadbd --user=mysql --skip-networking --socket=/run/mysqld/mysqld.sock \
        --pid-file=/run/mysqld/mysqld.pid --log-error=/run/mysqld/mysqld.log &
fi
wait_for MariaDB mysqladmin ping
wait_for "MariaDB's pid file" test -s /run/mysqld/mysqld.pid
cp /run/mysqld/mysqld.pid "$STATE/mysqld.pid"

# Slurm configs from the templates
fill() { sed -e "s|@STATE@|$STATE|g" -e "s|@CPUS@|$(nproc)|g" "$HERE/$1.in" > "/etc/slurm/$1"; }
mkdir -p /etc/slurm
fill slurm.conf
fill slurmdbd.conf && chmod 600 /etc/slurm/slurmdbd.conf

slurmdbd
wait_for slurmdbd sacctmgr -n list cluster
sacctmgr -n list cluster format=cluster | grep -qw masc || sacctmgr -i add cluster masc >/dev/null
slurmctld
wait_for slurmctld scontrol ping
slurmd -N localhost
for _ in $(seq $((WAIT * 2))); do
    sinfo -h -N -o %t 2>/dev/null | grep -qx idle && break
    scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true
    sleep 0.5
done
sinfo -h -N -o %t | grep -qx idle || { echo "start.sh: node not idle: $(sinfo -N)" >&2; exit 1; }
echo "Slurm is up ($(nproc) CPUs, state in $STATE)"
