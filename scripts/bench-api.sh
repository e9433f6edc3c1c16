#!/usr/bin/env bash
# REST API benchmark of the release `skydns` with the embedded store (issue 6):
# 64 concurrent clients over loopback HTTP register services (PUT, each
# acknowledged only once durable), then send heartbeats (PATCH), then delete
# them (DELETE). Prints a table and writes it into docs/performance.md
# between the `bench-api` markers (the rest of the file is left alone).
#
#   scripts/bench-api.sh                          # 3 rounds, 20,000 services
#   BENCH_SERVICES=5000 BENCH_ROUNDS=1 scripts/bench-api.sh
#   BENCH_NO_WRITE=1 scripts/bench-api.sh         # print only
#   BENCH_SKYDNS=/path/to/old/skydns BENCH_NO_WRITE=1 scripts/bench-api.sh
#                                                 # same load on another build (before/after)
#
# Loopback only; skydns stores in a fresh temp directory (-data) each round.
# Everything started here is killed on exit; every run is bounded in time.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

SERVICES="${BENCH_SERVICES:-20000}"
BEATS="${BENCH_HEARTBEATS:-200000}"
ROUNDS="${BENCH_ROUNDS:-3}"
CLIENTS="${BENCH_CLIENTS:-64}"
LIMIT="${BENCH_SECONDS:-60}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/release"
SKYDNS_BIN="${BENCH_SKYDNS:-$TARGET/skydns}"
DOC="$ROOT/docs/performance.md"

log() { printf '==> %s\n' "$*" >&2; }

log "build: cargo build --release -p skydns -p skydns-tests --bin skydns --bin api-load --locked"
cargo build --release -p skydns -p skydns-tests --bin skydns --bin api-load --locked

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
WORK=$(mktemp -d)
PID=""
stop_skydns() {
    if [[ -n "$PID" ]] && kill -0 "$PID" 2>/dev/null; then
        kill "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    PID=""
}
cleanup() {
    stop_skydns
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts skydns with -data in a fresh directory; sets PID and API.
start_skydns() {
    local data="$WORK/data-$1" logf="$WORK/skydns-$1.log"
    mkdir -p "$data"
    env -u SKYDNS -u SKYDNS_DNS -u SKYDNS_DOMAIN -u SKYDNS_DATA -u SKYDNS_SECRET -u SKYDNS_NAMESERVER \
        NO_COLOR=1 "$SKYDNS_BIN" -dns 127.0.0.1:0 -http 127.0.0.1:0 -nameserver 127.0.0.1:9 \
        -data "$data" -log-level warn,skydns::server=info >"$logf" 2>&1 &
    PID=$!
    API=""
    for _ in $(seq 1 100); do
        local line
        line=$(grep -o 'listening dns=[^ ]* http=[^ ]*' "$logf" | head -n1 || true)
        if [[ -n "$line" ]]; then
            API="http://${line##* http=}"
            break
        fi
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.1
    done
    if [[ -z "$API" ]]; then
        echo "skydns did not start:" >&2
        cat "$logf" >&2
        exit 1
    fi
}

# Runs the load generator; prints its one result line.
load() {
    timeout $((LIMIT + 30)) "$TARGET/api-load" --url "$API" --clients "$CLIENTS" --seconds "$LIMIT" "$@"
}

field() { grep -o "$1=[^ ]*" <<<"$2" | cut -d= -f2; }
# CPU time skydns has used, in clock ticks (utime + stime).
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$PID/stat"; }
HZ=$(getconf CLK_TCK)
# Runs one phase; prints the load generator's line plus skydns's CPU time per
# request in microseconds (cpu_us=...), a figure other load on the machine
# barely moves, unlike req/s.
phase() {
    local before after line ok
    before=$(cpu_ticks)
    line=$(load "$@")
    after=$(cpu_ticks)
    ok=$(field ok "$line")
    printf '%s cpu_us=%s\n' "$line" "$(awk -v t=$((after - before)) -v hz="$HZ" -v n="$ok" 'BEGIN { printf "%.1f", n ? t * 1e6 / hz / n : 0 }')"
}

declare -a REG HB DEL
for round in $(seq 1 "$ROUNDS"); do
    start_skydns "$round"
    log "round $round: skydns pid $PID, api $API"
    r=$(phase --mode register --count "$SERVICES")
    log "$r"
    h=$(phase --mode heartbeat --count "$BEATS" --pool "$SERVICES")
    log "$h"
    d=$(phase --mode delete --count "$SERVICES")
    log "$d"
    for line in "$r" "$h" "$d"; do
        if [[ $(field errors "$line") != 0 ]]; then
            echo "errors in: $line" >&2
            exit 1
        fi
    done
    REG+=("$(field rps "$r") $(field p50_ms "$r") $(field p99_ms "$r") $(field cpu_us "$r")")
    HB+=("$(field rps "$h") $(field p50_ms "$h") $(field p99_ms "$h") $(field cpu_us "$h")")
    DEL+=("$(field rps "$d") $(field p50_ms "$d") $(field p99_ms "$d") $(field cpu_us "$d")")
    stop_skydns
done

# Median of column $1 over the rounds given on stdin.
median() { awk -v c="$1" '{ print $c }' | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
row() {
    local what=$1
    shift
    printf '| %s | %s | %s | %s | %s |\n' "$what" \
        "$(printf '%s\n' "$@" | median 1)" "$(printf '%s\n' "$@" | median 2)" "$(printf '%s\n' "$@" | median 3)" \
        "$(printf '%s\n' "$@" | median 4)"
}

TABLE=$(
    echo "| request ($CLIENTS clients) | req/s | p50 ms | p99 ms | skydns CPU µs/req |"
    echo "|---|---:|---:|---:|---:|"
    row "PUT (register, durable)" "${REG[@]}"
    row "PATCH (heartbeat)" "${HB[@]}"
    row "DELETE (durable)" "${DEL[@]}"
)
echo "$TABLE"

[[ -n "${BENCH_NO_WRITE:-}" ]] && exit 0

CPU=$(awk -F: '/model name/ { sub(/^ +/, "", $2); print $2; exit }' /proc/cpuinfo)
SECTION=$(
    echo "<!-- bench-api:begin -->"
    echo "Measured $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores ($CPU), $(uname -sr), load generator on the same machine;"
    echo "load average at the start: $LOAD_START (1, 5, 15 min) — other work on the machine shares its cores;"
    echo "median of $ROUNDS rounds, each on a fresh \`-data\` directory ($(df -T "$WORK" | awk 'NR == 2 { print $2 }') under $(dirname "$WORK")):"
    echo "$SERVICES registrations, up to $BEATS heartbeats over them, $SERVICES deletes."
    echo
    echo '```'
    echo "BENCH_SERVICES=$SERVICES BENCH_HEARTBEATS=$BEATS BENCH_ROUNDS=$ROUNDS scripts/bench-api.sh"
    echo '```'
    echo
    echo "$TABLE"
    echo "<!-- bench-api:end -->"
)
if [[ -f "$DOC" ]] && grep -q '<!-- bench-api:begin -->' "$DOC"; then
    python3 - "$DOC" "$SECTION" <<'PY'
import re, sys
path, section = sys.argv[1], sys.argv[2]
text = open(path).read()
text = re.sub(r"<!-- bench-api:begin -->.*?<!-- bench-api:end -->", lambda _: section, text, flags=re.S)
open(path, "w").write(text)
PY
else
    printf "\n%s\n" "$SECTION" >>"$DOC"
fi
log "wrote $DOC"
