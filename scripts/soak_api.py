#!/usr/bin/env python3
"""API traffic for scripts/soak.sh: registrations, heartbeats, deletes and
expiries against one skydns, each checked against what the API promises.

    soak_api.py BASE_URL SECONDS STATS_JSON

- steady: STEADY services (TTL 6 s) registered at start and heartbeated
  every 2 s for the whole run: every heartbeat must answer 200, and at the
  end every one must still be there.
- churn: every second CHURN new services (TTL 60 s) are registered (201);
  each is deleted 3 s later (200), and must then be gone (404).
- expiry: every second EXPIRE services with a TTL of 2 s are registered and
  never heartbeated; 5 s later they must be gone (404: expired).

Anything else is an error; the stats file has the counts and the first
errors. Exit status 1 when there was any error. Loopback only: the URL
comes from soak.sh.
"""

import http.client
import json
import sys
import time
import urllib.parse

STEADY, CHURN, EXPIRE = 20, 40, 10


class Api:
    def __init__(self, base):
        u = urllib.parse.urlsplit(base)
        self.host, self.port = u.hostname, u.port
        self.conn = None
        self.errors, self.counts = [], {}

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data else {}
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
            try:
                self.conn.request(method, path, body=data, headers=headers)
                resp = self.conn.getresponse()
                resp.read()
                return resp.status
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # The server closed a keep-alive connection: reconnect once.
                self.conn.close()
                self.conn = None
                if attempt == 1:
                    raise
        return None

    def expect(self, kind, method, path, want, body=None):
        self.counts[kind] = self.counts.get(kind, 0) + 1
        try:
            got = self.call(method, path, body)
        except Exception as e:  # noqa: BLE001 - every failure is counted
            got = f"{type(e).__name__}: {e}"
            self.conn = None
        if got != want:
            key = kind + "_errors"
            self.counts[key] = self.counts.get(key, 0) + 1
            if len(self.errors) < 20:
                self.errors.append(f"{time.strftime('%H:%M:%S')} {method} {path}: want {want}, got {got}")


def service(name, host, ttl):
    return {"Name": name, "Version": "1.0.0", "Environment": "soak", "Region": "east",
            "Host": host, "Port": 8080, "TTL": ttl}


def main():
    base, seconds, stats_path = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    api = Api(base)
    for i in range(STEADY):
        api.expect("register", "PUT", f"/skydns/services/steady{i}", 201,
                   service("steady", f"10.1.0.{i + 1}", 6))
    start = time.monotonic()
    tick, next_beat = 0, start
    deletes, checks = [], []  # (due, path, want, kind)
    while time.monotonic() - start < seconds:
        now = time.monotonic()
        if now >= next_beat:
            for i in range(STEADY):
                api.expect("heartbeat", "PATCH", f"/skydns/services/steady{i}", 200, {"TTL": 6})
            next_beat += 2
        for j in range(CHURN):
            uuid = f"c{tick}x{j}"
            api.expect("register", "PUT", f"/skydns/services/{uuid}", 201,
                       service("churn", f"10.2.{j % 250}.{tick % 250 + 1}", 60))
            deletes.append((now + 3, uuid))
        for j in range(EXPIRE):
            uuid = f"e{tick}x{j}"
            api.expect("register", "PUT", f"/skydns/services/{uuid}", 201,
                       service("expire", f"10.3.{j % 250}.{tick % 250 + 1}", 2))
            checks.append((now + 5, f"/skydns/services/{uuid}", 404, "expired"))
        for due, uuid in [d for d in deletes if d[0] <= now]:
            api.expect("delete", "DELETE", f"/skydns/services/{uuid}", 200)
            checks.append((now, f"/skydns/services/{uuid}", 404, "deleted"))
        deletes = [d for d in deletes if d[0] > now]
        for due, path, want, kind in [c for c in checks if c[0] <= now]:
            api.expect(kind, "GET", path, want)
        checks = [c for c in checks if c[0] > now]
        tick += 1
        time.sleep(max(0.0, start + tick - time.monotonic()))
    for i in range(STEADY):
        api.expect("steady_at_end", "GET", f"/skydns/services/steady{i}", 200)
    errors = sum(v for k, v in api.counts.items() if k.endswith("_errors"))
    with open(stats_path, "w") as f:
        json.dump({"counts": api.counts, "errors": errors, "first_errors": api.errors}, f, indent=1)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
