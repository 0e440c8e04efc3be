#!/usr/bin/env bash
# A flame graph of the master through one `tmctl bench` shape: perf samples
# the master's threads (with DWARF call graphs, so the release binary needs
# no frame pointers), inferno folds the stacks and draws the SVG. Also
# prints the share of each thread and the functions most samples end in.
#
#   scripts/flamegraph.sh                         # one unit a message, streamed, paced at 14,500/s
#   scripts/flamegraph.sh --batch 100 --clients 8 --units 300000 --lease-on-commit
#   OUT=b.svg scripts/flamegraph.sh ...           # where the SVG goes (target/flamegraph.svg;
#                                                 # the folded stacks beside it, .folded)
#
# Needs perf (Debian: linux-perf). inferno is installed from crates.io into
# target/tools on first use. On a VM without a PMU perf samples by timer,
# and a sample taken while interrupts were off lands where they come back
# on: `finish_task_switch` and `_raw_spin_unlock_irqrestore` stand for the
# scheduling and wake-ups around them, not for their own code.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib.sh
. "$repo/scripts/lib.sh"
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--batch 1 --clients 64 --units 60000 --stream --lease-on-commit --rate 14500)
out=${OUT:-$repo/target/flamegraph.svg}
tools=$repo/target/tools

command -v perf >/dev/null || {
	echo "needs perf (Debian: apt-get install linux-perf)" >&2
	exit 1
}
[ -x "$tools/bin/inferno-flamegraph" ] ||
	(cd "$repo" && cargo install inferno --version 0.12.8 --locked --root "$tools" -q)
(cd "$repo" && cargo build --release --bin taskmaster --bin tmctl -q)

dir=$(mktemp -d)
master_pid=
perf_pid=
cleanup() {
	[ -n "$perf_pid" ] && kill -INT "$perf_pid" 2>/dev/null && wait "$perf_pid" 2>/dev/null
	[ -n "$master_pid" ] && kill "$master_pid" 2>/dev/null && wait "$master_pid" 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT

"$repo/target/release/taskmaster" serve --data-dir "$dir/data" --listen 127.0.0.1:0 >"$dir/out" 2>"$dir/err" &
master_pid=$!
addr=$(master_address "$dir/out" "$dir/err" 10)

perf record -F 999 --call-graph dwarf,32768 -p "$master_pid" -o "$dir/perf.data" 2>"$dir/perf.err" &
perf_pid=$!
sleep 0.5 # perf attaches to every thread before the load starts
"$repo/target/release/tmctl" bench --master "http://$addr" "${args[@]}" --json >"$dir/bench.json"
kill -INT "$perf_pid"
wait "$perf_pid" 2>/dev/null || true
perf_pid=

folded=${out%.svg}.folded
perf script -i "$dir/perf.data" 2>/dev/null | "$tools/bin/inferno-collapse-perf" >"$folded"
"$tools/bin/inferno-flamegraph" --title "taskmaster: tmctl bench ${args[*]}" <"$folded" >"$out"

echo "shape: ${args[*]}"
python3 - "$dir/bench.json" "$folded" <<'EOF'
import json, sys
from collections import Counter
bench = json.load(open(sys.argv[1]))
print(f"units/s {bench['units_per_s']:.0f}, commit p50/p99 {bench['commit_p50_us']}/{bench['commit_p99_us']} us, "
      f"master CPU {bench['master_cpu_s']} s")
# Samples whose stack passes through any of these frames. A stack can
# count under several: the handlers (unary, or the `Work` stream's) run
# inside the response polling of a connection task, and the core inside
# a handler.
PARTS = {
    "HTTP/2 tasks (framing, sockets, and the handlers they poll)": ["hyper_util::server::conn::auto::Connection", "hyper::proto::h2::server::H2Stream"],
    "Work stream handlers (commit, lease, reply)": ["work_stream::Serving"],
    "unary handlers": ["taskmaster_master::service::"],
    "socket send": ["tcp_sendmsg"],
    "socket receive": ["tcp_recvmsg"],
    "journal fdatasync": ["ext4_sync_file"],
    "journal write": ["ext4_buffered_write_iter", "ext4_file_write_iter"],
    "the core (state transitions)": ["taskmaster_master::core::"],
    "protobuf": ["taskmaster_proto::codec", "prost::"],
    "waiting for a contended lock": ["lock_slow"],
    "futex (park, wake)": ["futex"],
    "epoll_wait": ["epoll_wait"],
    "jemalloc": ["_rjem_"],
}
threads, leaves, parts, total = Counter(), Counter(), Counter(), 0
for line in open(sys.argv[2]):
    stack, n = line.rsplit(" ", 1)
    frames = stack.split(";")
    threads[frames[0]] += int(n)
    leaves[frames[-1]] += int(n)
    for part, patterns in PARTS.items():
        if any(p in stack for p in patterns):
            parts[part] += int(n)
    total += int(n)
if total == 0:
    sys.exit("perf took no samples")
for name, n in threads.most_common():
    print(f"{100 * n / total:5.1f}%  thread {name}")
print("stacks through:")
for name, n in parts.most_common():
    print(f"{100 * n / total:5.1f}%  {name}")
print("functions most samples end in:")
for name, n in leaves.most_common(15):
    print(f"{100 * n / total:5.1f}%  {name[:120]}")
EOF
echo "flame graph: $out (folded stacks: $folded)"
