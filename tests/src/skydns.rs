//! A skydns to test against, in either of two forms behind one handle:
//! embedded ([`SkyDns::start`]: `skydns::start` on a runtime of its own in
//! the test process, the form most tests use) or the real binary
//! ([`SkyDns::spawn`]: for what needs a process — signals, `kill -9`, its
//! log, its file descriptors, its environment). Both listen on free loopback
//! ports and are talked to over the wire only.

use std::{
    net::SocketAddr,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use hickory_proto::{op::Message, rr::RecordType};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};
use tokio_util::sync::CancellationToken;

use crate::{Client, query_message, signal_pid, tcp_query, udp_query};

/// How long a daemon may take to report its addresses.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Where a harness skydns forwards when the test names no upstream: the
/// discard port on loopback, which answers nothing (ICMP port unreachable, so
/// SERVFAIL at once). Without it skydns would use its SkyDNS v1 default,
/// 8.8.8.8, and tests must never reach a public resolver.
pub const DEAD_UPSTREAM: &str = "127.0.0.1:9";

/// `-nameserver DEAD_UPSTREAM` unless `args` already choose the upstreams
/// (`-nameserver`) or turn forwarding off (`-no-forward`), or `env` sets
/// `SKYDNS_NAMESERVER`.
fn loopback_upstream_unless_given(args: &[&str], env: &[(&str, &str)]) -> Vec<&'static str> {
    let chosen = env.iter().any(|(k, _)| *k == "SKYDNS_NAMESERVER")
        || args.iter().any(|a| {
            let flag = a.trim_start_matches('-');
            a.starts_with('-')
                && (flag == "no-forward"
                    || flag == "nameserver"
                    || flag.starts_with("nameserver=")
                    || flag.starts_with("no-forward="))
        });
    if chosen {
        Vec::new()
    } else {
        vec!["-nameserver", DEAD_UPSTREAM]
    }
}

/// A running skydns; stopped when dropped.
pub struct SkyDns {
    /// DNS address (UDP and TCP).
    pub dns: SocketAddr,
    /// HTTP API address.
    pub http: SocketAddr,
    /// A client for the API (without secret).
    pub client: Client,
    runs: Runs,
}

/// How a [`SkyDns`] runs.
enum Runs {
    /// In this process; cancelled on drop.
    Embedded(CancellationToken),
    /// The real binary; killed on drop.
    Process {
        child: Child,
        log: Arc<Mutex<String>>,
    },
}

impl Drop for SkyDns {
    fn drop(&mut self) {
        if let Runs::Embedded(token) = &self.runs {
            token.cancel();
        }
    }
}

impl SkyDns {
    fn new(dns: SocketAddr, http: SocketAddr, runs: Runs) -> Result<Self, String> {
        let client = Client::new(&format!("http://{http}")).map_err(|e| e.to_string())?;
        Ok(Self {
            dns,
            http,
            client,
            runs,
        })
    }

    /// Starts an embedded skydns with the command line
    /// `-dns 127.0.0.1:0 -http 127.0.0.1:0 <args>` (parsed as the binary
    /// parses it; `-nameserver` defaults to [`DEAD_UPSTREAM`]) and returns
    /// once it serves.
    pub async fn start(args: &[&str]) -> Self {
        Self::start_on("127.0.0.1:0", "127.0.0.1:0", args).await
    }

    /// [`SkyDns::start`] on the given addresses (port 0: a free port).
    pub async fn start_on(dns: &str, http: &str, args: &[&str]) -> Self {
        Self::try_start_on(dns, http, args)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`SkyDns::start_on`], returning the start-up error's message.
    pub async fn try_start_on(dns: &str, http: &str, args: &[&str]) -> Result<Self, String> {
        let mut argv: Vec<String> = ["skydns", "-dns", dns, "-http", http]
            .iter()
            .chain(args)
            .chain(&loopback_upstream_unless_given(args, &[]))
            .map(|s| (*s).to_string())
            .collect();
        argv = skydns_api::go_flags::normalize(argv, &['h', 'V']);
        let cli = <skydns::Cli as clap::Parser>::try_parse_from(argv).map_err(|e| e.to_string())?;
        let config = skydns::Config::try_from(cli).map_err(|e| e.to_string())?;
        let workers = if config.workers > 0 {
            config.workers
        } else {
            2
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("skydns-embedded".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(workers)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(format!("cannot build a runtime: {e}")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    match skydns::start(config).await {
                        Err(e) => {
                            let _ = tx.send(Err(e.to_string()));
                        }
                        Ok(server) => {
                            let started = (
                                server.dns_addr(),
                                server.http_addr(),
                                server.shutdown_token(),
                            );
                            let _ = tx.send(Ok(started));
                            let _ = server.wait().await;
                        }
                    }
                });
            })
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        let (dns, http, token) = rx
            .await
            .map_err(|_| "the embedded skydns died".to_string())??;
        Self::new(dns, http, Runs::Embedded(token))
    }

    /// Starts the real binary, `skydns -dns 127.0.0.1:0 -http 127.0.0.1:0
    /// <args>`, and waits until it listens.
    pub async fn spawn(args: &[&str]) -> Self {
        Self::spawn_on("127.0.0.1:0", "127.0.0.1:0", args).await
    }

    /// [`SkyDns::spawn`] on the given addresses (port 0: a free port).
    pub async fn spawn_on(dns: &str, http: &str, args: &[&str]) -> Self {
        Self::try_spawn_on(dns, http, args)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`SkyDns::spawn_on`], returning the daemon's output when it fails
    /// to start (for tests of start-up errors).
    pub async fn try_spawn_on(dns: &str, http: &str, args: &[&str]) -> Result<Self, String> {
        Self::try_spawn_with_env(dns, http, args, &[]).await
    }

    /// Spawns skydns with `env` set (`SKYDNS_*` variables) besides `args`;
    /// `-dns`/`-http` are passed only where `env` does not set `SKYDNS_DNS`
    /// or `SKYDNS` (the HTTP address), and the dead loopback upstream only
    /// where neither sets the upstreams. Other `SKYDNS_*` variables of the
    /// test's own environment are removed.
    pub async fn try_spawn_with_env(
        dns: &str,
        http: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Self, String> {
        let mut spawned = Spawned::new(dns, http, args, env)?;
        match spawned.next().await {
            Some(Started::Api(_)) => spawned.listening().await,
            Some(Started::Listening(dns, http)) => spawned.into_skydns(dns, http),
            None => Err(spawned.failed().await),
        }
    }

    /// Spawns skydns and returns as soon as its API listens, while it may
    /// still be loading its store (`GET /ready` is 503 then);
    /// [`Loading::listening`] waits for the rest.
    pub async fn spawn_loading(args: &[&str]) -> Loading {
        let mut spawned =
            Spawned::new("127.0.0.1:0", "127.0.0.1:0", args, &[]).unwrap_or_else(|e| panic!("{e}"));
        match spawned.next().await {
            Some(Started::Api(http)) => Loading { spawned, http },
            Some(Started::Listening(..)) => {
                panic!("skydns said it was listening before its API did")
            }
            None => panic!("{}", spawned.failed().await),
        }
    }

    /// The API's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.http)
    }

    fn process(&self, what: &str) -> (&Child, &Arc<Mutex<String>>) {
        match &self.runs {
            Runs::Process { child, log } => (child, log),
            Runs::Embedded(_) => {
                panic!("{what} needs the real binary: start it with SkyDns::spawn")
            }
        }
    }

    /// Everything the daemon logged so far (a spawned one only).
    pub fn log(&self) -> String {
        let (_, log) = self.process("log()");
        log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The process id (a spawned one only).
    pub fn pid(&self) -> u32 {
        self.process("pid()").0.id().unwrap_or(0)
    }

    /// Sends a signal (`"KILL"`, `"TERM"`, `"STOP"`, `"CONT"`) with `kill(1)`
    /// (a spawned one only).
    pub fn signal(&self, sig: &str) {
        signal_pid(self.pid(), sig);
    }

    /// `kill -9` and wait for the process to be gone (a spawned one only).
    pub async fn kill9(mut self) {
        self.signal("KILL");
        if let Runs::Process { child, .. } = &mut self.runs {
            let _ = child.wait().await;
        }
    }

    /// SIGTERM and wait for a clean exit; returns the exit status's success
    /// (a spawned one only).
    pub async fn stop(mut self) -> bool {
        self.signal("TERM");
        let Runs::Process { child, .. } = &mut self.runs else {
            return false;
        };
        matches!(tokio::time::timeout(Duration::from_secs(10), child.wait()).await, Ok(Ok(s)) if s.success())
    }

    /// The Prometheus text at `/metrics`.
    pub async fn metrics(&self) -> String {
        crate::http(self.http, "GET", "/metrics", &[], None)
            .await
            .unwrap_or_else(|e| panic!("GET /metrics: {e}"))
            .text()
    }

    /// A DNS query over UDP.
    pub async fn query(&self, name: &str, rtype: RecordType) -> Message {
        udp_query(self.dns, name, rtype)
            .await
            .unwrap_or_else(|e| panic!("query {name} {rtype}: {e}"))
    }

    /// A DNS query over TCP.
    pub async fn query_tcp(&self, name: &str, rtype: RecordType) -> Message {
        tcp_query(self.dns, &query_message(name, rtype, None))
            .await
            .unwrap_or_else(|e| panic!("tcp query {name} {rtype}: {e}"))
    }
}

/// What a starting skydns said.
enum Started {
    /// `API listening http=…`: the API answers, the store may still load.
    Api(SocketAddr),
    /// `listening dns=… http=…`: everything serves.
    Listening(SocketAddr, SocketAddr),
}

/// A skydns process whose start-up lines are being read.
struct Spawned {
    child: Child,
    log: Arc<Mutex<String>>,
    started: tokio::sync::mpsc::UnboundedReceiver<Started>,
}

impl Spawned {
    fn new(dns: &str, http: &str, args: &[&str], env: &[(&str, &str)]) -> Result<Self, String> {
        let mut cmd = Command::new(crate::binary("skydns"));
        for var in [
            "SKYDNS",
            "SKYDNS_DNS",
            "SKYDNS_DOMAIN",
            "SKYDNS_NAMESERVER",
            "SKYDNS_DATA",
            "SKYDNS_SECRET",
            "SKYDNS_ALLOW_RECURSION",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("SKYDNS_LOG", "info");
        if !env.iter().any(|(k, _)| *k == "SKYDNS_DNS") {
            cmd.args(["-dns", dns]);
        }
        if !env.iter().any(|(k, _)| *k == "SKYDNS") {
            cmd.args(["-http", http]);
        }
        cmd.args(args)
            .args(loopback_upstream_unless_given(args, env))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start skydns: {e}"))?;
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let (tx, started) = tokio::sync::mpsc::unbounded_channel();
        let sink = Arc::clone(&log);
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some((dns, http)) = parse_listening(&line) {
                    let _ = tx.send(Started::Listening(dns, http));
                } else if let Some(http) = parse_api_listening(&line) {
                    let _ = tx.send(Started::Api(http));
                }
                if let Ok(mut l) = sink.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
            }
        });
        Ok(Self {
            child,
            log,
            started,
        })
    }

    async fn next(&mut self) -> Option<Started> {
        tokio::time::timeout(START_TIMEOUT, self.started.recv())
            .await
            .ok()
            .flatten()
    }

    /// Waits for `listening dns=… http=…`.
    async fn listening(mut self) -> Result<SkyDns, String> {
        loop {
            match self.next().await {
                Some(Started::Listening(dns, http)) => return self.into_skydns(dns, http),
                Some(Started::Api(_)) => continue,
                None => return Err(self.failed().await),
            }
        }
    }

    /// The daemon's output, once it exited (or after 2 s), for the failure.
    async fn failed(mut self) -> String {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await;
        let out = self.log.lock().map(|l| l.clone()).unwrap_or_default();
        let _ = self.child.start_kill();
        format!("skydns did not start:\n{out}")
    }

    fn into_skydns(self, dns: SocketAddr, http: SocketAddr) -> Result<SkyDns, String> {
        SkyDns::new(
            dns,
            http,
            Runs::Process {
                child: self.child,
                log: self.log,
            },
        )
    }
}

/// A skydns whose API listens while it may still be loading its store
/// ([`SkyDns::spawn_loading`]).
pub struct Loading {
    spawned: Spawned,
    /// The API's address (answering already).
    pub http: SocketAddr,
}

impl Loading {
    /// Waits until it listens for DNS too (it is ready then).
    pub async fn listening(self) -> SkyDns {
        self.spawned
            .listening()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Parses the `API listening http=...` line (the API answers, the store may
/// still be loading).
fn parse_api_listening(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("API listening http=")? + "API listening http=".len()..];
    rest.split(|c: char| c == ';' || c.is_whitespace())
        .next()?
        .parse()
        .ok()
}

/// Parses the `listening dns=... http=...` line.
fn parse_listening(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let rest = &line[line.find("listening dns=")? + "listening dns=".len()..];
    let mut parts = rest.split_whitespace();
    let dns = parts.next()?.parse().ok()?;
    let http = parts.next()?.strip_prefix("http=")?.parse().ok()?;
    Some((dns, http))
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_the_listening_line() {
        let line =
            "2026 INFO skydns::server: listening dns=127.0.0.1:5353 http=127.0.0.1:8080 dns=...";
        let (d, h) = super::parse_listening(line).expect("parses");
        let early = "2026 INFO skydns::server: API listening http=127.0.0.1:8080; loading the store (not ready yet)";
        assert_eq!(
            super::parse_api_listening(early).map(|a| a.port()),
            Some(8080)
        );
        assert!(super::parse_listening(early).is_none());
        assert_eq!(d.port(), 5353);
        assert_eq!(h.port(), 8080);
    }
}
