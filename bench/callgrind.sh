#!/usr/bin/env bash
# bench/callgrind.sh RPC N CLIENTS [AGATE_BIN]: the instructions `agate serve` executes per
# call, counted by valgrind's callgrind, which does not depend on the machine's load.
# agate serve (SQLite, the example policy and tokens) runs under callgrind; ghz makes 300
# warm-up calls, the counters are zeroed, ghz makes N calls of RPC (evaluate or decide,
# the requests of `make bench-load`) at CLIENTS connections, and the counters are dumped.
# Prints instructions per call and leaves the dump for callgrind_annotate.
# The binary is built with CGO_ENABLED=0 and run with GODEBUG=asyncpreemptoff=1,
# cpu.rdtscp=off: callgrind 3.19 fails on Go's preemption signals and on RDTSCP.
# Syscalls are the kernel's and are not counted.
set -euo pipefail
RPC=${1:?evaluate or decide} N=${2:-2000} C=${3:-16}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
W=$(mktemp -d "${TMPDIR:-/tmp}/agate-callgrind-XXXX")
BIN=${4:-$W/agate}
[[ -n ${4:-} ]] || (cd "$ROOT" && CGO_ENABLED=0 go build -o "$BIN" ./cmd/agate)
(cd "$ROOT/bench/peers" && GOWORK=off go build -o "$W/ghz" github.com/bojand/ghz/cmd/ghz)
PORT=$((20000 + RANDOM % 20000)) HPORT=$((PORT + 1))
GODEBUG=asyncpreemptoff=1,cpu.rdtscp=off valgrind --tool=callgrind --callgrind-out-file="$W/callgrind.out" \
  "$BIN" serve --db "$W/agate.db" --policy "$ROOT/examples/policy.yaml" --tokens "$ROOT/examples/tokens.yaml" \
  --grpc-addr "127.0.0.1:$PORT" --http-addr "127.0.0.1:$HPORT" --evidence-key "$W/evidence.key" >"$W/serve.log" 2>&1 &
VPID=$!
trap 'kill -TERM $VPID 2>/dev/null || true' EXIT
for _ in $(seq 1 240); do curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$HPORT/readyz" 2>/dev/null && break; sleep 0.5; done
payload=$(printf '%s' '{"amount":1250.5,"currency":"EUR","invoice":"INV-1001"}' | base64 -w0)
case $RPC in
  evaluate) M=agate.v1.PolicyService.Evaluate
    D='{"job":{"job_id":"eval-1","topic":"customer.data.export","actor":"agent-7","labels":{"env":"production","destination":"external","scope_validated":false}}}' ;;
  decide) M=agate.v1.DecisionService.Decide
    D=$(printf '{"job":{"job_id":"%s","topic":"finance.payment.execute","actor":"agent-7","labels":{"env":"staging"},"payload":"%s"}}' '{{newUUID}}' "$payload") ;;
  *) echo "RPC: evaluate or decide" >&2; exit 2 ;;
esac
printf '%s\n' "$D" >"$W/data.json"
G=("$W/ghz" --insecure --call "$M" -m '{"authorization":"Bearer dev-decide"}' -D "$W/data.json" -c "$C" --connections "$C" --timeout 60s)
"${G[@]}" -n 300 "127.0.0.1:$PORT" >/dev/null
callgrind_control -z "$VPID" >/dev/null 2>&1
"${G[@]}" -n "$N" -O json -o "$W/ghz.json" "127.0.0.1:$PORT"
callgrind_control -d "$VPID" >/dev/null 2>&1
dump=$(ls "$W"/callgrind.out.* | sort | head -1)
ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$dump")
echo "$RPC n=$N clients=$C instructions=$ir per_call=$((ir / N)) dump=$dump"
