//! The DNS side: UDP and TCP servers over one answer path.
//!
//! [`DnsHandler`] takes a request's bytes and gives the response's: it
//! checks protocol hygiene (header, opcode, question count, EDNS version,
//! zone transfers), answers names under the domain from the registry,
//! reverse names of registered IPs with PTR, and forwards everything else
//! upstream for clients allowed to recurse; others get REFUSED, so skydns is
//! never an open resolver.
//!
//! # Layout
//! - [`handler`](DnsHandler): the byte pipeline (response cache → parse → decide → encode).
//! - `reply`: what the pipeline builds ([`Step`], the reply before encoding).
//! - `authority`: answers under the domain and PTR (pure).
//! - [`answer`]: record builders and the TTL policy (pure functions).
//! - `forwarded` and [`forward`]: outside names (the caching forwarder).
//! - [`dnssec`]: signing answers for queries with DO set (`-dnssec`).
//! - `encode`: replies to bytes, bare error responses.
//! - `response_cache`: encoded UDP answers reused for repeated questions.
//! - [`udp`], [`tcp`]: the servers; [`zone`]: the apex (SOA, NS).

pub(crate) mod answer;
mod authority;
pub(crate) mod dnssec;
mod encode;
pub(crate) mod forward;
mod forwarded;
mod handler;
mod reply;
mod response_cache;
pub(crate) mod tcp;
pub(crate) mod udp;
pub(crate) mod zone;

use std::sync::Arc;

use ipnet::IpNet;

use answer::TtlPolicy;
pub use handler::DnsHandler;
pub(crate) use reply::Step;
pub(crate) use zone::Zone;

/// Largest UDP payload we advertise and send (RFC 9715's safe 1232 bytes).
pub(crate) const MAX_UDP_PAYLOAD: u16 = 1232;
/// Size of the DNS header.
pub(crate) const HEADER_LEN: usize = 12;

/// Settings of the DNS side.
#[derive(Debug, Clone)]
pub struct DnsOptions {
    /// The zone served.
    pub zone: Zone,
    /// Shuffle A/AAAA answers (SkyDNS v1 default; `-no-round-robin` turns it off).
    pub round_robin: bool,
    /// Answer TTLs.
    pub ttl: TtlPolicy,
    /// Clients allowed to have outside names forwarded (`-allow-recursion`).
    pub allow_recursion: Vec<IpNet>,
    /// The zone's signer (`-dnssec`): answers to queries with DO set are signed.
    pub dnssec: Option<Arc<dnssec::Dnssec>>,
}
