//! skydock's configuration: [`Cli`] (the original Skydock's single-dash flags
//! plus `--long` ones and `SKYDOCK_*` env vars) → validated [`Config`].

use std::time::Duration;

use clap::Parser;
use skydns_api::Secret;

use crate::{Error, naming::Defaults};

/// Command line of the `skydock` binary.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "skydock",
    version,
    about = "Registers Docker containers in skydns"
)]
pub struct Cli {
    /// Path of the Docker socket (default: DOCKER_HOST, else /var/run/docker.sock).
    #[arg(short = 's', long = "socket", env = "SKYDOCK_SOCKET")]
    pub socket: Option<String>,
    /// URL of the skydns HTTP API (`http://172.17.0.2:8080`).
    #[arg(long, env = "SKYDOCK_SKYDNS")]
    pub skydns: Option<String>,
    /// Name of the skydns container: its IP is looked up through Docker.
    #[arg(long, env = "SKYDOCK_NAME")]
    pub name: Option<String>,
    /// skydns `-secret`, sent as the Authorization header.
    #[arg(long, env = "SKYDOCK_SECRET", hide_env_values = true)]
    pub secret: Option<Secret>,
    /// The domain skydns serves (for log lines).
    #[arg(long, env = "SKYDOCK_DOMAIN", default_value = "skydns.local")]
    pub domain: String,
    /// Environment containers are registered in.
    #[arg(long, env = "SKYDOCK_ENVIRONMENT", default_value = "dev")]
    pub environment: String,
    /// Region registered with every container (several hosts, one skydns).
    #[arg(long, env = "SKYDOCK_REGION", default_value = "")]
    pub region: String,
    /// TTL of registrations in seconds.
    #[arg(long, env = "SKYDOCK_TTL", default_value_t = 60)]
    pub ttl: u32,
    /// Heartbeat interval in seconds (default: TTL - TTL/4, at least a second short of the TTL).
    #[arg(long, env = "SKYDOCK_BEAT", default_value_t = 0)]
    pub beat: u64,
    /// Registry calls in flight at once (registrations and removals; heartbeats as many again).
    #[arg(long, env = "SKYDOCK_WORKERS", default_value_t = 8)]
    pub workers: usize,
    /// JavaScript plugin file (the original's `createService(container)` contract).
    #[arg(long, env = "SKYDOCK_PLUGINS")]
    pub plugins: Option<String>,
    /// Time budget of one plugin call (`500ms`, `2s`; a bare number is seconds): past it the
    /// script is interrupted and the container skipped.
    #[arg(long, env = "SKYDOCK_PLUGIN_TIMEOUT", default_value = "1s")]
    pub plugin_timeout: String,
    /// Register the container's IP on this Docker network (default: its first).
    #[arg(long, env = "SKYDOCK_NETWORK")]
    pub network: Option<String>,
    /// Address registered for containers run with `--net=host`.
    #[arg(long, env = "SKYDOCK_IP")]
    pub ip: Option<String>,
    /// Seconds between full reconciles with Docker and skydns.
    #[arg(long, env = "SKYDOCK_RESYNC", default_value_t = 60)]
    pub resync: u64,
    /// Remove this agent's registrations on exit instead of letting them expire.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub deregister_on_exit: bool,
    /// Owner recorded with each registration (default: `skydock@<hostname>`).
    #[arg(long, env = "SKYDOCK_OWNER")]
    pub owner: Option<String>,
    /// Address of skydock's own endpoint (/health, /metrics, POST /drain/{container}); `off` disables it.
    #[arg(long, env = "SKYDOCK_HTTP", default_value = "127.0.0.1:8081")]
    pub http: String,
    /// Log filter.
    #[arg(long, env = "SKYDOCK_LOG", default_value = "info")]
    pub log_level: String,
    /// Log format: `text` or `json`.
    #[arg(long, default_value = "text")]
    pub log_format: String,
    /// A one-off command instead of the agent.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// skydock's one-off commands (`skydock <command> …`); without one it runs
/// the agent.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Replace a service's containers with a new image, dropping no request.
    Rollout(crate::rollout::RolloutCli),
}

impl Cli {
    /// Parses the process's arguments, accepting the original's single-dash spelling.
    pub fn parse_args() -> Self {
        Self::parse_from(skydns_api::go_flags::normalize(
            std::env::args(),
            &['s', 'h', 'V'],
        ))
    }
}

/// Where skydns is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkydnsLocation {
    /// A URL.
    Url(String),
    /// A container whose IP is looked up through Docker (port 8080).
    Container(String),
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Docker socket path, or `None` for `DOCKER_HOST`/the default.
    pub socket: Option<String>,
    /// Where skydns is.
    pub skydns: SkydnsLocation,
    /// API secret.
    pub secret: Option<Secret>,
    /// Per-container defaults.
    pub defaults: Defaults,
    /// Heartbeat interval.
    pub beat: Duration,
    /// Reconcile interval.
    pub resync: Duration,
    /// Registry calls in flight at once: the sync pool's size, and the
    /// heartbeats' (a separate bound, so beats never wait behind a backlog).
    pub workers: usize,
    /// Remove registrations on exit.
    pub deregister_on_exit: bool,
    /// Plugin file.
    pub plugins: Option<String>,
    /// Time budget of one plugin call.
    pub plugin_timeout: Duration,
    /// Control endpoint address (`None`: off).
    pub http: Option<std::net::SocketAddr>,
}

impl Config {
    /// Validates `cli`; `link_addr` is the `-link skydns:skydns` variable
    /// `SKYDNS_PORT_8080_TCP_ADDR` (with its `_PORT`), passed in by the binary.
    ///
    /// # Errors
    /// [`Error::Config`] naming the flag at fault.
    pub fn from_cli(cli: Cli, link_addr: Option<(String, String)>) -> Result<Self, Error> {
        if cli.ttl == 0 {
            return Err(Error::config("ttl", "-ttl must be at least 1 second"));
        }
        let skydns = match (cli.skydns, link_addr, cli.name) {
            (Some(url), _, _) => {
                let url = if url.contains("://") {
                    url
                } else {
                    format!("http://{url}")
                };
                SkydnsLocation::Url(url)
            }
            (None, Some((addr, port)), _) => SkydnsLocation::Url(format!("http://{addr}:{port}")),
            (None, None, Some(name)) => SkydnsLocation::Container(name),
            (None, None, None) => {
                return Err(Error::config(
                    "skydns",
                    "where is skydns? pass -skydns http://IP:8080, -name <skydns container>, or link it (-link skydns:skydns)",
                ));
            }
        };
        let ttl = u64::from(cli.ttl);
        let beat = if cli.beat == 0 {
            // TTL - TTL/4, and always short of the TTL: with integer seconds,
            // `-ttl 3` would otherwise beat every 3 s and the registration
            // would expire just before each heartbeat.
            match ttl - (ttl / 4).max(1) {
                0 => Duration::from_millis(500),
                secs => Duration::from_secs(secs),
            }
        } else {
            Duration::from_secs(cli.beat.max(1))
        };
        if beat >= Duration::from_secs(ttl) {
            tracing::warn!(
                beat = beat.as_secs(),
                ttl = cli.ttl,
                "-beat is not shorter than -ttl: registrations will expire between beats"
            );
        }
        let owner = cli
            .owner
            .unwrap_or_else(|| format!("skydock@{}", hostname()));
        if owner.trim().is_empty() {
            return Err(Error::config(
                "owner",
                "-owner must not be empty: it is how this agent tells its registrations from others'",
            ));
        }
        let plugin_timeout = parse_duration(&cli.plugin_timeout)
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                Error::config(
                    "plugin-timeout",
                    format!(
                        "-plugin-timeout {:?}: give a positive duration such as 500ms or 2s",
                        cli.plugin_timeout
                    ),
                )
            })?;
        let http = match cli.http.as_str() {
            "" | "off" | "none" => None,
            addr => Some(addr.parse().map_err(|_| {
                Error::config(
                    "http",
                    format!("-http {addr:?} is not an IP:port address (or `off`)"),
                )
            })?),
        };
        Ok(Self {
            socket: cli.socket,
            skydns,
            secret: cli.secret.filter(|s| !s.is_empty()),
            defaults: Defaults {
                environment: cli.environment,
                region: cli.region,
                ttl: cli.ttl,
                network: cli.network,
                host_ip: cli.ip,
                owner,
            },
            beat,
            resync: Duration::from_secs(cli.resync.max(1)),
            workers: cli.workers.max(1),
            deregister_on_exit: cli.deregister_on_exit,
            plugins: cli.plugins,
            plugin_timeout,
            http,
        })
    }
}

/// `250ms`, `2s`, `1.5s` or a bare number of seconds.
fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (number, scale) = if let Some(ms) = s.strip_suffix("ms") {
        (ms, 0.001)
    } else if let Some(secs) = s.strip_suffix('s') {
        (secs, 1.0)
    } else {
        (s, 1.0)
    };
    let value: f64 = number.trim().parse().ok()?;
    (value.is_finite() && value >= 0.0)
        .then(|| Duration::try_from_secs_f64(value * scale).ok())
        .flatten()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, Error> {
        let mut v = vec!["skydock".to_string()];
        v.extend(args.iter().map(|s| s.to_string()));
        let cli = Cli::try_parse_from(skydns_api::go_flags::normalize(v, &['s', 'h', 'V']))
            .map_err(|e| Error::config("", e.to_string()))?;
        Config::from_cli(cli, None)
    }

    #[test]
    fn the_original_readme_command_line_parses() {
        let c = parse(&[
            "-ttl",
            "30",
            "-environment",
            "dev",
            "-s",
            "/docker.sock",
            "-domain",
            "docker",
            "-name",
            "skydns",
        ])
        .expect("parses");
        assert_eq!(c.socket.as_deref(), Some("/docker.sock"));
        assert_eq!(c.skydns, SkydnsLocation::Container("skydns".into()));
        assert_eq!(c.beat, Duration::from_secs(23));
        assert_eq!(c.defaults.ttl, 30);
    }

    #[test]
    fn rollout_is_a_subcommand_and_the_agent_runs_without_one() {
        let argv = |args: &[&str]| {
            let mut v = vec!["skydock".to_string()];
            v.extend(args.iter().map(|s| s.to_string()));
            Cli::try_parse_from(skydns_api::go_flags::normalize(v, &['s', 'h', 'V']))
        };
        let cli = argv(&[
            "rollout",
            "--service",
            "web",
            "--image",
            "web:v2",
            "-s",
            "/d.sock",
        ])
        .expect("parses");
        match cli.command {
            Some(Command::Rollout(r)) => {
                assert_eq!((r.service.as_str(), r.image.as_str()), ("web", "web:v2"));
                assert_eq!(r.socket.as_deref(), Some("/d.sock"));
            }
            None => panic!("rollout parsed as the agent"),
        }
        let cli =
            argv(&["-ttl", "30", "-environment", "dev", "-s", "/docker.sock"]).expect("parses");
        assert!(cli.command.is_none());
        assert!(
            argv(&["rollout", "--image", "web:v2"]).is_err(),
            "--service is required"
        );
    }

    #[test]
    fn the_default_beat_is_always_shorter_than_the_ttl() {
        let beat = |ttl: &str| {
            parse(&["-skydns", "127.0.0.1:8080", "-ttl", ttl])
                .expect("parses")
                .beat
        };
        assert_eq!(beat("60"), Duration::from_secs(45));
        assert_eq!(beat("4"), Duration::from_secs(3));
        assert_eq!(beat("3"), Duration::from_secs(2));
        assert_eq!(beat("2"), Duration::from_secs(1));
        assert_eq!(beat("1"), Duration::from_millis(500));
    }

    #[test]
    fn skydns_location_is_required_and_urls_are_completed() {
        assert!(parse(&[]).is_err());
        let c = parse(&[
            "-skydns",
            "127.0.0.1:8080",
            "-beat=5",
            "-deregister-on-exit",
        ])
        .expect("parses");
        assert_eq!(
            c.skydns,
            SkydnsLocation::Url("http://127.0.0.1:8080".into())
        );
        assert_eq!(c.beat, Duration::from_secs(5));
        assert!(c.deregister_on_exit);
    }

    #[test]
    fn plugin_timeout_takes_durations_and_refuses_nonsense() {
        let t = |v: &str| {
            parse(&["-skydns", "127.0.0.1:8080", "-plugin-timeout", v]).map(|c| c.plugin_timeout)
        };
        assert_eq!(t("250ms").expect("parses"), Duration::from_millis(250));
        assert_eq!(t("2s").expect("parses"), Duration::from_secs(2));
        assert_eq!(t("1.5").expect("parses"), Duration::from_millis(1500));
        assert!(t("0").is_err());
        assert!(t("soon").is_err());
        let c = parse(&["-skydns", "127.0.0.1:8080"]).expect("parses");
        assert_eq!(c.plugin_timeout, Duration::from_secs(1));
        assert_eq!(c.workers, 8);
    }
}
