#!/usr/bin/env bash
# Authoritative benchmark of the release `skydns` against Knot DNS (issue 6):
# the same answers from skydns (10 services registered over its API) and from
# knotd (the same records in a static zone), loaded alternately with dnsperf;
# memory of both; skydns's start-to-first-answer time; skydns with 100,000
# registered services (QPS against the 10-service figure, RSS, restart time
# with `-data`). Writes the figures into docs/performance.md between the
# `bench-auth` markers (the rest of the file is left alone) and redraws
# docs/performance.png.
#
#   scripts/bench-auth.sh                      # 3 rounds of 10 s runs, 100,000 services
#   BENCH_ROUNDS=5 BENCH_SECONDS=5 BENCH_SERVICES=20000 scripts/bench-auth.sh
#   BENCH_NO_WRITE=1 scripts/bench-auth.sh     # print only, leave docs alone
#   scripts/bench-auth.sh --chart              # only redraw docs/performance.png from
#                                              # the data in docs/performance.md
#
# Servers, each on its own free 127.0.0.1 port:
#   skydns        release binary as shipped (memory store; one UDP thread)
#   skydns-2w     the same with `-dns-workers 2` (SKYDNS_DNS_WORKERS=2): two
#                 threads answering on the UDP socket
#   skydns-100k   as shipped, with `-data` (redb) and 100,000 more services
#                 over 10,000 names besides the same 10
#   knot-1        knotd, `udp-workers: 1` (issue 6 calls it the best setting here)
#   knot-default  knotd, default udp-workers (one per core)
# Queries, dnsperf -l 10 -c 10 -T 2 each, one name repeated:
#   A `web.prod.skydns.local` (10 answers), SRV of the same name with EDNS0
#   (-e: 10 SRV + 10 glue A, 600-odd bytes, no truncation), A
#   `nothere.prod.skydns.local` (NXDOMAIN). Servers are loaded one after the
#   other, the order reversed every round, for BENCH_ROUNDS rounds; the report
#   gives medians.
#
# Loopback only. Everything started here is killed on exit; the whole run is
# bounded by BENCH_TIMEOUT seconds (default 1800). The only outside traffic is
# apt-get, once, when dnsperf / knot / dig / curl / matplotlib are missing.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
DOC="$ROOT/docs/performance.md"
PNG="$ROOT/docs/performance.png"

# --- the chart (also called by scripts/bench-forward.sh) --------------------
# Reads the `bench-auth:data` and `bench-forward:data` comments that the two
# scripts leave inside their blocks and draws docs/performance.png.
draw_chart() {
    local py
    py=$(plot_python)
    MPLBACKEND=Agg "$py" - "$DOC" "$PNG" <<'PY'
import json, pathlib, re, sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

doc, png = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
text = doc.read_text()
def data(name):
    m = re.search(r"<!-- bench-%s:data (\{.*?\}) -->" % name, text)
    return json.loads(m.group(1)) if m else None
auth, fwd = data("auth"), data("forward")
if not auth and not fwd:
    sys.exit("no bench-auth / bench-forward data in " + str(doc))

panels = []
if auth:
    panels.append("auth")
if fwd:
    panels.append("fwd")
panels.append("rss")
fig, axes = plt.subplots(1, len(panels), figsize=(5.4 * len(panels) + 1, 4.8),
                         gridspec_kw=dict(width_ratios=[1] * (len(panels) - 1) + [1.3]))
if len(panels) == 1:
    axes = [axes]
OURS, REF1, REF2 = "#d1495b", "#00798c", "#edae49"

def bars(ax, groups, series, title, ylabel):
    n = len(series)
    width = 0.8 / n
    for i, (label, values, color) in enumerate(series):
        xs = [g + (i - (n - 1) / 2) * width for g in range(len(groups))]
        vals = [v if v is not None else 0 for v in values]
        rects = ax.bar(xs, vals, width, label=label, color=color)
        for r, v in zip(rects, values):
            if v is not None:
                txt = f"{v / 1000:.0f}k" if v >= 1000 else f"{v:.1f}"
                ax.annotate(txt, (r.get_x() + r.get_width() / 2, r.get_height()), ha="center", va="bottom",
                            fontsize=7, xytext=(0, 1), textcoords="offset points")
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel)
    top = max((v for _, values, _ in series for v in values if v is not None), default=1)
    ax.set_ylim(0, top * 1.35)
    ax.legend(fontsize=7, loc="upper left", ncol=1, framealpha=0.9)
    ax.grid(axis="y", alpha=0.3)

i = 0
if auth:
    s = auth["summary"]
    qs = [q for q in ("a", "srv", "nx") if q in s]
    names = {"a": "A (10 answers)", "srv": "SRV + glue\n(EDNS0)", "nx": "NXDOMAIN"}
    series = [(f"skydns (best setting)", [s[q]["skydns"] for q in qs], OURS),
              (f"Knot DNS (best setting)", [s[q]["knot"] for q in qs], REF1)]
    if auth.get("many_a"):
        series.insert(1, (f"skydns, {auth['many_label']} services", [auth["many"].get(q) for q in qs], "#f08a99"))
    bars(axes[i], [names[q] for q in qs], series, f"Authoritative QPS (median, {auth['date']})", "queries/s")
    i += 1
if fwd:
    s = fwd["summary"]
    qs = [q for q in ("cached", "miss") if q in s]
    names = {"cached": "answered from cache", "miss": "cache miss\n(stub upstream)"}
    series = [("skydns (best setting)", [s[q]["skydns"] for q in qs], OURS),
              ("unbound (best setting)", [s[q]["unbound"] for q in qs], REF2)]
    bars(axes[i], [names[q] for q in qs], series, f"Forwarding QPS (median, {fwd['date']})", "queries/s")
    i += 1
groups, series = [], []
sk_idle, sk_peak, kn, ub = [], [], [], []
cols = []
if auth:
    r = auth["rss"]
    cols.append(("skydns\nauth.,\n10 services", r["skydns"]["idle10"], r["skydns"]["peak"], OURS))
    if "static" in r:
        cols.append(("skydns\nstatic (images),\n10 services", r["static"]["idle10"], r["static"]["peak"], OURS))
    if "many" in r:
        cols.append((f"skydns\nauth.,\n{auth['many_label']}", r["many"]["idle"], r["many"]["peak"], "#f08a99"))
    cols.append(("Knot DNS\n(best)", r["knot"]["idle"], r["knot"]["peak"], REF1))
if fwd:
    r = fwd["rss"]
    best_sk = fwd["summary"].get("cached", {}).get("skydns_variant", "skydns")
    best_ub = fwd["summary"].get("cached", {}).get("unbound_variant", "unbound-1")
    cols.append(("skydns\nforwarder", r[best_sk]["idle"], r[best_sk]["peak"], OURS))
    cols.append(("unbound\n(best)", r[best_ub]["idle"], r[best_ub]["peak"], REF2))
ax = axes[i]
xs = range(len(cols))
ax.bar([x - 0.2 for x in xs], [c[1] for c in cols], 0.4, color=[c[3] for c in cols], alpha=0.55, label="idle (VmRSS)")
ax.bar([x + 0.2 for x in xs], [c[2] for c in cols], 0.4, color=[c[3] for c in cols], label="peak under load (VmHWM)")
for x, c in zip(xs, cols):
    for dx, v in ((-0.2, c[1]), (0.2, c[2])):
        ax.annotate(f"{v:.0f}" if v >= 100 else f"{v:.1f}", (x + dx, v), ha="center", va="bottom", fontsize=6.5,
                    xytext=(0, 1), textcoords="offset points")
ax.set_yscale("log")
ax.set_xticks(list(xs))
ax.set_xticklabels([c[0] for c in cols], fontsize=7.5)
ax.set_ylabel("MiB (log scale)")
ax.set_ylim(top=max(c[2] for c in cols) * 1.6)
ax.set_title("Resident memory (light: idle, dark: peak)", fontsize=10)
ax.grid(axis="y", alpha=0.3)
fig.suptitle("skydns vs Knot DNS and unbound on the same machine (docs/performance.md)", fontsize=11)
fig.tight_layout()
fig.savefig(png, dpi=110)
print(f"chart written to {png}")
PY
}

if [[ "${1:-}" == --chart ]]; then
    draw_chart
    exit 0
fi

# Bound the whole run (the TERM timeout(1) sends runs the cleanup trap).
rerun_under_timeout BENCH_UNDER_TIMEOUT "${BENCH_TIMEOUT:-1800}" 30 "$@"
cd "$ROOT"

SECONDS_PER_RUN="${BENCH_SECONDS:-10}"
ROUNDS="${BENCH_ROUNDS:-3}"
MANY="${BENCH_SERVICES:-100000}"
START_TRIALS="${BENCH_START_TRIALS:-5}"
CLIENTS=10
THREADS=2
DOMAIN=skydns.local
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
DATE_START=$(date -u '+%Y-%m-%d %H:%M UTC')
RAW="$TARGET_DIR/bench-auth.raw.log"

# --- prerequisites ---------------------------------------------------------
# Both builds: the host build and the images' static one.
log "build: cargo build --release -p skydns --locked"
cargo build --release -p skydns --locked
log "build: the images' static build"
build_static

need_tools dnsperf knotd:knot dig:dnsutils curl python3
KNOTD=$(command -v knotd || echo /usr/sbin/knotd)

# The package may have started the system knotd (postinst); stop it so its CPU
# use and port 53 do not get in the way. Only that daemon: the init script,
# else the pid in its pid file if that process is knotd.
stop_system_knot() {
    if [[ -x /etc/init.d/knot ]] && service knot status >/dev/null 2>&1; then
        log "stopping the system knot (service knot stop)"
        service knot stop >/dev/null 2>&1 || true
    fi
    local pidfile pid
    for pidfile in /run/knot/knot.pid /var/run/knot/knot.pid; do
        [[ -r $pidfile ]] || continue
        pid=$(tr -dc '0-9' <"$pidfile")
        if [[ -n "$pid" && "$(cat "/proc/$pid/comm" 2>/dev/null)" == knotd ]]; then
            log "stopping the system knotd, pid $pid"
            kill "$pid" 2>/dev/null || true
        fi
    done
}
stop_system_knot

init_work
: >"$RAW"
COMMANDS="$WORK/commands.txt"
: >"$COMMANDS"

# --- helpers ---------------------------------------------------------------
# The zone Knot serves: the records skydns answers for the 10 services below
# (A and SRV of web.prod, the SRV targets <uuid>.skydns.local with their
# addresses as glue, skydns's SOA and NS).
write_zone() {
    {
        echo "\$ORIGIN $DOMAIN."
        echo "\$TTL 86400"
        echo "@	5	IN	SOA	ns1.$DOMAIN. hostmaster.$DOMAIN. 1 28800 7200 604800 5"
        echo "@		IN	NS	ns1.$DOMAIN."
        for i in $(seq 1 10); do echo "web.prod	IN	A	10.0.0.$i"; done
        for i in $(seq 1 10); do echo "web.prod	IN	SRV	10 10 8080 web-$i.$DOMAIN."; done
        for i in $(seq 1 10); do echo "web-$i	IN	A	10.0.0.$i"; done
    } >"$1"
}

# knot_conf DIR PORT WORKERS ("" for the default): writes DIR/knot.conf.
knot_conf() {
    local dir=$1 port=$2 workers=$3
    mkdir -p "$dir/run" "$dir/db"
    write_zone "$dir/$DOMAIN.zone"
    {
        echo "server:"
        echo "    rundir: \"$dir/run\""
        echo "    listen: 127.0.0.1@$port"
        [[ -z "$workers" ]] || echo "    udp-workers: $workers"
        echo "log:"
        echo "  - target: stderr"
        echo "    any: info"
        echo "database:"
        echo "    storage: \"$dir/db\""
        echo "template:"
        echo "  - id: default"
        echo "    storage: \"$dir\""
        echo "    file: \"%s.zone\""
        echo "    zonefile-sync: -1"
        echo "    journal-content: none"
        echo "zone:"
        echo "  - domain: $DOMAIN"
    } >"$dir/knot.conf"
}

# start_knot NAME WORKERS: sets KN_PID, KN_PORT.
start_knot() {
    local name=$1 workers=$2 dir="$WORK/$1"
    KN_PORT=$(free_port)
    knot_conf "$dir" "$KN_PORT" "$workers"
    "$KNOTD" -c "$dir/knot.conf" >"$WORK/$name.log" 2>&1 &
    KN_PID=$!
    PIDS+=("$KN_PID")
    for _ in $(seq 1 100); do
        grep -q "loaded, serial" "$WORK/$name.log" && grep -q "server started" "$WORK/$name.log" && break
        kill -0 "$KN_PID" 2>/dev/null || break
        sleep 0.1
    done
    if ! grep -q "server started" "$WORK/$name.log"; then
        echo "knotd ($name) did not start:" >&2
        cat "$WORK/$name.log" >&2
        exit 1
    fi
    cp "$dir/knot.conf" "$WORK/$name.conf"
    printf 'knotd -c %s.conf   # %s (foreground)\n' "$name" "$name" >>"$COMMANDS"
    log "$name: pid $KN_PID, dns 127.0.0.1:$KN_PORT (udp-workers: ${workers:-default})"
}

# Checks a server before measuring it: 10 A, 10 SRV (+ glue), NXDOMAIN.
check_server() {
    local name=$1 port=$2 a srv glue nx
    a=$( (dig +short +time=2 +tries=2 @127.0.0.1 -p "$port" "web.prod.$DOMAIN" A || true) | wc -l)
    srv=$( (dig +short +time=2 +tries=2 @127.0.0.1 -p "$port" "web.prod.$DOMAIN" SRV || true) | wc -l)
    glue=$( (dig +noall +additional +time=2 +tries=2 @127.0.0.1 -p "$port" "web.prod.$DOMAIN" SRV || true) | grep -c 'IN[[:space:]]A[[:space:]]' || true)
    nx=$( (dig +time=2 +tries=2 @127.0.0.1 -p "$port" "nothere.prod.$DOMAIN" A || true) | grep -o 'status: [A-Z]*' || true)
    log "check $name: A answers=$a SRV answers=$srv glue=$glue nothere: $nx"
    if [[ $a -ne 10 || $srv -ne 10 || $glue -ne 10 || $nx != "status: NXDOMAIN" ]]; then
        echo "$name: unexpected answers (want 10 A, 10 SRV + 10 glue, NXDOMAIN)" >&2
        exit 1
    fi
}

# first_answer.py: exec a server, then query it over UDP in a tight loop
# (a new query every 0.5 ms while the port is closed) until it answers with
# NOERROR and at least MIN answers; prints "ms rss_kib" (VmRSS 1 s after the
# first answer) and stops the server.
cat >"$WORK/first_answer.py" <<'PY'
import os, random, signal, socket, struct, subprocess, sys, time

# Stopped by the script's cleanup: still stop the server (the finally below).
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
port, qname, qtype, min_answers, timeout, logpath = sys.argv[1:7]
cmd = sys.argv[sys.argv.index("--") + 1:]
port, qtype, min_answers, timeout = int(port), int(qtype), int(min_answers), float(timeout)
wire_name = b"".join(bytes([len(l)]) + l.encode() for l in qname.rstrip(".").split(".")) + b"\0"
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.connect(("127.0.0.1", port))
sock.settimeout(0.005)
with open(logpath, "ab") as log:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        while True:
            if time.perf_counter() - t0 > timeout:
                sys.exit(f"no answer within {timeout} s")
            if proc.poll() is not None:
                sys.exit(f"server exited with {proc.returncode}")
            qid = random.randrange(65536)
            try:
                sock.send(struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + wire_name + struct.pack(">HH", qtype, 1))
                data = sock.recv(4096)
                # A late answer to an earlier query: read on rather than send
                # again, or one timeout keeps every later read one answer behind.
                while len(data) < 2 or struct.unpack(">H", data[:2])[0] != qid:
                    data = sock.recv(4096)
            except ConnectionRefusedError:
                time.sleep(0.0005)
                continue
            except socket.timeout:
                continue
            if len(data) < 12:
                continue
            rid, flags, _, ancount = struct.unpack(">HHHH", data[:8])
            if rid != qid:
                continue
            if flags & 0xF == 0 and ancount >= min_answers:
                t1 = time.perf_counter()
                break
            time.sleep(0.0005)
        time.sleep(1)
        rss = next(l.split()[1] for l in open(f"/proc/{proc.pid}/status") if l.startswith("VmRSS:"))
        print(f"{(t1 - t0) * 1000:.1f} {rss}")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
PY

# --- start-to-first-answer (quiet machine first: before any load) ----------
START_RESULTS="$WORK/start.tsv"
: >"$START_RESULTS"
log "start to first answer, $START_TRIALS trials each: skydns (no data), knotd (udp-workers: 1)"
for t in $(seq 1 "$START_TRIALS"); do
    p=$(free_port)
    h=$(free_port)
    run env "${SKYDNS_UNSET[@]}" NO_COLOR=1 python3 "$WORK/first_answer.py" "$p" "$DOMAIN" 6 1 10 "$WORK/start-skydns.log" -- \
        "$BIN" -dns "127.0.0.1:$p" -http "127.0.0.1:$h" -domain "$DOMAIN" -nameserver 127.0.0.1:9 -log-level warn >"$WORK/first.out"
    out=$(<"$WORK/first.out")
    printf 'skydns\t%s\t%s\n' "$t" "${out// /$'\t'}" >>"$START_RESULTS"
    p=$(free_port)
    rm -rf "$WORK/knot-start"
    knot_conf "$WORK/knot-start" "$p" 1
    run python3 "$WORK/first_answer.py" "$p" "$DOMAIN" 6 1 10 "$WORK/start-knot.log" -- "$KNOTD" -c "$WORK/knot-start/knot.conf" >"$WORK/first.out"
    out=$(<"$WORK/first.out")
    printf 'knot\t%s\t%s\n' "$t" "${out// /$'\t'}" >>"$START_RESULTS"
done
cat "$START_RESULTS" >&2

# --- the servers -----------------------------------------------------------
declare -A PID_OF PORT_OF RSS_IDLE RSS_10
start_skydns skydns -- -domain "$DOMAIN" -nameserver 127.0.0.1:9
PID_OF[skydns]=$SK_PID PORT_OF[skydns]=$SK_DNS
API_MAIN=$SK_API
start_skydns skydns-2w SKYDNS_DNS_WORKERS=2 -- -domain "$DOMAIN" -nameserver 127.0.0.1:9
PID_OF[skydns-2w]=$SK_PID PORT_OF[skydns-2w]=$SK_DNS
API_2W=$SK_API
SK_BIN="$STATIC_BIN_DIR/skydns" start_skydns skydns-static -- -domain "$DOMAIN" -nameserver 127.0.0.1:9
PID_OF[skydns-static]=$SK_PID PORT_OF[skydns-static]=$SK_DNS
API_STATIC=$SK_API
DATA_DIR="$WORK/data-many"
start_skydns skydns-100k -- -domain "$DOMAIN" -nameserver 127.0.0.1:9 -data "$DATA_DIR"
PID_OF[skydns-100k]=$SK_PID PORT_OF[skydns-100k]=$SK_DNS
API_MANY=$SK_API HTTP_MANY=$SK_HTTP
start_knot knot-1 1
PID_OF[knot-1]=$KN_PID PORT_OF[knot-1]=$KN_PORT
start_knot knot-default ""
PID_OF[knot-default]=$KN_PID PORT_OF[knot-default]=$KN_PORT

sleep 1
for v in skydns skydns-2w skydns-static skydns-100k knot-1 knot-default; do
    RSS_IDLE[$v]=$(status_kib "${PID_OF[$v]}" VmRSS)
done

log "register 10 services as web.prod.$DOMAIN on each skydns (curl)"
register_web "$API_MAIN"
register_web "$API_2W"
register_web "$API_STATIC"
register_web "$API_MANY"
sleep 0.5

log "register $MANY more services over many names on skydns-100k (-data; python3 http.client, 16 keep-alive connections)"
register_many "$HTTP_MANY" "$MANY" 16 900
COUNT=$REG_COUNT

for v in skydns skydns-2w skydns-static skydns-100k knot-1 knot-default; do
    check_server "$v" "${PORT_OF[$v]}"
    RSS_10[$v]=$(status_kib "${PID_OF[$v]}" VmRSS)
done

# --- load ------------------------------------------------------------------
printf 'web.prod.%s A\n' "$DOMAIN" >"$WORK/a.txt"
printf 'web.prod.%s SRV\n' "$DOMAIN" >"$WORK/srv.txt"
printf 'nothere.prod.%s A\n' "$DOMAIN" >"$WORK/nx.txt"
RESULTS="$WORK/results.tsv"
: >"$RESULTS"

# run_one QUERY VARIANT ROUND
run_one() {
    local query=$1 v=$2 extra=()
    [[ $query != srv ]] || extra=(-e)
    dnsperf_round "$query" "$v" "$3" "${PORT_OF[$v]}" "${PID_OF[$v]}" "${extra[@]}" -d "$WORK/$query.txt"
}

VARIANTS=(skydns skydns-2w skydns-static skydns-100k knot-1 knot-default)
for round in $(seq 1 "$ROUNDS"); do
    round_order "$round" "${VARIANTS[@]}"
    for query in a srv nx; do
        for v in "${ORDER[@]}"; do
            run_one "$query" "$v" "$round"
        done
    done
done

declare -A RSS_PEAK RSS_END
for v in "${VARIANTS[@]}"; do
    RSS_PEAK[$v]=$(status_kib "${PID_OF[$v]}" VmHWM)
    RSS_END[$v]=$(status_kib "${PID_OF[$v]}" VmRSS)
done

# --- restart with -data holding the services -------------------------------
log "restart skydns-100k with the same -data: time to answer app1.staging.$DOMAIN A"
stop_pid "${PID_OF[skydns-100k]}"
RESTART_RESULTS="$WORK/restart.tsv"
: >"$RESTART_RESULTS"
for t in 1 2 3; do
    p=$(free_port)
    h=$(free_port)
    run env "${SKYDNS_UNSET[@]}" NO_COLOR=1 python3 "$WORK/first_answer.py" "$p" "app1.staging.$DOMAIN" 1 1 30 "$WORK/restart.log" -- \
        "$BIN" -dns "127.0.0.1:$p" -http "127.0.0.1:$h" -domain "$DOMAIN" -nameserver 127.0.0.1:9 -data "$DATA_DIR" -log-level warn >"$WORK/first.out"
    out=$(<"$WORK/first.out")
    printf 'restart\t%s\t%s\n' "$t" "${out// /$'\t'}" >>"$RESTART_RESULTS"
    log "  restart $t: ${out%% *} ms"
done

META="$WORK/meta.tsv"
{
    bench_meta
    printf 'knot\t%s\n' "$(dpkg-query -W -f='${Version}' knot 2>/dev/null || "$KNOTD" --version | awk '{ print $NF }')"
    printf 'many\t%s\n' "$MANY"
    printf 'static_build\t%s\n' "RUSTFLAGS='$STATIC_RUSTFLAGS' ${STATIC_BUILD[*]}"
    printf 'count\t%s\n' "$COUNT"
    printf 'reg_secs\t%s\n' "$REG_SECS"
    for v in "${VARIANTS[@]}"; do
        printf 'rss_idle_%s\t%s\n' "$v" "${RSS_IDLE[$v]}"
        printf 'rss_10_%s\t%s\n' "$v" "${RSS_10[$v]}"
        printf 'rss_peak_%s\t%s\n' "$v" "${RSS_PEAK[$v]}"
        printf 'rss_end_%s\t%s\n' "$v" "${RSS_END[$v]}"
    done
} >"$META"

# --- report ----------------------------------------------------------------
REPORT="$WORK/report.md"
python3 - "$RESULTS" "$META" "$COMMANDS" "$WORK" "$START_RESULTS" "$RESTART_RESULTS" "$REPORT" <<'PY'
import json, pathlib, re, statistics, sys

results, meta_path, commands_path, work, start_path, restart_path, report = sys.argv[1:8]
meta = dict(line.rstrip("\n").split("\t", 1) for line in open(meta_path) if "\t" in line)
rows = []
for line in open(results):
    f = line.rstrip("\n").split("\t")
    rows.append(dict(query=f[0], variant=f[1], round=int(f[2]), qps=float(f[3]), lat=float(f[4]),
                     lost=int(f[5]), done=int(f[6]), ticks=int(f[7]), size=f[8], load=float(f[9]), codes=f[10]))
clk = int(meta["clk_tck"])
many = int(meta["many"])
count = int(float(meta["count"] or 0)) or many + 10
many_label = f"{count:,}"
labels = {
    "skydns": "skydns, as shipped (one UDP thread)",
    "skydns-2w": "skydns, `-dns-workers 2` (two UDP threads)",
    "skydns-static": "skydns, the images' static build, as shipped",
    "skydns-100k": f"skydns, as shipped, `-data`, {many_label} services",
    "knot-1": "Knot, `udp-workers: 1`",
    "knot-default": "Knot, default `udp-workers` (1 per core = 2)",
}
qlabel = {
    "a": "A `web.prod.skydns.local` (10 answers)",
    "srv": "SRV `web.prod.skydns.local`, EDNS0 (`-e`): 10 SRV + 10 glue A",
    "nx": "A `nothere.prod.skydns.local` (NXDOMAIN)",
}
variants = ["skydns", "skydns-2w", "skydns-static", "skydns-100k", "knot-1", "knot-default"]
med = {}
for q in ("a", "srv", "nx"):
    for v in variants:
        rs = [r for r in rows if r["query"] == q and r["variant"] == v]
        if not rs:
            continue
        qs = [r["qps"] for r in rs]
        done = sum(r["done"] for r in rs)
        med[q, v] = dict(qps=statistics.median(qs), lat=statistics.median(r["lat"] for r in rs),
                         qmin=min(qs), qmax=max(qs), lost=sum(r["lost"] for r in rs), size=rs[0]["size"],
                         codes=rs[0]["codes"], n=len(rs),
                         cpu=sum(r["ticks"] for r in rs) / clk / done * 1e6 if done else float("nan"))

def best(q, cands):
    return max((v for v in cands if (q, v) in med), key=lambda v: med[q, v]["qps"])

def g(x):
    return f"{x:,.0f}"

def mib(k):
    return int(k) / 1024

loads = [r["load"] for r in rows]
out = []
w = out.append
w(f"Run of `scripts/bench-auth.sh` on {meta['date']}: {meta['nproc']} CPUs ({meta['cpu']}), Linux {meta['kernel']}, "
  f"Knot DNS {meta['knot']}, dnsperf {meta['dnsperf']}, skydns {meta['rev']}.")
w(f"Load average before the run: {meta['load_start']}; after: {meta['load_end']}; 1-minute load at the start of "
  f"each dnsperf run: {min(loads):.2f}–{max(loads):.2f} (other work on the machine shows here).")
w("")
w(f"{meta['rounds']} rounds, each server loaded in turn (order reversed every round), dnsperf "
  f"`-l {meta['seconds']} -c 10 -T 2`; medians over the rounds.")
w("")
w("**Best setting of each, side by side** (ratio skydns / Knot: QPS at or above 1 and latency at or below 1 meet issue 6's targets):")
w("")
w("| query | skydns best | Knot best | skydns QPS | Knot QPS | QPS ratio | skydns avg ms | Knot avg ms | latency ratio |")
w("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
summary = {}
for q in ("a", "srv", "nx"):
    a, b = best(q, ["skydns", "skydns-2w", "skydns-static"]), best(q, ["knot-1", "knot-default"])
    ma, mb = med[q, a], med[q, b]
    qr, lr = ma["qps"] / mb["qps"], ma["lat"] / mb["lat"] if mb["lat"] else float("nan")
    summary[q] = dict(skydns=round(ma["qps"]), knot=round(mb["qps"]), skydns_variant=a, knot_variant=b,
                      skydns_ms=round(ma["lat"], 3), knot_ms=round(mb["lat"], 3), qps_ratio=round(qr, 3), lat_ratio=round(lr, 3))
    w(f"| {qlabel[q]} | {a} | {b} | {g(ma['qps'])} | {g(mb['qps'])} | **{qr:.2f}** | {ma['lat']:.3f} | {mb['lat']:.3f} | **{lr:.2f}** |")
w("")
w("Every server and setting (median QPS, its range over the rounds, median average latency, the server's CPU time "
  "per answered query, dnsperf's average response size; the best setting of each reference in bold):")
w("")
w("| query | server | QPS (median) | QPS min–max | avg latency (ms) | server CPU µs/query | response bytes | lost | response codes (round 1) |")
w("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
for q in ("a", "srv", "nx"):
    for v in variants:
        if (q, v) not in med:
            continue
        m = med[q, v]
        name = labels[v]
        if v in (summary[q]["skydns_variant"], summary[q]["knot_variant"]):
            name = f"**{name}**"
        w(f"| {qlabel[q]} | {name} | {g(m['qps'])} | {g(m['qmin'])}–{g(m['qmax'])} | {m['lat']:.3f} | {m['cpu']:.1f} | "
          f"{m['size']} | {m['lost']} | {m['codes']} |")
w("")
ratio_many = {q: med[q, "skydns-100k"]["qps"] / med[q, "skydns"]["qps"] for q in ("a", "srv", "nx") if (q, "skydns-100k") in med}
w(f"**{many_label} services** (skydns-100k: the same 10 `web.prod` services plus {many:,} over 10,000 names in four "
  f"environments, eight regions and three versions, registered through 16 keep-alive HTTP connections into the redb "
  f"store in {meta['reg_secs']} s): QPS against the 10-service skydns as shipped, same rounds — "
  + ", ".join(f"{q.upper() if q != 'nx' else 'NXDOMAIN'} **{r:.2f}×**" for q, r in ratio_many.items())
  + " (target ≥ 0.9× for A). The 10-service skydns keeps its registrations in memory (no `-data`); "
  "both answer from the same in-memory index.")
w("")
start = [l.split("\t") for l in open(start_path) if l.strip()]
restart = [l.split("\t") for l in open(restart_path) if l.strip()]
def times(rows, who):
    return [float(r[2]) for r in rows if r[0] == who]
st_sk, st_kn, rs_t = times(start, "skydns"), times(start, "knot"), times(restart, "restart")
rs_rss = [int(r[3]) for r in restart]
w("| start and restart (exec → first answer; a UDP query every 0.5 ms from python3) | median ms | min–max ms | trials |")
w("| --- | ---: | ---: | ---: |")
w(f"| skydns, no stored data (`skydns.local SOA`) | {statistics.median(st_sk):.1f} | {min(st_sk):.1f}–{max(st_sk):.1f} | {len(st_sk)} |")
w(f"| Knot, `udp-workers: 1`, zone loaded from its file (`skydns.local SOA`) | {statistics.median(st_kn):.1f} | {min(st_kn):.1f}–{max(st_kn):.1f} | {len(st_kn)} |")
w(f"| skydns restart with `-data` holding {many_label} services (until `app1.staging.skydns.local A` has answers) | "
  f"{statistics.median(rs_t):.1f} | {min(rs_t):.1f}–{max(rs_t):.1f} | {len(rs_t)} |")
w("")
w("| memory (MiB) | idle after start (VmRSS) | with the 10 services / zone (VmRSS) | peak after all runs (VmHWM) |")
w("| --- | ---: | ---: | ---: |")
for v in variants:
    w(f"| {labels[v]} | {mib(meta['rss_idle_' + v]):.1f} | {mib(meta['rss_10_' + v]):.1f} | {mib(meta['rss_peak_' + v]):.1f} |")
w(f"| skydns restarted with `-data` holding {many_label} services, 1 s after its first answer | "
  f"– | {mib(statistics.median(rs_rss)):.1f} | – |")
w("")
w("Idle is read 1 s after start, before anything is registered (Knot: zone loaded); for skydns-100k the middle "
  "column is after the whole registration. The peak covers every query type of every round, not only A.")
w("")
w("Per-round figures (QPS / avg ms / 1-minute load average when the run started):")
w("")
w("| query | server | " + " | ".join(f"round {i}" for i in range(1, int(meta["rounds"]) + 1)) + " |")
w("| --- | --- |" + " ---: |" * int(meta["rounds"]))
for q in ("a", "srv", "nx"):
    for v in variants:
        rs = sorted((r for r in rows if r["query"] == q and r["variant"] == v), key=lambda r: r["round"])
        if rs:
            w(f"| {q} | {v} | " + " | ".join(f"{g(r['qps'])} / {r['lat']:.3f} / {r['load']:.1f}" for r in rs) + " |")
w("")
w("Exact commands (ports are free 127.0.0.1 ports picked at run time):")
w("")
w("```sh")
w("cargo build --release -p skydns --locked")
w(meta["static_build"] + "   # the images' build")
for line in open(commands_path):
    w(line.rstrip("\n").replace(work, "$WORK"))
w("# each skydns: 10 x curl -X PUT http://API/skydns/services/web-$i \\")
w("#   -d '{\"Name\":\"web\",\"Version\":\"1.0.0\",\"Environment\":\"prod\",\"Region\":\"east\",\"Host\":\"10.0.0.$i\",\"Port\":8080,\"TTL\":86400}'")
w("# a.txt: `web.prod.skydns.local A`; srv.txt: `web.prod.skydns.local SRV`; nx.txt: `nothere.prod.skydns.local A`")
w(f"dnsperf -s 127.0.0.1 -p PORT -l {meta['seconds']} -c 10 -T 2 -d a.txt      # and nx.txt")
w(f"dnsperf -s 127.0.0.1 -p PORT -l {meta['seconds']} -c 10 -T 2 -e -d srv.txt")
w("```")
w("")
conf, zone = pathlib.Path(work, "knot-1.conf"), pathlib.Path(work, "knot-1", "skydns.local.zone")
if conf.exists():
    w("Knot configuration (`knot-1.conf`; `knot-default.conf` has no `udp-workers` line) and zone file:")
    w("")
    w("```")
    w(conf.read_text().rstrip().replace(work, "$WORK"))
    w("```")
    w("")
    # Runs of lines that differ only in their digits are shown as first, "; …", last.
    lines, shown = zone.read_text().rstrip().splitlines(), []
    key = lambda l: re.sub(r"[0-9]+", "#", l)
    i = 0
    while i < len(lines):
        j = i
        while j + 1 < len(lines) and key(lines[j + 1]) == key(lines[i]):
            j += 1
        shown += [lines[i]] if j == i else [lines[i], f"; … {j - i - 1} more like these …", lines[j]] if j - i > 1 else lines[i:j + 1]
        i = j + 1
    w("```")
    w("\n".join(shown))
    w("```")
    w("")
data = dict(
    summary=summary, date=meta["date"], many_label=many_label,
    many_a=round(med["a", "skydns-100k"]["qps"]) if ("a", "skydns-100k") in med else None,
    many={q: round(med[q, "skydns-100k"]["qps"]) for q in ("a", "srv", "nx") if (q, "skydns-100k") in med},
    rss=dict(
        skydns=dict(idle=round(mib(meta["rss_idle_skydns"]), 1), idle10=round(mib(meta["rss_10_skydns"]), 1),
                    peak=round(mib(meta["rss_peak_skydns"]), 1)),
        static=dict(idle=round(mib(meta["rss_idle_skydns-static"]), 1), idle10=round(mib(meta["rss_10_skydns-static"]), 1),
                    peak=round(mib(meta["rss_peak_skydns-static"]), 1)),
        many=dict(idle=round(mib(meta["rss_10_skydns-100k"]), 1), peak=round(mib(meta["rss_peak_skydns-100k"]), 1)),
        knot=dict(idle=round(mib(meta["rss_10_" + summary["a"]["knot_variant"]]), 1),
                  peak=round(mib(meta["rss_peak_" + summary["a"]["knot_variant"]]), 1)),
    ),
    start_ms=statistics.median(st_sk), restart_ms=statistics.median(rs_t),
)
w(f"<!-- bench-auth:data {json.dumps(data, separators=(',', ':'))} -->")
pathlib.Path(report).write_text("\n".join(out) + "\n")
PY

cat "$REPORT"
log "dnsperf's full output: ${RAW#"$ROOT"/}"

if [[ "${BENCH_NO_WRITE:-0}" == 1 ]]; then
    log "BENCH_NO_WRITE=1: $DOC left unchanged"
    exit 0
fi

replace_block "$DOC" bench-auth "$REPORT" "## Authoritative vs Knot"
log "figures written to ${DOC#"$ROOT"/}"
draw_chart
