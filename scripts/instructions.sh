#!/usr/bin/env bash
# Instructions the master executes per unit in one `tmctl bench` shape,
# counted by valgrind's callgrind: a figure this VM's drifting speed does
# not move, for comparing two versions of the hot path.
#
#   scripts/instructions.sh                                   # batch 100, unary, lease on commit
#   scripts/instructions.sh --batch 1 --clients 64 --units 20000 --lease-on-commit --stream
#   MASTER=/path/to/taskmaster scripts/instructions.sh ...    # another build of the master
#   CALLGRIND_OUT=cg.out scripts/instructions.sh ...          # keep the profile (callgrind_annotate)
#
# Only the master runs under callgrind (about 50x slower); the bench client
# runs natively. Counting is on from listening to the bench's end, so it
# covers the submit, every lease and commit, the journal and the snapshots
# the run triggers, not start-up or shutdown.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib.sh
. "$repo/scripts/lib.sh"
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--units 100000 --batch 100 --clients 8 --lease-on-commit)
units=100000
for ((i = 0; i < ${#args[@]}; i++)); do
	[ "${args[$i]}" = --units ] && units=${args[$((i + 1))]}
done

command -v valgrind >/dev/null || {
	echo "needs valgrind (Debian: apt-get install valgrind)" >&2
	exit 1
}
if [ -z "${MASTER:-}" ]; then
	(cd "$repo" && cargo build --release --bin taskmaster --bin tmctl -q)
	MASTER=$repo/target/release/taskmaster
fi
tmctl=${TMCTL:-$repo/target/release/tmctl}
[ -x "$tmctl" ] || (cd "$repo" && cargo build --release --bin tmctl -q)

dir=$(mktemp -d)
master_pid=
cleanup() {
	[ -n "$master_pid" ] && kill "$master_pid" 2>/dev/null && wait "$master_pid" 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT

valgrind --tool=callgrind --instr-atstart=no \
	--callgrind-out-file="${CALLGRIND_OUT:-$dir/callgrind.out}" \
	"$MASTER" serve --data-dir "$dir/data" --listen 127.0.0.1:0 >"$dir/out" 2>"$dir/err" &
master_pid=$!
addr=$(master_address "$dir/out" "$dir/err" 60) # valgrind starts slowly

callgrind_control --instr=on "$master_pid" >/dev/null 2>&1
"$tmctl" bench --master "http://$addr" "${args[@]}" >"$dir/bench"
callgrind_control --instr=off "$master_pid" >/dev/null 2>&1
kill "$master_pid"
wait "$master_pid" 2>/dev/null || true
master_pid=

total=$(grep -o 'Collected : [0-9]*' "$dir/err" | grep -o '[0-9]*$')
echo "shape: ${args[*]}"
echo "master instructions: $total ($((total / units)) per unit)"
