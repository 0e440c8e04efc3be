#!/usr/bin/env bash
# Two builds of the master, A/B: every shape of scripts/bench_all.sh run
# with a base build's tmctl (and its master) and a head build's in turn
# (base, head, base, head, ...), so that both see the same spells of this
# VM's drifting speed, then each figure's medians, ranges and head / base.
# Each build runs its own tmctl against its own master (the protocol may
# differ between them). Builds nothing: give it two directories, each with
# a release `tmctl` and `taskmaster` side by side (copies that no other
# build replaces mid-run).
#
# Usage:
#   BASE_BIN_DIR=/tmp/ab/base HEAD_BIN_DIR=/tmp/ab/head scripts/bench_ab.sh
#   BASE_BIN_DIR=... HEAD_BIN_DIR=... RUNS=5 SHAPES="a_chain c_chain" scripts/bench_ab.sh
#   OUT=target/bench-ab.jsonl scripts/bench_ab.sh --summary   # the tables again, no runs
# Environment:
#   BASE_BIN_DIR, HEAD_BIN_DIR   the two builds (required unless --summary)
#   SHAPES="a a_chain a_stream b b_chain b_stream c c_chain c_stream cb_chain cb_stream memory long"
#   RUNS=3                  runs of each build per shape
#   SLOW_RUNS=$RUNS         runs of each build for memory and long (10 M units each)
#   OUT=target/bench-ab.jsonl    every run's JSON, tagged (appended to: a second
#                           invocation with other SHAPES adds to the same file)
#   WAIT_FOR='t42_abuse|bench_secure'   before each run, wait (polling every
#                           10 s) while `pgrep -f` finds a process matching
#                           this (another benchmark sharing the machine); empty: no wait
#
# The half-peak shapes (c, c_chain, c_stream, cb_chain, cb_stream) run both
# builds at the SAME rate, half the head build's median units/s of the peak
# shape (a, a_chain, a_stream, b_chain, b_stream) in OUT, rounded down to
# 100, so their p99 is compared at equal load: run the peak shape first.
# Each run's JSON gets "shape", "build" (base or head), "run", "at" (UTC)
# and "load1"/"load5" (/proc/loadavg just before the run).
set -euo pipefail

cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
SLOW_RUNS=${SLOW_RUNS:-$RUNS}
OUT=${OUT:-target/bench-ab.jsonl}
SHAPES=${SHAPES:-"a a_chain a_stream b b_chain b_stream c c_chain c_stream cb_chain cb_stream memory long"}
WAIT_FOR=${WAIT_FOR-'t42_abuse|bench_secure'}

summary() {
    python3 - "$OUT" "$SHAPES" <<'EOF'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
wanted = sys.argv[2].split()
shapes = [s for s in dict.fromkeys(r["shape"] for r in runs) if s in wanted]
metrics = [  # key, label, format, lower is better
    ("units_per_s", "units/s", "{:,.0f}", False),
    ("commit_p99_us", "commit p99 (ms)", "ms", True),
    ("turn_p99_us", "on-time p99 (ms)", "ms", True),
    ("bytes_per_pending_unit", "B per pending unit", "{:.1f}", True),
    ("recovery.recovery_ms", "recovery (ms)", "{:,.0f}", True),
    ("disk_peak_per_state", "disk / snapshot", "{:.2f}", True),
    ("master_rss_bytes", "master peak RSS (MB)", "mb", True),
    ("master_cpu_us_per_unit", "master CPU a unit (us)", "{:.2f}", True),
]
def get(r, key):
    if key == "master_cpu_us_per_unit":
        ok = r.get("master_cpu_s") is not None and r.get("units") and not r.get("pending_only")
        return r["master_cpu_s"] / r["units"] * 1e6 if ok else None
    v = r
    for part in key.split("."):
        v = v.get(part) if isinstance(v, dict) else None
    return v
def fmt(v, f):
    if f == "ms":
        return f"{v / 1000:.2f}"
    if f == "mb":
        return f"{v / 1e6:,.0f}"
    return f.format(v)
print("| shape | figure | base median (range) | head median (range) | head / base, medians | head / base, median of the pairs (range) | runs | load1 |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for shape in shapes:
    of = lambda b: [r for r in runs if r["shape"] == shape and r["build"] == b]
    base, head = of("base"), of("head")
    rate = next((r.get("offered_rate") for r in head if r.get("offered_rate")), None)
    loads = [r["load1"] for r in base + head if "load1" in r]
    load = f"{min(loads):.1f} to {max(loads):.1f}" if loads else ""
    for key, label, f, _ in metrics:
        if shape in ("memory",) and key in ("units_per_s", "commit_p99_us", "disk_peak_per_state", "master_rss_bytes", "master_cpu_us_per_unit"):
            continue
        if shape not in ("memory",) and key == "bytes_per_pending_unit":
            continue
        if key == "master_rss_bytes" and shape not in ("long", "b"):
            continue
        b = [get(r, key) for r in base if get(r, key) is not None]
        h = [get(r, key) for r in head if get(r, key) is not None]
        if not b or not h:
            continue
        if key == "disk_peak_per_state" and shape != "long":
            continue
        mb, mh = statistics.median(b), statistics.median(h)
        ratio = f"{mh / mb:.2f}" if mb else ""
        # Each head run against the base run just before it in OUT.
        pairs, last_base = [], None
        for r in runs:
            if r["shape"] != shape:
                continue
            v = get(r, key)
            if r["build"] == "base":
                last_base = v
            elif v is not None and last_base:
                pairs.append(v / last_base)
                last_base = None
        paired = (f"{statistics.median(pairs):.2f} ({min(pairs):.2f} to {max(pairs):.2f})"
                  if pairs else "")
        name = shape + (f" at {rate:,.0f}/s" if rate and key == "units_per_s" else "")
        print(f"| {name} | {label} | {fmt(mb, f)} ({fmt(min(b), f)} to {fmt(max(b), f)}) "
              f"| {fmt(mh, f)} ({fmt(min(h), f)} to {fmt(max(h), f)}) | {ratio} | {paired} | {len(b)} + {len(h)} | {load} |")
failed = [r for r in runs if r.get("failed")]
if failed:
    print(f"\n{len(failed)} failed runs: " + ", ".join(f"{r['shape']} {r['build']} {r['run']}" for r in failed))
EOF
}

if [ "${1:-}" = --summary ]; then
    summary
    exit 0
fi

: "${BASE_BIN_DIR:?BASE_BIN_DIR: a directory holding the base build's tmctl and taskmaster}"
: "${HEAD_BIN_DIR:?HEAD_BIN_DIR: a directory holding the head build's tmctl and taskmaster}"
for dir in "$BASE_BIN_DIR" "$HEAD_BIN_DIR"; do
    for bin in tmctl taskmaster; do
        [ -x "$dir/$bin" ] || { echo "no $dir/$bin" >&2; exit 2; }
    done
done
mkdir -p "$(dirname "$OUT")"
touch "$OUT"

# half_of_head SHAPE: half the head build's median units/s of SHAPE in OUT,
# rounded down to 100.
half_of_head() {
    python3 - "$OUT" "$1" <<'EOF'
import json, statistics, sys
v = [r["units_per_s"] for r in map(json.loads, filter(str.strip, open(sys.argv[1])))
     if r["shape"] == sys.argv[2] and r["build"] == "head" and not r.get("failed")]
if not v:
    sys.exit(f"no head runs of {sys.argv[2]} in {sys.argv[1]}: run it before its half-peak shape")
print(int(statistics.median(v) / 200) * 100)
EOF
}

args_of() {
    case $1 in
        a) echo "--batch 1 --clients 64" ;;
        a_chain) echo "--batch 1 --clients 64 --lease-on-commit" ;;
        a_stream) echo "--batch 1 --clients 64 --stream --lease-on-commit" ;;
        b) echo "--batch 100 --clients 8 --units 1000000 --restart" ;;
        b_chain) echo "--batch 100 --clients 8 --units 1000000 --lease-on-commit" ;;
        b_stream) echo "--batch 100 --clients 8 --units 1000000 --stream --lease-on-commit" ;;
        c) echo "--batch 1 --clients 64 --rate $(half_of_head a)" ;;
        c_chain) echo "--batch 1 --clients 64 --lease-on-commit --rate $(half_of_head a_chain)" ;;
        c_stream) echo "--batch 1 --clients 64 --stream --lease-on-commit --rate $(half_of_head a_stream)" ;;
        cb_chain) echo "--batch 100 --clients 8 --units 1000000 --lease-on-commit --rate $(half_of_head b_chain)" ;;
        cb_stream) echo "--batch 100 --clients 8 --units 1000000 --stream --lease-on-commit --rate $(half_of_head b_stream)" ;;
        memory) echo "--units 10000000 --pending-only --restart" ;;
        long) echo "--batch 100 --clients 8 --units 10000000 --lease-on-commit" ;;
        *) echo "unknown shape $1" >&2; return 2 ;;
    esac
}

wait_for_quiet() {
    [ -n "$WAIT_FOR" ] || return 0
    local waited=0
    while pgrep -f "$WAIT_FOR" > /dev/null; do
        [ "$waited" = 0 ] && echo "  waiting: a process matching '$WAIT_FOR' is running" >&2
        waited=$((waited + 10))
        sleep 10
    done
    [ "$waited" = 0 ] || echo "  waited ${waited} s" >&2
}

for shape in $SHAPES; do
    args_line=$(args_of "$shape")
    read -r -a args <<< "$args_line"
    runs=$RUNS
    case $shape in memory | long) runs=$SLOW_RUNS ;; esac
    for run in $(seq "$runs"); do
        for build in base head; do
            dir=$BASE_BIN_DIR
            [ "$build" = head ] && dir=$HEAD_BIN_DIR
            wait_for_quiet
            read -r load1 load5 _ < /proc/loadavg
            at=$(date -u +%H:%M:%S)
            echo "$at load $load1 $load5  $shape $build ($run/$runs): tmctl bench ${args[*]}" >&2
            tag="\"shape\":\"$shape\",\"build\":\"$build\",\"run\":$run,\"at\":\"$at\",\"load1\":$load1,\"load5\":$load5"
            if json=$("$dir/tmctl" bench "${args[@]}" --json 2> "$OUT.stderr"); then
                echo "$json" | sed "s/^{/{$tag,/" >> "$OUT"
                echo "$json" | python3 -c 'import json,sys; r=json.load(sys.stdin); print("  units/s %.0f  commit p99 %s us%s" % (r["units_per_s"], r["commit_p99_us"], "  recovery %s ms" % r["recovery"]["recovery_ms"] if r.get("recovery") else ""))' >&2
            else
                echo "  FAILED (stderr: $OUT.stderr):" >&2
                tail -5 "$OUT.stderr" >&2
                echo "{$tag,\"failed\":true}" >> "$OUT"
            fi
        done
    done
done

echo
summary
echo "every run's JSON: $OUT"
