//! The integration harness: starts the real `skydns` binary on free loopback
//! ports, and talks to it over the wire as users' programs do — HTTP through
//! the shared client crate, DNS through a small UDP/TCP client built on
//! hickory-proto.
//!
//! The binaries are found next to the test executable (`target/<profile>/`)
//! and built there by the first test that needs one ([`binary`]), so a bare
//! `cargo test` works. Every process is killed when its handle is dropped.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use hickory_proto::{
    op::{Edns, Message, MessageType, OpCode, Query},
    rr::{Name, RData, RecordType},
};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpStream, UdpSocket},
    process::{Child, Command},
};

pub mod browser;
pub mod docker;
pub mod skydock;
pub mod stub;

pub use skydns_api::{Callback, Client, ClientError, Service};

/// How long a daemon may take to report its addresses.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a DNS query may take before the harness gives up.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(3);

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

/// Path of a workspace binary (`skydns`, `skydock`, `skydnsctl`) next to
/// the running test executable (`target/<profile>/`). The first call of a
/// test process builds the workspace's binaries with that profile (`cargo
/// build`, a no-op when they are current), so a bare `cargo test` needs
/// nothing built first and never runs a stale binary.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    let dir = match BUILT.get_or_init(build_binaries) {
        Ok(dir) => dir,
        Err(e) => panic!("{e}"),
    };
    let path = dir.join(name);
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// Builds the workspace's binaries with the test executable's profile and
/// returns the directory they are in.
fn build_binaries() -> Result<PathBuf, String> {
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find the test executable: {e}"))?;
    // target/<profile>/deps/integration-xxxx → target/<profile>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .ok_or("the test executable is not in target/<profile>/deps")?;
    let profile = match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_string(),
        Some(other) => other.to_string(),
        None => return Err(format!("no profile in {}", dir.display())),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut cmd = std::process::Command::new(cargo);
    // What Cargo sets for a running test (this package's name, manifest
    // dir...): build scripts that watch these variables (ring's) would see
    // them change and rebuild, back and forth with the outer build.
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let set_for_tests = [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
        ]
        .iter()
        .any(|p| key.starts_with(p))
            || [
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "OUT_DIR",
                "CARGO_RUSTC_CURRENT_DIR",
            ]
            .contains(&key);
        if set_for_tests {
            cmd.env_remove(key);
        }
    }
    let out = cmd
        // The whole workspace's binaries, as scripts/test-all.sh builds
        // them: the same feature set, so in CI this is a no-op.
        .args(["build", "--workspace", "--bins", "--profile", &profile])
        .current_dir(workspace)
        .output()
        .map_err(|e| format!("cannot run cargo to build the binaries: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo build of the binaries failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(dir)
}

/// A `skydns` process on free loopback ports.
pub struct SkyDns {
    child: Child,
    /// DNS address (UDP and TCP).
    pub dns: SocketAddr,
    /// HTTP API address.
    pub http: SocketAddr,
    /// A client for the API (without secret).
    pub client: Client,
    log: Arc<Mutex<String>>,
}

impl SkyDns {
    /// Starts `skydns -dns 127.0.0.1:0 -http 127.0.0.1:0 <args>` and waits until
    /// it listens.
    pub async fn start(args: &[&str]) -> Self {
        Self::start_on("127.0.0.1:0", "127.0.0.1:0", args).await
    }

    /// Starts skydns on the given addresses (port 0: free port).
    pub async fn start_on(dns: &str, http: &str, args: &[&str]) -> Self {
        Self::try_start_on(dns, http, args)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`SkyDns::start_on`], returning the daemon's output when it fails
    /// to start (for tests of start-up errors).
    pub async fn try_start_on(dns: &str, http: &str, args: &[&str]) -> Result<Self, String> {
        Self::try_start_with_env(dns, http, args, &[]).await
    }

    /// Starts skydns with `env` set (`SKYDNS_*` variables) besides `args`;
    /// `-dns`/`-http` are passed only where `env` does not set `SKYDNS_DNS`
    /// or `SKYDNS` (the HTTP address), and the dead loopback upstream only
    /// where neither sets the upstreams. Other `SKYDNS_*` variables of the
    /// test's own environment are removed.
    pub async fn try_start_with_env(
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

    /// Starts skydns and returns as soon as its API listens, while it may
    /// still be loading its store (`GET /ready` is 503 then);
    /// [`Loading::listening`] waits for the rest.
    pub async fn start_loading(args: &[&str]) -> Loading {
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

    /// Everything the daemon logged so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// Sends a signal (`"KILL"`, `"TERM"`, `"STOP"`, `"CONT"`) with `kill(1)`.
    pub fn signal(&self, sig: &str) {
        signal_pid(self.pid(), sig);
    }

    /// `kill -9` and wait for the process to be gone.
    pub async fn kill9(mut self) {
        self.signal("KILL");
        let _ = self.child.wait().await;
    }

    /// SIGTERM and wait for a clean exit; returns the exit status's success.
    pub async fn stop(mut self) -> bool {
        self.signal("TERM");
        matches!(tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await, Ok(Ok(s)) if s.success())
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
        let mut cmd = Command::new(binary("skydns"));
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
        let client = Client::new(&format!("http://{http}")).map_err(|e| e.to_string())?;
        Ok(SkyDns {
            child: self.child,
            dns,
            http,
            client,
            log: self.log,
        })
    }
}

/// A skydns whose API listens while it may still be loading its store
/// ([`SkyDns::start_loading`]).
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

/// Sends `sig` (`"KILL"`, `"TERM"`, `"STOP"`, `"CONT"`) to `pid` with `kill(1)`;
/// panics when that fails. Shared by every daemon handle of the harness.
pub fn signal_pid(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status();
    assert!(
        status.is_ok_and(|s| s.success()),
        "kill -{sig} {pid} failed"
    );
}

/// Parses the `listening dns=... http=...` line.
fn parse_listening(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let rest = &line[line.find("listening dns=")? + "listening dns=".len()..];
    let mut parts = rest.split_whitespace();
    let dns = parts.next()?.parse().ok()?;
    let http = parts.next()?.strip_prefix("http=")?.parse().ok()?;
    Some((dns, http))
}

/// A query message for `name`/`rtype`, with EDNS advertising `payload` if given.
pub fn query_message(name: &str, rtype: RecordType, payload: Option<u16>) -> Message {
    let mut msg = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    let name = Name::from_ascii(name).unwrap_or_else(|e| panic!("bad name {name}: {e}"));
    msg.add_query(Query::query(name, rtype));
    if let Some(p) = payload {
        let mut edns = Edns::new();
        edns.set_max_payload(p);
        msg.set_edns(edns);
    }
    msg
}

/// Sends `msg` over UDP and decodes the answer.
pub async fn udp_exchange(server: SocketAddr, msg: &Message) -> Result<Message, String> {
    let bytes = msg.to_vec().map_err(|e| e.to_string())?;
    let reply = udp_raw(server, &bytes)
        .await
        .ok_or("no answer within the timeout")?;
    Message::from_vec(&reply).map_err(|e| format!("undecodable answer: {e}"))
}

/// A UDP query for `name`/`rtype` without EDNS.
pub async fn udp_query(
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
) -> Result<Message, String> {
    udp_exchange(server, &query_message(name, rtype, None)).await
}

/// Sends raw bytes over UDP; the raw answer, or `None` on timeout.
pub async fn udp_raw(server: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let bind = if server.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    };
    udp_raw_from(bind, server, bytes, QUERY_TIMEOUT).await
}

/// Sends raw bytes over UDP from `bind` (e.g. `127.0.0.2:0`), waiting up to
/// `timeout`; the raw answer, or `None`.
pub async fn udp_raw_from(
    bind: &str,
    server: SocketAddr,
    bytes: &[u8],
    timeout: Duration,
) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind(bind).await.ok()?;
    sock.send_to(bytes, server).await.ok()?;
    let mut buf = vec![0u8; 65535];
    let (n, _) = tokio::time::timeout(timeout, sock.recv_from(&mut buf))
        .await
        .ok()?
        .ok()?;
    buf.truncate(n);
    Some(buf)
}

/// Sends `msg` over TCP (length-prefixed) and decodes the answer.
pub async fn tcp_query(server: SocketAddr, msg: &Message) -> Result<Message, String> {
    let bytes = msg.to_vec().map_err(|e| e.to_string())?;
    let fut = async {
        let mut s = TcpStream::connect(server)
            .await
            .map_err(|e| e.to_string())?;
        let len = u16::try_from(bytes.len()).map_err(|e| e.to_string())?;
        s.write_all(&len.to_be_bytes())
            .await
            .map_err(|e| e.to_string())?;
        s.write_all(&bytes).await.map_err(|e| e.to_string())?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await.map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        Message::from_vec(&buf).map_err(|e| e.to_string())
    };
    tokio::time::timeout(QUERY_TIMEOUT, fut)
        .await
        .map_err(|_| "timeout".to_string())?
}

/// The IPv4 addresses in a message's answer section, sorted.
pub fn a_records(msg: &Message) -> Vec<String> {
    let mut v: Vec<String> = msg
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

/// `(priority, weight, port, target)` of every SRV answer, sorted.
pub fn srv_records(msg: &Message) -> Vec<(u16, u16, u16, String)> {
    let mut v: Vec<(u16, u16, u16, String)> = msg
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some((s.priority, s.weight, s.port, s.target.to_ascii())),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

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

/// Polls `check` every 50 ms until it holds or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An HTTP answer read by [`http`].
#[derive(Debug, Clone)]
pub struct HttpReply {
    /// Status code.
    pub status: u16,
    /// The header block, as received (lines separated by CRLF).
    pub headers: String,
    /// The body (chunked transfer decoded).
    pub body: Vec<u8>,
}

impl HttpReply {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (`Value::Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// One raw HTTP/1.1 request (`Connection: close`) to `addr`, for tests that
/// need exact status codes, headers or malformed bodies the typed client
/// cannot send. Gives up after 5 seconds.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<HttpReply, String> {
    let fut = async {
        let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(b) = body {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(body.unwrap_or_default());
        // The server may answer (413) and close before reading all of a large
        // body: a failed write is not the end, the answer may be waiting.
        let _ = s.write_all(&out).await;
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                Err(e) if buf.is_empty() => return Err(e.to_string()),
                Err(_) => break,
            }
        }
        parse_http(&buf)
    };
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .map_err(|_| "HTTP request timed out".to_string())?
}

fn parse_http(buf: &[u8]) -> Result<HttpReply, String> {
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no complete HTTP header")?;
    let headers = String::from_utf8_lossy(buf.get(..split).unwrap_or_default()).into_owned();
    let raw_body = buf.get(split + 4..).unwrap_or_default();
    let status = headers
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {headers}"))?;
    let chunked = headers.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:")
            && l.to_ascii_lowercase().contains("chunked")
    });
    let body = if chunked {
        dechunk(raw_body)?
    } else {
        raw_body.to_vec()
    };
    Ok(HttpReply {
        status,
        headers,
        body,
    })
}

fn dechunk(mut raw: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("bad chunk")?;
        let size_line = String::from_utf8_lossy(raw.get(..eol).unwrap_or_default()).into_owned();
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| format!("bad chunk size {size_line:?}: {e}"))?;
        if size == 0 {
            return Ok(out);
        }
        let data = raw.get(eol + 2..eol + 2 + size).ok_or("short chunk")?;
        out.extend_from_slice(data);
        raw = raw.get(eol + 4 + size..).unwrap_or_default();
    }
}

/// Open file descriptors of process `pid` (the entries of `/proc/<pid>/fd`);
/// `None` when they cannot be read.
pub fn open_fds(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(Iterator::count)
}

/// Waits up to `within` for process `pid` to hold at most `baseline` open
/// file descriptors; `Err` carries the last count seen.
pub async fn fds_back_to(pid: u32, baseline: usize, within: Duration) -> Result<(), usize> {
    let mut last = usize::MAX;
    let back = eventually(within, || {
        last = open_fds(pid).unwrap_or(usize::MAX);
        std::future::ready(last <= baseline)
    })
    .await;
    if back { Ok(()) } else { Err(last) }
}

/// Opens `n` TCP connections to `addr`, `parallel` connects at a time, and
/// hands them back as non-blocking std streams (so [`is_closed_by_peer`]
/// can look at them without a runtime). Connections that fail are left out.
pub async fn open_idle_connections(
    addr: SocketAddr,
    n: usize,
    parallel: usize,
) -> Vec<std::net::TcpStream> {
    let mut out = Vec::with_capacity(n);
    let mut left = n;
    while left > 0 {
        let batch = left.min(parallel.max(1));
        left -= batch;
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..batch {
            set.spawn(async move {
                let s = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
                    .await
                    .ok()?
                    .ok()?;
                s.into_std().ok()
            });
        }
        while let Some(done) = set.join_next().await {
            if let Ok(Some(s)) = done {
                out.push(s);
            }
        }
    }
    out
}

/// True when the peer has closed (or reset) a non-blocking stream from
/// [`open_idle_connections`]; false while it is open and silent.
pub fn is_closed_by_peer(stream: &std::net::TcpStream) -> bool {
    use std::io::Read as _;
    let mut buf = [0u8; 512];
    loop {
        match (&*stream).read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // data (an answer): keep reading to see the end
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
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
