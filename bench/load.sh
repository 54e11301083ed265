#!/usr/bin/env bash
# make bench-load: Agate under load on SQLite and on a throwaway PostgreSQL
# (fsync=on, synchronous_commit=on), at 1, 16 and 64 concurrent clients:
#   - ghz against Evaluate and Decide (a unique, random job_id per request; on
#     PostgreSQL also sequential ids, which SERIALIZABLE's predicate locks treat worse),
#   - bench/pipeline: Decide (require_human) → Approve → Publish at 16 clients (random
#     ids; on PostgreSQL also sequential ones),
#   - pgbench, same cluster, same run: one evidence-shaped row per SERIALIZABLE
#     transaction at the same concurrencies, the limit of one transaction per decision,
#   - OPA's REST server (bench/peers) under hey at the same concurrencies, the peer that
#     records nothing,
#   - RSS of `agate serve` sampled from /proc at 64 clients.
# Writes bench/results/load-<time>.md (RESULTS_DIR overrides) and prints it.
# Environment: DURATION_S, WARMUP_S, CLIENTS, AGATE_BIN (+ AGATE_COMMIT to name it),
# AGATE_FLAGS (more `agate serve` flags), KEEP_RAW=1 (keep raw outputs), PROFILE=1
# (a CPU profile of agate during each 64-client case and each pipeline, next to the
# report), and
# SOAK_S=300 to add a soak: Decide on PostgreSQL at 64 clients for that long, RSS sampled;
# PG_URL_OPTS (e.g. '&pool_max_conns=32') is appended to agate's PostgreSQL URL.

source "$(dirname "$0")/lib.sh"

RAW=$WORK/raw
mkdir -p "$RAW"/{ghz,pipeline,pgbench,rss}
RESULTS_DIR=${RESULTS_DIR:-$BENCH/results}
mkdir -p "$RESULTS_DIR"
OUT=$RESULTS_DIR/load-$(date -u +%Y%m%dT%H%M%SZ).md
PROFILES=${OUT%.md}-profiles
if [[ ${PROFILE:-0} == 1 ]]; then
  mkdir -p "$PROFILES"
  AGATE_FLAGS="${AGATE_FLAGS:-} --pprof"
fi

log "building agate and the load tools"
build_agate
build_tools
meta_md "Load: \`make bench-load\`" >"$RAW/meta.md"

# --- PostgreSQL: a throwaway cluster with production durability -------------------
PGBIN=$(pg_config --bindir)
[[ -x $PGBIN/initdb ]] || { echo "no PostgreSQL server binaries in $PGBIN" >&2; exit 1; }
PGDIR=$WORK/pg
mkdir -p "$PGDIR"
RUNAS=()
if [[ $(id -u) == 0 ]]; then   # initdb refuses root: the cluster is the postgres user's
  chown postgres:postgres "$PGDIR"
  RUNAS=(runuser -u postgres --)
fi
start_postgres() {
  local fs
  fs=$(stat -f -c %T "$PGDIR")
  [[ $fs == tmpfs ]] && log "WARNING: $PGDIR is on tmpfs: fsync costs nothing there"
  "${RUNAS[@]}" "$PGBIN/initdb" -D "$PGDIR/data" -U postgres -A trust -E UTF8 --no-locale >"$WORK/initdb.log" 2>&1
  PGPORT=$(free_port)
  CLEANUPS+=("${RUNAS[*]} $PGBIN/pg_ctl -D $PGDIR/data -m immediate -w -t 30 stop")
  "${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/server.log" -w -t 60 -o \
    "-c listen_addresses=127.0.0.1 -c port=$PGPORT -c unix_socket_directories=$PGDIR -c fsync=on -c synchronous_commit=on -c full_page_writes=on -c max_connections=300" \
    start >/dev/null
  PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PGPORT" -U postgres)
  "${PSQL[@]}" -d postgres -c 'CREATE DATABASE agate' -c 'CREATE DATABASE pgb'
  PG_VERSION=$("${PSQL[@]}" -d postgres -Atc 'SHOW server_version')
  PG_SETTINGS=$("${PSQL[@]}" -d postgres -Atc "SELECT string_agg(name || '=' || setting, ', ' ORDER BY name) FROM pg_settings WHERE name IN ('fsync','synchronous_commit','full_page_writes','wal_sync_method','shared_buffers','max_connections')")
  [[ -z ${PG_URL_OPTS:-} ]] || echo "- agate's PostgreSQL URL ends in \`${PG_URL_OPTS}\`." >>"$RAW/meta.md"
  echo "- PostgreSQL $PG_VERSION from \`$PGBIN\`, data on $fs: $PG_SETTINGS." >>"$RAW/meta.md"
}

# --- one backend: warm up, then Evaluate and Decide at each concurrency, then the pipeline
# data_file NAME JSON writes a ghz data file.
data_file() { printf '%s\n' "$2" >"$WORK/$1.json"; echo "$WORK/$1.json"; }

# decide_json ID: an allowed job (the policy default); ID is a ghz template such as
# {{newUUID}} or PREFIX-{{.RequestNumber}}, so every request has its own job_id.
decide_json() {
  local payload
  payload=$(printf '%s' '{"amount":1250.5,"currency":"EUR","invoice":"INV-1001"}' | base64 -w0)
  printf '{"job":{"job_id":"%s","topic":"finance.payment.execute","actor":"agent-7","labels":{"env":"staging"},"payload":"%s"}}' "$1" "$payload"
}

# sample_rss PID OUT FLAG appends VmRSS (kB) every 0.5 s while FLAG exists (at most
# twice the longest case).
sample_rss() {
  local i
  for i in $(seq 1 $((4 * (DURATION_S > ${SOAK_S:-0} ? DURATION_S : SOAK_S) + 120))); do
    [[ -e $3 ]] || return 0
    awk '/^VmRSS:/ {print $2}' "/proc/$1/status" >>"$2" 2>/dev/null || return 0
    sleep 0.5
  done
}

# pg_xacts prints the commits and rollbacks of database agate so far.
pg_xacts() {
  "${PSQL[@]}" -d postgres -Atc "SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = 'agate'" | tr '|' ' '
}

# measure_case NAME CMD... runs one case against the running agate (RSS sampled at 64
# clients, CPU recorded). When PG_STATS=1, agate is restarted around the case so that
# its connections close and flush their statistics, and NAME.pg gets the commits and
# rollbacks the case caused.
measure_case() {
  local name=$1 sampler='' flag=$WORK/sampling x0
  shift
  if [[ $PG_STATS == 1 ]]; then
    stop_pid "$AGATE_PID"
    x0=$(pg_xacts)
    restart_agate "$BACKEND" "$DB"
  fi
  if [[ $name == *-c64 ]]; then
    touch "$flag"
    sample_rss "$AGATE_PID" "$RAW/rss/${name##*/}.txt" "$flag" &
    sampler=$!
    PIDS+=("$sampler")
  fi
  local profiler=''
  if [[ ${PROFILE:-0} == 1 && ($name == *-c64 || $name == pipeline/*) ]]; then
    # The profile covers the case's middle: it starts with the load and ends before it.
    curl -sf -o "$PROFILES/${name//\//-}.pprof" \
      "http://$AGATE_HTTP/debug/pprof/profile?seconds=$((DURATION_S > 4 ? DURATION_S - 2 : 2))" &
    profiler=$!
    PIDS+=("$profiler")
  fi
  with_cpu "$AGATE_PID" "$RAW/$name.cpu" "$@"
  rm -f "$flag"
  [[ -z $sampler ]] || wait "$sampler" || true
  [[ -z $profiler ]] || wait "$profiler" || echo "no profile for $name" >&2
  if [[ $PG_STATS == 1 ]]; then
    stop_pid "$AGATE_PID"
    echo "$x0 $(pg_xacts)" | awk '{print $3 - $1, $4 - $2}' >"$RAW/$name.pg"
    restart_agate "$BACKEND" "$DB"
  fi
}

run_backend() {
  BACKEND=$1 DB=$2 PG_STATS=0
  local b=$1 c rpc ev method data clients ids
  log "$b: starting agate serve"
  start_agate "$b" "$DB"
  ev=$(data_file evaluate "$EVALUATE_JSON")
  grpc_call dev-decide agate.v1.PolicyService/Evaluate "$EVALUATE_JSON" | grep -q '"DECISION_DENY"' ||
    { echo "$b: Evaluate did not answer deny" >&2; return 1; }
  grpc_call dev-decide agate.v1.DecisionService/Decide "$(decide_json "$b-probe")" |
    grep -q '"JOB_STATUS_ALLOWED"' || { echo "$b: Decide did not answer allowed" >&2; return 1; }
  log "$b: warm-up"
  ghz_run /dev/null agate.v1.DecisionService.Decide dev-decide 16 "$WARMUP_S" "$(data_file warm "$(decide_json '{{newUUID}}')")" >/dev/null

  local rpcs="evaluate decide"
  [[ $b == postgres ]] && rpcs+=" decide-seq"
  for rpc in $rpcs; do
    clients=$CLIENTS
    [[ $rpc == decide-seq ]] && clients=$(tr ' ' '\n' <<<"$CLIENTS" | grep -vx 1 | tr '\n' ' ')
    for c in $clients; do
      log "$b: $rpc at $c clients"
      case $rpc in
        evaluate) method=agate.v1.PolicyService.Evaluate data=$ev ;;
        decide) method=agate.v1.DecisionService.Decide data=$(data_file "decide-$c" "$(decide_json '{{newUUID}}')") ;;
        decide-seq) method=agate.v1.DecisionService.Decide data=$(data_file "seq-$c" "$(decide_json "$b-s$c-{{.RequestNumber}}")") ;;
      esac
      PG_STATS=0
      [[ $b == postgres && $rpc != evaluate ]] && PG_STATS=1 # Evaluate reads no database
      measure_case "ghz/$b-$rpc-c$c" ghz_run "$RAW/ghz/$b-$rpc-c$c.json" "$method" dev-decide "$c" "$DURATION_S" "$data"
    done
  done

  if [[ $b == postgres && ${SOAK_S:-0} -gt 0 ]]; then
    log "$b: soak, Decide at 64 clients for ${SOAK_S} s"
    PG_STATS=1
    measure_case "ghz/$b-decide-soak-c64" ghz_run "$RAW/ghz/$b-decide-soak-c64.json" agate.v1.DecisionService.Decide \
      dev-decide 64 "$SOAK_S" "$(data_file soak "$(decide_json '{{newUUID}}')")"
  fi

  for ids in random sequential; do
    [[ $ids == sequential && $b != postgres ]] && continue
    local name=$b-c16
    [[ $ids == sequential ]] && name=$b-seq-c16
    log "$b: Decide → Approve → Publish at 16 clients, $ids ids"
    PG_STATS=0
    [[ $b == postgres ]] && PG_STATS=1
    measure_case "pipeline/$name" interruptible timeout $((DURATION_S + 120)) "$BIN/pipeline" -addr "$AGATE_ADDR" -clients 16 \
      -duration "${DURATION_S}s" -prefix "$b-pipe-$ids" -ids "$ids" >"$RAW/pipeline/$name.json"
  done
  stop_pid "$AGATE_PID"
}

run_pgbench() {
  "${PSQL[@]}" -d pgb -f "$BENCH/pgbench/schema.sql" >/dev/null
  for c in $CLIENTS; do
    log "pgbench at $c clients"
    interruptible timeout $((DURATION_S + 120)) pgbench -h 127.0.0.1 -p "$PGPORT" -U postgres -n -M prepared \
      -c "$c" -j "$((c < 2 ? 1 : 2))" -T "$DURATION_S" -f "$BENCH/pgbench/insert.sql" -l \
      --log-prefix="$RAW/pgbench/log-c$c" pgb >"$RAW/pgbench/out-c$c.txt" 2>&1 ||
      { cat "$RAW/pgbench/out-c$c.txt" >&2; return 1; }
  done
}

log "OPA REST server"
start_opa
opa_cases
stop_pid "$OPA_PID"

run_backend sqlite "$WORK/agate.db"
start_postgres
run_backend postgres "postgres://postgres@127.0.0.1:$PGPORT/agate?sslmode=disable${PG_URL_OPTS:-}"
run_pgbench

echo "- Load average after: $(cut -d' ' -f1-3 /proc/loadavg)." >>"$RAW/meta.md"
"$BIN/report" load "$RAW" >"$OUT"
[[ ${KEEP_RAW:-0} == 1 ]] && cp -r "$RAW" "${OUT%.md}-raw"
cat "$OUT"
log "results: $OUT"
