//! `skydnsctl`: the command-line client of the skydns registry API, as SkyDNS v1
//! shipped one, built on the shared [`skydns_api::Client`].
//!
//! The binary (`src/main.rs`) only wires process concerns together: it calls
//! [`parse`], runs [`execute`] on a small runtime, prints the text it returns
//! and exits with [`Failure::code`] on error. Everything else lives here so it
//! can be tested without a process:
//!
//! - [`Cli`] / [`Command`]: the flags and subcommands (clap derive). [`parse`]
//!   first accepts Go-style single-dash flags (`-url`, `-secret=s3`) through
//!   [`skydns_api::go_flags::normalize`], and `add --json '{...}'` as a body.
//! - [`execute`]: one API call per command; the text to print on success.
//! - [`format_table`], [`format_service`], [`format_counts`], [`format_ttl`]:
//!   human output. With `--json` the output is the server's JSON instead (or
//!   `{"ok":true}` for writes).
//! - [`Failure`]: one line of error text and an [`exit`] code that tells
//!   "not found", "conflict" and "rejected" apart.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

use std::{collections::BTreeMap, io::Read, time::Duration};

use clap::{Args, Parser, Subcommand};
use skydns_api::{Callback, Client, ClientError, Service};

/// Exit codes of `skydnsctl`.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// General failure: skydns unreachable or too slow, a server error (5xx),
    /// an unreadable answer, a local I/O error.
    pub const GENERAL: u8 = 1;
    /// Usage: bad flags or arguments (clap), an unreadable `--json` body, an
    /// invalid `--url`.
    pub const USAGE: u8 = 2;
    /// Not found (404): no such service, or no service matches a callback.
    pub const NOT_FOUND: u8 = 3;
    /// Conflict (409): the uuid is registered already.
    pub const CONFLICT: u8 = 4;
    /// Rejected (any other 4xx): an invalid field, a wrong or missing secret.
    pub const REJECTED: u8 = 5;
}

/// Shown at the end of `--help`.
const AFTER_HELP: &str = "\
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

fn parse_timeout(s: &str) -> Result<Duration, String> {
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
pub fn prepare_args<I, S>(args: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    rewrite_json_body(skydns_api::go_flags::normalize(args, &['h', 'V']))
}

/// `--json` is the global "machine output" switch, yet `add --json '{...}'`
/// passes a body. After an `add`, a `--json` followed by something that can
/// only be a body (`{...}`, `@file`, `-`) becomes `--body`.
fn rewrite_json_body(args: Vec<String>) -> Vec<String> {
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

/// Why a command failed: one line of text and the process exit code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    /// One of the [`exit`] codes.
    pub code: u8,
    /// What went wrong, on one line (without the `skydnsctl: ` prefix).
    pub message: String,
}

impl Failure {
    /// A failure with `code`; newlines in `message` become spaces.
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        let message: String = message.into();
        let message = message
            .split(['\n', '\r'])
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        Self { code, message }
    }

    /// A usage error (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(exit::USAGE, message)
    }

    /// A client error, explained for someone who talked to `base` with
    /// `timeout`.
    pub fn from_client(err: &ClientError, base: &str, timeout: Duration) -> Self {
        match err {
            ClientError::NotFound(m) => Self::new(exit::NOT_FOUND, format!("not found: {m}")),
            ClientError::Conflict(m) => Self::new(exit::CONFLICT, format!("conflict: {m}")),
            ClientError::Unauthorized(m) => Self::new(
                exit::REJECTED,
                format!("unauthorized: {m}; set --secret or SKYDNS_SECRET"),
            ),
            ClientError::Rejected {
                status,
                message,
                field,
            } => {
                let mut text = format!("rejected ({status}): {message}");
                if let Some(f) = field.as_deref().filter(|f| !message.contains(*f)) {
                    text.push_str(&format!(" (field {f})"));
                }
                Self::new(exit::REJECTED, text)
            }
            ClientError::Server { status, message } => Self::new(
                exit::GENERAL,
                format!("server error ({status}) from {base}: {message}"),
            ),
            ClientError::Transport(_) => {
                Self::new(exit::GENERAL, transport_message(err, base, timeout))
            }
            ClientError::InvalidUrl(u) => Self::usage(format!(
                "--url {u:?} is not usable: give an http:// or https:// URL"
            )),
            other => Self::new(exit::GENERAL, other.to_string()),
        }
    }
}

/// What to say about a request that got no usable answer.
fn transport_message(err: &ClientError, base: &str, timeout: Duration) -> String {
    let ClientError::Transport(e) = err else {
        return err.to_string();
    };
    let root = root_cause(e);
    if e.is_timeout() {
        format!(
            "no answer from skydns at {base} within {}s (--timeout)",
            timeout.as_secs_f64()
        )
    } else if e.is_connect() {
        format!("cannot connect to skydns at {base}: {root}")
    } else if e.is_decode() || e.is_body() {
        format!("unreadable answer from {base} (is it skydns?): {root}")
    } else {
        format!("request to {base} failed: {root}")
    }
}

/// The innermost error of a chain: "Connection refused (os error 111)"
/// rather than "error sending request for url (...)".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Runs the command against the server; the text to print on stdout
/// (newline-terminated) on success.
///
/// # Errors
/// A [`Failure`] with its exit code and one line of explanation.
pub async fn execute(cli: &Cli) -> Result<String, Failure> {
    let client = Client::with_timeout(&cli.url, cli.timeout)
        .map_err(|e| Failure::from_client(&e, &cli.url, cli.timeout))?;
    let client = match &cli.secret {
        Some(s) => client.with_secret(s.clone()),
        None => client,
    };
    let base = client.base_url().to_string();
    let api = |e: ClientError| Failure::from_client(&e, &base, cli.timeout);
    let ok = |human: String| -> String {
        if cli.json {
            "{\"ok\":true}\n".to_string()
        } else {
            human + "\n"
        }
    };
    match &cli.command {
        Command::Add(args) => {
            let service = service_from_args(args)?;
            client
                .add_service(&args.uuid, &service)
                .await
                .map_err(api)?;
            Ok(ok(format!("added service {:?}", args.uuid)))
        }
        Command::Get { uuid } => {
            let service = client.get_service(uuid).await.map_err(api)?;
            if cli.json {
                to_json(&service)
            } else {
                Ok(format_service(&service))
            }
        }
        Command::List { query } => {
            let query = query.as_deref().filter(|q| !q.is_empty());
            let services = client.list_services(query).await.map_err(api)?;
            if cli.json {
                to_json(&services)
            } else if services.is_empty() {
                Ok(match query {
                    Some(q) => format!("no services match {q:?}\n"),
                    None => "no services registered\n".to_string(),
                })
            } else {
                Ok(format_table(&services))
            }
        }
        Command::Heartbeat { uuid, ttl } => {
            client.heartbeat(uuid, *ttl).await.map_err(api)?;
            Ok(ok(format!(
                "service {uuid:?} lives {} more",
                format_ttl(*ttl)
            )))
        }
        Command::Delete { uuid } => {
            client.delete_service(uuid).await.map_err(api)?;
            Ok(ok(format!("deleted service {uuid:?}")))
        }
        Command::Callback(CallbackCommand::Add(args)) => {
            let callback = callback_from_args(args)?;
            client
                .add_callback(&args.uuid, &callback)
                .await
                .map_err(api)?;
            Ok(ok(format!(
                "added callback {:?}: DELETE http://{}/skydns/callbacks/{} when a matching service goes",
                args.uuid,
                host_port(&callback.reply, callback.port),
                args.uuid
            )))
        }
        Command::Regions => {
            let counts = client.regions().await.map_err(api)?;
            if cli.json {
                to_json(&counts)
            } else {
                Ok(format_counts("REGION", &counts))
            }
        }
        Command::Environments => {
            let counts = client.environments().await.map_err(api)?;
            if cli.json {
                to_json(&counts)
            } else {
                Ok(format_counts("ENVIRONMENT", &counts))
            }
        }
    }
}

fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, Failure> {
    serde_json::to_string(value)
        .map(|s| s + "\n")
        .map_err(|e| Failure::new(exit::GENERAL, format!("cannot write JSON: {e}")))
}

/// Reads a `--json`/`--body` argument: literal JSON, `@file`, or `-` (stdin).
fn read_body(spec: &str) -> Result<String, Failure> {
    if spec == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| Failure::usage(format!("--json -: cannot read stdin: {e}")))?;
        Ok(s)
    } else if let Some(path) = spec.strip_prefix('@') {
        std::fs::read_to_string(path).map_err(|e| Failure::usage(format!("--json @{path}: {e}")))
    } else {
        Ok(spec.to_string())
    }
}

fn parse_body<T: serde::de::DeserializeOwned + Default>(spec: Option<&str>) -> Result<T, Failure> {
    let Some(spec) = spec else {
        return Ok(T::default());
    };
    let text = read_body(spec)?;
    serde_json::from_str(&text).map_err(|e| Failure::usage(format!("--json body: {e}")))
}

/// The service `add` registers: the `--json` body (if any) with the flags
/// laid over it.
///
/// # Errors
/// A usage [`Failure`] when the body cannot be read or parsed.
pub fn service_from_args(args: &AddArgs) -> Result<Service, Failure> {
    let mut s: Service = parse_body(args.body.as_deref())?;
    set(&mut s.name, &args.name);
    set(&mut s.version, &args.version);
    set(&mut s.environment, &args.environment);
    set(&mut s.region, &args.region);
    set(&mut s.host, &args.host);
    if let Some(p) = args.port {
        s.port = p;
    }
    if let Some(t) = args.ttl {
        s.ttl = t;
    }
    if args.no_expire {
        s.no_expire = true;
    }
    if let Some(o) = &args.owner {
        s.owner = Some(o.clone());
    }
    // The URL names the service; the server decides the deadline.
    s.uuid = String::new();
    s.expires = None;
    Ok(s)
}

/// The callback `callback add` registers: the `--json` body (if any) with the
/// flags laid over it.
///
/// # Errors
/// A usage [`Failure`] when the body cannot be read or parsed.
pub fn callback_from_args(args: &CallbackArgs) -> Result<Callback, Failure> {
    let mut c: Callback = parse_body(args.body.as_deref())?;
    set(&mut c.name, &args.name);
    set(&mut c.version, &args.version);
    set(&mut c.environment, &args.environment);
    set(&mut c.region, &args.region);
    set(&mut c.host, &args.host);
    set(&mut c.reply, &args.reply);
    if let Some(p) = args.port {
        c.port = p;
    }
    c.uuid = String::new();
    Ok(c)
}

fn set(field: &mut String, flag: &Option<String>) {
    if let Some(v) = flag {
        field.clone_from(v);
    }
}

/// `host:port`, with IPv6 addresses in brackets.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A duration in seconds as `1h6m27s` (`0s` for zero).
pub fn format_ttl(secs: u32) -> String {
    if secs == 0 {
        return "0s".to_string();
    }
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    let mut out = String::new();
    for (n, unit) in [(d, "d"), (h, "h"), (m, "m"), (s, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    out
}

/// The "TTL left" of a service as the server answered it.
fn ttl_left(s: &Service) -> String {
    if s.no_expire {
        "never".to_string()
    } else {
        format_ttl(s.ttl)
    }
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

/// Left-aligned columns separated by two spaces, without trailing blanks.
fn render_rows(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|v| v.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let w = widths.get(i).copied().unwrap_or(0);
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The `list` table: uuid, name, version, environment, region, host:port,
/// TTL left and owner, one service per line, in the server's order.
pub fn format_table(services: &[Service]) -> String {
    let mut rows = vec![
        [
            "UUID",
            "NAME",
            "VERSION",
            "ENVIRONMENT",
            "REGION",
            "HOST:PORT",
            "TTL",
            "OWNER",
        ]
        .map(String::from)
        .to_vec(),
    ];
    rows.extend(services.iter().map(|s| {
        vec![
            or_dash(&s.uuid).to_string(),
            or_dash(&s.name).to_string(),
            or_dash(&s.version).to_string(),
            or_dash(&s.environment).to_string(),
            or_dash(&s.region).to_string(),
            host_port(&s.host, s.port),
            ttl_left(s),
            or_dash(s.owner.as_deref().unwrap_or_default()).to_string(),
        ]
    }));
    render_rows(&rows)
}

/// One service, a field per line (`get`).
pub fn format_service(s: &Service) -> String {
    let expires = if s.no_expire {
        "never (NoExpire)".to_string()
    } else {
        s.expires.clone().unwrap_or_else(|| "-".to_string())
    };
    let rows: Vec<Vec<String>> = [
        ("UUID", or_dash(&s.uuid).to_string()),
        ("Name", or_dash(&s.name).to_string()),
        ("Version", or_dash(&s.version).to_string()),
        ("Environment", or_dash(&s.environment).to_string()),
        ("Region", or_dash(&s.region).to_string()),
        ("Host", or_dash(&s.host).to_string()),
        ("Port", s.port.to_string()),
        ("TTL left", ttl_left(s)),
        ("Expires", expires),
        (
            "Owner",
            or_dash(s.owner.as_deref().unwrap_or_default()).to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| vec![format!("{k}:"), v])
    .collect();
    render_rows(&rows)
}

/// `regions` / `environments`: a name and a count per line, under `heading`.
pub fn format_counts(heading: &str, counts: &BTreeMap<String, u64>) -> String {
    if counts.is_empty() {
        return "no services registered\n".to_string();
    }
    let mut rows = vec![vec![heading.to_string(), "SERVICES".to_string()]];
    rows.extend(counts.iter().map(|(k, n)| {
        vec![
            if k.is_empty() {
                "(none)".to_string()
            } else {
                k.clone()
            },
            n.to_string(),
        ]
    }));
    render_rows(&rows)
}

#[cfg(test)]
mod tests;
