# Developer shortcuts (install just with `cargo install just --locked`).
# CI does not use just: it runs scripts/test-all.sh through .ci/run.

# Format check, lint, then every test.
default: fmt-check clippy test

# Install what the tests need (apt, idempotent), then fmt, clippy, build and every test.
test:
    scripts/test-all.sh

# Run skydns on its embedded defaults, on unprivileged ports, with the redb store in ./data.
run-dns:
    cargo run --release -p skydns -- -dns 127.0.0.1:5353 -http 127.0.0.1:8080 -data ./data

# Benchmarks: `bench <subcommand>` (bench/src), each run saved as JSON in
# bench/runs/; `just plot` draws docs/performance.png and docs/soak.png from them.
# ARGS go to the subcommand (`just bench-auth --rounds 1 --seconds 5`).

# The DNS and API benchmarks in turn (auth, forward, api), then the charts.
bench: bench-auth bench-forward bench-dnssec bench-api plot

# skydns vs Knot DNS: A/SRV/NXDOMAIN QPS, private memory, start-up, 100,000 services.
bench-auth *ARGS:
    cargo run --release --locked -p skydns-bench -- auth {{ARGS}}

# skydns vs unbound as caching forwarders to a loopback stub (cached and cache-miss).
bench-forward *ARGS:
    cargo run --release --locked -p skydns-bench -- forward {{ARGS}}

# Signed answers (-dnssec, DO set) vs Knot DNS's mod-onlinesign; and vs our own unsigned answers.
bench-dnssec *ARGS:
    cargo run --release --locked -p skydns-bench -- dnssec {{ARGS}}

# Several instances on one etcd registry (local 3-member cluster): propagation A → B, QPS vs redb,
# registrations/s with 64 clients, etcd writes while 100,000 services heartbeat, cold start.
bench-etcd *ARGS:
    cargo run --release --locked -p skydns-bench -- etcd {{ARGS}}

# REST API with the embedded store: 64 clients register, heartbeat, delete (as shipped and -workers 1).
bench-api *ARGS:
    cargo run --release --locked -p skydns-bench -- api {{ARGS}}

# docker start/stop → DNS propagation p50/p99 over 50 containers (real engine).
bench-propagation *ARGS:
    cargo run --release --locked -p skydns-bench -- propagation {{ARGS}}

# DNS at 2x the measured capacity for 30 s: sheds load, memory bounded, answers right after.
overload *ARGS:
    cargo run --release --locked -p skydns-bench -- overload {{ARGS}}

# 10 minutes of mixed DNS and API traffic (--seconds to change): errors, memory and fds over time.
soak *ARGS:
    cargo run --release --locked -p skydns-bench -- soak {{ARGS}}

# The charts from the latest saved run of each kind (python3-matplotlib).
plot:
    bench/plot.py

# The static release build the images ship (smallest footprint; runs on any x86_64 Linux):
# target/x86_64-unknown-linux-gnu/release/skydns
static:
    RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --target x86_64-unknown-linux-gnu -p skydns -p skydock

# Format the workspace.
fmt:
    cargo fmt --all

# Check formatting without changing files.
fmt-check:
    cargo fmt --all -- --check

# Lint every target; warnings are errors.
clippy:
    cargo clippy --workspace --all-targets --locked -- -D warnings

# Run every fuzz target for SECONDS each (nightly + cargo-fuzz; not CI); prints executions, exec/s, findings.
fuzz SECONDS="60" *TARGETS:
    scripts/fuzz.sh -t {{SECONDS}} {{TARGETS}}
