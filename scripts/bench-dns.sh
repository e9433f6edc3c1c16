#!/usr/bin/env bash
# DNS benchmark of the release `skydns` (issue 2): dnsperf for A, SRV and
# NXDOMAIN queries with 10 and with many registered services, plus resident
# memory idle and peak. Writes the figures into docs/performance.md between
# the `bench-dns` markers (the rest of the file is left alone).
#
#   scripts/bench-dns.sh                      # 10 s per run, 100,000 services
#   BENCH_SERVICES=20000 BENCH_SECONDS=5 scripts/bench-dns.sh
#   BENCH_NO_WRITE=1 scripts/bench-dns.sh     # print only, leave the doc alone
#   scripts/bench-dns.sh --callgrind          # instructions per query (valgrind)
#   BENCH_BIN=/path/to/skydns scripts/bench-dns.sh --callgrind   # of another build
#
# --callgrind runs the release binary under `valgrind --tool=callgrind`, 10
# services registered, zeroes the counters, sends BENCH_QUERIES (default
# 2000) queries of each kind with dnsperf (-c 1 -q 5: valgrind is slow) and
# prints the instructions executed per answered query, all threads counted.
# The kinds: A (10 answers), SRV with glue, NXDOMAIN, and an outside name
# answered from the forwarding cache (upstream: a second skydns on loopback).
# Instruction counts do not depend on what else runs on the machine.
#
# Loopback only: skydns listens on free 127.0.0.1 ports (memory store, its
# upstream on loopback too); dnsperf and the registration client talk to it
# there. Everything started here is killed on exit. The only outside traffic
# is apt-get, once, when dnsperf is missing.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

SECONDS_PER_RUN="${BENCH_SECONDS:-10}"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
MANY="${BENCH_SERVICES:-100000}"
CLIENTS=10
THREADS=2
DOMAIN=skydns.local
DOC="$ROOT/docs/performance.md"
# dnsperf's full output of every run, for a second look.
RAW="$TARGET_DIR/bench-dns.raw.log"

# --- callgrind mode --------------------------------------------------------
callgrind_mode() {
    local bin="${BENCH_BIN:-$BIN}" queries="${BENCH_QUERIES:-2000}"
    [[ -n "${BENCH_BIN:-}" ]] || cargo build --release -p skydns --locked
    for tool in valgrind callgrind_control dnsperf curl; do
        command -v "$tool" >/dev/null 2>&1 || { echo "$tool missing (apt-get install valgrind dnsperf curl)" >&2; exit 1; }
    done
    local line dns http port api stub_line stub_port
    CG_WORK=$(mktemp -d) CG_PID="" CG_STUB=""
    local work=$CG_WORK
    trap 'kill "$CG_PID" "$CG_STUB" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$CG_WORK"' EXIT
    # The upstream for the forwarding row: another skydns on loopback,
    # authoritative for example.org with 10 services (not under valgrind).
    NO_COLOR=1 timeout 900 "$bin" -dns 127.0.0.1:0 -http 127.0.0.1:0 -domain example.org -no-forward \
        -log-level warn,skydns::server=info >"$work/stub.log" 2>&1 &
    CG_STUB=$!
    stub_line=$(wait_listening "$work/stub.log" "$CG_STUB" 100)
    [[ -n "$stub_line" ]] || { cat "$work/stub.log" >&2; exit 1; }
    stub_port=${stub_line#listening dns=}; stub_port=${stub_port%% *}; stub_port=${stub_port##*:}
    register_web "http://${stub_line##* http=}" 10.0.1
    NO_COLOR=1 timeout 900 valgrind --tool=callgrind --callgrind-out-file="$work/cg.%p" \
        "$bin" -dns 127.0.0.1:0 -http 127.0.0.1:0 -domain "$DOMAIN" -nameserver "127.0.0.1:$stub_port" \
        -log-level warn,skydns::server=info >"$work/skydns.log" 2>&1 &
    CG_PID=$!
    local pid=""
    line=$(wait_listening "$work/skydns.log" "$CG_PID" 600)
    [[ -n "$line" ]] || { cat "$work/skydns.log" >&2; exit 1; }
    # the valgrind process itself (timeout's child) is the one to control
    pid=$(pgrep -P "$CG_PID" | head -n1)
    dns=${line#listening dns=}; dns=${dns%% *}; port=${dns##*:}
    http=${line##* http=}; api="http://$http"
    register_web "$api"
    printf 'web.prod.%s A\n' "$DOMAIN" >"$work/a.txt"
    printf 'web.prod.%s SRV\n' "$DOMAIN" >"$work/srv.txt"
    printf 'nothere.prod.%s A\n' "$DOMAIN" >"$work/nx.txt"
    printf 'web.prod.example.org A\n' >"$work/fwd.txt"
    local kind file extra out done_q ir
    printf '%-10s %10s %14s\n' query answered instr/query
    for kind in A:a.txt: SRV+glue:srv.txt:-e SRV-TC:srv.txt: NXDOMAIN:nx.txt: forwarded:fwd.txt:; do
        IFS=: read -r kind file extra <<<"$kind"
        # warm the path (and the wire cache), then count only the load
        timeout 120 dnsperf -s 127.0.0.1 -p "$port" -d "$work/$file" -n 20 -c 1 -q 5 ${extra:+"$extra"} >/dev/null 2>&1 || true
        callgrind_control -z "$pid" >/dev/null 2>&1
        out=$(timeout 600 dnsperf -s 127.0.0.1 -p "$port" -d "$work/$file" -n "$queries" -c 1 -q 5 -t 30 ${extra:+"$extra"} 2>&1)
        done_q=$(awk '/Queries completed/ { print $3 }' <<<"$out")
        rm -f "$work"/cg.*
        callgrind_control -d "$pid" >/dev/null 2>&1
        sleep 1
        ir=$(cat "$work"/cg.* 2>/dev/null | awk '/^totals:/ { s += $2 } END { print s + 0 }')
        printf '%-10s %10s %14.0f\n' "$kind" "$done_q" "$(awk -v i="$ir" -v q="$done_q" 'BEGIN { print (q > 0 ? i / q : 0) }')"
    done
}
if [[ "${1:-}" == "--callgrind" ]]; then
    callgrind_mode
    exit 0
fi

# --- prerequisites ---------------------------------------------------------
log "build: cargo build --release -p skydns --locked"
cargo build --release -p skydns --locked

need_tools dnsperf dig:dnsutils curl python3

init_work

# --- start skydns ----------------------------------------------------------
# Port 0 = a free port (UDP and TCP on the same one); the daemon logs the
# addresses it got. `-nameserver 127.0.0.1:9` keeps any upstream on loopback.
start_skydns skydns -- -domain "$DOMAIN" -nameserver 127.0.0.1:9
PID=$SK_PID
PORT=$SK_DNS
API=$SK_API

sleep 1
RSS_IDLE=$(status_kib "$PID" VmRSS)

# --- queries ---------------------------------------------------------------
printf 'web.prod.%s A\n' "$DOMAIN" >"$WORK/a.txt"
printf 'web.prod.%s SRV\n' "$DOMAIN" >"$WORK/srv.txt"
printf 'nothere.prod.%s A\n' "$DOMAIN" >"$WORK/nx.txt"

: >"$RAW"
DNSPERF_ARGS=(-s 127.0.0.1 -p "$PORT" -l "$SECONDS_PER_RUN" -c "$CLIENTS" -T "$THREADS")

# Runs dnsperf on one query file (extra dnsperf flags after it) and prints
# "qps|avg_ms|lost|rcodes|response_bytes".
perf() {
    local file=$1
    shift
    timeout $((SECONDS_PER_RUN + 30)) dnsperf "${DNSPERF_ARGS[@]}" "$@" -d "$WORK/$file" >"$WORK/dnsperf.out" 2>&1 || {
        echo "dnsperf failed:" >&2
        cat "$WORK/dnsperf.out" >&2
        exit 1
    }
    printf '### dnsperf %s %s -d %s\n%s\n\n' "${DNSPERF_ARGS[*]}" "$*" "$file" "$(<"$WORK/dnsperf.out")" >>"$RAW"
    dnsperf_summary "$WORK/dnsperf.out"
    printf '%.0f|%s|%s|%s|%s\n' "$DP_QPS" "$DP_LAT_MS" "$DP_LOST" "$DP_CODES" "$DP_SIZE"
}

# Checks an answer with dig before measuring it, so the figures are for
# correct answers.
check_answers() {
    local a srv nx
    a=$(dig +short +time=2 +tries=1 @127.0.0.1 -p "$PORT" "web.prod.$DOMAIN" A | wc -l)
    srv=$(dig +short +time=2 +tries=1 @127.0.0.1 -p "$PORT" "web.prod.$DOMAIN" SRV | wc -l)
    nx=$(dig +time=2 +tries=1 @127.0.0.1 -p "$PORT" "nothere.prod.$DOMAIN" A | grep -o 'status: [A-Z]*' || true)
    log "check: A answers=$a SRV answers=$srv nothere: $nx"
    if [[ $a -ne 10 || $srv -ne 10 || $nx != "status: NXDOMAIN" ]]; then
        echo "unexpected answers (want 10 A, 10 SRV, NXDOMAIN)" >&2
        exit 1
    fi
}

# One sample of skydns's own metrics (name without labels).
metric() { curl -sS "$API/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }

declare -A RESULT HANDLER_US LOAD
run_phase() {
    local phase=$1 kind sum0 cnt0 sum1 cnt1
    check_answers
    LOAD[$phase]=$(cut -d' ' -f1 /proc/loadavg)
    sum0=$(metric skydns_dns_latency_seconds_sum)
    cnt0=$(metric skydns_dns_latency_seconds_count)
    # Without EDNS0 (dnsperf's default, and the command issue 2 names) the SRV
    # answer (10 SRV + 10 glue A, 612 bytes) does not fit in 512 bytes and is
    # truncated (TC); the srv-edns run (-e) measures the complete answer.
    local -A files=([a]=a.txt [srv]=srv.txt [srv-edns]=srv.txt [nx]=nx.txt)
    local -A extra=([srv-edns]=-e)
    for kind in a srv srv-edns nx; do
        log "dnsperf $phase services, ${kind}: dnsperf ${DNSPERF_ARGS[*]} ${extra[$kind]:-} -d ${files[$kind]}"
        # shellcheck disable=SC2086 # extra is one flag or nothing
        RESULT[$phase,$kind]=$(perf "${files[$kind]}" ${extra[$kind]:-})
        log "  -> ${RESULT[$phase,$kind]}"
    done
    sum1=$(metric skydns_dns_latency_seconds_sum)
    cnt1=$(metric skydns_dns_latency_seconds_count)
    # Mean time inside the DNS handler over this phase's queries, in µs.
    HANDLER_US[$phase]=$(awk -v s0="$sum0" -v c0="$cnt0" -v s1="$sum1" -v c1="$cnt1" \
        'BEGIN { if (c1 > c0) printf "%.1f", (s1 - s0) / (c1 - c0) * 1e6; else print "?" }')
}

# --- phase 1: 10 services under web.prod -----------------------------------
log "register 10 services as web.prod.$DOMAIN (curl)"
register_web "$API"
RSS_10=$(status_kib "$PID" VmRSS)
run_phase 10
HWM_10=$(status_kib "$PID" VmHWM)

# --- phase 2: many more services under other names -------------------------
log "register $MANY more services over many names (python3 http.client, keep-alive)"
register_many "$SK_HTTP" "$MANY" 8 600
RSS_MANY=$(status_kib "$PID" VmRSS)
run_phase many
HWM_MANY=$(status_kib "$PID" VmHWM)

# --- report ----------------------------------------------------------------
# 100010 -> 100,010 (no locale needed).
group() { sed -E ':a;s/^([0-9]+)([0-9]{3})/\1,\2/;ta' <<<"$1"; }
row() {
    local label=$1 phase=$2 kind=$3 qps lat lost codes size
    IFS='|' read -r qps lat lost codes size <<<"${RESULT[$phase,$kind]}"
    printf '| %s | %s | %s | %s | %s | %s |\n' "$label" \
        "$(group "$qps")" "$lat" "$size" "$lost" "$codes"
}
MANY_FMT=$(group "$MANY")
TOTAL_FMT=$(group "$((MANY + 10))")

REPORT="$WORK/report.md"
{
    echo "Run of \`scripts/bench-dns.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'):"
    echo "$(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), Linux $(uname -r),"
    echo "load average before the run: $LOAD_START; skydns $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- crates 2>/dev/null || echo ' + local changes')."
    echo
    echo "1-minute load average when each half started (other work on the machine shows here): ${LOAD[10]} with 10 services, ${LOAD[many]} with $TOTAL_FMT."
    echo
    echo "| services | query | QPS | avg latency (ms) | response bytes | lost | response codes |"
    echo "| ---: | --- | ---: | ---: | ---: | ---: | --- |"
    phase_rows() {
        local n=$1 phase=$2
        row "$n | A \`web.prod.$DOMAIN\` (10 answers)" "$phase" a
        row "$n | SRV \`web.prod.$DOMAIN\`, no EDNS0: truncated (TC) at 512 bytes" "$phase" srv
        row "$n | SRV \`web.prod.$DOMAIN\`, EDNS0 (\`-e\`): 10 SRV + 10 glue A" "$phase" srv-edns
        row "$n | A \`nothere.prod.$DOMAIN\` (NXDOMAIN)" "$phase" nx
    }
    phase_rows 10 10
    phase_rows "$TOTAL_FMT" many
    echo
    echo "| memory (skydns process) | MiB |"
    echo "| --- | ---: |"
    echo "| RSS idle, 1 s after start (VmRSS) | $(mib "$RSS_IDLE") |"
    echo "| RSS with 10 services (VmRSS) | $(mib "$RSS_10") |"
    echo "| peak after the 10-service runs (VmHWM) | $(mib "$HWM_10") |"
    echo "| RSS with $TOTAL_FMT services (VmRSS) | $(mib "$RSS_MANY") |"
    echo "| peak after the $TOTAL_FMT-service runs (VmHWM) | $(mib "$HWM_MANY") |"
    echo
    echo "Mean time inside skydns's DNS handler (\`skydns_dns_latency_seconds\` sum / count over each half's queries):"
    echo "${HANDLER_US[10]} µs with 10 services, ${HANDLER_US[many]} µs with $TOTAL_FMT."
    echo
    echo "Registering the $MANY_FMT extra services (8 keep-alive HTTP connections, memory store) took ${REG_SECS} s."
    echo
    echo "Exact commands:"
    echo
    echo '```sh'
    echo "cargo build --release -p skydns --locked"
    echo "target/release/skydns -dns 127.0.0.1:0 -http 127.0.0.1:0 -domain $DOMAIN -nameserver 127.0.0.1:9 -log-level warn,skydns::server=info"
    echo "# PORT = the DNS port skydns reports; one query file per run:"
    echo "#   a.txt:   web.prod.$DOMAIN A"
    echo "#   srv.txt: web.prod.$DOMAIN SRV"
    echo "#   nx.txt:  nothere.prod.$DOMAIN A"
    echo "dnsperf -s 127.0.0.1 -p PORT -l $SECONDS_PER_RUN -c $CLIENTS -T $THREADS -d a.txt      # and srv.txt, nx.txt"
    echo "dnsperf -s 127.0.0.1 -p PORT -l $SECONDS_PER_RUN -c $CLIENTS -T $THREADS -e -d srv.txt  # SRV with EDNS0"
    echo '```'
} >"$REPORT"

cat "$REPORT"
log "dnsperf's full output: ${RAW#"$ROOT"/}"

if [[ "${BENCH_NO_WRITE:-0}" == 1 ]]; then
    log "BENCH_NO_WRITE=1: $DOC left unchanged"
    exit 0
fi

replace_block "$DOC" bench-dns "$REPORT"
log "figures written to ${DOC#"$ROOT"/}"
