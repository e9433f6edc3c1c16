#!/usr/bin/env bash
# Propagation benchmark of skydock (issue 4): how long a container takes to
# appear in DNS after `docker start` returns, and to disappear after
# `docker stop` is issued. Release `skydns` and `skydock` on loopback, the real
# Docker engine, 50 containers one after the other; p50 and p99 of both.
# Writes the figures into docs/performance.md between the
# `bench-propagation` markers (the rest of the file is left alone).
#
#   scripts/bench-propagation.sh                        # 50 containers
#   BENCH_CONTAINERS=20 scripts/bench-propagation.sh
#   BENCH_NO_WRITE=1 scripts/bench-propagation.sh       # print only
#
# Per container: `docker create` (not timed), then `docker start`; from the
# moment `docker start` returns, an A query for
# `<container>.busybox.<env>.skydns.local` is sent over UDP every 10 ms (a
# hand-built query from python3, no process per poll) until it answers the
# container's address. Then `docker stop -t 1` is issued and the same name is
# polled until NXDOMAIN; the stop is waited for before the next container
# (busybox httpd ignores SIGTERM, so every stop takes its 1 s grace: skydock
# deregisters at the kill event, at the start of that grace).
#
# Loopback only: skydns on free 127.0.0.1 ports (memory store, upstream
# 127.0.0.1:9), skydock on the Docker socket. The image is built locally by
# scripts/docker-test-image.sh (never pulled). Everything started here is
# stopped and removed on exit.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

COUNT="${BENCH_CONTAINERS:-50}"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
DOC="$ROOT/docs/performance.md"
IMAGE=skydns-test/busybox:latest
PREFIX="bench-prop-$(printf '%06x' $((RANDOM * 32768 + RANDOM)))"
ENVIRONMENT="b$(printf '%06x' $((RANDOM * 32768 + RANDOM)))"

# --- prerequisites ---------------------------------------------------------
command -v python3 >/dev/null 2>&1 || {
    echo "python3 is required" >&2
    exit 1
}
log "build: cargo build --release -p skydns -p skydock --locked"
cargo build --release -p skydns -p skydock --locked
log "test image: scripts/docker-test-image.sh"
scripts/docker-test-image.sh

# On exit, after skydns and skydock: remove what is left of this run's containers.
remove_containers() {
    local ids
    ids=$(docker ps -aq --filter "label=skydns-test=1" --filter "name=^$PREFIX-" 2>/dev/null || true)
    if [[ -n "$ids" ]]; then
        # shellcheck disable=SC2086
        docker rm -f -v $ids >/dev/null 2>&1 || true
    fi
}
CLEANUP_HOOK=remove_containers
init_work

# --- skydns ----------------------------------------------------------------
start_skydns skydns -- -nameserver 127.0.0.1:9
DNS_ADDR="127.0.0.1:$SK_DNS"
HTTP_ADDR=$SK_HTTP

# --- skydock ---------------------------------------------------------------
# skydock's own endpoint (if this build has one) on a free port, not 8081.
DOCK_EXTRA=()
if "$TARGET_DIR/release/skydock" --help 2>/dev/null | grep -q -- '--http'; then
    DOCK_EXTRA=(-http 127.0.0.1:0)
fi
env -u SKYDNS_PORT_8080_TCP_ADDR -u SKYDNS_PORT_8080_TCP_PORT NO_COLOR=1 SKYDOCK_LOG=info \
    "$TARGET_DIR/release/skydock" -s /var/run/docker.sock -skydns "http://$HTTP_ADDR" \
    -environment "$ENVIRONMENT" -owner "bench@$ENVIRONMENT" "${DOCK_EXTRA[@]}" \
    >"$WORK/skydock.log" 2>&1 &
SKYDOCK_PID=$!
PIDS+=("$SKYDOCK_PID")
for _ in $(seq 1 200); do
    grep -q 'skydock ready' "$WORK/skydock.log" && break
    kill -0 "$SKYDOCK_PID" 2>/dev/null || break
    sleep 0.1
done
grep -q 'skydock ready' "$WORK/skydock.log" || {
    echo "skydock did not get ready:" >&2
    cat "$WORK/skydock.log" >&2
    exit 1
}
log "skydock ready (environment $ENVIRONMENT); $COUNT containers, one at a time"

# --- measure ---------------------------------------------------------------
REPORT="$WORK/report.md"
timeout 900 python3 - "$DNS_ADDR" "$ENVIRONMENT" "$PREFIX" "$IMAGE" "$COUNT" "$REPORT" \
    "$LOAD_START" "$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)" <<'PY'
import datetime, os, random, socket, struct, subprocess, sys, time

dns, env, prefix, image, count, report, load, rev = sys.argv[1:9]
count = int(count)
host, port = dns.rsplit(":", 1)
server = (host, int(port))
POLL = 0.010
TIMEOUT = 30.0


def query(name):
    """(rcode, [IPv4 addresses]) of an A query over UDP; (None, []) on timeout."""
    qid = random.randrange(65536)
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\x00" + struct.pack(">HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1.0)
    try:
        s.sendto(q, server)
        while True:
            data, _ = s.recvfrom(4096)
            if len(data) >= 12 and struct.unpack(">H", data[:2])[0] == qid:
                break
    except socket.timeout:
        return None, []
    finally:
        s.close()
    flags, qd, an = struct.unpack(">HHH", data[2:8])
    pos = 12

    def skip_name(p):
        while True:
            n = data[p]
            if n == 0:
                return p + 1
            if n & 0xC0 == 0xC0:
                return p + 2
            p += n + 1

    for _ in range(qd):
        pos = skip_name(pos) + 4
    addrs = []
    for _ in range(an):
        pos = skip_name(pos)
        rtype, _cls, _ttl, rdlen = struct.unpack(">HHIH", data[pos:pos + 10])
        pos += 10
        if rtype == 1 and rdlen == 4:
            addrs.append(socket.inet_ntoa(data[pos:pos + 4]))
        pos += rdlen
    return flags & 0xF, addrs


def docker(*args):
    out = subprocess.run(["docker", *args], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"docker {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout.strip()


def wait_for(name, done):
    """Polls every 10 ms until done(rcode, addrs); the time it took."""
    start = time.monotonic()
    while True:
        rcode, addrs = query(name)
        now = time.monotonic()
        if done(rcode, addrs):
            return now
        if now - start > TIMEOUT:
            sys.exit(f"{name}: still {rcode} {addrs} after {TIMEOUT} s")
        time.sleep(POLL)


appear_issued, appear_returned, gone_issued, start_cli, stop_cli = [], [], [], [], []
for i in range(count):
    cname = f"{prefix}-{i:03d}"
    name = f"{cname}.busybox.{env}.skydns.local."
    docker("create", "--name", cname, "--label", "skydns-test=1", image)
    t0 = time.monotonic()
    docker("start", cname)
    t1 = time.monotonic()
    ip = docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", cname)
    t2 = wait_for(name, lambda rc, a: rc == 0 and a == [ip])
    appear_issued.append(t2 - t0)
    appear_returned.append(max(t2 - t1, 0.0))
    start_cli.append(t1 - t0)
    time.sleep(0.2)
    t3 = time.monotonic()
    stop = subprocess.Popen(["docker", "stop", "-t", "1", cname],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t4 = wait_for(name, lambda rc, a: rc == 3)
    gone_issued.append(t4 - t3)
    if stop.wait() != 0:
        sys.exit(f"docker stop {cname} failed: {stop.stderr.read().decode().strip()}")
    stop_cli.append(time.monotonic() - t3)
    docker("rm", "-f", "-v", cname)
    print(f"{i + 1:3d}/{count}: appear {1000 * (t2 - t1):7.1f} ms after start returned, "
          f"gone {1000 * (t4 - t3):7.1f} ms after stop issued", file=sys.stderr)


def pct(values, p):
    """Nearest-rank percentile."""
    v = sorted(values)
    k = max(1, -(-len(v) * p // 100))
    return v[int(k) - 1]


def ms(x):
    return f"{1000 * x:.1f}"


rows = [
    ("appear: `docker start` returned → name answers", appear_returned),
    ("appear: `docker start` issued → name answers", appear_issued),
    ("gone: `docker stop -t 1` issued → NXDOMAIN", gone_issued),
    ("(for scale) `docker start` CLI round trip", start_cli),
    ("(for scale) `docker stop -t 1` CLI round trip", stop_cli),
]
cpu = "unknown"
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
except OSError:
    pass
docker_version = docker("version", "--format", "{{.Server.Version}}")
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
with open(report, "w") as f:
    f.write(f"Run of `scripts/bench-propagation.sh` on {now}: {count} containers, one at a time;\n")
    f.write(f"{os.cpu_count()} CPUs ({cpu}), Linux {os.uname().release}, Docker Engine {docker_version},\n")
    f.write(f"load average before the run: {load}; release skydns and skydock built from {rev}.\n\n")
    f.write("| interval | p50 (ms) | p99 (ms) | min (ms) | max (ms) |\n")
    f.write("| --- | ---: | ---: | ---: | ---: |\n")
    for label, v in rows:
        f.write(f"| {label} | {ms(pct(v, 50))} | {ms(pct(v, 99))} | {ms(min(v))} | {ms(max(v))} |\n")
PY

cat "$REPORT"

if [[ "${BENCH_NO_WRITE:-0}" == 1 ]]; then
    log "BENCH_NO_WRITE=1: $DOC left unchanged"
    exit 0
fi

replace_block "$DOC" bench-propagation "$REPORT" "## Propagation"
log "figures written to ${DOC#"$ROOT"/}"
