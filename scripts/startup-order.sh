#!/usr/bin/env bash
# Writes crates/skydns/startup-order.txt: the functions of the skydns binary
# that run while it starts, answers its first DNS and API requests and idles,
# one mangled name per line. crates/skydns/build.rs hands the file to the
# linker (LLD's --symbol-ordering-file), which packs those functions together
# at the start of the code, so the pages the kernel maps in at start are
# mostly code that runs (idle RSS; docs/performance.md, "Idle RSS").
#
#   scripts/startup-order.sh       # rebuild the list (after a compiler or dependency upgrade)
#
# The names carry the compiler's hashes: a name this build no longer has is
# skipped by the linker, so a stale list costs memory, never a failed build.
# Runs skydns under `valgrind --tool=callgrind` on free loopback ports only.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

OUT="$ROOT/crates/skydns/startup-order.txt"
PROFILE_DIR="$TARGET_DIR/startup-order"

need_tools valgrind dig:dnsutils curl nm:binutils
# The release profile keeps symbols, and the build must use that very profile:
# Cargo gives another profile other symbol hashes, whose names would not match.
log "build: release skydns without the current list, in $PROFILE_DIR"
SKYDNS_NO_SYMBOL_ORDER=1 CARGO_TARGET_DIR="$PROFILE_DIR" cargo build --release -p skydns --locked
PROFILED="$PROFILE_DIR/release/skydns"

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
# What a fresh server does first: a registration, DNS questions (cached and
# not), a heartbeat, the health and metrics endpoints; then it idles.
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

# The functions callgrind saw that the binary defines (not libc's).
nm --defined-only "$PROFILED" | awk '$2 ~ /^[tTwW]$/ { print $3 }' | sort -u >"$WORK/defined"
grep -h '^fn=' "$WORK"/cg.* | sed 's/^fn=//' | sort -u >"$WORK/ran"
comm -12 "$WORK/ran" "$WORK/defined" >"$OUT"
log "wrote $OUT: $(wc -l <"$OUT") functions of $(wc -l <"$WORK/defined")"
