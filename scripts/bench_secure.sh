#!/usr/bin/env bash
# The cost of TLS and --auth (issue 24): each shape run plain and with
# `tmctl bench --secure`, interleaved (plain, secure, plain, secure, ...)
# so that both see the same spells of this VM's drifting speed. Prints,
# per shape, the median units/s of each, secure / plain of the medians,
# the median of the pairs' own ratios, and the master's and the clients'
# CPU a unit. Builds the release binaries first; every run's JSON is kept
# in OUT.
#
# Usage: scripts/bench_secure.sh
# Environment (all optional):
#   PAIRS=5                 plain/secure pairs per shape
#   OUT=target/bench-secure.jsonl
#   SHAPES="a_chain a_stream b_chain b_stream"
#   BIN_DIR=DIR             use DIR/tmctl and DIR/taskmaster as they are
#                           (no build): a copy no other build changes mid-run
set -euo pipefail

cd "$(dirname "$0")/.."
PAIRS=${PAIRS:-5}
OUT=${OUT:-target/bench-secure.jsonl}
SHAPES=${SHAPES:-"a_chain a_stream b_chain b_stream"}

if [ -n "${BIN_DIR:-}" ]; then
    tmctl=$BIN_DIR/tmctl
else
    cargo build --release --bin tmctl --bin taskmaster >&2
    tmctl=target/release/tmctl
fi
: > "$OUT"

args_of() {
    case $1 in
        a_chain) echo "--batch 1 --clients 64 --lease-on-commit" ;;
        a_stream) echo "--batch 1 --clients 64 --stream --lease-on-commit" ;;
        b_chain) echo "--batch 100 --clients 8 --units 1000000 --lease-on-commit" ;;
        b_stream) echo "--batch 100 --clients 8 --units 1000000 --stream --lease-on-commit" ;;
        *) echo "unknown shape $1" >&2; exit 2 ;;
    esac
}

for shape in $SHAPES; do
    read -r -a args <<< "$(args_of "$shape")"
    for pair in $(seq "$PAIRS"); do
        for mode in plain secure; do
            extra=()
            [ "$mode" = secure ] && extra=(--secure)
            echo "$shape $mode ($pair/$PAIRS): tmctl bench ${args[*]} ${extra[*]}" >&2
            "$tmctl" bench "${args[@]}" "${extra[@]}" --json 2>/dev/null \
                | sed "s/^{/{\"shape\":\"$shape\",\"mode\":\"$mode\",\"pair\":$pair,/" >> "$OUT"
        done
    done
done

python3 - "$OUT" <<'EOF'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
shapes = list(dict.fromkeys(r["shape"] for r in runs))
print("| shape | plain units/s, median (range) | TLS + auth units/s, median (range) | secure / plain, medians | secure / plain, median of the pairs | master CPU a unit, plain / secure | client CPU a unit, plain / secure |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for shape in shapes:
    of = lambda mode: [r for r in runs if r["shape"] == shape and r["mode"] == mode]
    plain, secure = of("plain"), of("secure")
    ups = lambda rs: [r["units_per_s"] for r in rs]
    med = lambda xs: statistics.median(xs)
    by_pair = {r["pair"]: r for r in plain}
    ratios = [s["units_per_s"] / by_pair[s["pair"]]["units_per_s"] for s in secure if s["pair"] in by_pair]
    cpu = lambda rs, key: med([r[key] / r["units"] * 1e6 for r in rs])
    print(f"| {shape} | {med(ups(plain)):,.0f} ({min(ups(plain)):,.0f} to {max(ups(plain)):,.0f}) "
          f"| {med(ups(secure)):,.0f} ({min(ups(secure)):,.0f} to {max(ups(secure)):,.0f}) "
          f"| {med(ups(secure)) / med(ups(plain)):.2f} | {med(ratios):.2f} ({min(ratios):.2f} to {max(ratios):.2f}) "
          f"| {cpu(plain, 'master_cpu_s'):.1f} / {cpu(secure, 'master_cpu_s'):.1f} us "
          f"| {cpu(plain, 'client_cpu_s'):.1f} / {cpu(secure, 'client_cpu_s'):.1f} us |")
EOF
