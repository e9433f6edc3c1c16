//! Integration tests: the real binaries, over the wire. One test binary.

mod api;
mod dns;
mod docker_infra;
mod durability;
mod embedded;
mod faults;
mod forward;
mod fuzz_regressions;
mod process;
mod schema;
mod skydnsctl;
mod skydock;
mod stack;
mod status;
