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
#   scripts/bench-api.sh --callgrind              # user-space instructions per request
#   BENCH_SKYDNS=/path/to/old/skydns scripts/bench-api.sh --callgrind
#
# --callgrind runs skydns under `valgrind --tool=callgrind` (with -data) and
# counts the instructions of each phase (BENCH_SERVICES, default 2,000
# registrations; BENCH_HEARTBEATS, default 20,000 heartbeats; the deletes),
# background work included (the store's writer thread, the heartbeat flush),
# divided by the requests: a figure that does not depend on what else the
# machine is doing. Prints only.
#
# Loopback only; skydns stores in a fresh temp directory (-data) each round.
# Everything started here is killed on exit; every run is bounded in time.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

SERVICES="${BENCH_SERVICES:-20000}"
BEATS="${BENCH_HEARTBEATS:-200000}"
ROUNDS="${BENCH_ROUNDS:-3}"
CLIENTS="${BENCH_CLIENTS:-64}"
LIMIT="${BENCH_SECONDS:-60}"
BIN="${BENCH_SKYDNS:-$BIN}"
DOC="$ROOT/docs/performance.md"

log "build: cargo build --release -p skydns -p skydns-tests --bin skydns --bin api-load --locked"
cargo build --release -p skydns -p skydns-tests --bin skydns --bin api-load --locked

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
init_work

# --callgrind: instructions per request, one phase at a time.
callgrind_mode() {
    local services="${BENCH_SERVICES:-2000}" beats="${BENCH_HEARTBEATS:-20000}"
    need_tools valgrind callgrind_control:valgrind
    NO_COLOR=1 timeout 1800 valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.%p" \
        "$BIN" -dns 127.0.0.1:0 -http 127.0.0.1:0 -nameserver 127.0.0.1:9 -data "$WORK/data" \
        -log-level warn,skydns::server=info >"$WORK/skydns.log" 2>&1 &
    PIDS+=("$!")
    local line pid
    line=$(wait_listening "$WORK/skydns.log" "${PIDS[-1]}" 600)
    [[ -n "$line" ]] || { cat "$WORK/skydns.log" >&2; exit 1; }
    pid=$(pgrep -P "${PIDS[-1]}" | head -n1) # valgrind itself, timeout's child
    SK_API="http://${line##* http=}"
    LIMIT=600
    printf '%-10s %10s %16s\n' request 'done' instr/request
    local mode count out n ir
    for mode in register:"$services" heartbeat:"$beats" delete:"$services"; do
        count=${mode#*:} mode=${mode%%:*}
        sleep 1.5 # let the previous phase's store and flush work finish
        callgrind_control -z "$pid" >/dev/null 2>&1
        out=$(load --mode "$mode" --count "$count" --pool "$services")
        sleep 1.5 # and count this phase's
        rm -f "$WORK"/cg.*
        callgrind_control -d "$pid" >/dev/null 2>&1
        sleep 1
        n=$(field ok "$out")
        [[ $(field errors "$out") == 0 ]] || { echo "errors in: $out" >&2; exit 1; }
        ir=$(cat "$WORK"/cg.* 2>/dev/null | awk '/^totals:/ { s += $2 } END { print s + 0 }')
        printf '%-10s %10s %16.0f\n' "$mode" "$n" "$(awk -v i="$ir" -v n="$n" 'BEGIN { print (n > 0 ? i / n : 0) }')"
    done
}

# Runs the load generator; prints its one result line.
load() {
    timeout $((LIMIT + 30)) "$TARGET_DIR/release/api-load" --url "$SK_API" --clients "$CLIENTS" --seconds "$LIMIT" "$@"
}

field() { grep -o "$1=[^ ]*" <<<"$2" | cut -d= -f2; }
if [[ "${1:-}" == "--callgrind" ]]; then
    callgrind_mode
    exit 0
fi
HZ=$(getconf CLK_TCK)
# Runs one phase; prints the load generator's line plus skydns's CPU time per
# request in microseconds (cpu_us=...), a figure other load on the machine
# barely moves, unlike req/s.
phase() {
    local before after line ok
    before=$(cpu_ticks "$SK_PID")
    line=$(load "$@")
    after=$(cpu_ticks "$SK_PID")
    ok=$(field ok "$line")
    printf '%s cpu_us=%s\n' "$line" "$(awk -v t=$((after - before)) -v hz="$HZ" -v n="$ok" 'BEGIN { printf "%.1f", n ? t * 1e6 / hz / n : 0 }')"
}

# Two settings, alternated (order reversed every round): as shipped (the
# runtime has one thread per core) and `-workers 1` (one runtime thread,
# which leaves the other core to the load generator on this machine).
SETTINGS=(shipped workers-1)
declare -A ARGS_OF=([shipped]="" [workers-1]="-workers 1")
declare -A LABEL_OF=([shipped]="as shipped (one runtime thread per core)" [workers-1]="\`-workers 1\`")
declare -A ROWS
for round in $(seq 1 "$ROUNDS"); do
    round_order "$round" "${SETTINGS[@]}"
    for setting in "${ORDER[@]}"; do
        # a fresh -data directory every run
        mkdir -p "$WORK/data-$round-$setting"
        # shellcheck disable=SC2086 # ARGS_OF holds separate words
        start_skydns "skydns-$round-$setting" -- -nameserver 127.0.0.1:9 -data "$WORK/data-$round-$setting" ${ARGS_OF[$setting]}
        r=$(phase --mode register --count "$SERVICES")
        log "$setting: $r"
        h=$(phase --mode heartbeat --count "$BEATS" --pool "$SERVICES")
        log "$setting: $h"
        d=$(phase --mode delete --count "$SERVICES")
        log "$setting: $d"
        for line in "$r" "$h" "$d"; do
            if [[ $(field errors "$line") != 0 ]]; then
                echo "errors in: $line" >&2
                exit 1
            fi
        done
        ROWS[$setting:reg]+="$(field rps "$r") $(field p50_ms "$r") $(field p99_ms "$r") $(field cpu_us "$r")"$'\n'
        ROWS[$setting:hb]+="$(field rps "$h") $(field p50_ms "$h") $(field p99_ms "$h") $(field cpu_us "$h")"$'\n'
        ROWS[$setting:del]+="$(field rps "$d") $(field p50_ms "$d") $(field p99_ms "$d") $(field cpu_us "$d")"$'\n'
        stop_pid "$SK_PID"
    done
done

# Median of column $1 over the rounds given on stdin.
median() { awk -v c="$1" 'NF { print $c }' | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
row() {
    local what=$1 setting=$2 rows=$3
    printf '| %s | %s | %s | %s | %s | %s |\n' "$what" "${LABEL_OF[$setting]}" \
        "$(median 1 <<<"$rows")" "$(median 2 <<<"$rows")" "$(median 3 <<<"$rows")" "$(median 4 <<<"$rows")"
}

TABLE=$(
    echo "| request ($CLIENTS clients) | skydns | req/s | p50 ms | p99 ms | skydns CPU µs/req |"
    echo "|---|---|---:|---:|---:|---:|"
    for kind in reg hb del; do
        case $kind in
        reg) what="PUT (register, durable)" ;;
        hb) what="PATCH (heartbeat)" ;;
        del) what="DELETE (durable)" ;;
        esac
        for setting in "${SETTINGS[@]}"; do
            row "$what" "$setting" "${ROWS[$setting:$kind]}"
        done
    done
)
echo "$TABLE"

[[ -n "${BENCH_NO_WRITE:-}" ]] && exit 0

CPU=$(awk -F: '/model name/ { sub(/^ +/, "", $2); print $2; exit }' /proc/cpuinfo)
{
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
} >"$WORK/section.md"
replace_block "$DOC" bench-api "$WORK/section.md"
log "wrote $DOC"
