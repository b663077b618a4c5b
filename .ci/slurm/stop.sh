#!/usr/bin/env bash
# Stop what .ci/slurm/start.sh started, by the pids in its pid files (reverse order).
STATE=${MASC_SLURM_STATE:-/tmp/masc-slurm}
for name in slurmd slurmctld slurmdbd mysqld munged; do
    file="$STATE/$name.pid"
    [ -s "$file" ] || continue
    pid=$(cat "$file")
    kill "$pid" 2>/dev/null || { rm -f "$file"; continue; }
    for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
    rm -f "$file"
done
echo "Slurm stopped"
