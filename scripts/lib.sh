# Shell functions the scripts here share; sourced, not run.

# master_address OUT ERR SECONDS: waits until the master that writes its
# stdout to OUT says it is listening, and prints the address it listens on
# (127.0.0.1:PORT). If it has not within SECONDS, prints what it wrote to
# ERR and fails.
master_address() {
	local out=$1 err=$2 tenths=$(($3 * 10))
	for _ in $(seq "$tenths"); do
		grep -q listening "$out" 2>/dev/null && break
		sleep 0.1
	done
	grep -o -m1 '127.0.0.1:[0-9]*' "$out" 2>/dev/null || {
		echo "the master did not start:" >&2
		cat "$err" >&2 2>/dev/null
		return 1
	}
}
