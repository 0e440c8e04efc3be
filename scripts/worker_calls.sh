#!/usr/bin/env bash
# The stock worker on small units, its calls on the `Work` stream against
# unary calls: a fresh master, one `taskmaster-worker --calls HOW`, and a
# pipeline of UNITS tiny files counted by the built-in `wordcount.map`
# (one unit a file). For each run: wall time from submit to the pipeline's
# success, units/s, and the master's and the worker's CPU per unit (from
# /proc, the whole run). The two ways run in turns, ROUNDS times each.
#
# Usage: scripts/worker_calls.sh            (release binaries; builds them)
# Environment: UNITS=20000, ROUNDS=3, SLOTS=8
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib.sh
. scripts/lib.sh
cargo build --release --bin taskmaster --bin taskmaster-worker --bin tmctl >&2
bin=$PWD/target/release
units=${UNITS:-20000}
rounds=${ROUNDS:-3}
slots=${SLOTS:-8}

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
mkdir "$work/in"
for i in $(seq "$units"); do echo "unit $i of a small input" > "$work/in/$i.txt"; done
cat > "$work/pipeline.toml" <<EOF
name = "small-units"
[[groups]]
name = "count"
task = "wordcount.map"
inputs = ["in/*.txt"]
unit_bytes = 0
EOF

cpu_s() { # user + system CPU seconds of pid $1 so far
    awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"
}

run() { # run HOW N: one master, one worker, one pipeline
    # Each run keeps its own data dir until the end: deleting 20,000 files
    # just before a run slows ext4's inode allocation in the next one.
    local how=$1 dir="$work/run-$1-$2"
    mkdir "$dir"
    "$bin/taskmaster" serve --data-dir "$dir/data" --listen 127.0.0.1:0 >"$dir/out" 2>"$dir/log" &
    local master=$!
    local url
    url="http://$(master_address "$dir/out" "$dir/log" 10)"
    "$bin/taskmaster-worker" --master "$url" --slots "$slots" --calls "$how" 2>"$dir/worker.log" &
    local worker=$!
    local start end
    start=$(date +%s.%N)
    "$bin/tmctl" --master "$url" submit "$work/pipeline.toml" --wait >"$dir/submit.out" 2>&1
    end=$(date +%s.%N)
    local master_cpu worker_cpu
    master_cpu=$(cpu_s "$master")
    worker_cpu=$(cpu_s "$worker")
    kill "$worker" "$master"
    wait "$worker" "$master" 2>/dev/null || true
    awk -v how="$how" -v n="$units" -v s="$start" -v e="$end" -v m="$master_cpu" -v w="$worker_cpu" \
        'BEGIN {printf "%-6s %6d units in %6.2f s: %7.0f units/s; master %5.1f us/unit, worker %5.1f us/unit\n",
            how, n, e - s, n / (e - s), m * 1e6 / n, w * 1e6 / n}'
}

for round in $(seq "$rounds"); do
    run unary "$round"
    run stream "$round"
done
