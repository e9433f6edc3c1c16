//! Integration tests: the real binaries, over the wire. One test binary.

mod api;
mod dns;
mod embedded;
mod forward;
mod process;
