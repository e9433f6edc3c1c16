#!/usr/bin/env bash
# The figure of issue 5 (docs/zero-downtime.md): the same load through nginx
# (127.0.0.1:8088) during a v1 -> v2 replacement of cool-api's 3 replicas,
# done two ways, each on a freshly started stack (scripts/stack-up.sh 3):
#
#   naive     the article's recipe: `docker run -d` 3 containers of the new
#             image on the stack network (skydock registers each once its
#             HEALTHCHECK passes), then at once `docker kill` the old ones
#   rollout   `skydock rollout --service cool-api --image skydns-test/cool-api:v2
#             --replicas 3 ...` (new ones healthy and in skydns first, old ones
#             drained out of DNS while they keep serving, then stopped)
#
# and, to show what nginx's retries hide, the same two again with nginx
# WITHOUT `proxy_next_upstream` retries (a second config generated from
# deploy/nginx.conf into the work directory and mounted over it by a compose
# override for that run only; deploy/nginx.conf is not changed):
#
#   naive-noretry, rollout-noretry
#
# Load: an embedded python3 generator, open loop: a scheduler hands out
# RATE (240) request slots per second to a pool of threads; each slot is one
# `GET /version` on a new TCP connection with a 2 s deadline for the whole
# exchange. Per second of send time it records ok / failed (non-2xx,
# connection error, timeout) and the version served. The load starts LEAD s
# before the replacement and runs at least MIN_SECONDS, and SETTLE s past the
# end of the replacement (never more than MAX_SECONDS).
#
#   scripts/zero-downtime-demo.sh                     # all four runs (~6 min on a quiet host)
#   RUNS="naive rollout" scripts/zero-downtime-demo.sh
#   RATE=300 MIN_SECONDS=60 scripts/zero-downtime-demo.sh
#   PLOT_ONLY=1 scripts/zero-downtime-demo.sh         # table + chart from OUT's data (no Docker)
#
# A shared host: other work competing for the CPU starves the replicas (busybox
# httpd forks per request; nginx's 1 s connect timeouts follow) and fails
# requests whatever the recipe. So each run waits (QUIET_WAIT, 900 s at most)
# until the host has used under QUIET_CORES (0.3) cores for 10 s, the load
# generator records per second the CPU used by the containers, by Docker's
# own processes, by itself and by everything else, and a run during which everything else used more than
# OTHER_MAX (0.5) cores (3 s mean) is set aside (<run>.busyN.*) and measured
# again, ATTEMPTS (3) times at most; the table shows that CPU and the attempt.
#
# Writes target/zero-downtime/<run>.json (per-second data), <run>.events
# (what was done when), <run>.nginx-errors.log, summary.md (the table), and
# the chart docs/zero-downtime.png (python3 + matplotlib; `pip install
# matplotlib` if missing; PNG= to write it elsewhere, PNG= empty for none).
#
# Needs: Docker with docker-compose v1, python3, the stack's local images
# (scripts/stack-up.sh builds the missing ones; nothing is pulled), and
# target/release/skydock (built with `cargo build --release -p skydock` when
# missing; SKYDOCK=path to use another binary). Exclusive use of the stack:
# it has fixed names (project skystack, network skydns-stack, 172.30.0.0/24).
# On exit, however it ends, the containers it started are removed and the
# stack is taken down.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

RUNS=${RUNS:-"naive rollout naive-noretry rollout-noretry"}
RATE=${RATE:-240}
WORKERS=${WORKERS:-800}
LEAD=${LEAD:-5}
SETTLE=${SETTLE:-5}
MIN_SECONDS=${MIN_SECONDS:-45}
MAX_SECONDS=${MAX_SECONDS:-150}
QUIET_CORES=${QUIET_CORES:-0.3}
QUIET_WAIT=${QUIET_WAIT:-900}
OTHER_MAX=${OTHER_MAX:-0.5}
ATTEMPTS=${ATTEMPTS:-3}
OUT=${OUT:-$ROOT/target/zero-downtime}
PNG=${PNG-$ROOT/docs/zero-downtime.png}
SKYDOCK=${SKYDOCK:-$ROOT/target/release/skydock}

PROJECT=skystack
COMPOSE=(docker-compose -f deploy/docker-compose.yml -p "$PROJECT")
URL_HOST=127.0.0.1
URL_PORT=8088
NEW_IMAGE=skydns-test/cool-api:v2
NAIVE_LABEL=zero-downtime-demo

say() { printf '==> %s\n' "$*" >&2; }
die() {
    printf 'zero-downtime-demo: %s\n' "$*" >&2
    exit 1
}

for r in $RUNS; do
    case "$r" in
        naive | rollout | naive-noretry | rollout-noretry) ;;
        *) die "unknown run '$r' (naive, rollout, naive-noretry, rollout-noretry)" ;;
    esac
done
if ! [[ "$RATE" =~ ^[0-9]+$ ]] || ((RATE < 200)); then
    die "RATE must be at least 200 requests/s"
fi
PLOT_ONLY=${PLOT_ONLY:-0}
command -v python3 >/dev/null || die "python3 is required"
if [[ -n "$PNG" ]] && ! python3 -c 'import matplotlib' 2>/dev/null; then
    die "python3 matplotlib is missing: pip install matplotlib (or PNG= for no chart)"
fi
if [[ "$PLOT_ONLY" == 1 ]]; then
    : # only the table and the chart, from what an earlier run left in $OUT
elif ! command -v docker-compose >/dev/null; then
    die "docker-compose (v1) is required"
elif ! docker info >/dev/null 2>&1; then
    die "no Docker engine answers at /var/run/docker.sock"
elif [[ ! -x "$SKYDOCK" ]]; then
    if [[ "$SKYDOCK" == "$ROOT/target/release/skydock" ]]; then
        say "cargo build --release -p skydock"
        cargo build --release -p skydock
    else
        die "$SKYDOCK is not an executable"
    fi
fi

mkdir -p "$OUT"
WORK=$(mktemp -d "$OUT/work.XXXXXX")
LOAD_PID=""

remove_started() {
    # What `skydock rollout` started (label skydock.rollout=<image>) and what
    # the naive recipe started (label zero-downtime-demo=naive).
    docker ps -aq --filter label=skydock.rollout | xargs -r docker rm -f >/dev/null 2>&1 || true
    docker ps -aq --filter "label=$NAIVE_LABEL" | xargs -r docker rm -f >/dev/null 2>&1 || true
}

stack_down() {
    remove_started
    scripts/stack-down.sh >/dev/null 2>&1 || true
}

cleanup() {
    local rc=$?
    set +e
    if [[ -n "$LOAD_PID" ]] && kill -0 "$LOAD_PID" 2>/dev/null; then
        kill "$LOAD_PID" 2>/dev/null
        wait "$LOAD_PID" 2>/dev/null
    fi
    if [[ "$PLOT_ONLY" != 1 ]]; then
        say "taking the stack down"
        stack_down
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the load generator -----------------------------------------------------
cat >"$WORK/load.py" <<'PY'
"""Open-loop HTTP load: RATE requests/s of GET /version, one TCP connection
each, a deadline of TIMEOUT s for the whole exchange; per-second counts."""
import json, os, queue, socket, sys, threading, time

host, port, rate, workers, timeout, max_s, stop_file, ready_file, out = sys.argv[1:10]
port, rate, workers = int(port), int(rate), int(workers)
timeout, max_s = float(timeout), float(max_s)
REQ = b"GET /version HTTP/1.0\r\nHost: cool-api\r\nUser-Agent: zero-downtime-demo\r\n\r\n"


def one():
    """-> (kind, version): kind 'ok', 'timeout', 'refused', 'conn-error' or 'http-NNN'."""
    deadline = time.monotonic() + timeout
    try:
        s = socket.create_connection((host, port), timeout=timeout)
    except ConnectionRefusedError:
        return "refused", None
    except socket.timeout:
        return "timeout", None
    except OSError:
        return "conn-error", None
    buf = b""
    try:
        s.sendall(REQ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout", None
            s.settimeout(left)
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    except socket.timeout:
        return "timeout", None
    except OSError:
        return "conn-error", None
    finally:
        s.close()
    head, _, body = buf.partition(b"\r\n\r\n")
    parts = head.split(b"\r\n", 1)[0].split()
    if len(parts) < 2 or not parts[1].isdigit():
        return "conn-error", None  # an empty or garbled answer
    code = int(parts[1])
    if not 200 <= code < 300:
        return "http-%d" % code, None
    return "ok", body.decode("utf-8", "replace").strip()


lock = threading.Lock()
secs = {}  # second -> {"sent", "ok", "failed", "kinds": {}, "versions": {}}
lat = []  # latencies of all requests, seconds
late = [0.0]  # worst lateness of a start behind its slot
q = queue.Queue()


def worker():
    while True:
        slot = q.get()
        if slot is None:
            return
        start = time.monotonic()
        kind, version = one()
        end = time.monotonic()
        sec = int(start - t0)
        with lock:
            late[0] = max(late[0], start - slot)
            lat.append(end - start)
            b = secs.setdefault(sec, {"sent": 0, "ok": 0, "failed": 0, "kinds": {}, "versions": {}})
            b["sent"] += 1
            if kind == "ok":
                b["ok"] += 1
                b["versions"][version] = b["versions"].get(version, 0) + 1
            else:
                b["failed"] += 1
                b["kinds"][kind] = b["kinds"].get(kind, 0) + 1


TICK = os.sysconf("SC_CLK_TCK")
DOCKER_CPU = "/sys/fs/cgroup/cpuacct/docker/cpuacct.usage"  # cgroup v1: all containers


# Docker's own processes (outside the containers' cgroups) and the demo's
# tools: what starting, health-checking and stopping containers costs.
PLUMBING = {"dockerd", "containerd", "containerd-shim", "runc", "docker", "docker-compose",
            "docker-proxy", "skydock"}


def plumbing():
    """pid -> CPU s (with reaped children) of the PLUMBING processes."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % pid) as f:
                st = f.read()
        except OSError:
            continue
        comm = st[st.find("(") + 1 : st.rfind(")")]
        if comm not in PLUMBING:
            continue
        f = st[st.rfind(")") + 2 :].split()
        out[pid] = sum(int(x) for x in f[11:15]) / TICK  # utime stime cutime cstime
    return out


def cpu_now():
    """(wall, host busy CPU s, containers' CPU s or None, this process' CPU s, plumbing)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    busy = (sum(v) - v[3] - v[4]) / TICK
    try:
        with open(DOCKER_CPU) as f:
            dock = int(f.read()) / 1e9
    except (OSError, ValueError):
        dock = None
    own = sum(os.times()[:2])
    return time.monotonic(), busy, dock, own, plumbing()


cpu = []  # per second, in cores: host busy, containers, load generator, Docker plumbing, the rest
done = threading.Event()


def sampler():
    """Host CPU per second, to tell a run on a quiet host from one that shared it."""
    prev = cpu_now()
    while not done.wait(1.0):
        cur = cpu_now()
        dt = cur[0] - prev[0]
        busy = (cur[1] - prev[1]) / dt
        own = (cur[3] - prev[3]) / dt
        dock = None if cur[2] is None or prev[2] is None else (cur[2] - prev[2]) / dt
        plumb = sum(max(0.0, t - prev[4].get(pid, 0.0)) for pid, t in cur[4].items()) / dt
        other = None if dock is None else max(0.0, busy - dock - own - plumb)
        cpu.append({"busy": round(busy, 3), "containers": dock and round(dock, 3),
                    "loadgen": round(own, 3), "plumbing": round(plumb, 3),
                    "other": other and round(other, 3)})
        prev = cur


threading.stack_size(256 * 1024)
pool = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
for t in pool:
    t.start()
t0 = time.monotonic()
t0_epoch = time.time()
threading.Thread(target=sampler, daemon=True).start()
with open(ready_file + ".tmp", "w") as f:
    f.write("%.6f\n" % t0_epoch)
os.rename(ready_file + ".tmp", ready_file)
i = 0
while True:
    now = time.monotonic()
    if now - t0 >= max_s or (i % 24 == 0 and os.path.exists(stop_file)):
        break
    slot = t0 + i / rate
    if slot > now:
        time.sleep(slot - now)
    q.put(slot)
    i += 1
duration = time.monotonic() - t0
done.set()
for _ in pool:
    q.put(None)
for t in pool:
    t.join()

lat.sort()
pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else 0.0
n = max(secs) + 1 if secs else 0
per = [secs.get(s, {"sent": 0, "ok": 0, "failed": 0, "kinds": {}, "versions": {}}) for s in range(n)]
kinds, versions = {}, {}
for b in per:
    for k, v in b["kinds"].items():
        kinds[k] = kinds.get(k, 0) + v
    for k, v in b["versions"].items():
        versions[k] = versions.get(k, 0) + v
full = [b["sent"] for b in per[: int(duration)]]
json.dump(
    {
        "t0_epoch": t0_epoch,
        "duration": duration,
        "rate": rate,
        "timeout": timeout,
        "sent": sum(b["sent"] for b in per),
        "ok": sum(b["ok"] for b in per),
        "failed": sum(b["failed"] for b in per),
        "kinds": kinds,
        "versions": versions,
        "min_sent_per_full_second": min(full) if full else 0,
        "worst_lateness": late[0],
        "latency": {"p50": pct(0.50), "p99": pct(0.99), "max": lat[-1] if lat else 0.0},
        "seconds": per,
        "cpu": cpu,
    },
    open(out, "w"),
)
PY

# --- the stack ----------------------------------------------------------------
# nginx without retries: deploy/nginx.conf with `proxy_next_upstream off`.
sed -e 's/^\([[:space:]]*\)proxy_next_upstream .*;/\1proxy_next_upstream off;/' \
    -e '/proxy_next_upstream_tries/d' deploy/nginx.conf >"$WORK/nginx-noretry.conf"
grep -q 'proxy_next_upstream off;' "$WORK/nginx-noretry.conf" || die "cannot derive the no-retry nginx config"
cat >"$WORK/noretry.yml" <<EOF
version: "2.4"
services:
  nginx:
    volumes:
      - $WORK/nginx-noretry.conf:/etc/nginx/nginx.conf:ro
EOF

nginx_id() { "${COMPOSE[@]}" ps -q nginx; }

wait_serving() {
    local deadline=$((SECONDS + 60)) body
    while :; do
        body=$(curl -fsS --max-time 2 "http://$URL_HOST:$URL_PORT/version" 2>/dev/null || true)
        [[ "$body" == v1 ]] && return 0
        ((SECONDS < deadline)) || die "nginx does not serve v1 (answered '$body')"
        sleep 0.5
    done
}

fresh_stack() { # $1: retry | noretry
    say "fresh stack (scripts/stack-down.sh, scripts/stack-up.sh 3)"
    stack_down
    scripts/stack-up.sh 3 >&2
    if [[ "$1" == noretry ]]; then
        say "nginx with $WORK/nginx-noretry.conf (no proxy_next_upstream retries)"
        "${COMPOSE[@]}" -f "$WORK/noretry.yml" up -d --no-deps nginx >&2
    fi
    wait_serving
    # Which config nginx really runs.
    local conf
    conf=$(docker exec "$(nginx_id)" nginx -T 2>/dev/null | grep -E '^[[:space:]]*proxy_next_upstream ' | tr -s ' ' || true)
    say "nginx runs with:${conf}"
    if [[ "$1" == noretry ]]; then
        [[ "$conf" == *"proxy_next_upstream off;"* ]] || die "nginx does not run the no-retry config"
    else
        [[ "$conf" == *"proxy_next_upstream error timeout"* ]] || die "nginx does not run deploy/nginx.conf"
    fi
    # Let nginx's resolver cache see all three replicas (valid=5s).
    sleep 6
}

event() { # $1: run, rest: label
    local run=$1
    shift
    printf '%s\t%s\n' "$(date +%s.%N)" "$*" >>"$OUT/$run.events"
}

naive() { # $1: run
    local run=$1 old i
    old=$(docker ps -q --filter "label=com.docker.compose.project=$PROJECT" \
        --filter label=com.docker.compose.service=cool-api)
    [[ $(wc -w <<<"$old") -eq 3 ]] || die "expected 3 old replicas, found: $old"
    event "$run" "docker run v2 x3"
    for i in 1 2 3; do
        docker run -d --name "cool-api-naive-$i" --network skydns-stack \
            --label "$NAIVE_LABEL=naive" "$NEW_IMAGE" >/dev/null
    done
    event "$run" "docker kill v1 x3"
    # shellcheck disable=SC2086
    docker kill $old >/dev/null
    event "$run" "killed"
    say "naive: started cool-api-naive-{1,2,3} ($NEW_IMAGE), killed $(tr '\n' ' ' <<<"$old")"
}

rollout() { # $1: run
    local run=$1
    event "$run" "skydock rollout"
    "$SKYDOCK" rollout --service cool-api --image "$NEW_IMAGE" --replicas 3 \
        -s /var/run/docker.sock --skydns http://172.30.0.53:8080 --agent http://172.30.0.54:8081 |
        while IFS= read -r line; do
            printf '      %s\n' "$line" >&2
            if [[ "$line" == "["* ]]; then
                event "$run" "$line"
            fi
        done
    event "$run" "rollout done"
}

one_run() { # $1: naive | rollout | naive-noretry | rollout-noretry
    local run=$1 how=${1%-noretry} mode=retry t0 now end_at load_before ready=$WORK/$1.ready stop=$WORK/$1.stop
    [[ "$run" == *-noretry ]] && mode=noretry
    say "=== run $run"
    fresh_stack "$mode"
    rm -f "$OUT/$run.events" "$OUT/$run.json" "$ready" "$stop"

    load_before=$(cut -d' ' -f1 /proc/loadavg)
    python3 "$WORK/load.py" "$URL_HOST" "$URL_PORT" "$RATE" "$WORKERS" 2 "$MAX_SECONDS" \
        "$stop" "$ready" "$OUT/$run.json" &
    LOAD_PID=$!
    while [[ ! -s "$ready" ]]; do
        kill -0 "$LOAD_PID" 2>/dev/null || die "the load generator did not start"
        sleep 0.05
    done
    t0=$(<"$ready")
    say "load: $RATE requests/s through http://$URL_HOST:$URL_PORT/version"
    sleep "$LEAD"

    "$how" "$run"

    # Keep the load up SETTLE s past the action and MIN_SECONDS in all.
    now=$(date +%s.%N)
    end_at=$(python3 -c "import sys; t0, now, s, m = map(float, sys.argv[1:]); print(max(now + s, t0 + m))" \
        "$t0" "$now" "$SETTLE" "$MIN_SECONDS")
    sleep "$(python3 -c "import sys, time; print(max(0.0, float(sys.argv[1]) - time.time()))" "$end_at")"
    touch "$stop"
    wait "$LOAD_PID" || die "the load generator failed"
    LOAD_PID=""

    docker logs --since "$t0" "$(nginx_id)" 2>"$OUT/$run.nginx-errors.log" >/dev/null || true
    python3 - "$OUT/$run.json" "$OUT/$run.nginx-errors.log" "$load_before" "$(cut -d' ' -f1 /proc/loadavg)" <<'PY' >&2
import json, re, sys
d = json.load(open(sys.argv[1]))
log = open(sys.argv[2], errors="replace").read()
ups = len(re.findall(r"upstream timed out|connect\(\) failed|no live upstreams|could not be resolved", log))
d["nginx_upstream_errors"] = ups
# Other work on the host slows the app's replicas down (busybox httpd forks per request).
d["loadavg"] = [float(sys.argv[3]), float(sys.argv[4])]
other = [c["other"] or 0.0 for c in d["cpu"]]
d["other_cpu_max3"] = max((sum(other[i:i + 3]) / 3 for i in range(max(1, len(other) - 2))), default=0.0)
d["stack_cpu_mean"] = sum((c["containers"] or 0.0) + c["loadgen"] + c.get("plumbing", 0.0)
                         for c in d["cpu"]) / max(1, len(d["cpu"]))
json.dump(d, open(sys.argv[1], "w"))
print("    sent %d in %.1f s (%.0f/s, min %d in a second), ok %d, failed %d %s; "
      "versions %s; nginx logged %d upstream errors; CPU: stack + Docker + load %.2f cores (mean), "
      "other work up to %.2f cores (3 s mean)"
      % (d["sent"], d["duration"], d["sent"] / d["duration"], d["min_sent_per_full_second"],
         d["ok"], d["failed"], d["kinds"] or "", d["versions"], ups, d["stack_cpu_mean"],
         d["other_cpu_max3"]))
PY
    # Whatever the recipe, only v2 is left serving.
    local body
    body=$(curl -fsS --max-time 2 "http://$URL_HOST:$URL_PORT/version" 2>/dev/null || true)
    say "after $run: nginx serves '$body'; v1 containers left: $(docker ps -q --filter ancestor=skydns-test/cool-api:v1 | wc -l)"
}

# Waits (at most QUIET_WAIT s) until the host's CPU has been below QUIET_CORES
# for 10 s in a row: other work competing for the CPU starves the replicas
# (busybox httpd forks per request) and fails requests whatever the recipe.
wait_quiet() {
    python3 - "$QUIET_CORES" "$QUIET_WAIT" <<'PY' >&2
import os, sys, time
limit, wait = float(sys.argv[1]), float(sys.argv[2])
tick = os.sysconf("SC_CLK_TCK")
def busy():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return (sum(v) - v[3] - v[4]) / tick
start, quiet, prev, cores = time.monotonic(), 0, busy(), 0.0
while quiet < 10:
    if time.monotonic() - start > wait:
        print("==> the host is still busy (%.2f cores in use) after %d s; measuring anyway" % (cores, wait))
        sys.exit(0)
    time.sleep(1)
    cur = busy()
    cores, prev = cur - prev, cur
    quiet = quiet + 1 if cores < limit else 0
if time.monotonic() - start > 12:
    print("==> waited %.0f s for the host to be quiet" % (time.monotonic() - start))
PY
}

if [[ "$PLOT_ONLY" != 1 ]]; then
    rm -f "$OUT"/summary.md "$OUT"/*.busy*.*
    for r in $RUNS; do
        for ((attempt = 1; ; attempt++)); do
            stack_down # the stack's own health checks are not "other work"
            wait_quiet
            one_run "$r"
            other=$(python3 -c 'import json, sys; print("%.2f" % json.load(open(sys.argv[1]))["other_cpu_max3"])' "$OUT/$r.json")
            if python3 -c 'import sys; sys.exit(float(sys.argv[1]) > float(sys.argv[2]))' "$other" "$OTHER_MAX"; then
                break # quiet enough
            fi
            if ((attempt >= ATTEMPTS)); then
                say "other work used up to $other cores during $r (attempt $attempt of $ATTEMPTS): kept, see the table"
                break
            fi
            say "other work used up to $other cores during $r: set aside as $r.busy$attempt.*, measuring again"
            for f in json events nginx-errors.log; do
                mv "$OUT/$r.$f" "$OUT/$r.busy$attempt.$f"
            done
        done
        python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); d["attempt"] = int(sys.argv[2]); json.dump(d, open(sys.argv[1], "w"))' \
            "$OUT/$r.json" "$attempt"
    done
fi

# --- summary and chart --------------------------------------------------------------
# shellcheck disable=SC2086 # one argument per run
python3 - "$OUT" "$PNG" $RUNS <<'PY'
import json, os, re, sys

out, png, runs = sys.argv[1], sys.argv[2], sys.argv[3:]
TITLE = {
    "naive": "(a) article's recipe: docker run v2 x3, docker kill v1 x3",
    "rollout": "(b) skydock rollout",
    "naive-noretry": "(c) article's recipe, nginx without proxy_next_upstream retries",
    "rollout-noretry": "(d) skydock rollout, nginx without proxy_next_upstream retries",
}
data, events = {}, {}
for r in runs:
    data[r] = json.load(open(os.path.join(out, r + ".json")))
    t0 = data[r]["t0_epoch"]
    events[r] = []
    for line in open(os.path.join(out, r + ".events")):
        ts, label = line.rstrip("\n").split("\t", 1)
        events[r].append((float(ts) - t0, label))


def action_span(r):
    ev = dict((l, t) for t, l in events[r])
    start = events[r][0][0]
    end = ev.get("killed", ev.get("rollout done", events[r][-1][0]))
    return start, end


rows = ["| run | nginx retries | requests sent | rate (req/s) | ok | failed | failure kinds | "
        "seconds with failures (since the load started) | replacement: started at / took | load duration | "
        "nginx upstream errors logged | latency p50 / p99 / max | CPU (cores of %d): stack + Docker + load mean / other work max | attempt |" % os.cpu_count(),
        "|---|---|---:|---:|---:|---:|---|---|---:|---:|---:|---|---|---:|"]
for r in runs:
    d = data[r]
    start, end = action_span(r)
    failing = [i for i, b in enumerate(d["seconds"]) if b["failed"]]
    window = ("%d-%d (%d with failures)" % (failing[0], failing[-1], len(failing))) if failing else "none"
    kinds = ", ".join("%s %d" % kv for kv in sorted(d["kinds"].items(), key=lambda kv: -kv[1])) or "none"
    lat = d["latency"]
    rows.append("| %s | %s | %d | %.0f | %d | **%d** (%.2f %%) | %s | %s | %.1f s / %.1f s | %.1f s | %d | %.0f / %.0f / %.0f ms | %.2f / %.2f | %d |" % (
        r, "no" if r.endswith("noretry") else "yes (deploy/nginx.conf)", d["sent"], d["sent"] / d["duration"],
        d["ok"], d["failed"], 100.0 * d["failed"] / max(1, d["sent"]), kinds, window, start, end - start,
        d["duration"], d.get("nginx_upstream_errors", 0), lat["p50"] * 1e3, lat["p99"] * 1e3, lat["max"] * 1e3,
        d["stack_cpu_mean"], d["other_cpu_max3"], d.get("attempt", 1)))
table = "\n".join(rows) + "\n"
open(os.path.join(out, "summary.md"), "w").write(table)
print()
print(table)

if png:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(runs), 1, figsize=(11, 2.9 * len(runs)), sharex=True, squeeze=False)
    xmax = max(int(d["duration"]) for d in data.values())
    for ax, r in zip(axes[:, 0], runs):
        d = data[r]
        xs = range(len(d["seconds"]))
        v1 = [b["versions"].get("v1", 0) for b in d["seconds"]]
        v2 = [b["versions"].get("v2", 0) for b in d["seconds"]]
        other = [b["ok"] - a - c for b, a, c in zip(d["seconds"], v1, v2)]
        failed = [b["failed"] for b in d["seconds"]]
        ax.bar(xs, v1, width=1.0, align="edge", color="#4c78a8", label="ok, v1")
        ax.bar(xs, v2, width=1.0, align="edge", bottom=v1, color="#54a24b", label="ok, v2")
        base = [a + c for a, c in zip(v1, v2)]
        if any(other):
            ax.bar(xs, other, width=1.0, align="edge", bottom=base, color="#bab0ac", label="ok, other")
            base = [a + o for a, o in zip(base, other)]
        ax.bar(xs, failed, width=1.0, align="edge", bottom=base, color="#e45756", label="failed")
        marks = []  # (time, short label); rollout steps as they were printed
        for t, label in events[r]:
            m = re.match(r"\[(\d)/5\]", label)
            if label in ("killed", "rollout done") or (m and m.group(1) == "1"):
                continue
            if m:
                step = m.group(1)
                drain = re.search(r"draining for (\d+) s", label)
                label = {"2": "[2/5] v2 x3 started", "3": "[3/5] v2 in skydns",
                         "4": "[4/5] v1 out of DNS", "5": "[5/5] v1 removed"}[step]
                if step == "4" and drain:
                    marks.append((t + int(drain.group(1)),
                                  "v1: docker stop (after %s s)" % drain.group(1)))
            marks.append((t, label))
        marks.sort()
        x = -1.0
        for t, label in marks:
            ax.axvline(t, color="black", lw=0.8, ls="--")
            x = max(t + 0.15, x + 0.8)  # labels of close events side by side
            ax.text(x, d["rate"] * 1.27, label, rotation=90, va="top", ha="left", fontsize=6.5)
        ax.set_ylim(0, d["rate"] * 1.3)
        if d.get("cpu"):
            # Everything on the host but the stack and the load generator.
            ax2 = ax.twinx()
            ax2.plot([i + 1 for i in range(len(d["cpu"]))], [c["other"] or 0.0 for c in d["cpu"]],
                     color="black", lw=0.8, label="other work on the host (CPU cores, right axis)")
            ax2.set_ylim(0, os.cpu_count() * 1.3)
            ax2.set_ylabel("cores", fontsize=7)
            ax2.tick_params(labelsize=7)
            ax2.legend(loc="lower right", fontsize=7)
        ax.set_xlim(0, xmax)
        ax.set_ylabel("requests / s")
        ax.set_title("%s: %d sent, %d failed" % (TITLE.get(r, r), d["sent"], d["failed"]), fontsize=9, loc="left")
        ax.legend(loc="lower left", fontsize=7, ncol=4)
    axes[-1, 0].set_xlabel("seconds since the load started (%d requests/s offered, GET /version through nginx, 2 s timeout)"
                           % data[runs[0]]["rate"])
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    print("chart:", png)
PY
say "data in $OUT (summary.md, <run>.json, <run>.events, <run>.nginx-errors.log)"
