//! The integration harness: a skydns to test against (embedded or the real
//! binary, [`SkyDns`]), skydock processes, stub upstreams, the Docker
//! engine, and clients that talk to them over the wire as users' programs do
//! — HTTP through the shared client crate, DNS through a small UDP/TCP client
//! built on hickory-proto.
//!
//! The binaries are found next to the test executable (`target/<profile>/`)
//! and built there by the first test that needs one ([`binary`]), so a bare
//! `cargo test` works. Everything started is stopped when its handle drops.
//!
//! # Layout
//! - [`skydns`]: [`SkyDns`], embedded ([`SkyDns::start`]) or spawned
//!   ([`SkyDns::spawn`]).
//! - [`skydock`]: a skydock process.
//! - [`stub`]: upstream nameservers on loopback (good and bad ones).
//! - [`docker`]: containers and images on the real engine.
//! - [`dns`]: DNS queries and answer readers; [`http`](mod@http): raw HTTP requests.
//! - [`system`]: signals, file descriptors, idle connections, waiting.
//! - [`browser`]: a headless Chromium for the status page.
//! - [`validator`]: unbound validating through skydns, and a relay that alters answers.

mod binaries;
pub mod browser;
pub mod dns;
pub mod docker;
pub mod etcd;
pub mod http;
pub mod skydns;
pub mod skydock;
pub mod stub;
pub mod system;
pub mod validator;

pub use binaries::binary;
pub use dns::{
    QUERY_TIMEOUT, a_records, dnssec_query, query_message, srv_records, tcp_query, udp_exchange,
    udp_query, udp_raw, udp_raw_from,
};
pub use http::{HttpReply, http};
pub use skydns::{DEAD_UPSTREAM, Loading, SkyDns};
pub use skydns_api::{Callback, Client, ClientError, Service};
pub use system::{
    collect_lines, eventually, fds_back_to, is_closed_by_peer, open_fds, open_idle_connections,
    signal_pid,
};

/// A service with the fields SkyDNS v1's README uses.
pub fn service(name: &str, env: &str, region: &str, host: &str, port: u16, ttl: u32) -> Service {
    Service {
        name: name.into(),
        version: "1.0.0".into(),
        environment: env.into(),
        region: region.into(),
        host: host.into(),
        port,
        ttl,
        ..Service::default()
    }
}
