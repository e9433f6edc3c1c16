//! The command line: flags and subcommands (clap derive), and the Go-style
//! spelling and `add --json` body accepted before clap sees them.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Shown at the end of `--help`.
pub(crate) const AFTER_HELP: &str = "\
Exit codes:
  0  success
  1  general failure: skydns unreachable or timed out, server error (5xx), unreadable answer
  2  usage: bad flags or arguments, unreadable --json body, invalid --url
  3  not found (404): no such service, or no service matches the callback
  4  conflict (409): the uuid is registered already
  5  rejected (other 4xx): an invalid field (the message names it), or unauthorized (--secret)

Flags may also be written Go style, with one dash: -url http://10.0.0.1:8080 -secret=s3 -json.

Examples:
  skydnsctl add 1001 --name TestService --version 1.0.0 --environment production \\
      --region east --host 10.0.0.1 --port 80 --ttl 60
  skydnsctl add 1002 --json '{\"Name\":\"redis\",\"Host\":\"10.0.0.2\",\"Port\":6379,\"TTL\":60}'
  skydnsctl list 'east.*.testservice.production'
  skydnsctl heartbeat 1001 --ttl 60
  skydnsctl --json get 1001";

/// Command line of `skydnsctl`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "skydnsctl",
    version,
    about = "Manage services in a skydns registry over its HTTP API (SkyDNS v1 compatible)",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// Base URL of the skydns HTTP API.
    #[arg(
        long,
        global = true,
        display_order = 100,
        env = "SKYDNS_URL",
        default_value = "http://127.0.0.1:8080",
        value_name = "URL"
    )]
    pub url: String,

    /// The secret skydns runs with (`-secret`), sent as the Authorization header.
    #[arg(
        long,
        global = true,
        display_order = 101,
        env = "SKYDNS_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub secret: Option<skydns_api::Secret>,

    /// Machine output: the JSON the server returned, or {"ok":true} for writes.
    #[arg(long, global = true, display_order = 102)]
    pub json: bool,

    /// Per-request timeout, in seconds.
    #[arg(
        long,
        global = true,
        display_order = 103,
        default_value = "5",
        value_parser = parse_timeout,
        value_name = "SECONDS"
    )]
    pub timeout: Duration,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Register a service (PUT /skydns/services/{uuid}).
    Add(AddArgs),
    /// Show one service (GET /skydns/services/{uuid}).
    Get {
        /// The service's uuid.
        uuid: String,
    },
    /// List services, all or those matching a DNS-style query.
    #[command(visible_alias = "ls")]
    List {
        /// A DNS-style filter relative to the domain: any suffix of
        /// uuid.host.region.version.service.environment, `*` or `any` for one
        /// label (e.g. `east.*.web.production`).
        query: Option<String>,
    },
    /// Send a heartbeat: the service lives TTL more seconds (PATCH).
    Heartbeat {
        /// The service's uuid.
        uuid: String,
        /// Seconds the service lives from now.
        #[arg(long, default_value_t = 30, value_name = "SECONDS")]
        ttl: u32,
    },
    /// Remove a service (DELETE); matching callbacks fire.
    #[command(visible_alias = "rm")]
    Delete {
        /// The service's uuid.
        uuid: String,
    },
    /// Callbacks: called when matching services are removed.
    #[command(subcommand)]
    Callback(CallbackCommand),
    /// Number of services per region.
    Regions,
    /// Number of services per environment.
    Environments,
}

/// `skydnsctl add`.
#[derive(Debug, Clone, Args)]
#[command(after_help = "\
Flags override the fields of a --json body. The server checks the result: Host, Port and TTL \
(or --no-expire) are required; Name, Version, Environment and Region must be DNS labels.")]
pub struct AddArgs {
    /// The service's uuid: a DNS label, the first label of its name.
    pub uuid: String,
    /// Service name (`redis`).
    #[arg(long)]
    pub name: Option<String>,
    /// Version (`1.0.0`).
    #[arg(long)]
    pub version: Option<String>,
    /// Environment (`production`).
    #[arg(long)]
    pub environment: Option<String>,
    /// Region (`east`).
    #[arg(long)]
    pub region: Option<String>,
    /// IP address or hostname of the service.
    #[arg(long)]
    pub host: Option<String>,
    /// Port, 1-65535.
    #[arg(long)]
    pub port: Option<u16>,
    /// Seconds the registration lives without a heartbeat.
    #[arg(long, value_name = "SECONDS")]
    pub ttl: Option<u32>,
    /// Never expire (no heartbeats needed).
    #[arg(long)]
    pub no_expire: bool,
    /// Who owns the registration (e.g. `deploy@host1`).
    #[arg(long)]
    pub owner: Option<String>,
    /// The service as SkyDNS v1 JSON: literal, @FILE, or - for stdin. Also
    /// spelled `--json '{...}'`.
    #[arg(long, value_name = "JSON|@FILE|-")]
    pub body: Option<String>,
}

/// `skydnsctl callback ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum CallbackCommand {
    /// Attach a callback to the services matching Name/Version/Environment/Region
    /// (PUT /skydns/callbacks/{uuid}).
    Add(CallbackArgs),
}

/// `skydnsctl callback add`.
#[derive(Debug, Clone, Args)]
#[command(after_help = "\
When a matching service is removed skydns sends DELETE http://REPLY:PORT/skydns/callbacks/UUID \
with the service's JSON. Empty match fields match anything; at least one service must match.")]
pub struct CallbackArgs {
    /// The callback's uuid.
    pub uuid: String,
    /// Service name to match.
    #[arg(long)]
    pub name: Option<String>,
    /// Version to match.
    #[arg(long)]
    pub version: Option<String>,
    /// Environment to match.
    #[arg(long)]
    pub environment: Option<String>,
    /// Region to match.
    #[arg(long)]
    pub region: Option<String>,
    /// Host to match.
    #[arg(long)]
    pub host: Option<String>,
    /// Host (name or IP) that receives the callback.
    #[arg(long, value_name = "HOST")]
    pub reply: Option<String>,
    /// Port on the reply host.
    #[arg(long)]
    pub port: Option<u16>,
    /// The callback as SkyDNS v1 JSON: literal, @FILE, or - for stdin. Also
    /// spelled `--json '{...}'`.
    #[arg(long, value_name = "JSON|@FILE|-")]
    pub body: Option<String>,
}

pub(crate) fn parse_timeout(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if secs.is_nan() || secs <= 0.0 {
        return Err("must be more than 0 seconds".into());
    }
    Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())
}

/// Parses a command line (program name first), accepting Go-style single-dash
/// flags and `add --json '{...}'` as the body.
///
/// # Errors
/// clap's error: print it and exit with its `exit_code()` (2 for usage errors,
/// 0 for `--help` and `--version`).
pub fn parse<I, S>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    Cli::try_parse_from(prepare_args(args))
}

/// The argument rewriting [`parse`] does before clap sees the arguments.
pub(crate) fn prepare_args<I, S>(args: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    rewrite_json_body(skydns_api::go_flags::normalize(args, &['h', 'V']))
}

/// `--json` is the global "machine output" switch, yet `add --json '{...}'`
/// passes a body. After an `add`, a `--json` followed by something that can
/// only be a body (`{...}`, `@file`, `-`) becomes `--body`.
pub(crate) fn rewrite_json_body(args: Vec<String>) -> Vec<String> {
    let looks_like_body =
        |v: &str| v.trim_start().starts_with('{') || v.starts_with('@') || v == "-";
    let mut out = Vec::with_capacity(args.len());
    let mut after_add = false;
    let mut iter = args.into_iter().peekable();
    while let Some(arg) = iter.next() {
        if arg == "--" {
            out.push(arg);
            out.extend(iter);
            break;
        }
        if arg == "add" {
            after_add = true;
        }
        if after_add {
            if arg == "--json" && iter.peek().is_some_and(|v| looks_like_body(v)) {
                out.push("--body".to_string());
                continue;
            }
            if let Some(v) = arg.strip_prefix("--json=")
                && looks_like_body(v)
            {
                out.push(format!("--body={v}"));
                continue;
            }
        }
        out.push(arg);
    }
    out
}
