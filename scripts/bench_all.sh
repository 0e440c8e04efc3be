#!/usr/bin/env bash
# Every figure of BENCHMARKS.md's target table, each run RUNS times with
# `tmctl bench --json`, then the median (and range) of each. Builds the
# release binaries first. The JSON of every run is kept in OUT.
#
# Usage: scripts/bench_all.sh
# Environment (all optional):
#   RUNS=3                  runs per shape
#   OUT=target/bench-all.jsonl
#   SHAPES="a a_chain a_stream b b_chain b_stream c c_chain c_stream cb_chain cb_stream memory long"
#
# The half-peak rate of (c) is half the median of (a) (of (a_chain) for
# (c_chain), of (a_stream) for (c_stream), of (b_chain) and (b_stream)
# for the batched (cb_chain) and (cb_stream)), so the peak shape must run
# before its half-peak one in the same invocation. "chain" and "stream" shapes use --lease-on-commit:
# each commit also leases the next batch.
set -euo pipefail

cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
OUT=${OUT:-target/bench-all.jsonl}
SHAPES=${SHAPES:-"a a_chain a_stream b b_chain b_stream c c_chain c_stream cb_chain cb_stream memory long"}

cargo build --release --bin tmctl --bin taskmaster >&2
tmctl=target/release/tmctl
: > "$OUT"

median() { # median of the numbers on stdin
    sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'
}

# run SHAPE ARGS...: RUNS runs of tmctl bench ARGS, tagged with SHAPE.
run() {
    local shape=$1
    shift
    for _ in $(seq "$RUNS"); do
        echo "$shape: tmctl bench $*" >&2
        "$tmctl" bench "$@" --json | sed "s/^{/{\"shape\":\"$shape\",/" >> "$OUT"
    done
}

# field SHAPE KEY: the values of KEY in SHAPE's runs, one per line.
field() {
    python3 -c '
import json, sys
shape, key = sys.argv[1], sys.argv[2]
for line in open(sys.argv[3]):
    r = json.loads(line)
    if r["shape"] != shape:
        continue
    v = r
    for part in key.split("."):
        v = v.get(part) if isinstance(v, dict) else None
    if v is not None:
        print(v)
' "$1" "$2" "$OUT"
}

half_of_median() { # half the median units/s of SHAPE, rounded down to 100
    field "$1" units_per_s | median | awk '{print int($1 / 200) * 100}'
}

for shape in $SHAPES; do
    case $shape in
        a) run a --batch 1 --clients 64 ;;
        a_chain) run a_chain --batch 1 --clients 64 --lease-on-commit ;;
        a_stream) run a_stream --batch 1 --clients 64 --stream --lease-on-commit ;;
        b) run b --batch 100 --clients 8 --units 1000000 --restart ;;
        b_chain) run b_chain --batch 100 --clients 8 --units 1000000 --lease-on-commit ;;
        b_stream) run b_stream --batch 100 --clients 8 --units 1000000 --stream --lease-on-commit ;;
        c) run c --batch 1 --clients 64 --rate "$(half_of_median a)" ;;
        c_chain) run c_chain --batch 1 --clients 64 --lease-on-commit --rate "$(half_of_median a_chain)" ;;
        c_stream) run c_stream --batch 1 --clients 64 --stream --lease-on-commit --rate "$(half_of_median a_stream)" ;;
        cb_chain) run cb_chain --batch 100 --clients 8 --units 1000000 --lease-on-commit --rate "$(half_of_median b_chain)" ;;
        cb_stream) run cb_stream --batch 100 --clients 8 --units 1000000 --stream --lease-on-commit --rate "$(half_of_median b_stream)" ;;
        memory) run memory --units 10000000 --pending-only --restart ;;
        long) run long --batch 100 --clients 8 --units 10000000 --lease-on-commit ;;
        *) echo "unknown shape $shape" >&2; exit 2 ;;
    esac
done

summary() { # SHAPE KEY LABEL
    local values
    values=$(field "$1" "$2" | sort -g | tr '\n' ' ')
    [ -n "$values" ] || return 0
    printf '%-9s %-28s median %-12s (runs: %s)\n' "$1" "$3" "$(field "$1" "$2" | median)" "$values"
}

echo
for shape in $SHAPES; do
    summary "$shape" units_per_s "units/s"
    summary "$shape" commit_p99_us "commit p99 (us)"
    summary "$shape" turn_p99_us "on-time p99 (us)"
    summary "$shape" turns_skipped "turns skipped"
    summary "$shape" master_rss_bytes "master peak RSS (bytes)"
    summary "$shape" bytes_per_pending_unit "bytes per pending unit"
    summary "$shape" disk_peak_per_state "disk / newest snapshot"
    summary "$shape" recovery.recovery_ms "recovery (ms)"
done
echo "every run's JSON: $OUT"
