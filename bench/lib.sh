# Shared by load.sh and peers.sh (sourced, not run). It gives each run a work
# directory, stops every process the run started and removes the directory on
# any exit, builds the binaries, and starts `agate serve`. Every wait is
# bounded; every address is on the loopback interface.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
export GOWORK=off
DURATION_S=${DURATION_S:-10}   # seconds per measured case
WARMUP_S=${WARMUP_S:-2}        # seconds of unrecorded load before each server's first case
CLIENTS=${CLIENTS:-"1 16 64"}

# The work directory must be reachable by the postgres user (its cluster lives inside).
WORK=$(mktemp -d "${TMPDIR:-/tmp}/agate-bench-XXXXXX")
chmod 711 "$WORK"
BIN=$WORK/bin
mkdir -p "$BIN"
PIDS=()      # processes to stop on exit
PGROUPS=()   # process groups (of interruptible commands) to stop on exit
CLEANUPS=()  # commands to run on exit, last first

log() { printf '%s  %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# stop_pid PID sends TERM, waits up to 10 s, then KILLs; with -g, PID names a process
# group this script created. Safe to call twice.
stop_pid() {
  local target=$1 i
  [[ $1 == -g ]] && target=-$2
  kill -0 -- "$target" 2>/dev/null || return 0
  kill -TERM -- "$target" 2>/dev/null || true
  for i in $(seq 1 100); do
    kill -0 -- "$target" 2>/dev/null || { wait "${target#-}" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  kill -KILL -- "$target" 2>/dev/null || true
  wait "${target#-}" 2>/dev/null || true
}

cleanup() {
  local rc=$? i
  trap - EXIT INT TERM
  for pid in "${PGROUPS[@]}"; do stop_pid -g "$pid"; done
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  for ((i = ${#CLEANUPS[@]} - 1; i >= 0; i--)); do eval "${CLEANUPS[i]}" >/dev/null 2>&1 || true; done
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# interruptible CMD... runs CMD (a program, not a function) in a process group of its
# own and waits for it: bash runs its traps only between foreground commands, so this
# lets a TERM or INT stop a long case at once, and the cleanup stops CMD's whole group
# (go test's test binary, timeout's command).
interruptible() {
  setsid "$@" &
  local pid=$!
  PGROUPS+=("$pid")
  wait "$pid"
}

# free_port prints a loopback port nothing listens on (a connection to it is refused).
free_port() {
  local i p
  for i in $(seq 1 50); do
    p=$((20000 + RANDOM % 30000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  echo "no free port found" >&2; return 1
}

# wait_http URL SECONDS polls until URL answers 2xx.
wait_http() {
  local i
  for i in $(seq 1 $(($2 * 10))); do
    curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# build_agate builds bin/agate from the working tree, or takes AGATE_BIN when set
# (to measure a binary built from a given commit).
build_agate() {
  if [[ -n ${AGATE_BIN:-} ]]; then
    cp "$AGATE_BIN" "$BIN/agate"
  else
    (cd "$ROOT" && go build -o "$BIN/agate" ./cmd/agate)
  fi
}

# build_tools builds the pinned load tools, OPA, and this directory's programs.
build_tools() {
  (cd "$BENCH/peers" && go build -o "$BIN/ghz" github.com/bojand/ghz/cmd/ghz &&
    go build -o "$BIN/hey" github.com/rakyll/hey && go build -o "$BIN/opa" github.com/open-policy-agent/opa)
  (cd "$BENCH" && go build -o "$BIN/report" ./report && go build -o "$BIN/pipeline" ./pipeline)
  (cd "$ROOT" && go build -modfile=tools.mod -o "$BIN/grpcurl" github.com/fullstorydev/grpcurl/cmd/grpcurl)
}

# start_agate NAME DB [ADDR HTTP] starts `agate serve` on DB with the example policy
# and development tokens, on free loopback ports unless given; sets AGATE_PID,
# AGATE_ADDR and AGATE_HTTP.
start_agate() {
  local name=$1 db=$2
  AGATE_ADDR=${3:-127.0.0.1:$(free_port)}
  AGATE_HTTP=${4:-127.0.0.1:$(free_port)}
  # Every replica signs evidence with the one key file of the run (required outside SQLite).
  "$BIN/agate" serve --db "$db" --policy "$ROOT/examples/policy.yaml" --tokens "$ROOT/examples/tokens.yaml" \
    --grpc-addr "$AGATE_ADDR" --http-addr "$AGATE_HTTP" --evidence-key "$WORK/evidence.key" \
    ${AGATE_FLAGS:-} >>"$WORK/agate-$name.log" 2>&1 &
  AGATE_PID=$!
  PIDS+=("$AGATE_PID")
  if ! wait_http "http://$AGATE_HTTP/readyz" 60; then
    tail -20 "$WORK/agate-$name.log" >&2
    echo "agate serve ($name) did not become ready" >&2
    return 1
  fi
}

# restart_agate NAME DB stops agate and starts it again on the same addresses.
restart_agate() {
  stop_pid "$AGATE_PID"
  start_agate "$1" "$2" "$AGATE_ADDR" "$AGATE_HTTP"
}

# grpc_call TOKEN METHOD JSON prints the answer of one call to agate.
grpc_call() {
  timeout 30 "$BIN/grpcurl" -plaintext -H "authorization: Bearer $1" -d "$3" "$AGATE_ADDR" "$2"
}

# ghz_run OUT METHOD TOKEN CLIENTS SECONDS DATAFILE runs ghz against agate for a
# bounded time, one connection per client, and writes its JSON report to OUT. ghz
# learns the API by server reflection, so it always matches the binary measured.
ghz_run() {
  local out=$1 method=$2 token=$3 c=$4 secs=$5 data=$6
  interruptible timeout $((secs + 120)) "$BIN/ghz" --insecure --call "$method" \
    -m "{\"authorization\":\"Bearer $token\"}" -D "$data" \
    -c "$c" --connections "$c" -z "${secs}s" --timeout 30s -O json -o "$out" "$AGATE_ADDR"
}

# start_opa starts OPA's REST server on the Rego equivalent of examples/policy.yaml and
# checks that it denies the Evaluate job as Agate does; sets OPA_PID, OPA_URL, OPA_BODY.
start_opa() {
  local port
  port=$(free_port)
  # --disable-telemetry: OPA would otherwise report to and check versions over the network.
  "$BIN/opa" run --server --addr "127.0.0.1:$port" --disable-telemetry --log-level error \
    "$BENCH/peers/testdata/combine.rego" "$BENCH/peers/testdata/example.rego" >>"$WORK/opa.log" 2>&1 &
  OPA_PID=$!
  PIDS+=("$OPA_PID")
  wait_http "http://127.0.0.1:$port/health" 60 || { cat "$WORK/opa.log" >&2; return 1; }
  OPA_URL=http://127.0.0.1:$port/v1/data/agate/result
  OPA_BODY=$(printf '%s' "$EVALUATE_JSON" | sed 's/^{"job":/{"input":/')
  curl -fsS --max-time 5 -H 'Content-Type: application/json' -d "$OPA_BODY" "$OPA_URL" |
    grep -q '"rule_id":"deny-unscoped-external-export"' || { echo "OPA did not deny the job" >&2; return 1; }
}

# hey_run OUT CLIENTS SECONDS loads OPA's REST API for a bounded time.
hey_run() {
  interruptible timeout $(($3 + 120)) "$BIN/hey" -z "$3s" -c "$2" -m POST -T application/json -d "$OPA_BODY" "$OPA_URL" >"$1"
}

# opa_case CLIENTS runs hey against OPA at one concurrency; results in $RAW/hey.
opa_case() {
  log "OPA REST at $1 clients"
  mkdir -p "$RAW/hey"
  with_cpu "$OPA_PID" "$RAW/hey/opa-c$1.cpu" hey_run "$RAW/hey/opa-c$1.txt" "$1" "$DURATION_S"
}

# opa_cases warms OPA up, then runs opa_case at each concurrency.
opa_cases() {
  local c
  hey_run /dev/null 16 "$WARMUP_S"
  for c in $CLIENTS; do opa_case "$c"; done
}

# cpu_snapshot PID prints the process's CPU ticks, then the machine's busy and total
# ticks (all CPUs), from /proc.
cpu_snapshot() {
  echo "$(awk '{print $14 + $15}' "/proc/$1/stat") $(awk '/^cpu / {t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t}' /proc/stat)"
}

# children_cpu FILE writes the CPU seconds of every child this shell has waited for
# (the load generators run as its children, so a difference is one run's generator).
# It must run in this shell, not in a $(…) subshell, which has children of its own.
children_cpu() {
  times >"$1.times"
  tail -1 "$1.times" | tr 'ms' '  ' | awk '{print $1 * 60 + $2 + $3 * 60 + $4}' >"$1"
  rm -f "$1.times"
}

# with_cpu PID OUT CMD... runs CMD and writes to OUT how many cores PID, CMD (the
# load generator) and the whole machine kept busy meanwhile; what is left of the
# machine's figure is the database and anything else running.
with_cpu() {
  local pid=$1 out=$2 a
  shift 2
  a=$(cpu_snapshot "$pid")
  children_cpu "$out.gen0"
  "$@"
  children_cpu "$out.gen1"
  echo "$a $(cpu_snapshot "$pid") $(cat "$out.gen0") $(cat "$out.gen1")" |
    awk -v n="$(nproc)" -v hz="$(getconf CLK_TCK)" '{d = $6 - $3; if (d > 0)
      printf "%.2f %.2f %.2f\n", ($4 - $1) * n / d, ($8 - $7) * hz * n / d, ($5 - $2) * n / d}' >"$out"
  rm -f "$out.gen0" "$out.gen1"
}

# The Evaluate input of every run, and OPA's: an unscoped external export, denied by
# rule deny-unscoped-external-export of examples/policy.yaml.
EVALUATE_JSON='{"job":{"job_id":"eval-1","topic":"customer.data.export","actor":"agent-7","labels":{"env":"production","destination":"external","scope_validated":false}}}'

# meta_md writes the machine and run description that heads every results file.
meta_md() {
  local title=$1 commit dirty
  commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
  dirty=$(git -C "$ROOT" status --porcelain -- . ':!bench' 2>/dev/null | wc -l)
  echo "## $title"
  echo
  echo "- Machine: \`$(lscpu | sed -n 's/^Model name: *//p')\`, $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); $(go version | cut -d' ' -f3-)."
  if [[ -n ${AGATE_BIN:-} ]]; then
    echo "- Agate: the binary given in AGATE_BIN${AGATE_COMMIT:+ (commit $AGATE_COMMIT)}."
  else
    echo "- Agate: working tree at commit $commit ($dirty files changed outside bench/)."
  fi
  echo "- Load tools: ghz, hey and OPA $("$BIN/opa" version | sed -n 's/^Version: //p') as pinned in \`bench/peers/go.mod\`; each client has its own connection."
  echo "- Run: $(date -u +%Y-%m-%dT%H:%MZ); ${DURATION_S} s per case after ${WARMUP_S} s of warm-up per server; load average before: $(cut -d' ' -f1-3 /proc/loadavg)."
}
