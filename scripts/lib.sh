# shellcheck shell=bash
# Shared by the benchmark and reliability scripts (bench-auth.sh,
# bench-forward.sh, bench-dns.sh, bench-propagation.sh, bench-api.sh,
# overload.sh, soak.sh); sourced, not run. Sourcing only sets the variables
# below and defines the functions; nothing starts (no temp directory, no
# trap) before the script calls init_work. Loopback only.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Cargo's target directory (CARGO_TARGET_DIR honoured) and the release skydns.
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET_DIR/release/skydns"
# `env` arguments that keep skydns settings of the caller's environment away
# from the daemons started here: only their command lines count.
SKYDNS_UNSET=(-u SKYDNS -u SKYDNS_DNS -u SKYDNS_DOMAIN -u SKYDNS_DATA -u SKYDNS_SECRET -u SKYDNS_NAMESERVER
    -u SKYDNS_ALLOW_RECURSION -u SKYDNS_LOG -u TOKIO_WORKER_THREADS -u SKYDNS_DNS_WORKERS -u SKYDNS_WORKERS)
# The static build the images ship (scripts/build-images.sh), also measured
# by bench-auth.sh: one command, so both measure the same binary.
STATIC_TARGET=x86_64-unknown-linux-gnu
STATIC_BIN_DIR="$TARGET_DIR/$STATIC_TARGET/release"
STATIC_RUSTFLAGS="-C target-feature=+crt-static"
STATIC_BUILD=(cargo build --release --locked --target "$STATIC_TARGET" -p skydns -p skydock)
build_static() { RUSTFLAGS="$STATIC_RUSTFLAGS" "${STATIC_BUILD[@]}"; }
# Set by the script when wanted (see init_work and start_skydns), never taken
# from the environment.
CLEANUP_HOOK=""
COMMANDS=""

# --- the run ---------------------------------------------------------------

# log MESSAGE...: a progress line on stderr.
log() { printf '==> %s\n' "$*" >&2; }

# rerun_under_timeout VAR SECONDS GRACE ARGS...: bounds the whole run. Unless
# VAR is set, sets (exports) it and re-executes the script with ARGS under
# `timeout --foreground -k GRACE SECONDS`; the TERM that timeout(1) sends runs
# the cleanup trap. Call it before init_work and before any cd ($0 is re-run).
rerun_under_timeout() {
    local var=$1 seconds=$2 grace=$3
    shift 3
    if [[ -z "${!var:-}" ]]; then
        export "$var=1"
        exec timeout --foreground -k "$grace" "$seconds" "$0" "$@"
    fi
}

# init_work: makes WORK (a temp directory), empties PIDS (processes to stop
# on exit) and CHILD (the command `run` waits on), and sets the traps: cleanup
# on exit, exit 130 on INT and TERM. A script with more to undo sets
# CLEANUP_HOOK to a command, which cleanup runs after the processes are gone
# and before WORK is removed.
init_work() {
    WORK=$(mktemp -d)
    PIDS=()
    CHILD=""
    trap cleanup EXIT
    trap 'exit 130' INT TERM
}

# cleanup: the EXIT trap of init_work. Kills CHILD and every process in PIDS,
# waits for them, runs the hook, removes WORK.
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
    [[ -z "$CLEANUP_HOOK" ]] || "$CLEANUP_HOOK"
    rm -rf "$WORK"
}

# run COMMAND...: runs a long command in the background and waits for it,
# returning its status: bash runs a trap only after a foreground command ends
# but interrupts `wait` at once, so INT/TERM (and the timeout(1) of
# rerun_under_timeout) clean up without waiting for, say, dnsperf.
run() {
    "$@" &
    CHILD=$!
    local rc=0
    wait "$CHILD" || rc=$?
    CHILD=""
    return "$rc"
}

# stop_pid PID: stops a process started here (kill, wait) and takes it off
# PIDS, so that cleanup does not signal the number again.
stop_pid() {
    local pid=$1 i
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for i in "${!PIDS[@]}"; do
        [[ ${PIDS[$i]} != "$pid" ]] || unset 'PIDS[i]'
    done
}

# --- tools -----------------------------------------------------------------

# apt_install PACKAGE...: apt-get update, then install (sudo unless root).
apt_install() {
    log "installing with apt-get: $*"
    local sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get update -q
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "$@"
}

# need_tools COMMAND[:PACKAGE]...: installs, with one apt-get run, the package
# of every command found neither on PATH nor in /usr/sbin (PACKAGE defaults to
# the command's name: `need_tools dnsperf dig:dnsutils knotd:knot`).
need_tools() {
    local spec cmd need=()
    for spec in "$@"; do
        cmd=${spec%%:*}
        command -v "$cmd" >/dev/null 2>&1 || [[ -x /usr/sbin/$cmd ]] || need+=("${spec#*:}")
    done
    ((${#need[@]} == 0)) || apt_install "${need[@]}"
}

# plot_python: prints a python3 that has matplotlib (Debian's
# python3-matplotlib installed once when none has, pip as the last resort);
# everything else goes to stderr.
plot_python() {
    local cand
    for cand in python3 /usr/bin/python3; do
        if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import matplotlib' 2>/dev/null; then
            echo "$cand"
            return
        fi
    done
    apt_install python3-matplotlib >&2 || true
    if /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
        echo /usr/bin/python3
    else
        python3 -m pip install --quiet matplotlib >&2
        echo python3
    fi
}

# free_port: a free 127.0.0.1 port, free for UDP and TCP.
free_port() {
    python3 - <<'PY'
import socket
for _ in range(200):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    port = u.getsockname()[1]
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        t.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        t.close()
        u.close()
    print(port)
    break
else:
    raise SystemExit("no free port")
PY
}

# --- skydns ----------------------------------------------------------------

# wait_listening LOG PID TRIES: prints skydns's "listening dns=... http=..."
# line from LOG once it appears (checking every 0.1 s, at most TRIES times,
# stopping early if PID is gone); prints nothing if it never does.
wait_listening() {
    local line="" _
    for _ in $(seq 1 "$3"); do
        line=$(grep -o 'listening dns=[^ ]* http=[^ ]*' "$1" | head -n1 || true)
        [[ -n "$line" ]] && break
        kill -0 "$2" 2>/dev/null || break
        sleep 0.1
    done
    printf '%s' "$line"
}

# start_skydns NAME [VAR=value ...] -- ARGS...: starts $BIN with
# `-dns 127.0.0.1:0 -http 127.0.0.1:0 ARGS -log-level warn,skydns::server=info`
# (free ports; the environment less SKYDNS_UNSET, plus NO_COLOR=1 and the
# VAR=value given), its output in $WORK/NAME.log; adds it to PIDS and sets
# SK_PID, SK_DNS (the DNS port), SK_HTTP (the API's addr:port) and SK_API
# (http://addr:port). When COMMANDS names a file, the command line goes there
# too, for a report. Exits the script when skydns does not start within 30 s.
start_skydns() {
    local name=$1 envs=()
    shift
    while [[ $1 != -- ]]; do
        envs+=("$1")
        shift
    done
    shift
    local bin=${SK_BIN:-$BIN}
    env "${SKYDNS_UNSET[@]}" NO_COLOR=1 "${envs[@]}" "$bin" -dns 127.0.0.1:0 -http 127.0.0.1:0 "$@" \
        -log-level warn,skydns::server=info >"$WORK/$name.log" 2>&1 &
    SK_PID=$!
    PIDS+=("$SK_PID")
    local line dns
    line=$(wait_listening "$WORK/$name.log" "$SK_PID" 300)
    if [[ -z "$line" ]]; then
        echo "skydns ($name) did not start:" >&2
        cat "$WORK/$name.log" >&2
        exit 1
    fi
    dns=${line#listening dns=}
    dns=${dns%% *}
    SK_DNS=${dns##*:}
    SK_HTTP=${line##* http=}
    SK_API="http://$SK_HTTP"
    [[ -z "${COMMANDS:-}" ]] ||
        printf '%s%s -dns 127.0.0.1:0 -http 127.0.0.1:0 %s -log-level warn,skydns::server=info   # %s\n' \
            "${envs[*]:+${envs[*]} }" "${bin#"$ROOT"/}" "$*" "$name" >>"$COMMANDS"
    log "$name: pid $SK_PID, dns 127.0.0.1:$SK_DNS, api $SK_API"
}

# register API UUID NAME ENV HOST PORT TTL: one PUT of a service (region
# east, version 1.0.0); exits the script unless the answer is 201.
register() {
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT "$1/skydns/services/$2" -H 'Content-Type: application/json' \
        -d "{\"Name\":\"$3\",\"Version\":\"1.0.0\",\"Environment\":\"$4\",\"Region\":\"east\",\"Host\":\"$5\",\"Port\":$6,\"TTL\":$7}")
    [[ $code == 201 ]] || {
        echo "register $2 on $1: HTTP $code" >&2
        exit 1
    }
}

# register_web API [NET]: the 10 services the DNS benchmarks ask for, web-1 to
# web-10 as web.prod, hosts NET.1 to NET.10 (default 10.0.0), port 8080.
register_web() {
    local i
    for i in $(seq 1 10); do
        register "$1" "web-$i" web prod "${2:-10.0.0}.$i" 8080 86400
    done
}

# register_many HTTP_ADDR COUNT CONNECTIONS SECONDS: registers COUNT services
# bench-0 ... (app0 to app9999 in four environments, eight regions, three
# versions) over CONNECTIONS keep-alive connections (python3 http.client),
# bounded by SECONDS; sets REG_SECS (time taken) and REG_COUNT (skydns's
# skydns_registry_services afterwards).
register_many() {
    local start
    cat >"$WORK/register.py" <<'PY'
import http.client, json, sys, threading

host, port = sys.argv[1].rsplit(":", 1)
total = int(sys.argv[2])
workers = int(sys.argv[3])
envs = ["prod", "staging", "dev", "test"]
errors = []

def work(w):
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    for i in range(w, total, workers):
        body = json.dumps({
            "Name": f"app{i % 10000}", "Version": f"{i % 3}.0", "Environment": envs[i % 4],
            "Region": f"r{i % 8}", "Host": f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",
            "Port": 1024 + i % 50000, "TTL": 86400,
        })
        conn.request("PUT", f"/skydns/services/bench-{i}", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        if resp.status != 201:
            errors.append((i, resp.status))
            return
    conn.close()

threads = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
for t in threads: t.start()
for t in threads: t.join()
if errors:
    sys.exit(f"registration failed: {errors[:5]}")
PY
    start=$(date +%s.%N)
    run timeout "$4" python3 "$WORK/register.py" "$1" "$2" "$3"
    REG_SECS=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
    REG_COUNT=$(curl -sS "http://$1/metrics" | awk '/^skydns_registry_services / { print $2 }')
    log "registered in ${REG_SECS}s; skydns_registry_services=$REG_COUNT"
}

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

# --- a process's figures ---------------------------------------------------

# status_kib PID KEY: a KiB figure (VmRSS, VmHWM, ...) from /proc/PID/status.
status_kib() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status"; }
# rss_kb PID: VmRSS in KiB, 0 once the process is gone (for samplers).
rss_kb() { status_kib "$1" VmRSS 2>/dev/null || echo 0; }
# fd_count PID: its open file descriptors.
fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
# cpu_ticks PID: CPU time (user + system) used so far, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# mib KIB: KiB as MiB, one decimal.
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# --- dnsperf ---------------------------------------------------------------

# dnsperf_stat FILE LABEL: the number after the colon of the first line of
# dnsperf's summary (in FILE) that matches LABEL; fails when there is none.
dnsperf_stat() { grep -m1 "$2" "$1" | sed -E 's/^[^:]*:[[:space:]]*([0-9.]+).*/\1/'; }
# dnsperf_codes FILE: dnsperf's "Response codes:" list (NOERROR 10 (100.00%), ...).
dnsperf_codes() { grep -m1 'Response codes:' "$1" | sed -E 's/^[^:]*:[[:space:]]*//'; }

# dnsperf_summary FILE: reads dnsperf's summary into DP_QPS, DP_LAT_MS
# (average latency in ms, 3 decimals), DP_LOST, DP_DONE (queries completed),
# DP_CODES and DP_SIZE (average response bytes); a missing line leaves its
# variable empty.
dnsperf_summary() {
    DP_QPS=$(awk -F: '/Queries per second/ { gsub(/ /, "", $2); print $2 }' "$1")
    DP_LAT_MS=$(awk '/Average Latency \(s\)/ { printf "%.3f", $4 * 1000 }' "$1")
    DP_LOST=$(awk '/Queries lost/ { print $3 }' "$1")
    DP_DONE=$(awk '/Queries completed/ { print $3 }' "$1")
    DP_CODES=$(dnsperf_codes "$1" || true)
    DP_SIZE=$(awk '/Average packet size/ { print $NF }' "$1")
}

# dnsperf_round KIND VARIANT ROUND PORT PID DNSPERF_ARGS...: one measured run,
# `dnsperf -s 127.0.0.1 -p PORT -l $SECONDS_PER_RUN -c $CLIENTS -T $THREADS
# DNSPERF_ARGS` (bounded, through run), against the server PID. Appends
# dnsperf's output to $RAW and a tab-separated row to $RESULTS: KIND, VARIANT,
# ROUND, QPS, avg ms, lost, completed, the server's CPU ticks during the run,
# response bytes, the 1-minute load at the start, response codes. Exits the
# script when dnsperf fails.
dnsperf_round() {
    local kind=$1 v=$2 round=$3 port=$4 pid=$5 load cpu0 cpu1 out
    shift 5
    load=$(cut -d' ' -f1 /proc/loadavg)
    cpu0=$(cpu_ticks "$pid")
    local args=(-s 127.0.0.1 -p "$port" -l "$SECONDS_PER_RUN" -c "$CLIENTS" -T "$THREADS" "$@")
    log "round $round, $kind, $v: dnsperf ${args[*]}"
    run timeout $((SECONDS_PER_RUN + 30)) dnsperf "${args[@]}" >"$WORK/dnsperf.out" 2>&1 || {
        echo "dnsperf failed:" >&2
        cat "$WORK/dnsperf.out" >&2
        exit 1
    }
    out=$(<"$WORK/dnsperf.out")
    cpu1=$(cpu_ticks "$pid")
    printf '### round %s %s %s: dnsperf %s\n%s\n\n' "$round" "$kind" "$v" "${args[*]}" "$out" >>"$RAW"
    dnsperf_summary "$WORK/dnsperf.out"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$v" "$round" "$DP_QPS" "$DP_LAT_MS" \
        "$DP_LOST" "$DP_DONE" "$((cpu1 - cpu0))" "$DP_SIZE" "$load" "$DP_CODES" >>"$RESULTS"
    log "  -> $DP_QPS QPS, $DP_LAT_MS ms, lost $DP_LOST, $DP_CODES"
}

# round_order ROUND ITEM...: sets ORDER to the items, reversed in even rounds
# (A B C, C B A, A B C, ...), so that no server always runs first.
round_order() {
    local round=$1 i
    shift
    ORDER=("$@")
    if ((round % 2 == 0)); then
        ORDER=()
        for ((i = $#; i >= 1; i--)); do ORDER+=("${!i}"); done
    fi
}

# bench_meta: the tab-separated "key value" lines every dnsperf comparison
# keeps about its run (date, machine, load, revision, dnsperf, settings),
# from DATE_START, LOAD_START, SECONDS_PER_RUN and ROUNDS.
bench_meta() {
    printf 'date\t%s\n' "$DATE_START"
    printf 'nproc\t%s\n' "$(nproc)"
    printf 'cpu\t%s\n' "$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
    printf 'kernel\t%s\n' "$(uname -r)"
    printf 'load_start\t%s\n' "$LOAD_START"
    printf 'load_end\t%s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
    printf 'rev\t%s%s\n' "$(git rev-parse --short HEAD 2>/dev/null || echo '?')" \
        "$(git diff --quiet HEAD -- crates 2>/dev/null || echo ' + local changes')"
    printf 'dnsperf\t%s\n' "$(dpkg-query -W -f='${Version}' dnsperf 2>/dev/null || echo '?')"
    printf 'clk_tck\t%s\n' "$(getconf CLK_TCK)"
    printf 'seconds\t%s\n' "$SECONDS_PER_RUN"
    printf 'rounds\t%s\n' "$ROUNDS"
}

# --- docs ------------------------------------------------------------------

# replace_block DOC NAME FILE [HEADING]: puts FILE's content between
# `<!-- NAME:begin -->` and `<!-- NAME:end -->` in DOC, the rest of DOC left
# alone. Without the markers the block is appended (after HEADING, when
# given); a missing DOC starts as "# <its name, capitalised>" (# Performance).
replace_block() {
    python3 - "$1" "$2" "$3" "${4:-}" <<'PY'
import pathlib, sys
doc, name, body, heading = pathlib.Path(sys.argv[1]), sys.argv[2], pathlib.Path(sys.argv[3]).read_text(), sys.argv[4]
begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
text = doc.read_text() if doc.exists() else f"# {doc.stem.capitalize()}\n"
block = f"{begin}\n{body.rstrip()}\n{end}"
if begin in text and end in text:
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    text = head + block + tail
else:
    text = text.rstrip() + "\n\n" + (f"{heading}\n\n" if heading else "") + block + "\n"
doc.write_text(text)
PY
}
