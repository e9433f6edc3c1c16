//! Configuration in two stages: [`Cli`] (flags and environment, exactly as
//! SkyDNS v1 spelled them) is validated once into [`Config`], which the
//! server's components read. Nothing else reads flags or the environment.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use clap::{ArgAction, Parser};
use ipnet::IpNet;

use skydns_api::Secret;

use crate::{
    Error,
    api::{ApiLimits, TlsFiles},
};

/// Default DNS address (SkyDNS v1).
pub const DEFAULT_DNS: &str = "127.0.0.1:53";
/// Default HTTP API address (SkyDNS v1).
pub const DEFAULT_HTTP: &str = "127.0.0.1:8080";
/// Default domain (SkyDNS v1).
pub const DEFAULT_DOMAIN: &str = "skydns.local";
/// Largest `-cache-size`: a million answers, about a GiB when full (an
/// answer with its records is up to a KiB or so).
pub const MAX_CACHE_SIZE: usize = 1_000_000;
/// Default upstream nameservers (the setup this project follows).
pub const DEFAULT_NAMESERVERS: &str = "8.8.8.8:53,8.8.4.4:53";

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
    #[arg(long, env = "SKYDNS_DNS", default_value = DEFAULT_DNS)]
    pub dns: String,
    /// Address for the HTTP API.
    #[arg(long, env = "SKYDNS", default_value = DEFAULT_HTTP)]
    pub http: String,
    /// Domain to serve; services are `<uuid>.<host>.<region>.<version>.<service>.<environment>.<domain>`.
    #[arg(long, env = "SKYDNS_DOMAIN", default_value = DEFAULT_DOMAIN)]
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
    #[arg(long, default_value = "2s")]
    pub forward_timeout: String,
    /// Most forwarded answers cached (0 disables the cache).
    #[arg(long, default_value_t = 10_000)]
    pub cache_size: usize,
    /// Longest time a forwarded answer is cached, in seconds.
    #[arg(long, default_value_t = 3600)]
    pub cache_max_ttl: u32,
    /// Client networks (CIDR, comma-separated, repeatable) whose outside names are forwarded;
    /// default: loopback, RFC 1918, link-local and ULA.
    #[arg(long, env = "SKYDNS_ALLOW_RECURSION", action = ArgAction::Append)]
    pub allow_recursion: Vec<String>,
    /// Read timeout (Go duration: `2s`, `500ms`): idle TCP DNS connections are closed after it.
    #[arg(long, default_value = "2s")]
    pub rtimeout: String,
    /// Write timeout (Go duration): a TCP DNS client that does not take an
    /// answer within it is disconnected.
    #[arg(long, default_value = "2s")]
    pub wtimeout: String,
    /// TCP DNS connections open at once; a new one beyond closes the oldest.
    #[arg(long, env = "SKYDNS_MAX_TCP_CONNECTIONS", default_value_t = 1000)]
    pub max_tcp_connections: usize,
    /// Threads answering DNS over UDP (each blocking on the socket). One is
    /// best when the load generator shares the machine's cores.
    #[arg(long, env = "SKYDNS_DNS_WORKERS", default_value_t = 1)]
    pub dns_workers: usize,
    /// Threads of the async runtime: the REST API, DNS over TCP, forwarding
    /// and housekeeping (0: one per core). One is best when the API's
    /// clients share the machine's cores.
    #[arg(long, env = "SKYDNS_WORKERS", default_value_t = 0)]
    pub workers: usize,
    /// HTTP API connections open at once; more are closed as soon as they are accepted.
    #[arg(long, env = "SKYDNS_API_MAX_CONNECTIONS", default_value_t = crate::api::limits::MAX_CONNECTIONS)]
    pub api_max_connections: usize,
    /// Time an API client has to send a request's headers, and a write's body
    /// (Go duration); also closes keep-alive connections idle that long.
    #[arg(long, env = "SKYDNS_API_TIMEOUT", default_value = "10s")]
    pub api_timeout: String,
    /// API writes (PUT, PATCH, DELETE) per second per client address, with
    /// bursts of twice that; more get 429. 0: no limit.
    #[arg(long, env = "SKYDNS_API_WRITE_RATE", default_value_t = crate::api::limits::WRITE_RATE)]
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
    #[arg(long, default_value_t = 3600)]
    pub no_expire_ttl: u32,
    /// Cap on every answer's TTL in seconds (0: no cap), so resolvers re-ask soon after a change.
    #[arg(long, default_value_t = 0)]
    pub max_answer_ttl: u32,
    /// Log filter (`info`, `debug`, `skydns=debug,hickory_server=warn`).
    #[arg(long, env = "SKYDNS_LOG", default_value = "info")]
    pub log_level: String,
    /// Log format: `text` or `json`.
    #[arg(long, default_value = "text")]
    pub log_format: String,

    /// SkyDNS v1 clustering (Raft): not available yet.
    #[arg(long, hide = true)]
    pub join: Option<String>,
    /// SkyDNS v1 cluster discovery: not available yet.
    #[arg(long, hide = true, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub discover: Option<bool>,
    /// SkyDNS v1 DNSSEC signing: not available yet.
    #[arg(long, hide = true)]
    pub dnssec: Option<String>,
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

/// Validated settings of one skydns server.
#[derive(Debug, Clone)]
pub struct Config {
    /// DNS listen address (UDP and TCP). Port 0 picks a free port.
    pub dns_addr: SocketAddr,
    /// HTTP API listen address. Port 0 picks a free port.
    pub http_addr: SocketAddr,
    /// The served domain, lowercase, without trailing dot.
    pub domain: String,
    /// Directory of the embedded store (`None`: memory only).
    pub data_dir: Option<PathBuf>,
    /// API secret.
    pub secret: Option<Secret>,
    /// Upstream nameservers; empty: forwarding off (outside names get REFUSED).
    pub nameservers: Vec<SocketAddr>,
    /// Time allowed to one upstream for one attempt.
    pub forward_timeout: Duration,
    /// Most forwarded answers cached (0: no cache).
    pub cache_size: usize,
    /// Longest caching of a forwarded answer, in seconds.
    pub cache_max_ttl: u32,
    /// Clients whose outside names are forwarded.
    pub allow_recursion: Vec<IpNet>,
    /// Idle timeout of TCP DNS connections.
    pub read_timeout: Duration,
    /// Time a TCP DNS client has to take an answer.
    pub write_timeout: Duration,
    /// TCP DNS connections open at once.
    pub max_tcp_connections: usize,
    /// Threads answering DNS over UDP.
    pub dns_workers: usize,
    /// Threads of the async runtime (0: one per core). Read by the binary,
    /// which builds the runtime; an embedder builds its own.
    pub workers: usize,
    /// Limits of the HTTP API (connections, timeouts, write rate).
    pub api_limits: ApiLimits,
    /// Shuffle A/AAAA answers.
    pub round_robin: bool,
    /// API TLS files.
    pub tls: Option<TlsFiles>,
    /// TTL answered for NoExpire services.
    pub no_expire_ttl: u32,
    /// Cap on answer TTLs (0: none).
    pub max_answer_ttl: u32,
}

impl Config {
    /// A server on free loopback ports, memory only, no upstreams: what tests
    /// and embedders usually want.
    pub fn ephemeral() -> Self {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        Self {
            dns_addr: SocketAddr::new(lo, 0),
            http_addr: SocketAddr::new(lo, 0),
            domain: DEFAULT_DOMAIN.into(),
            data_dir: None,
            secret: None,
            nameservers: Vec::new(),
            forward_timeout: Duration::from_secs(2),
            cache_size: 10_000,
            cache_max_ttl: 3600,
            allow_recursion: default_allow_recursion(),
            read_timeout: Duration::from_secs(2),
            write_timeout: Duration::from_secs(2),
            max_tcp_connections: 1000,
            dns_workers: 1,
            workers: 0,
            api_limits: ApiLimits::default(),
            round_robin: true,
            tls: None,
            no_expire_ttl: 3600,
            max_answer_ttl: 0,
        }
    }
}

impl TryFrom<Cli> for Config {
    type Error = Error;

    fn try_from(cli: Cli) -> Result<Self, Error> {
        if cli.join.is_some() || cli.discover == Some(true) {
            return Err(Error::Config(
                "-join/-discover (Raft clustering) are not supported yet: run one skydns per host, or share one skydns between hosts".into(),
            ));
        }
        if cli.dnssec.is_some() {
            return Err(Error::Config(
                "-dnssec (signing answers) is not supported yet: drop the flag".into(),
            ));
        }
        let domain = cli.domain.trim_end_matches('.').to_ascii_lowercase();
        if domain.is_empty() || hickory_proto::rr::Name::from_ascii(&domain).is_err() {
            return Err(Error::Config(format!(
                "-domain {:?} is not a valid DNS name",
                cli.domain
            )));
        }
        let nameservers = if cli.no_forward {
            Vec::new()
        } else if cli.nameserver.is_empty() {
            parse_nameservers(DEFAULT_NAMESERVERS)?
        } else {
            let mut all = Vec::new();
            for spec in &cli.nameserver {
                all.extend(parse_nameservers(spec)?);
            }
            all
        };
        if cli.cache_size > MAX_CACHE_SIZE {
            return Err(Error::Config(format!(
                "-cache-size {} is over the limit of {MAX_CACHE_SIZE} answers (each can take a KiB or so); 0 turns the cache off",
                cli.cache_size
            )));
        }
        let api_limits = api_limits(&cli)?;
        let tls = match (cli.tls_key, cli.tls_pem) {
            (Some(key), Some(cert)) => Some(TlsFiles { cert, key }),
            _ => None,
        };
        Ok(Self {
            dns_addr: parse_addr("dns", &cli.dns)?,
            http_addr: parse_addr("http", &cli.http)?,
            domain,
            data_dir: cli.data,
            secret: cli.secret.filter(|s| !s.is_empty()),
            nameservers,
            forward_timeout: parse_duration("forward-timeout", &cli.forward_timeout)?,
            cache_size: cli.cache_size,
            cache_max_ttl: cli.cache_max_ttl,
            allow_recursion: if cli.allow_recursion.is_empty() {
                default_allow_recursion()
            } else {
                parse_cidrs(&cli.allow_recursion)?
            },
            read_timeout: parse_duration("rtimeout", &cli.rtimeout)?,
            write_timeout: parse_duration("wtimeout", &cli.wtimeout)?,
            max_tcp_connections: cli.max_tcp_connections.max(1),
            dns_workers: cli.dns_workers.clamp(1, 64),
            workers: cli.workers.min(256),
            api_limits,
            round_robin: !cli.no_round_robin,
            tls,
            no_expire_ttl: cli.no_expire_ttl,
            max_answer_ttl: cli.max_answer_ttl,
        })
    }
}

/// The API limits the flags ask for.
fn api_limits(cli: &Cli) -> Result<ApiLimits, Error> {
    let timeout = parse_duration("api-timeout", &cli.api_timeout)?;
    if timeout.is_zero() {
        return Err(Error::Config("-api-timeout must be more than 0".into()));
    }
    Ok(ApiLimits {
        max_connections: cli.api_max_connections.max(1),
        header_read_timeout: timeout,
        body_read_timeout: timeout,
        write_rate: cli.api_write_rate,
        write_burst: cli.api_write_rate.saturating_mul(2),
    })
}

/// Loopback, RFC 1918, link-local and ULA: hosts and containers on this machine.
pub fn default_allow_recursion() -> Vec<IpNet> {
    [
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
    ]
    .iter()
    .filter_map(|n| n.parse().ok())
    .collect()
}

fn parse_cidrs(specs: &[String]) -> Result<Vec<IpNet>, Error> {
    specs
        .iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    Error::Config(format!(
                        "-allow-recursion entry {s:?} is not a CIDR like 10.0.0.0/8"
                    ))
                })
        })
        .collect()
}

fn parse_addr(flag: &str, value: &str) -> Result<SocketAddr, Error> {
    value.parse().map_err(|_| {
        Error::Config(format!(
            "-{flag} {value:?} is not an IP:port address (for example 127.0.0.1:5353 or [::1]:5353)"
        ))
    })
}

fn parse_duration(flag: &str, value: &str) -> Result<Duration, Error> {
    humantime::parse_duration(value).map_err(|e| {
        Error::Config(format!(
            "-{flag} {value:?} is not a duration like 2s or 500ms: {e}"
        ))
    })
}

/// Parses `-nameserver`: a comma-separated list of `IP[:port]` (IPv6 in
/// brackets when a port is given; port 53 by default), or the path of a
/// resolv.conf-style file whose `nameserver` lines are used.
///
/// # Errors
/// [`Error::Config`] naming the entry that is neither.
pub fn parse_nameservers(spec: &str) -> Result<Vec<SocketAddr>, Error> {
    let spec = spec.trim();
    if spec.starts_with('/') || spec.starts_with('.') {
        let text = std::fs::read_to_string(spec)
            .map_err(|e| Error::Config(format!("-nameserver {spec}: cannot read file: {e}")))?;
        let found: Vec<SocketAddr> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("nameserver"))
            .filter_map(|rest| rest.split_whitespace().next())
            .filter_map(|ip| ip.split('%').next()?.parse::<IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, 53))
            .collect();
        if found.is_empty() {
            return Err(Error::Config(format!(
                "-nameserver {spec}: the file lists no nameserver"
            )));
        }
        return Ok(found);
    }
    spec.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<SocketAddr>()
                .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                .map_err(|_| {
                    Error::Config(format!(
                        "-nameserver entry {s:?} is not IP[:port] (IPv6 as [::1]:53)"
                    ))
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Result<Config, Error> {
        let mut v = vec!["skydns".to_string()];
        v.extend(args.iter().map(|s| s.to_string()));
        let cli = Cli::try_parse_from(skydns_api::go_flags::normalize(v, &['h', 'V']))
            .map_err(|e| Error::Config(e.to_string()))?;
        Config::try_from(cli)
    }

    #[test]
    fn skydns_v1_readme_command_lines_parse() {
        let c = cli(&["-nameserver", "8.8.8.8:53", "-domain", "skydns.local"]).expect("parses");
        assert_eq!(c.nameservers, vec!["8.8.8.8:53".parse().expect("addr")]);
        let c = cli(&[
            "-http",
            "127.0.0.1:8080",
            "-dns=127.0.0.1:53",
            "-no-round-robin",
            "-rtimeout",
            "5s",
        ])
        .expect("parses");
        assert!(!c.round_robin);
        assert_eq!(c.read_timeout, Duration::from_secs(5));
        let c = cli(&["--tls-key=k.pem", "--tls-pem=c.pem", "-metricsToStdErr"]).expect("parses");
        assert!(c.tls.is_some());
        let c = cli(&["-no-round-robin=false", "-domain", "Example.COM."]).expect("parses");
        assert!(c.round_robin);
        assert_eq!(c.domain, "example.com");
    }

    #[test]
    fn later_work_flags_are_refused_with_a_reason() {
        let e = cli(&["-join", "10.0.0.1:8080"]).expect_err("refused");
        assert!(e.to_string().contains("not supported yet"), "{e}");
        assert!(cli(&["-dnssec", "Kskydns.local.+005+1"]).is_err());
        assert!(cli(&["-dns", "localhost"]).is_err());
    }

    #[test]
    fn cache_size_is_bounded_with_a_clear_error() {
        assert_eq!(
            cli(&["-cache-size", "1000000"]).expect("parses").cache_size,
            1_000_000
        );
        let e = cli(&["-cache-size", "99999999999"]).expect_err("refused");
        assert!(
            e.to_string()
                .starts_with("-cache-size 99999999999 is over the limit"),
            "{e}"
        );
    }

    #[test]
    fn nameservers_parse_lists_ports_and_v6() {
        let got = parse_nameservers("8.8.8.8,[::1]:5353, 127.0.0.1:54").expect("parses");
        let want: Vec<SocketAddr> = vec![
            "8.8.8.8:53".parse().expect("a"),
            "[::1]:5353".parse().expect("b"),
            "127.0.0.1:54".parse().expect("c"),
        ];
        assert_eq!(got, want);
        assert!(parse_nameservers("not-an-ip").is_err());
    }
}
