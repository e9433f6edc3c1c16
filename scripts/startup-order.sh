#!/usr/bin/env bash
# Writes the start-up function list the skydns binary is linked with:
# the functions that run while it starts and idles, then those its first DNS
# and API requests add, one mangled name per line. crates/skydns/build.rs
# hands the list to the linker (LLD's --symbol-ordering-file), which lays the
# functions out in that order at the start of the code: the pages the kernel
# maps in at start are then code that runs, and request code sits after the
# start-up code rather than among it (idle RSS; docs/performance.md).
#
#   scripts/startup-order.sh             # crates/skydns/startup-order.txt, for
#                                        #   `cargo build --release -p skydns`
#   scripts/startup-order.sh --static    # crates/skydns/startup-order-static.txt,
#                                        #   for the images' static build
#   scripts/startup-order.sh --check     # how many listed names the build lacks
#   scripts/startup-order.sh --if-stale  # rewrite the list only when the build
#                                        #   lacks more than 1 % of its names
#   (--check and --if-stale combine with --static)
#
# The names are the compiler's (v0 scheme, .cargo/config.toml; fat LTO,
# Cargo.toml): stable across builds of the same code, dependencies and
# features, but a changed function or closure in start-up code gets another
# name, which the linker then skips, and the code it stood for lands among
# the rest: each name lost costs up to 64 KiB of idle RSS. So the benchmark
# and image scripts rewrite the list when it is stale (--if-stale). After
# writing a list the script builds again, so the binary is linked with it.
# Runs skydns under `valgrind --tool=callgrind` on free loopback ports only.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

static=0 mode=write
for arg in "$@"; do
    case "$arg" in
        --static) static=1 ;;
        --check) mode=check ;;
        --if-stale) mode=if-stale ;;
        *)
            echo "usage: $0 [--static] [--check | --if-stale]" >&2
            exit 2
            ;;
    esac
done

if ((static)); then
    OUT="$ROOT/crates/skydns/startup-order-static.txt"
    PROFILED="$STATIC_BIN_DIR/skydns"
    build() { build_static; }
else
    OUT="$ROOT/crates/skydns/startup-order.txt"
    PROFILED="$BIN"
    build() { cargo build --release -p skydns --locked; }
fi

need_tools nm:binutils
log "build: $PROFILED"
build

# defined FILE: the functions the binary defines, sorted.
defined() { nm --defined-only "$PROFILED" | awk '$2 ~ /^[tTwW]$/ { print $3 }' | sort -u >"$1"; }

if [[ $mode != write ]]; then
    listed=$(mktemp) have=$(mktemp)
    # A missing list counts as stale.
    [[ ! -f $OUT ]] || sort -u "$OUT" >"$listed"
    defined "$have"
    total=$(wc -l <"$listed")
    missing=$(comm -23 "$listed" "$have" | wc -l)
    rm -f "$listed" "$have"
    log "$OUT: $missing of $total names missing from $PROFILED"
    if [[ $mode == check ]] || ((total > 0 && missing * 100 <= total)); then
        exit 0
    fi
    log "stale: profiling again"
fi

need_tools valgrind callgrind_control:valgrind dig:dnsutils curl pgrep:procps
init_work
dns=$(free_port)
http=$(free_port)
NO_COLOR=1 timeout 300 valgrind --tool=callgrind --demangle=no --compress-strings=no \
    --callgrind-out-file="$WORK/cg.%p" \
    "$PROFILED" -dns "127.0.0.1:$dns" -http "127.0.0.1:$http" -nameserver 127.0.0.1:9 \
    -log-level warn,skydns::server=info >"$WORK/skydns.log" 2>&1 &
PIDS+=("$!")
[[ -n "$(wait_listening "$WORK/skydns.log" "${PIDS[-1]}" 600)" ]] || {
    cat "$WORK/skydns.log" >&2
    exit 1
}
# Phase 1, start-up: it listens and idles for 3 s (every once-a-second task
# has run); dump what ran so far (valgrind runs as the child of timeout).
sleep 3
profiled_pid=$(pgrep -P "${PIDS[-1]}")
callgrind_control --dump=startup "$profiled_pid" >"$WORK/dump.log"
for _ in $(seq 50); do
    ! grep -qs '^desc: Trigger: .*startup' "$WORK"/cg.* || break
    sleep 0.1
done
# Phase 2, what a fresh server does first: a registration, DNS questions
# (cached and not), a heartbeat, the health and metrics endpoints; then it
# idles again.
register "http://127.0.0.1:$http" web-1 web prod 10.0.0.1 8080 60
for _ in 1 2; do
    dig +short +tries=1 +time=5 -p "$dns" @127.0.0.1 web.prod.skydns.local A >/dev/null
    dig +short +tries=1 +time=5 -p "$dns" @127.0.0.1 web.prod.skydns.local SRV >/dev/null
    dig +short +tries=1 +time=5 -p "$dns" @127.0.0.1 skydns.local SOA >/dev/null
done
curl -sf -X PATCH "http://127.0.0.1:$http/skydns/services/web-1" -d '{"TTL":60}' >/dev/null
curl -sf "http://127.0.0.1:$http/health" >/dev/null
curl -sf "http://127.0.0.1:$http/metrics" >/dev/null
sleep 2
stop_pid "${PIDS[-1]}"

# The functions callgrind saw that the binary defines (its own, and in the
# static build libc's too): the start-up dump first, then what the requests
# and shutdown added.
defined "$WORK/defined"
startup_dump=$(grep -ls '^desc: Trigger: .*startup' "$WORK"/cg.*) || {
    echo "callgrind wrote no start-up dump: $(cat "$WORK/dump.log")" >&2
    exit 1
}
ran() { grep -h '^fn=' "$@" | sed 's/^fn=//' | sort -u; }
ran "$startup_dump" | comm -12 - "$WORK/defined" >"$WORK/startup"
ran "$WORK"/cg.* | comm -12 - "$WORK/defined" | comm -23 - "$WORK/startup" >"$WORK/requests"
# Valgrind reports the C run-time's entry as "(below main)": its start-up
# functions are named here, those the binary defines first.
printf '%s\n' _start __libc_start_main __libc_start_call_main _dl_relocate_static_pie \
    deregister_tm_clones register_tm_clones __do_global_dtors_aux frame_dummy |
    sort | comm -12 - "$WORK/defined" | comm -23 - "$WORK/startup" >"$WORK/crt"
cat "$WORK/crt" "$WORK/startup" "$WORK/requests" >"$OUT"
log "wrote $OUT: $(wc -l <"$WORK/startup") start-up functions, then $(wc -l <"$WORK/requests") more for the first requests, of $(wc -l <"$WORK/defined")"
log "build again, linked with it"
build
