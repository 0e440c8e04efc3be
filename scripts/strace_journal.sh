#!/usr/bin/env bash
# Runs a small pipeline against a master traced by strace and checks that
# every write to the journal (the writer's batches, and the zeros written
# ahead of them) is followed by an fdatasync of it, i.e. that nothing is
# left unsynced.
# Needs strace (apt-get install -y strace) and the debug binaries
# (cargo build --bins).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib.sh
. scripts/lib.sh
command -v strace >/dev/null || { echo "strace is missing: apt-get install -y strace" >&2; exit 2; }
bin=target/debug
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
tracer=""; worker=""

mkdir -p "$work/job/data"
for i in 1 2 3 4 5 6; do echo "line $i" > "$work/job/data/$i.txt"; done
cat > "$work/job/p.toml" <<'TOML'
name = "strace"
[[groups]]
name = "copy"
command = ["sh", "-c", "cat $TM_INPUTS > $TM_OUTPUT_DIR/out"]
inputs = ["data/*.txt"]
unit_bytes = 0
TOML

strace -f -yy -e trace=write,pwrite64,fdatasync,fsync -o "$work/trace" \
  "$bin/taskmaster" serve --data-dir "$work/data" --listen 127.0.0.1:0 > "$work/master.out" 2>/dev/null &
tracer=$!
addr=http://$(master_address "$work/master.out" /dev/null 10)
"$bin/taskmaster-worker" --master "$addr" --slots 2 2>/dev/null &
worker=$!
timeout 120 "$bin/tmctl" --master "$addr" submit "$work/job/p.toml" --wait >/dev/null 2>&1 || { echo "FAIL: the pipeline did not finish" >&2; exit 1; }
kill "$worker"
# Stop the master itself (strace exits with its tracee).
kill "$(pgrep -P "$tracer")"
wait "$tracer" 2>/dev/null || true

python3 - "$work/trace" <<'PY'
import re, sys
writes = syncs = 0
dirty = False
for line in open(sys.argv[1]):
    m = re.search(r'(pwrite64|write|fdatasync|fsync)\((\d+)<([^>]*)>', line)
    if not m or not m.group(3).endswith('journal.log'):
        continue
    if m.group(1) in ('write', 'pwrite64'):
        writes += 1
        dirty = True
    elif m.group(1) in ('fdatasync', 'fsync'):
        syncs += 1
        dirty = False
print(f"journal writes: {writes}, journal fdatasync/fsync: {syncs}")
if dirty or writes == 0:
    sys.exit("FAIL: a journal write was never synced" if dirty else "FAIL: no journal writes seen")
print("OK: every journal write was followed by a sync")
PY
