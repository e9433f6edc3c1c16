//! Configuration in two stages: [`Cli`] (flags and environment, exactly as
//! SkyDNS v1 spelled them) is validated once into [`Config`], which the
//! server's components read. Nothing else reads flags or the environment.
//!
//! # Layout
//! - [`cli`](Cli): the clap command line; [`defaults`]: every default, once.
//! - `parse`: value parsers (upstream lists, networks, addresses).
//! - this file: [`Config`], `TryFrom<Cli>` (all validation), [`ConfigError`].

mod cli;
pub mod defaults;
mod parse;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use ipnet::IpNet;
use skydns_api::Secret;

pub use crate::api::{ApiLimits, TlsFiles, limits};
pub use cli::Cli;
pub use parse::{default_allow_recursion, nameservers as parse_nameservers};

/// A flag (or its environment variable) whose value skydns cannot use: the
/// flag, and a sentence saying what is wrong and what to do.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
#[non_exhaustive]
pub struct ConfigError {
    /// The flag at fault, without its dash (`cache-size`).
    pub flag: &'static str,
    /// What is wrong with it, naming it (`-cache-size 5 is ...`).
    pub message: String,
}

impl ConfigError {
    /// An error about `flag`.
    pub fn new(flag: &'static str, message: impl Into<String>) -> Self {
        Self {
            flag,
            message: message.into(),
        }
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
    /// Serve-stale window (zero: off).
    pub cache_serve_stale: Duration,
    /// Hits that make a cached answer worth prefetching (zero: off).
    pub cache_prefetch: u64,
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
    /// The zone keys answers are signed with (`-dnssec`; none: unsigned;
    /// two during a key rollover).
    pub dnssec_keys: Vec<PathBuf>,
    /// The shared registry in etcd (`-etcd`); `None`: this process's own
    /// (memory, or `data_dir`).
    pub etcd: Option<EtcdConfig>,
}

/// TLS files for etcd (`-etcd-cacert`, `-etcd-cert`, `-etcd-key`), as
/// etcdctl names them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdTls {
    /// CA certificates to trust (PEM).
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM), with `key`.
    pub cert: Option<PathBuf>,
    /// Client key (PEM), with `cert`.
    pub key: Option<PathBuf>,
}

impl EtcdTls {
    /// True when any TLS file is given.
    pub fn any(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some()
    }
}

/// Where the shared registry is (`-etcd`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// Client URLs of etcd members.
    pub endpoints: Vec<String>,
    /// Root of the keys (`/skydns`, no trailing slash).
    pub prefix: String,
    /// TLS files, if any.
    pub tls: EtcdTls,
}

impl Config {
    /// A server on free loopback ports, memory only, no upstreams, every
    /// other setting at its default: what tests and embedders usually want.
    pub fn ephemeral() -> Self {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        Self {
            dns_addr: SocketAddr::new(lo, 0),
            http_addr: SocketAddr::new(lo, 0),
            domain: defaults::DOMAIN.into(),
            data_dir: None,
            secret: None,
            nameservers: Vec::new(),
            forward_timeout: defaults::FORWARD_TIMEOUT,
            cache_size: defaults::CACHE_SIZE,
            cache_max_ttl: defaults::CACHE_MAX_TTL,
            cache_serve_stale: defaults::CACHE_SERVE_STALE,
            cache_prefetch: defaults::CACHE_PREFETCH,
            allow_recursion: default_allow_recursion(),
            read_timeout: defaults::READ_TIMEOUT,
            write_timeout: defaults::WRITE_TIMEOUT,
            max_tcp_connections: defaults::MAX_TCP_CONNECTIONS,
            dns_workers: defaults::DNS_WORKERS,
            workers: defaults::WORKERS,
            api_limits: ApiLimits::default(),
            round_robin: true,
            tls: None,
            no_expire_ttl: defaults::NO_EXPIRE_TTL,
            max_answer_ttl: defaults::MAX_ANSWER_TTL,
            dnssec_keys: Vec::new(),
            etcd: None,
        }
    }
}

impl TryFrom<Cli> for Config {
    type Error = ConfigError;

    fn try_from(cli: Cli) -> Result<Self, ConfigError> {
        if cli.join.is_some() || cli.discover == Some(true) {
            return Err(ConfigError::new(
                "join",
                "-join/-discover (SkyDNS v1's Raft clustering) are replaced by -etcd: run each skydns with -etcd http://<member>:2379,... (docs/operations.md, \"Running several instances\")",
            ));
        }
        let etcd = etcd(&cli)?;
        let domain = cli.domain.trim_end_matches('.').to_ascii_lowercase();
        if domain.is_empty() || hickory_proto::rr::Name::from_ascii(&domain).is_err() {
            return Err(ConfigError::new(
                "domain",
                format!("-domain {:?} is not a valid DNS name", cli.domain),
            ));
        }
        let nameservers = if cli.no_forward {
            Vec::new()
        } else if cli.nameserver.is_empty() {
            parse::nameservers(defaults::NAMESERVERS)?
        } else {
            let mut all = Vec::new();
            for spec in &cli.nameserver {
                all.extend(parse::nameservers(spec)?);
            }
            all
        };
        if cli.cache_size > defaults::MAX_CACHE_SIZE {
            return Err(ConfigError::new(
                "cache-size",
                format!(
                    "-cache-size {} is over the limit of {} answers (each can take a KiB or so); 0 turns the cache off",
                    cli.cache_size,
                    defaults::MAX_CACHE_SIZE
                ),
            ));
        }
        let api_limits = api_limits(&cli)?;
        let tls = match (cli.tls_key, cli.tls_pem) {
            (Some(key), Some(cert)) => Some(TlsFiles { cert, key }),
            _ => None,
        };
        Ok(Self {
            dns_addr: cli.dns,
            http_addr: cli.http,
            domain,
            data_dir: cli.data,
            secret: cli.secret.filter(|s| !s.is_empty()),
            nameservers,
            forward_timeout: cli.forward_timeout.into(),
            cache_size: cli.cache_size,
            cache_max_ttl: cli.cache_max_ttl,
            cache_serve_stale: cli.cache_serve_stale.into(),
            cache_prefetch: cli.cache_prefetch,
            allow_recursion: if cli.allow_recursion.is_empty() {
                default_allow_recursion()
            } else {
                parse::cidrs(&cli.allow_recursion)?
            },
            read_timeout: cli.rtimeout.into(),
            write_timeout: cli.wtimeout.into(),
            max_tcp_connections: cli.max_tcp_connections.max(1),
            dns_workers: cli.dns_workers.clamp(1, 64),
            workers: cli.workers.min(256),
            api_limits,
            round_robin: !cli.no_round_robin,
            tls,
            no_expire_ttl: cli.no_expire_ttl,
            max_answer_ttl: cli.max_answer_ttl,
            dnssec_keys: cli.dnssec_key,
            etcd,
        })
    }
}

/// The etcd settings the flags ask for (`-etcd`, or `ETCD_MACHINES` as
/// SkyDNS2 read it); `None` without them.
fn etcd(cli: &Cli) -> Result<Option<EtcdConfig>, ConfigError> {
    let mut endpoints = cli.etcd.clone();
    if endpoints.is_empty()
        && let Ok(machines) = std::env::var("ETCD_MACHINES")
    {
        endpoints = machines.split(',').map(str::to_string).collect();
    }
    let endpoints: Vec<String> = endpoints
        .iter()
        .map(|e| e.trim())
        .filter(|e| !e.is_empty())
        .map(str::to_string)
        .collect();
    if endpoints.is_empty() {
        return Ok(None);
    }
    if cli.data.is_some() {
        return Err(ConfigError::new(
            "etcd",
            "-etcd and -data are two different registries: give one (with -etcd, etcd keeps the registrations)",
        ));
    }
    let tls = EtcdTls {
        ca: cli.etcd_cacert.clone(),
        cert: cli.etcd_cert.clone(),
        key: cli.etcd_key.clone(),
    };
    let secure = tls.ca.is_some() || tls.cert.is_some();
    let mut urls = Vec::with_capacity(endpoints.len());
    for e in endpoints {
        let url = if e.contains("://") {
            e
        } else if secure {
            format!("https://{e}")
        } else {
            format!("http://{e}")
        };
        let ok = (url.starts_with("http://") || url.starts_with("https://"))
            && url
                .parse::<axum::http::Uri>()
                .is_ok_and(|u| u.host().is_some_and(|h| !h.is_empty()));
        if !ok {
            return Err(ConfigError::new(
                "etcd",
                format!("-etcd {url:?} is not an etcd client URL (http://host:2379)"),
            ));
        }
        if secure && url.starts_with("http://") {
            return Err(ConfigError::new(
                "etcd",
                format!("-etcd {url:?}: TLS files are given, so the URL must be https://"),
            ));
        }
        urls.push(url);
    }
    let prefix = cli.etcd_prefix.trim_end_matches('/');
    if !prefix.starts_with('/') {
        return Err(ConfigError::new(
            "etcd-prefix",
            format!("-etcd-prefix {:?} must start with /", cli.etcd_prefix),
        ));
    }
    Ok(Some(EtcdConfig {
        endpoints: urls,
        prefix: prefix.to_string(),
        tls,
    }))
}

/// The API limits the flags ask for.
fn api_limits(cli: &Cli) -> Result<ApiLimits, ConfigError> {
    let timeout: Duration = cli.api_timeout.into();
    if timeout.is_zero() {
        return Err(ConfigError::new(
            "api-timeout",
            "-api-timeout must be more than 0",
        ));
    }
    Ok(ApiLimits {
        max_connections: cli.api_max_connections.max(1),
        header_read_timeout: timeout,
        body_read_timeout: timeout,
        write_rate: cli.api_write_rate,
        write_burst: cli.api_write_rate.saturating_mul(2),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Result<Config, String> {
        let mut v = vec!["skydns".to_string()];
        v.extend(args.iter().map(|s| s.to_string()));
        let cli =
            <Cli as clap::Parser>::try_parse_from(skydns_api::go_flags::normalize(v, &['h', 'V']))
                .map_err(|e| e.to_string())?;
        Config::try_from(cli).map_err(|e| e.to_string())
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
        assert!(e.contains("replaced by -etcd"), "{e}");
        let c = cli(&["-dnssec", "Kskydns.local.+013+1"]).expect("SkyDNS v1's spelling");
        assert_eq!(
            c.dnssec_keys,
            [std::path::PathBuf::from("Kskydns.local.+013+1")]
        );
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
    fn ephemeral_has_the_flags_defaults() {
        let flags =
            cli(&["-dns", "127.0.0.1:0", "-http", "127.0.0.1:0", "-no-forward"]).expect("parses");
        let e = Config::ephemeral();
        assert_eq!(format!("{e:?}"), format!("{flags:?}"));
    }

    #[test]
    fn etcd_takes_skydns2s_spelling_and_refuses_what_cannot_work() {
        let c = cli(&[
            "-machines",
            "127.0.0.1:2379,http://10.0.0.2:2379",
            "-etcd-prefix",
            "/sky/",
        ])
        .expect("SkyDNS2's -machines");
        let etcd = c.etcd.expect("etcd");
        assert_eq!(
            etcd.endpoints,
            ["http://127.0.0.1:2379", "http://10.0.0.2:2379"]
        );
        assert_eq!(etcd.prefix, "/sky");
        assert!(
            cli(&[]).expect("default").etcd.is_none(),
            "no -etcd: our own store"
        );
        let e =
            cli(&["-etcd", "http://127.0.0.1:2379", "-data", "/tmp/x"]).expect_err("two stores");
        assert!(e.contains("-etcd and -data"), "{e}");
        let e = cli(&["-etcd", "http://"]).expect_err("no host");
        assert!(e.contains("not an etcd client URL"), "{e}");
        let e =
            cli(&["-etcd", "http://a:2379", "-etcd-cacert", "/ca.pem"]).expect_err("TLS over http");
        assert!(e.contains("https://"), "{e}");
        let e = cli(&["-etcd", "a:2379", "-etcd-prefix", "skydns"]).expect_err("relative prefix");
        assert!(e.contains("-etcd-prefix"), "{e}");
    }
}
