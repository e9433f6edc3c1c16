//! The command line of the `skydns` binary, as SkyDNS v1 spelled it: every
//! flag also works with one dash (`-domain skydns.local`,
//! `-nameserver=8.8.8.8:53`), and most have a `SKYDNS_*` variable.

use std::{net::SocketAddr, path::PathBuf};

use clap::{ArgAction, Parser};
use humantime::Duration as GoDuration;
use skydns_api::Secret;

use super::{defaults, parse};
use crate::api::limits;

/// Command line of the `skydns` binary. Every flag also works with one dash
/// (`-domain skydns.local`, `-nameserver=8.8.8.8:53`) as in SkyDNS v1.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "skydns",
    version,
    about = "DNS service discovery with a SkyDNS v1 REST registry"
)]
pub struct Cli {
    /// Address for DNS over UDP and TCP.
    #[arg(long, env = "SKYDNS_DNS", default_value = defaults::DNS, value_parser = parse::socket_addr)]
    pub dns: SocketAddr,
    /// Address for the HTTP API.
    #[arg(long, env = "SKYDNS", default_value = defaults::HTTP, value_parser = parse::socket_addr)]
    pub http: SocketAddr,
    /// Domain to serve; services are `<uuid>.<host>.<region>.<version>.<service>.<environment>.<domain>`.
    #[arg(long, env = "SKYDNS_DOMAIN", default_value = defaults::DOMAIN)]
    pub domain: String,
    /// Directory of the embedded store; without it registrations live in memory only.
    #[arg(long, env = "SKYDNS_DATA")]
    pub data: Option<PathBuf>,
    /// Shared secret the API requires in the Authorization header.
    #[arg(long, env = "SKYDNS_SECRET", hide_env_values = true)]
    pub secret: Option<Secret>,
    /// Upstream nameservers (`IP[:port]`, comma-separated, repeatable) or a resolv.conf path.
    #[arg(long, env = "SKYDNS_NAMESERVER", action = ArgAction::Append)]
    pub nameserver: Vec<String>,
    /// Answer names under the domain only: outside names get REFUSED.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub no_forward: bool,
    /// Time allowed to one upstream for one forwarded query (Go duration).
    #[arg(long, default_value_t = defaults::FORWARD_TIMEOUT.into())]
    pub forward_timeout: GoDuration,
    /// Most forwarded answers cached (0 disables the cache; at most 1,000,000).
    #[arg(long, default_value_t = defaults::CACHE_SIZE)]
    pub cache_size: usize,
    /// Longest time a forwarded answer is cached, in seconds.
    #[arg(long, default_value_t = defaults::CACHE_MAX_TTL)]
    pub cache_max_ttl: u32,
    /// Serve-stale (RFC 8767): while every upstream fails, answer a cached answer expired less
    /// than this long ago, with TTL 30 (Go duration, `30s`; 0 turns it off).
    #[arg(long, default_value_t = defaults::CACHE_SERVE_STALE.into())]
    pub cache_serve_stale: GoDuration,
    /// Prefetch: a cached answer asked at least this many times is refreshed upstream once the
    /// last 10 % of its TTL begins, so a popular name never expires into a miss (0 turns it off;
    /// unbound's `prefetch: yes` is about 2).
    #[arg(long, default_value_t = defaults::CACHE_PREFETCH)]
    pub cache_prefetch: u64,
    /// Client networks (CIDR, comma-separated, repeatable) whose outside names are forwarded;
    /// default: loopback, RFC 1918, link-local and ULA.
    #[arg(long, env = "SKYDNS_ALLOW_RECURSION", action = ArgAction::Append)]
    pub allow_recursion: Vec<String>,
    /// Read timeout (Go duration: `2s`, `500ms`): idle TCP DNS connections are closed after it.
    #[arg(long, default_value_t = defaults::READ_TIMEOUT.into())]
    pub rtimeout: GoDuration,
    /// Write timeout (Go duration): a TCP DNS client that does not take an
    /// answer within it is disconnected.
    #[arg(long, default_value_t = defaults::WRITE_TIMEOUT.into())]
    pub wtimeout: GoDuration,
    /// TCP DNS connections open at once; a new one beyond closes the oldest.
    #[arg(long, env = "SKYDNS_MAX_TCP_CONNECTIONS", default_value_t = defaults::MAX_TCP_CONNECTIONS)]
    pub max_tcp_connections: usize,
    /// Threads answering DNS over UDP (each blocking on the socket). One is
    /// best when the load generator shares the machine's cores.
    #[arg(long, env = "SKYDNS_DNS_WORKERS", default_value_t = defaults::DNS_WORKERS)]
    pub dns_workers: usize,
    /// Threads of the async runtime: the REST API, DNS over TCP, forwarding
    /// and housekeeping (0: one per core). One is best when the API's
    /// clients share the machine's cores.
    #[arg(long, env = "SKYDNS_WORKERS", default_value_t = defaults::WORKERS)]
    pub workers: usize,
    /// HTTP API connections open at once; more are closed as soon as they are accepted.
    #[arg(long, env = "SKYDNS_API_MAX_CONNECTIONS", default_value_t = limits::MAX_CONNECTIONS)]
    pub api_max_connections: usize,
    /// Time an API client has to send a request's headers, and a write's body
    /// (Go duration); also closes keep-alive connections idle that long.
    #[arg(long, env = "SKYDNS_API_TIMEOUT", default_value_t = defaults::API_TIMEOUT.into())]
    pub api_timeout: GoDuration,
    /// API writes (PUT, PATCH, DELETE) per second per client address, with
    /// bursts of twice that; more get 429. 0: no limit.
    #[arg(long, env = "SKYDNS_API_WRITE_RATE", default_value_t = limits::WRITE_RATE)]
    pub api_write_rate: u32,
    /// Answer A/AAAA records in a stable order instead of shuffling them.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub no_round_robin: bool,
    /// TLS private key for the API (PEM).
    #[arg(long, alias = "tlskey", requires = "tls_pem")]
    pub tls_key: Option<PathBuf>,
    /// TLS certificate chain for the API (PEM).
    #[arg(long, alias = "tlspem", requires = "tls_key")]
    pub tls_pem: Option<PathBuf>,
    /// TTL (seconds) answered for services registered with NoExpire.
    #[arg(long, default_value_t = defaults::NO_EXPIRE_TTL)]
    pub no_expire_ttl: u32,
    /// Cap on every answer's TTL in seconds (0: no cap), so resolvers re-ask soon after a change.
    #[arg(long, default_value_t = defaults::MAX_ANSWER_TTL)]
    pub max_answer_ttl: u32,
    /// Log filter (`info`, `debug`, `skydns=debug,hickory_server=warn`).
    #[arg(long, env = "SKYDNS_LOG", default_value = defaults::LOG_LEVEL)]
    pub log_level: String,
    /// Log format: `text` or `json`.
    #[arg(long, default_value = defaults::LOG_FORMAT)]
    pub log_format: String,

    /// etcd client URLs (comma-separated): several skydns instances share one registry kept
    /// in etcd (v3 API). Without it the registry is this process's (memory, or `-data`).
    #[arg(long, alias = "machines", env = "SKYDNS_ETCD", value_delimiter = ',')]
    pub etcd: Vec<String>,
    /// Root of skydns's keys in etcd; records live under it as SkyDNS2 and CoreDNS lay them
    /// out (`/skydns/local/skydns/<env>/<name>/...`).
    #[arg(long, env = "SKYDNS_ETCD_PREFIX", default_value = defaults::ETCD_PREFIX)]
    pub etcd_prefix: String,
    /// CA certificates (PEM) that etcd's server certificate must chain to.
    #[arg(long, env = "SKYDNS_ETCD_CACERT")]
    pub etcd_cacert: Option<PathBuf>,
    /// Client certificate (PEM) for etcd, with `-etcd-key`.
    #[arg(long, env = "SKYDNS_ETCD_CERT", requires = "etcd_key")]
    pub etcd_cert: Option<PathBuf>,
    /// Client key (PEM) for etcd, with `-etcd-cert`.
    #[arg(long, env = "SKYDNS_ETCD_KEY", requires = "etcd_cert")]
    pub etcd_key: Option<PathBuf>,

    /// SkyDNS v1 clustering (Raft): replaced by `-etcd`.
    #[arg(long, hide = true)]
    pub join: Option<String>,
    /// SkyDNS v1 cluster discovery: replaced by `-etcd`.
    #[arg(long, hide = true, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub discover: Option<bool>,
    /// Sign answers (DNSSEC) with this key: a BIND basename (`Kskydns.local.+013+24374`,
    /// its `.key` and `.private` files) or a PKCS#8 `.pem` file. Twice during a key
    /// rollover: both keys are published and sign.
    #[arg(
        long = "dnssec-key",
        alias = "dnssec",
        env = "SKYDNS_DNSSEC",
        value_delimiter = ','
    )]
    pub dnssec_key: Vec<PathBuf>,
    /// SkyDNS v1 metrics sinks: accepted and ignored (metrics are at /metrics).
    #[arg(long = "metricsToStdErr", hide = true, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub metrics_to_stderr: Option<bool>,
    /// SkyDNS v1 metrics sinks: accepted and ignored.
    #[arg(long = "graphiteServer", hide = true)]
    pub graphite_server: Option<String>,
    /// SkyDNS v1 metrics sinks: accepted and ignored.
    #[arg(long = "stathatUser", hide = true)]
    pub stathat_user: Option<String>,
}

impl Cli {
    /// Parses the process's arguments, accepting SkyDNS v1's single-dash spelling.
    pub fn parse_args() -> Self {
        Self::parse_from(skydns_api::go_flags::normalize(
            std::env::args(),
            &['h', 'V'],
        ))
    }

    /// Flags that are accepted for compatibility but have no effect, for a warning.
    pub fn ignored_flags(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.metrics_to_stderr.is_some() {
            out.push("-metricsToStdErr");
        }
        if self.graphite_server.is_some() {
            out.push("-graphiteServer");
        }
        if self.stathat_user.is_some() {
            out.push("-stathatUser");
        }
        out
    }
}
