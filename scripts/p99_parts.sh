#!/usr/bin/env bash
# Where the commit p99 at half the peak comes from: the same bench with
# the journal's fdatasync and/or the automatic snapshots switched off, and
# with answers that do not wait for the journal at all, interleaved, so
# the VM's drift hits every variant alike.
#
# The switches exist only in an experiment build: this script checks out
# HEAD into a worktree under target/, applies scripts/p99_parts.patch
# (three environment variables: TM_EXPERIMENT_NO_FSYNC,
# TM_EXPERIMENT_NO_AUTO_SNAPSHOT, and TM_EXPERIMENT_NO_WAIT, with which a
# call answers without waiting for its records to be durable, the syncs
# going on behind) and builds it in a target dir of its own (a full
# release build the first time). The product never has them.
#
# Usage: scripts/p99_parts.sh
# Environment (all optional):
#   ROUNDS=3     rounds; each runs every variant once
#   RATE=        offered units/s (default: half of one peak run, measured first)
#   BENCH="--batch 100 --clients 8 --units 1000000 --lease-on-commit"
#   (one unit a message: BENCH="--batch 1 --clients 64 --units 150000 --stream --lease-on-commit")
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$PWD
ROUNDS=${ROUNDS:-3}
BENCH=${BENCH:-"--batch 100 --clients 8 --units 1000000 --lease-on-commit"}
work=$repo/target/p99-parts
tree=$work/src

rm -rf "$tree"
git worktree prune
git worktree add --detach "$tree" HEAD >&2
trap 'git -C "$repo" worktree remove --force "$tree"' EXIT
git -C "$tree" apply "$repo/scripts/p99_parts.patch"
CARGO_TARGET_DIR=$work/target cargo build --release --manifest-path "$tree/Cargo.toml" \
    --bin taskmaster --bin tmctl >&2
tmctl=$work/target/release/tmctl

# run LABEL [VAR=1 ...]: one bench with those switches; prints one line.
run() {
    local label=$1
    shift
    # shellcheck disable=SC2086 # BENCH is a list of arguments
    env "$@" "$tmctl" bench $BENCH --rate "$RATE" --json | python3 -c '
import json, sys
r = json.load(sys.stdin)
print("%-22s %9d units/s  commit p50 %5d us  p99 %5d us  master CPU %5.2f s" % (
    sys.argv[1], r["units_per_s"], r["commit_p50_us"], r["commit_p99_us"], r["master_cpu_s"]))
' "$label"
}

if [ -z "${RATE:-}" ]; then
    # shellcheck disable=SC2086
    peak=$("$tmctl" bench $BENCH --json | python3 -c 'import json,sys; print(int(json.load(sys.stdin)["units_per_s"]))')
    RATE=$((peak / 200 * 100))
    echo "peak $peak units/s; offering $RATE" >&2
fi

for round in $(seq "$ROUNDS"); do
    echo "round $round"
    run "as shipped"
    run "no snapshots" TM_EXPERIMENT_NO_AUTO_SNAPSHOT=1
    run "no fsync" TM_EXPERIMENT_NO_FSYNC=1
    run "no snapshots, no fsync" TM_EXPERIMENT_NO_AUTO_SNAPSHOT=1 TM_EXPERIMENT_NO_FSYNC=1
    run "no durability wait" TM_EXPERIMENT_NO_WAIT=1
done
