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

# dnsperf against the release binary; writes the figures to docs/performance.md.
bench-dns:
    scripts/bench-dns.sh

# Every DNS benchmark in turn (bench-dns, bench-auth, bench-forward); writes docs/performance.md and .png.
bench: bench-dns bench-auth bench-forward

# skydns vs Knot DNS (authoritative A/SRV/NXDOMAIN, memory, start, 100,000 services); writes docs/performance.md.
bench-auth:
    scripts/bench-auth.sh

# skydns vs unbound as caching forwarders to a loopback stub (cached and cache-miss); writes docs/performance.md.
bench-forward:
    scripts/bench-forward.sh

# docker start/stop → DNS propagation p50/p99 over 50 containers (real engine); writes docs/performance.md.
bench-propagation:
    scripts/bench-propagation.sh

# REST API with the embedded store: 64 clients register, heartbeat, delete (as shipped and -workers 1); writes docs/performance.md.
bench-api:
    scripts/bench-api.sh

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

# DNS at 2x the measured capacity for 30 s: sheds load, memory bounded, answers right after; writes docs/reliability.md.
overload:
    scripts/overload.sh

# 10 minutes of mixed traffic (SOAK_SECONDS to change), RSS every 10 s; writes docs/reliability.md and docs/soak.png.
soak:
    scripts/soak.sh

# Run every fuzz target for SECONDS each (nightly + cargo-fuzz; not CI); prints executions, exec/s, findings.
fuzz SECONDS="60" *TARGETS:
    scripts/fuzz.sh -t {{SECONDS}} {{TARGETS}}
