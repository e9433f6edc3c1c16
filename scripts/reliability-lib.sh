# shellcheck shell=bash
# Shared by scripts/overload.sh and scripts/soak.sh (sourced, not run):
# process bookkeeping with a cleanup trap, starting the release skydns on free
# loopback ports, one-shot DNS queries, RSS/fd sampling, and replacing a
# marked block of docs/reliability.md. Loopback only.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/skydns"
DOC="$ROOT/docs/reliability.md"

log() { printf '==> %s\n' "$*" >&2; }

apt_install() {
    log "installing with apt-get: $*"
    local sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get update -q
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "$@"
}

# Every process started here is in PIDS (or CHILD while waited on) and is
# killed on exit; WORK is removed.
WORK=$(mktemp -d)
PIDS=()
CHILD=""
cleanup() {
    local pid
    [[ -z "$CHILD" ]] || kill "$CHILD" 2>/dev/null || true
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    [[ -z "$CHILD" ]] || wait "$CHILD" 2>/dev/null || true
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Runs a command in the background and waits for it, so INT/TERM (and the
# timeout(1) the scripts re-exec under) interrupt the wait at once.
run() {
    "$@" &
    CHILD=$!
    local rc=0
    wait "$CHILD" || rc=$?
    CHILD=""
    return "$rc"
}

# Makes sure the tools are there (apt-get once when missing).
need_tools() {
    local need=()
    command -v dnsperf >/dev/null 2>&1 || need+=(dnsperf)
    command -v curl >/dev/null 2>&1 || need+=(curl)
    command -v python3 >/dev/null 2>&1 || need+=(python3)
    ((${#need[@]} == 0)) || apt_install "${need[@]}"
}

# A python3 that has matplotlib (Debian's python3-matplotlib, installed once).
plot_python() {
    local cand
    for cand in python3 /usr/bin/python3; do
        if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import matplotlib' 2>/dev/null; then
            echo "$cand"
            return
        fi
    done
    apt_install python3-matplotlib >&2
    echo /usr/bin/python3
}

SKYDNS_UNSET=(-u SKYDNS -u SKYDNS_DNS -u SKYDNS_DOMAIN -u SKYDNS_DATA -u SKYDNS_SECRET -u SKYDNS_NAMESERVER
    -u SKYDNS_ALLOW_RECURSION -u SKYDNS_LOG -u TOKIO_WORKER_THREADS)

# start_skydns NAME ARGS...: starts the release skydns on free 127.0.0.1
# ports and sets SK_PID, SK_DNS (port), SK_API (http://addr).
start_skydns() {
    local name=$1
    shift
    env "${SKYDNS_UNSET[@]}" NO_COLOR=1 "$BIN" -dns 127.0.0.1:0 -http 127.0.0.1:0 "$@" \
        -log-level warn,skydns::server=info >"$WORK/$name.log" 2>&1 &
    SK_PID=$!
    PIDS+=("$SK_PID")
    local line="" dns
    for _ in $(seq 1 300); do
        line=$(grep -o 'listening dns=[^ ]* http=[^ ]*' "$WORK/$name.log" | head -n1 || true)
        [[ -n "$line" ]] && break
        kill -0 "$SK_PID" 2>/dev/null || break
        sleep 0.1
    done
    if [[ -z "$line" ]]; then
        echo "skydns ($name) did not start:" >&2
        cat "$WORK/$name.log" >&2
        exit 1
    fi
    dns=${line#listening dns=}
    dns=${dns%% *}
    SK_DNS=${dns##*:}
    SK_API="http://${line##* http=}"
    log "$name: pid $SK_PID, dns 127.0.0.1:$SK_DNS, api $SK_API"
}

# register API UUID NAME ENV HOST PORT TTL: one PUT, fails the script unless 201.
register() {
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT "$1/skydns/services/$2" \
        -d "{\"Name\":\"$3\",\"Version\":\"1.0.0\",\"Environment\":\"$4\",\"Region\":\"east\",\"Host\":\"$5\",\"Port\":$6,\"TTL\":$7}")
    [[ $code == 201 ]] || {
        echo "register $2 on $1: HTTP $code" >&2
        exit 1
    }
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }

# dnsq PORT NAME: one UDP A query to 127.0.0.1:PORT with a 2 s timeout;
# prints "rcode answers milliseconds", or "timeout".
dnsq() {
    python3 - "$1" "$2" <<'PY'
import random, socket, struct, sys, time
port, name = int(sys.argv[1]), sys.argv[2]
qid = random.randint(0, 65535)
q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(l)]) + l.encode() for l in name.rstrip(".").split(".")) + b"\0"
q += struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
t = time.monotonic()
s.sendto(q, ("127.0.0.1", port))
try:
    while True:
        d, _ = s.recvfrom(65535)
        if len(d) >= 12 and struct.unpack(">H", d[:2])[0] == qid:
            break
except socket.timeout:
    print("timeout")
    sys.exit(0)
ms = (time.monotonic() - t) * 1000
print(d[3] & 15, struct.unpack(">H", d[6:8])[0], f"{ms:.1f}")
PY
}

# replace_block NAME FILE: puts FILE's content between `<!-- NAME:begin -->`
# and `<!-- NAME:end -->` in docs/reliability.md (appends the block when the
# markers are missing).
replace_block() {
    python3 - "$DOC" "$1" "$2" <<'PY'
import pathlib, sys
doc, name, body = pathlib.Path(sys.argv[1]), sys.argv[2], pathlib.Path(sys.argv[3]).read_text()
begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
text = doc.read_text() if doc.exists() else "# Reliability\n"
block = f"{begin}\n{body.rstrip()}\n{end}"
if begin in text and end in text:
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    text = head + block + tail
else:
    text = text.rstrip() + "\n\n" + block + "\n"
doc.write_text(text)
PY
}
