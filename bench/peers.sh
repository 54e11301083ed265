#!/usr/bin/env bash
# make bench-peers: Agate beside Open Policy Agent, on this machine, in one run.
#   - go test -bench in bench/peers: Agate's engine and OPA's prepared query on the
#     reference policy and generated 1,000- and 10,000-rule policies (TestEquivalence
#     first proves both engines decide alike);
#   - Agate's Evaluate over gRPC (ghz) and OPA's REST data API (`opa run --server`,
#     built from bench/peers; hey) on the example policy, at 1, 16 and 64 clients.
# Writes bench/results/peers-<time>.md (RESULTS_DIR overrides) and prints it.
# Environment: DURATION_S, WARMUP_S, CLIENTS, BENCH_COUNT, AGATE_BIN, KEEP_RAW=1.

source "$(dirname "$0")/lib.sh"

RAW=$WORK/raw
mkdir -p "$RAW"/{ghz,hey}
RESULTS_DIR=${RESULTS_DIR:-$BENCH/results}
mkdir -p "$RESULTS_DIR"
OUT=$RESULTS_DIR/peers-$(date -u +%Y%m%dT%H%M%SZ).md
BENCH_COUNT=${BENCH_COUNT:-5}

log "building agate, OPA and the load tools"
build_agate
build_tools
meta_md "Peers: \`make bench-peers\`" >"$RAW/meta.md"

log "engines: equivalence, then benchmarks (-count $BENCH_COUNT)"
interruptible go -C "$BENCH/peers" test -count 1 -run '^TestEquivalence$' . >&2
interruptible go -C "$BENCH/peers" test -run '^$' -bench . -benchmem -count "$BENCH_COUNT" -timeout 60m . >"$RAW/gotest.txt"
cat "$RAW/gotest.txt" >&2

log "starting agate serve (SQLite) and opa run --server"
start_agate sqlite "$WORK/agate.db"
start_opa
grpc_call dev-decide agate.v1.PolicyService/Evaluate "$EVALUATE_JSON" |
  grep -q '"rule_id": "deny-unscoped-external-export"' || { echo "Agate did not deny the job" >&2; exit 1; }

EV=$WORK/evaluate.json
printf '%s\n' "$EVALUATE_JSON" >"$EV"
log "warm-up"
ghz_run /dev/null agate.v1.PolicyService.Evaluate dev-decide 16 "$WARMUP_S" "$EV" >/dev/null
hey_run /dev/null 16 "$WARMUP_S"
for c in $CLIENTS; do
  log "Agate Evaluate at $c clients"
  with_cpu "$AGATE_PID" "$RAW/ghz/evaluate-c$c.cpu" \
    ghz_run "$RAW/ghz/evaluate-c$c.json" agate.v1.PolicyService.Evaluate dev-decide "$c" "$DURATION_S" "$EV"
  opa_case "$c"
done

echo "- Load average after: $(cut -d' ' -f1-3 /proc/loadavg)." >>"$RAW/meta.md"
"$BIN/report" peers "$RAW" >"$OUT"
[[ ${KEEP_RAW:-0} == 1 ]] && cp -r "$RAW" "${OUT%.md}-raw"
cat "$OUT"
log "results: $OUT"
