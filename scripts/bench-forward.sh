#!/usr/bin/env bash
# Forwarding benchmark of the release `skydns` (issues 3 and 6): queries for
# names outside its domain, answered from its cache and on cache misses, side
# by side with Debian's `unbound` configured as a caching forwarder to the same
# stub upstream, in the same run. Writes the figures into docs/performance.md
# between the `bench-forward` markers (the rest of the file is left alone) and
# redraws docs/performance.png (scripts/bench-auth.sh --chart).
#
#   scripts/bench-forward.sh                      # 3 rounds of 10 s runs
#   BENCH_ROUNDS=5 BENCH_SECONDS=5 scripts/bench-forward.sh
#   BENCH_NO_WRITE=1 scripts/bench-forward.sh     # print only, leave docs alone
#
# The stub upstream is a second release skydns on 127.0.0.1, authoritative for
# example.org only (`-no-forward`), with 10 services registered as
# web.prod.example.org (so `web.prod.example.org A` has 10 answers) and
# NXDOMAIN for every other name under example.org. Servers measured, each on
# its own free 127.0.0.1 port, all forwarding to that stub:
#   skydns     release binary as shipped (one UDP thread)
#   skydns-2w  the same with `-dns-workers 2` (SKYDNS_DNS_WORKERS=2): two
#              threads answering on the UDP socket
#   unbound-1  unbound, `num-threads: 1` (issue 6 calls it the best setting here)
#   unbound-2  unbound, `num-threads: 2`
# Two loads, dnsperf -l 10 -c 10 -T 2 each:
#   cached  `web.prod.example.org A` repeated (after one warm-up query)
#   miss    `r<N>.<run>.miss.example.org A`, every name unique (a fresh label
#           per run, dnsperf -n 1 so no name is sent twice): each query is a
#           cache miss that goes to the stub, which answers NXDOMAIN.
# Servers are loaded one after the other, the order reversed every round
# (A B C D, D C B A, ...), for BENCH_ROUNDS rounds; the report gives medians.
#
# Loopback only: nothing is sent to the machine's resolver or the internet.
# Everything started here is killed on exit; the whole run is bounded by
# BENCH_TIMEOUT seconds (default 1200). The only outside traffic is apt-get,
# once, when dnsperf / unbound / dig / curl are missing.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# Bound the whole run (the TERM timeout(1) sends runs the cleanup trap).
rerun_under_timeout BENCH_UNDER_TIMEOUT "${BENCH_TIMEOUT:-1200}" 30 "$@"
cd "$ROOT"

SECONDS_PER_RUN="${BENCH_SECONDS:-10}"
ROUNDS="${BENCH_ROUNDS:-3}"
MISS_NAMES="${BENCH_MISS_NAMES:-500000}"
CLIENTS=10
THREADS=2
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
DATE_START=$(date -u '+%Y-%m-%d %H:%M UTC')
DOC="$ROOT/docs/performance.md"
RAW="$TARGET_DIR/bench-forward.raw.log"
STUB_DOMAIN=example.org

# --- prerequisites ---------------------------------------------------------
log "build: cargo build --release -p skydns --locked"
cargo build --release -p skydns --locked

need_tools dnsperf unbound dig:dnsutils curl python3
UNBOUND=$(command -v unbound || echo /usr/sbin/unbound)

# The package may have started the system unbound (postinst); stop it so its
# CPU use and port 53 do not get in the way. Only that daemon: the init
# script, else the pid in its pid file if that process is unbound.
stop_system_unbound() {
    if [[ -x /etc/init.d/unbound ]] && service unbound status >/dev/null 2>&1; then
        log "stopping the system unbound (service unbound stop)"
        service unbound stop >/dev/null 2>&1 || true
    fi
    local pidfile pid
    for pidfile in /run/unbound.pid /var/run/unbound.pid; do
        [[ -r $pidfile ]] || continue
        pid=$(tr -dc '0-9' <"$pidfile")
        if [[ -n "$pid" && "$(cat "/proc/$pid/comm" 2>/dev/null)" == unbound ]]; then
            log "stopping the system unbound, pid $pid"
            kill "$pid" 2>/dev/null || true
        fi
    done
}
stop_system_unbound

init_work
: >"$RAW"
COMMANDS="$WORK/commands.txt"
: >"$COMMANDS"

# --- helpers ---------------------------------------------------------------
# start_unbound NAME THREADS UPSTREAM_PORT: sets UB_PID, UB_PORT.
start_unbound() {
    local name=$1 threads=$2 upstream=$3 dir="$WORK/$1"
    mkdir -p "$dir"
    UB_PORT=$(free_port)
    cat >"$dir/unbound.conf" <<EOF
server:
    interface: 127.0.0.1
    port: $UB_PORT
    do-ip6: no
    num-threads: $threads
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
    module-config: "iterator"
    qname-minimisation: no
    auto-trust-anchor-file: ""
    chroot: ""
    username: ""
    directory: "$dir"
    pidfile: "$dir/unbound.pid"
    logfile: ""
    use-syslog: no
    verbosity: 1
remote-control:
    control-enable: no
forward-zone:
    name: "."
    forward-addr: 127.0.0.1@$upstream
EOF
    "$UNBOUND"-checkconf "$dir/unbound.conf" >/dev/null
    "$UNBOUND" -d -c "$dir/unbound.conf" >"$WORK/$name.log" 2>&1 &
    UB_PID=$!
    PIDS+=("$UB_PID")
    for _ in $(seq 1 100); do
        grep -q 'start of service' "$WORK/$name.log" && break
        kill -0 "$UB_PID" 2>/dev/null || break
        sleep 0.1
    done
    if ! grep -q 'start of service' "$WORK/$name.log"; then
        echo "unbound ($name) did not start:" >&2
        cat "$WORK/$name.log" >&2
        exit 1
    fi
    cp "$dir/unbound.conf" "$WORK/$name.conf"
    printf 'unbound -d -c %s.conf   # %s\n' "$name" "$name" >>"$COMMANDS"
    log "$name: pid $UB_PID, dns 127.0.0.1:$UB_PORT (num-threads: $threads)"
}

# Checks a server before measuring it: 10 A answers for the cached name and
# NXDOMAIN for a miss name.
check_server() {
    local name=$1 port=$2 a nx
    a=$( (dig +short +time=2 +tries=2 @127.0.0.1 -p "$port" "web.prod.$STUB_DOMAIN" A || true) | wc -l)
    nx=$( (dig +time=2 +tries=2 @127.0.0.1 -p "$port" "check.miss.$STUB_DOMAIN" A || true) | grep -o 'status: [A-Z]*' || true)
    log "check $name: web.prod.$STUB_DOMAIN A answers=$a; check.miss.$STUB_DOMAIN: $nx"
    if [[ $a -ne 10 || $nx != "status: NXDOMAIN" ]]; then
        echo "$name: unexpected answers (want 10 A and NXDOMAIN)" >&2
        cat "$WORK/$name.log" >&2
        exit 1
    fi
}

# --- the stub upstream -----------------------------------------------------
start_skydns stub -- -domain "$STUB_DOMAIN" -no-forward
STUB_PORT=$SK_DNS
log "register 10 services as web.prod.$STUB_DOMAIN on the stub (curl)"
register_web "$SK_API"
check_server stub "$STUB_PORT"
# shellcheck disable=SC2016 # literal $i in the printed command
printf '# then 10 x: curl -X PUT http://STUB_API/skydns/services/web-$i -d '"'"'{"Name":"web","Version":"1.0.0","Environment":"prod","Region":"east","Host":"10.0.0.$i","Port":8080,"TTL":86400}'"'"'\n' >>"$COMMANDS"

# --- the servers under test ------------------------------------------------
VARIANTS=(skydns skydns-2w unbound-1 unbound-2)
declare -A PID_OF PORT_OF RSS_IDLE
start_skydns skydns -- -domain skydns.local -nameserver "127.0.0.1:$STUB_PORT"
PID_OF[skydns]=$SK_PID PORT_OF[skydns]=$SK_DNS
start_skydns skydns-2w SKYDNS_DNS_WORKERS=2 -- -domain skydns.local -nameserver "127.0.0.1:$STUB_PORT"
PID_OF[skydns-2w]=$SK_PID PORT_OF[skydns-2w]=$SK_DNS
start_unbound unbound-1 1 "$STUB_PORT"
PID_OF[unbound-1]=$UB_PID PORT_OF[unbound-1]=$UB_PORT
start_unbound unbound-2 2 "$STUB_PORT"
PID_OF[unbound-2]=$UB_PID PORT_OF[unbound-2]=$UB_PORT

sleep 1
for v in "${VARIANTS[@]}"; do
    check_server "$v" "${PORT_OF[$v]}"
    RSS_IDLE[$v]=$(status_kib "${PID_OF[$v]}" VmRSS)
done

# --- load ------------------------------------------------------------------
printf 'web.prod.%s A\n' "$STUB_DOMAIN" >"$WORK/cached.txt"
RESULTS="$WORK/results.tsv"
: >"$RESULTS"

# run_one SCENARIO VARIANT ROUND
run_one() {
    local scenario=$1 v=$2 round=$3 file extra=()
    if [[ $scenario == cached ]]; then
        file="$WORK/cached.txt"
    else
        # Unique names for this run only: a label no other run uses.
        file="$WORK/miss.txt"
        awk -v n="$MISS_NAMES" -v t="x$round${v//-/}" -v d="$STUB_DOMAIN" \
            'BEGIN { for (i = 0; i < n; i++) printf "r%d.%s.miss.%s A\n", i, t, d }' >"$file"
        extra=(-n 1)
    fi
    dnsperf_round "$scenario" "$v" "$round" "${PORT_OF[$v]}" "${PID_OF[$v]}" "${extra[@]}" -d "$file"
    rm -f "$WORK/miss.txt"
}

for round in $(seq 1 "$ROUNDS"); do
    round_order "$round" "${VARIANTS[@]}"
    for scenario in cached miss; do
        for v in "${ORDER[@]}"; do
            run_one "$scenario" "$v" "$round"
        done
    done
done

META="$WORK/meta.tsv"
{
    bench_meta
    printf 'unbound\t%s\n' "$(dpkg-query -W -f='${Version}' unbound 2>/dev/null || "$UNBOUND" -V | awk '/^Version/ { print $2; exit }')"
    printf 'miss_names\t%s\n' "$MISS_NAMES"
    for v in "${VARIANTS[@]}"; do
        printf 'rss_idle_%s\t%s\n' "$v" "${RSS_IDLE[$v]}"
        printf 'rss_peak_%s\t%s\n' "$v" "$(status_kib "${PID_OF[$v]}" VmHWM)"
        printf 'rss_end_%s\t%s\n' "$v" "$(status_kib "${PID_OF[$v]}" VmRSS)"
    done
} >"$META"

# --- report ----------------------------------------------------------------
REPORT="$WORK/report.md"
python3 - "$RESULTS" "$META" "$COMMANDS" "$WORK" "$REPORT" <<'PY'
import json, statistics, sys, pathlib

results, meta_path, commands_path, work, report = sys.argv[1:6]
meta = dict(line.rstrip("\n").split("\t", 1) for line in open(meta_path) if "\t" in line)
rows = []
for line in open(results):
    f = line.rstrip("\n").split("\t")
    rows.append(dict(scenario=f[0], variant=f[1], round=int(f[2]), qps=float(f[3]), lat=float(f[4]),
                     lost=int(f[5]), done=int(f[6]), ticks=int(f[7]), size=f[8], load=float(f[9]), codes=f[10]))
clk = int(meta["clk_tck"])
labels = {
    "skydns": "skydns, as shipped (one UDP thread)",
    "skydns-2w": "skydns, `-dns-workers 2` (two UDP threads)",
    "unbound-1": "unbound, `num-threads: 1`",
    "unbound-2": "unbound, `num-threads: 2`",
}
scen_label = {
    "cached": "cached: `web.prod.example.org A` (10 answers) repeated",
    "miss": "cache miss: unique `r<N>.<run>.miss.example.org A` → stub NXDOMAIN",
}
variants = ["skydns", "skydns-2w", "unbound-1", "unbound-2"]
med = {}
for s in ("cached", "miss"):
    for v in variants:
        rs = [r for r in rows if r["scenario"] == s and r["variant"] == v]
        if not rs:
            continue
        q = [r["qps"] for r in rs]
        done = sum(r["done"] for r in rs)
        cpu_us = sum(r["ticks"] for r in rs) / clk / done * 1e6 if done else float("nan")
        med[s, v] = dict(qps=statistics.median(q), lat=statistics.median(r["lat"] for r in rs),
                         qmin=min(q), qmax=max(q), lost=sum(r["lost"] for r in rs), size=rs[0]["size"],
                         codes=rs[0]["codes"], cpu=cpu_us, n=len(rs))

def best(s, prefix):
    cands = [v for v in variants if v.startswith(prefix) and (s, v) in med]
    return max(cands, key=lambda v: med[s, v]["qps"])

def g(x):
    return f"{x:,.0f}"

def mib(k):
    return f"{int(k) / 1024:.1f}"

loads = [r["load"] for r in rows]
out = []
w = out.append
w(f"Run of `scripts/bench-forward.sh` on {meta['date']}: {meta['nproc']} CPUs ({meta['cpu']}), "
  f"Linux {meta['kernel']}, unbound {meta['unbound']}, dnsperf {meta['dnsperf']}, skydns {meta['rev']}.")
w(f"Load average before the run: {meta['load_start']}; after: {meta['load_end']}; 1-minute load at the "
  f"start of each dnsperf run: {min(loads):.2f}–{max(loads):.2f} (other work on the machine shows here).")
w("")
w(f"{meta['rounds']} rounds, each server loaded in turn (order reversed every round), "
  f"dnsperf `-l {meta['seconds']} -c 10 -T 2`; medians over the rounds.")
w("")
w("**Best setting of each, side by side** (ratio skydns / unbound: QPS above 1 and latency below 1 favour skydns):")
w("")
w("| load | skydns best | unbound best | skydns QPS | unbound QPS | QPS ratio | skydns avg ms | unbound avg ms | latency ratio |")
w("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
summary = {}
for s in ("cached", "miss"):
    if not any(k[0] == s for k in med):
        continue
    a, b = best(s, "skydns"), best(s, "unbound")
    ma, mb = med[s, a], med[s, b]
    qr, lr = ma["qps"] / mb["qps"], (ma["lat"] / mb["lat"] if mb["lat"] else float("nan"))
    summary[s] = dict(skydns=round(ma["qps"]), unbound=round(mb["qps"]), skydns_variant=a, unbound_variant=b,
                      skydns_ms=round(ma["lat"], 3), unbound_ms=round(mb["lat"], 3), qps_ratio=round(qr, 3), lat_ratio=round(lr, 3))
    w(f"| {s} | {a} | {b} | {g(ma['qps'])} | {g(mb['qps'])} | **{qr:.2f}** | {ma['lat']:.3f} | {mb['lat']:.3f} | **{lr:.2f}** |")
w("")
w("Every server and setting (median QPS, its range over the rounds, median average latency, server CPU per answered query, "
  "dnsperf's average response size):")
w("")
w("| load | server | QPS (median) | QPS min–max | avg latency (ms) | server CPU µs/query | response bytes | lost | response codes (round 1) |")
w("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
for s in ("cached", "miss"):
    for v in variants:
        if (s, v) not in med:
            continue
        m = med[s, v]
        w(f"| {scen_label[s]} | {labels[v]} | {g(m['qps'])} | {g(m['qmin'])}–{g(m['qmax'])} | {m['lat']:.3f} | "
          f"{m['cpu']:.1f} | {m['size']} | {m['lost']} | {m['codes']} |")
w("")
w("In the cache-miss rows every query also costs the stub upstream (a skydns on the same two cores) one answer, "
  "so those figures are for the whole chain, the same chain for both servers.")
w("")
w("| memory (VmRSS idle after start and the check queries; VmHWM peak after all runs) | idle MiB | peak MiB |")
w("| --- | ---: | ---: |")
for v in variants:
    w(f"| {labels[v]} | {mib(meta['rss_idle_' + v])} | {mib(meta['rss_peak_' + v])} |")
w("")
w("Per-round figures (QPS / avg ms / 1-minute load average when the run started):")
w("")
w("| load | server | " + " | ".join(f"round {i}" for i in range(1, int(meta["rounds"]) + 1)) + " |")
w("| --- | --- |" + " ---: |" * int(meta["rounds"]))
for s in ("cached", "miss"):
    for v in variants:
        rs = sorted((r for r in rows if r["scenario"] == s and r["variant"] == v), key=lambda r: r["round"])
        if rs:
            w(f"| {s} | {v} | " + " | ".join(f"{g(r['qps'])} / {r['lat']:.3f} / {r['load']:.1f}" for r in rs) + " |")
w("")
w("Exact commands (ports are free 127.0.0.1 ports picked at run time):")
w("")
w("```sh")
w("cargo build --release -p skydns --locked")
w("# stub upstream, then the servers under test")
for line in open(commands_path):
    w(line.rstrip("\n").replace(work, "$WORK"))
w("# cached: cached.txt holds one line, `web.prod.example.org A`")
w(f"dnsperf -s 127.0.0.1 -p PORT -l {meta['seconds']} -c 10 -T 2 -d cached.txt")
w(f"# miss: miss.txt holds {int(meta['miss_names']):,} unique names `r<N>.<run>.miss.example.org A`, new for every run")
w(f"dnsperf -s 127.0.0.1 -p PORT -l {meta['seconds']} -c 10 -T 2 -n 1 -d miss.txt")
w("```")
w("")
conf = pathlib.Path(work, "unbound-1.conf")
if conf.exists():
    w("unbound configuration (`unbound-1.conf`; `unbound-2.conf` differs only in `num-threads: 2`, its port and directory):")
    w("")
    w("```")
    w(conf.read_text().rstrip().replace(work, "$WORK"))
    w("```")
    w("")
data = dict(summary=summary,
            rss={v: dict(idle=round(int(meta["rss_idle_" + v]) / 1024, 1), peak=round(int(meta["rss_peak_" + v]) / 1024, 1))
                 for v in variants},
            date=meta["date"])
w(f"<!-- bench-forward:data {json.dumps(data, separators=(',', ':'))} -->")
pathlib.Path(report).write_text("\n".join(out) + "\n")
PY

cat "$REPORT"
log "dnsperf's full output: ${RAW#"$ROOT"/}"

if [[ "${BENCH_NO_WRITE:-0}" == 1 ]]; then
    log "BENCH_NO_WRITE=1: $DOC left unchanged"
    exit 0
fi

replace_block "$DOC" bench-forward "$REPORT" "## Forwarding vs unbound"
log "figures written to ${DOC#"$ROOT"/}"
"$ROOT/scripts/bench-auth.sh" --chart
