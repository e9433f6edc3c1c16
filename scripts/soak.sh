#!/usr/bin/env bash
# Soak (issue 8; a benchmark script, not CI): SOAK_SECONDS (default 600) of
# mixed traffic against the release skydns with the embedded store on:
#   - dnsperf at SOAK_QPS (default 3000) queries/s: local A, SRV, NXDOMAIN and
#     a 20-address name whose services are heartbeated, plus forwarded names
#     answered by a stub upstream (a second skydns, authoritative for
#     upstream.test, on loopback): one cached name and a stream of unique
#     names that miss the cache;
#   - scripts/soak_api.py: registrations, heartbeats, deletes and expiries,
#     each checked (about 100 requests/s);
#   - RSS and open fds of skydns sampled every 10 s.
# Passes when dnsperf lost nothing and got no SERVFAIL/REFUSED, the API
# checker saw no error, and RSS after the warm-up (SOAK_WARMUP, default the
# first 60 s or a third of a shorter run) never grew more than 10 % above
# its value at the end of the warm-up. Writes the `soak` section of
# docs/reliability.md and docs/soak.png.
#
#   scripts/soak.sh                       # 10 minutes
#   SOAK_SECONDS=120 scripts/soak.sh      # a short check
#   SOAK_NO_WRITE=1 scripts/soak.sh       # print only
#
# Loopback only; everything started here is killed on exit; the whole run is
# bounded by SOAK_SECONDS + 300 s.
set -euo pipefail

DURATION="${SOAK_SECONDS:-600}"
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
rerun_under_timeout SOAK_UNDER_TIMEOUT "$((DURATION + 300))" 10 "$@"
init_work
cd "$ROOT"
DOC="$ROOT/docs/reliability.md"

QPS="${SOAK_QPS:-3000}"
WARMUP="${SOAK_WARMUP:-$((DURATION / 3 < 60 ? DURATION / 3 : 60))}"
PNG="$ROOT/docs/soak.png"
DATE_START=$(date -u '+%Y-%m-%d %H:%M UTC')

log "build: cargo build --release -p skydns --locked"
cargo build --release -p skydns --locked
need_tools dnsperf curl python3
PLOT_PY=$(plot_python)

start_skydns stub -- -domain upstream.test -no-forward
STUB_DNS=$SK_DNS
for i in 1 2 3; do
    register "$SK_API" "up$i" web prod "192.0.2.$i" 80 36000
done
mkdir -p "$WORK/data"
# SOAK_STORE=memory runs without -data (to tell the store's memory from the rest).
STORE_ARGS=(-data "$WORK/data")
[[ "${SOAK_STORE:-redb}" == memory ]] && STORE_ARGS=()
# SOAK_SKYDNS_ARGS adds flags (e.g. "-cache-size 0") to the skydns under test.
read -r -a EXTRA_ARGS <<<"${SOAK_SKYDNS_ARGS:-}"
start_skydns soak -- "${STORE_ARGS[@]}" -nameserver "127.0.0.1:$STUB_DNS" -forward-timeout 1s "${EXTRA_ARGS[@]}"
PID=$SK_PID
API=$SK_API
for i in $(seq 1 10); do
    register "$API" "web$i" web prod "10.0.0.$i" 80 36000
done
[[ "$(dnsq "$SK_DNS" web.prod.upstream.test)" == "0 3 "* ]] || {
    echo "forwarding to the stub does not work" >&2
    exit 1
}

python3 - "$WORK/q.txt" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    for n in range(20000):
        f.write("web.prod.skydns.local A\n" * 4)
        f.write("web.prod.skydns.local SRV\n" * 2)
        f.write("nothere.prod.skydns.local A\n")
        f.write("steady.soak.skydns.local A\n")
        f.write("web.prod.upstream.test A\n")
        f.write(f"m{n}.prod.upstream.test A\n")
PY

log "soak: ${DURATION} s, dnsperf at $QPS queries/s, API traffic, RSS every 10 s (warm-up ${WARMUP} s)"
: >"$WORK/rss.csv"
T0=$(date +%s)
(
    while kill -0 "$PID" 2>/dev/null; do
        echo "$(($(date +%s) - T0)),$(rss_kb "$PID"),$(fd_count "$PID")"
        sleep 10
    done
) >"$WORK/rss.csv" &
SAMPLER=$!
PIDS+=("$SAMPLER")
python3 "$ROOT/scripts/soak_api.py" "$API" "$DURATION" "$WORK/api.json" &
APIGEN=$!
PIDS+=("$APIGEN")
sleep 1 # the steady services exist before dnsperf asks for them
api_rc=0
dns_rc=0
run dnsperf -s 127.0.0.1 -p "$SK_DNS" -d "$WORK/q.txt" -l "$((DURATION - 1))" -c 4 -T 1 -Q "$QPS" -t 2 \
    >"$WORK/dnsperf.txt" 2>&1 || dns_rc=$?
wait "$APIGEN" || api_rc=$?
sleep 1
echo "$(($(date +%s) - T0)),$(rss_kb "$PID"),$(fd_count "$PID")" >>"$WORK/rss.csv"
kill "$SAMPLER" 2>/dev/null || true
cp "$WORK/rss.csv" "$TARGET_DIR/soak-rss.csv"

SENT=$(dnsperf_stat "$WORK/dnsperf.txt" 'Queries sent')
LOST=$(dnsperf_stat "$WORK/dnsperf.txt" 'Queries lost')
CODES=$(dnsperf_codes "$WORK/dnsperf.txt")
LAT=$(dnsperf_stat "$WORK/dnsperf.txt" 'Average Latency')
BAD_CODES=$(grep -oE '(SERVFAIL|REFUSED|FORMERR|NOTIMP)[^,]*' <<<"$CODES" || true)

OUT="$WORK/section.md"
set +e
"$PLOT_PY" - "$WORK/rss.csv" "$WARMUP" "$PNG" "$WORK/api.json" "$OUT" "${SENT:-0}" "${LOST:-?}" "$CODES" \
    "${LAT:-?}" "$dns_rc" "$api_rc" "$BAD_CODES" "$DURATION" "$QPS" "$DATE_START" "$(nproc)" \
    "$(cut -d' ' -f1-3 /proc/loadavg)" "${SOAK_NO_WRITE:-}" <<'PY'
import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

(csv, warmup, png, api_json, out, sent, lost, codes, lat, dns_rc, api_rc, bad_codes,
 duration, qps, date, cores, load, no_write) = sys.argv[1:]
warmup = int(warmup)
rows = [tuple(int(x) for x in l.split(",")) for l in open(csv) if l.strip()]
try:
    api = json.load(open(api_json))
except (OSError, ValueError):
    api = {"counts": {}, "errors": "no stats (the API checker failed)", "first_errors": []}
after = [r for r in rows if r[0] >= warmup]
base = after[0][1] if after else rows[-1][1]
peak = max(r[1] for r in after) if after else base
growth = (peak - base) / base * 100 if base else 0.0
api_errors = api.get("errors")
ok = (lost == "0" and not bad_codes and dns_rc == "0" and api_rc == "0" and api_errors == 0
      and growth <= 10.0)
mib = lambda k: k / 1024

if not no_write:
    fig, ax = plt.subplots(figsize=(8, 4.2))
    ts = [r[0] for r in rows]
    ax.plot(ts, [mib(r[1]) for r in rows], marker="o", ms=3, color="#d1495b", label="RSS (MiB)")
    ax.axvline(warmup, color="grey", ls=":", label=f"end of warm-up ({warmup} s)")
    ax.axhline(mib(base) * 1.1, color="#d1495b", ls="--", lw=0.8, label="+10 % over the warm-up value")
    ax.set_xlabel("seconds")
    ax.set_ylabel("RSS (MiB)")
    ax.set_ylim(0, max(mib(r[1]) for r in rows) * 1.4)
    ax2 = ax.twinx()
    ax2.plot(ts, [r[2] for r in rows], color="#00798c", lw=1, label="open fds")
    ax2.set_ylabel("open fds")
    ax2.set_ylim(0, max(r[2] for r in rows) * 2)
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8, loc="lower right")
    ax.set_title(f"skydns soak: {duration} s, dnsperf {qps} q/s + API traffic + forwarding", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=110)

c = api.get("counts", {})
with open(out, "w") as f:
    w = lambda s="": f.write(s + "\n")
    w(f"Run {date} on {cores} cores, load average at start {load}: `SOAK_SECONDS={duration} scripts/soak.sh`.")
    w()
    w("| figure | value |")
    w("|---|---|")
    w(f"| DNS queries sent (dnsperf `-Q {qps} -c 4 -T 1 -t 2`) | {sent} |")
    w(f"| lost (no answer within 2 s) | {lost} |")
    w(f"| response codes | {codes} |")
    w(f"| average latency | {lat} s |")
    w(f"| API: registrations / heartbeats / deletes | {c.get('register', 0)} / {c.get('heartbeat', 0)} / {c.get('delete', 0)} |")
    w(f"| API: checked gone after delete / after expiry | {c.get('deleted', 0)} / {c.get('expired', 0)} |")
    w(f"| API errors (any unexpected status) | {api_errors} |")
    w(f"| RSS at the end of the warm-up ({warmup} s) → peak after | {mib(base):.1f} → {mib(peak):.1f} MiB ({growth:+.1f} %) |")
    w(f"| open fds first → last sample | {rows[0][2]} → {rows[-1][2]} |")
    w(f"| verdict | {'ok' if ok else 'FAILED'} |")
    if api.get("first_errors"):
        w()
        w("First API errors:")
        w()
        for e in api["first_errors"][:10]:
            w(f"- `{e}`")
    w()
    w("RSS samples (s, KiB, fds): " + "; ".join(f"{r[0]},{r[1]},{r[2]}" for r in rows))
    w()
    w("![RSS during the soak](soak.png)")
sys.exit(0 if ok else 1)
PY
verdict=$?
set -e
cat "$OUT"
if [[ -z "${SOAK_NO_WRITE:-}" ]]; then
    replace_block "$DOC" soak "$OUT"
    log "wrote the soak section of docs/reliability.md and docs/soak.png"
fi
exit "$verdict"
