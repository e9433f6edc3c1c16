//! Integration tests: skydns (embedded or the real binary), skydock and
//! skydnsctl over the wire, one test binary. A bare `cargo test` builds the
//! binaries it needs.
//!
//! What a test needs besides loopback is in its module path, so a machine
//! without it can leave those out by name:
//! - `needs_docker::`: a Docker engine at `/var/run/docker.sock` (skydock,
//!   the nginx stack); without one they fail saying so.
//! - `needs_etcd::`: Debian's etcd-server (a 3-member cluster on loopback).
//! - `needs_root::`: root (a tmpfs mount, `chattr +i`).
//! - `needs_chromium::`: Chromium (the status page in a real browser).
//! - `needs_schemathesis::`: schemathesis from PyPI.
//!
//! `scripts/test-all.sh` installs all of them and runs everything.

pub(crate) mod api;
mod dns;
mod durability;
mod embedded;
mod faults;
mod forward;
mod fuzz_regressions;
mod process;
mod schema;
mod skydnsctl;
mod status;

/// Several instances on one registry in a real etcd cluster.
mod needs_etcd {
    mod cluster;
}

/// Tests against the real Docker engine.
mod needs_docker {
    mod infra;
    mod skydock;
    mod stack;
}
