//! Every default of the command line, defined once: the flags show them in
//! `--help`, and [`Config::ephemeral`](super::Config::ephemeral) uses them.
//! API limits' defaults live with the limits ([`crate::api::limits`]).

use std::time::Duration;

/// DNS address (SkyDNS v1).
pub const DNS: &str = "127.0.0.1:53";
/// HTTP API address (SkyDNS v1).
pub const HTTP: &str = "127.0.0.1:8080";
/// Domain served (SkyDNS v1).
pub const DOMAIN: &str = "skydns.local";
/// Upstream nameservers (SkyDNS v1's, as the article's setup has them).
pub const NAMESERVERS: &str = "8.8.8.8:53,8.8.4.4:53";
/// Time allowed to one upstream for one attempt.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);
/// Forwarded answers cached.
pub const CACHE_SIZE: usize = 10_000;
/// Largest `-cache-size`: a million answers, about a GiB when full (an
/// answer with its records is up to a KiB or so).
pub const MAX_CACHE_SIZE: usize = 1_000_000;
/// Longest caching of a forwarded answer, in seconds.
pub const CACHE_MAX_TTL: u32 = 3600;
/// How long past its expiry a cached answer may still be served while every
/// upstream fails (RFC 8767 serve-stale); zero: never.
pub const CACHE_SERVE_STALE: Duration = Duration::ZERO;
/// Hits after which a cached forwarded answer is prefetched; zero: never.
pub const CACHE_PREFETCH: u64 = 0;
/// Idle TCP DNS connections are closed after this (`-rtimeout`).
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// A TCP DNS client must take an answer within this (`-wtimeout`).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// TCP DNS connections open at once.
pub const MAX_TCP_CONNECTIONS: usize = 1000;
/// Threads answering DNS over UDP.
pub const DNS_WORKERS: usize = 1;
/// Threads of the async runtime (0: one per core).
pub const WORKERS: usize = 0;
/// Time an API client has for headers and a write's body.
pub const API_TIMEOUT: Duration = crate::api::limits::HEADER_READ_TIMEOUT;
/// TTL answered for NoExpire services, in seconds.
pub const NO_EXPIRE_TTL: u32 = 3600;
/// Cap on answer TTLs in seconds (0: none).
pub const MAX_ANSWER_TTL: u32 = 0;
/// Log filter.
pub const LOG_LEVEL: &str = "info";
/// Log format.
pub const LOG_FORMAT: &str = "text";

/// Root of skydns's keys in etcd (SkyDNS2's and CoreDNS's default).
pub const ETCD_PREFIX: &str = "/skydns";
