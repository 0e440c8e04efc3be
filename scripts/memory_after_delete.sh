#!/usr/bin/env bash
# The master's resident memory across a run and the deletion of what it
# ran: a fresh master, `tmctl bench` of UNITS units against it (batch 100,
# 8 clients), then `tmctl delete` of every pipeline. Prints VmRSS right
# after the run, 12 s later, right after the delete and 18 s after it.
#
# Usage: scripts/memory_after_delete.sh            (release binaries; builds them)
# Environment: UNITS=1000000, and e.g. _RJEM_MALLOC_CONF=background_thread:false
# to compare jemalloc's options (passed on to the master).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib.sh
. scripts/lib.sh
cargo build --release --bin taskmaster --bin tmctl >&2
bin=target/release
dir=$(mktemp -d)
"$bin/taskmaster" serve --data-dir "$dir/data" --listen 127.0.0.1:0 >"$dir/out" 2>"$dir/log" &
master=$!
trap 'kill $master 2>/dev/null; wait $master 2>/dev/null; rm -rf "$dir"' EXIT
url="http://$(master_address "$dir/out" "$dir/log" 10)"
rss() { echo "$1: $(awk '/VmRSS/ {print $2, $3}' /proc/$master/status)"; }
"$bin/tmctl" bench --master "$url" --batch 100 --clients 8 --units "${UNITS:-1000000}" \
    --lease-on-commit | grep -E 'throughput|verified'
rss "after the run"
sleep 12
rss "12 s later"
ids=$("$bin/tmctl" --master "$url" status --json |
    python3 -c 'import json, sys; print(" ".join(p["id"] for p in json.load(sys.stdin)))')
# shellcheck disable=SC2086 # one argument per id
"$bin/tmctl" --master "$url" delete $ids | cut -c1-100
rss "after the delete"
sleep 18
rss "18 s after the delete"
