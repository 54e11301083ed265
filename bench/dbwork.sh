#!/usr/bin/env bash
# make bench-dbwork: the database work behind each Agate call, on a throwaway PostgreSQL
# with pg_stat_statements: transactions, statements, rows, the key-value entries a
# distributed SQL database would write (primary rows, secondary-index entries added and
# removed), their bytes, and the WAL written. Runs bench/dbwork (which starts `agate
# serve` itself, three times: group commit off, on, and a start that seals) and prints
# its tables. Not a throughput run: it needs little of the machine.
# Environment: N (calls per phase, default 2000), VERBOSE=1 (every phase's statements),
# AGATE_BIN (+ AGATE_COMMIT) as for load.sh.
# WAL is measured with full_page_writes=off, so it counts the records themselves; with it
# on, the first change of each page after a checkpoint adds an 8 KiB page image.

source "$(dirname "$0")/lib.sh"

log "building agate and dbwork"
build_agate
(cd "$BENCH" && go build -o "$BIN/dbwork" ./dbwork)

PGBIN=$(pg_config --bindir)
[[ -x $PGBIN/initdb ]] || { echo "no PostgreSQL server binaries in $PGBIN" >&2; exit 1; }
PGDIR=$WORK/pg
mkdir -p "$PGDIR"
RUNAS=()
if [[ $(id -u) == 0 ]]; then   # initdb refuses root: the cluster is the postgres user's
  chown postgres:postgres "$PGDIR"
  RUNAS=(runuser -u postgres --)
fi
"${RUNAS[@]}" "$PGBIN/initdb" -D "$PGDIR/data" -U postgres -A trust -E UTF8 --no-locale >"$WORK/initdb.log" 2>&1
PGPORT=$(free_port)
CLEANUPS+=("${RUNAS[*]} $PGBIN/pg_ctl -D $PGDIR/data -m immediate -w -t 30 stop")
"${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/server.log" -w -t 60 -o \
  "-c listen_addresses=127.0.0.1 -c port=$PGPORT -c unix_socket_directories=$PGDIR -c fsync=on -c synchronous_commit=on -c full_page_writes=off -c autovacuum=off -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all -c pg_stat_statements.max=10000" \
  start >/dev/null
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PGPORT" -U postgres)
"${PSQL[@]}" -d postgres -c 'CREATE DATABASE agate' -c 'CREATE ROLE dbwork LOGIN SUPERUSER'
"${PSQL[@]}" -d agate -c 'CREATE EXTENSION pg_stat_statements'
PG_VERSION=$("${PSQL[@]}" -d postgres -Atc 'SHOW server_version')

commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$ROOT" status --porcelain -- . ':!bench' 2>/dev/null | wc -l)
echo "- Agate: ${AGATE_COMMIT:-commit $commit ($dirty files changed outside bench/)}; PostgreSQL $PG_VERSION (full_page_writes=off, autovacuum=off); $(date -u +%Y-%m-%dT%H:%MZ)."
echo
interruptible "$BIN/dbwork" -agate "$BIN/agate" -root "$ROOT" -work "$WORK" -n "${N:-2000}" \
  $([[ ${VERBOSE:-0} == 1 ]] && echo -v) \
  -db "postgres://postgres@127.0.0.1:$PGPORT/agate?sslmode=disable" \
  -monitor "postgres://dbwork@127.0.0.1:$PGPORT/agate?sslmode=disable"
