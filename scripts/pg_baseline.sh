#!/usr/bin/env bash
# PostgreSQL baseline for `tmctl bench`: the same leased-queue pattern
# (lease up to B pending units, then commit them with a lease check), each
# step its own durable transaction (fsync on, synchronous_commit on), run
# by pgbench on a throwaway cluster. Prints committed units per second for
# batch 1 and batch 100.
#
# Usage: scripts/pg_baseline.sh
# Environment (all optional):
#   CLIENTS=8          pgbench clients (-c)
#   THREADS=2          pgbench threads (-j)
#   UNITS_B1=100000    units to lease and commit with batch 1
#   UNITS_B100=1000000 units to lease and commit with batch 100
#   BATCHES="1 100"    which batch sizes to run
#
# Installs PostgreSQL from Debian packages if it is missing (needs root).
# Runs the cluster as the `postgres` user when started as root. The cluster
# lives in a temporary dir, listens on 127.0.0.1 on a free port, and is
# stopped and removed on exit, however the script ends.
set -euo pipefail

CLIENTS=${CLIENTS:-8}
THREADS=${THREADS:-2}
UNITS_B1=${UNITS_B1:-100000}
UNITS_B100=${UNITS_B100:-1000000}
BATCHES=${BATCHES:-"1 100"}

pg_bin() {
    local found
    found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    [ -n "$found" ] && [ -x "$found/initdb" ] && echo "$found"
}

bin=$(pg_bin || true)
if [ -z "$bin" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "PostgreSQL is not installed; run as root to install it (apt-get install -y postgresql)" >&2
        exit 2
    fi
    echo "installing PostgreSQL (apt-get install -y postgresql)..." >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    bin=$(pg_bin)
fi

# As root, everything that touches the cluster runs as `postgres`
# (initdb refuses to run as root).
if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    as_db() { runuser -u postgres -- "$@"; }
else
    as_db() { "$@"; }
fi

work=$(mktemp -d /tmp/pg-baseline.XXXXXX)
chmod 755 "$work"
[ "$(id -u)" -eq 0 ] && chown postgres "$work"
data="$work/data"

cleanup() {
    if [ -f "$data/postmaster.pid" ]; then
        as_db "$bin/pg_ctl" -D "$data" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free loopback port: the first one nothing answers on.
port=54320
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    port=$((port + 1))
done

as_db "$bin/initdb" -D "$data" -U bench --auth=trust -E UTF8 >/dev/null
cat >>"$data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$work'
# Durable, as the master is: every commit waits for its WAL fsync.
fsync = on
synchronous_commit = on
full_page_writes = on
wal_sync_method = fdatasync
# No checkpoint in the middle of a short run.
max_wal_size = 4GB
checkpoint_timeout = 30min
max_connections = 300
CONF
if ! as_db "$bin/pg_ctl" -D "$data" -l "$work/server.log" -w start >/dev/null; then
    cat "$work/server.log" >&2
    exit 1
fi

psql() { as_db "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U bench "$@" postgres; }

psql <<'SQL'
CREATE TABLE units (
    id       bigint PRIMARY KEY,
    state    text   NOT NULL DEFAULT 'pending',
    lease_id bigint,
    leased_until timestamptz,
    outputs  text
);
-- The queue: only pending units, so a lease does not scan finished ones.
CREATE INDEX units_pending ON units (id) WHERE state = 'pending';
CREATE SEQUENCE lease_ids;
SQL

# One pgbench transaction = one unit cycle of B units: a lease transaction
# (SKIP LOCKED, so clients never wait for each other's units) and a commit
# transaction that only succeeds for the lease that holds the units.
cat >"$work/cycle.sql" <<'SQL'
WITH picked AS (
    SELECT id FROM units WHERE state = 'pending'
    ORDER BY id FOR UPDATE SKIP LOCKED LIMIT :batch
), lease AS (
    SELECT nextval('lease_ids') AS lease_id
), leased AS (
    UPDATE units SET state = 'leased', lease_id = lease.lease_id,
        leased_until = now() + interval '30 seconds'
    FROM lease
    WHERE units.id IN (SELECT id FROM picked)
    RETURNING units.id, units.lease_id
)
SELECT coalesce(string_agg(id::text, ','), '0') AS ids, coalesce(max(lease_id), 0) AS lease_id
FROM leased \gset
BEGIN;
UPDATE units SET state = 'committed', outputs = ''
WHERE id IN (:ids) AND lease_id = :lease_id AND state = 'leased'
    AND leased_until > now();
COMMIT;
SQL
chmod 644 "$work/cycle.sql"

echo "PostgreSQL $("$bin/postgres" --version | awk '{print $3}'), fsync=on synchronous_commit=on, $CLIENTS clients, 127.0.0.1:$port"
for batch in $BATCHES; do
    if [ "$batch" -eq 1 ]; then units=$UNITS_B1; else units=$UNITS_B100; fi
    per_client=$((units / (CLIENTS * batch)))
    units=$((per_client * CLIENTS * batch))
    psql <<SQL
TRUNCATE units;
INSERT INTO units (id) SELECT g FROM generate_series(1, $units) g;
VACUUM ANALYZE units;
CHECKPOINT;
SQL
    out=$(as_db "$bin/pgbench" -n -r -h 127.0.0.1 -p "$port" -U bench \
        -c "$CLIENTS" -j "$THREADS" -t "$per_client" -D batch="$batch" \
        -f "$work/cycle.sql" postgres 2>&1) || { echo "$out" >&2; exit 1; }
    committed=$(psql -At -c "SELECT count(*) FROM units WHERE state = 'committed'")
    left=$(psql -At -c "SELECT count(*) FROM units WHERE state <> 'committed'")
    if [ "$committed" -ne "$units" ] || [ "$left" -ne 0 ]; then
        echo "batch $batch: $committed of $units units committed, $left not" >&2
        exit 1
    fi
    tps=$(echo "$out" | awk '/^tps = / {print $3; exit}')
    elapsed=$(echo "$out" | awk '/^latency average/ {print $4; exit}')
    # Per-statement average latencies (pgbench -r): the lease statement is
    # the one with SKIP LOCKED; the commit is the UPDATE ... 'committed'.
    lease_ms=$(echo "$out" | awk '/SKIP LOCKED|WITH picked/ {print $1; exit}')
    commit_ms=$(echo "$out" | awk '/COMMIT;/ {print $1; exit}')
    update_ms=$(echo "$out" | awk "/SET state = 'committed'/ {print \$1; exit}")
    units_per_s=$(awk -v t="$tps" -v b="$batch" 'BEGIN { printf "%.0f", t * b }')
    echo "batch $batch: $units_per_s units/s ($units units, $tps cycles/s, cycle latency avg ${elapsed} ms; lease ${lease_ms} ms, commit ${update_ms}+${commit_ms} ms avg)"
done
