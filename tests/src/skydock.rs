//! The `skydock` binary as a process, for the tests against the real Docker
//! engine.
//!
//! [`SkyDock::start`] runs `skydock -s /var/run/docker.sock -skydns <url>
//! <args>` with `SKYDOCK_LOG=info` and waits until it logs `skydock ready`
//! (printed once its initial sync is done). Its stdout and stderr are both
//! collected into [`SkyDock::log`]. The process is killed when the handle is
//! dropped. [`SkyDock::metric`] reads its control endpoint's `/metrics`.
//!
//! [`HttpTap`] sits between a skydock and skydns on loopback and records
//! every request line skydock sends, so a test can say which calls were
//! made (and which never were).

use std::{
    net::SocketAddr,
    process::{ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    process::{Child, Command},
    task::{JoinHandle, JoinSet},
};

use crate::docker::DOCKER_SOCKET;

/// The line skydock logs once its initial sync is done.
pub const READY: &str = "skydock ready";
/// How long skydock may take to get ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A `skydock` process.
pub struct SkyDock {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl SkyDock {
    /// Starts `skydock -s /var/run/docker.sock -skydns <skydns_url> <args>` and
    /// waits (up to 20 s) for `skydock ready`. Panics with its log otherwise.
    pub async fn start(skydns_url: &str, args: &[&str]) -> Self {
        Self::try_start(skydns_url, args)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`SkyDock::start`], returning the log when skydock exits or is
    /// not ready in time.
    pub async fn try_start(skydns_url: &str, args: &[&str]) -> Result<Self, String> {
        let mut all = vec!["-skydns", skydns_url];
        all.extend_from_slice(args);
        let mut dock = Self::spawn(&all, &[])?;
        dock.wait_ready().await?;
        Ok(dock)
    }

    /// Starts `skydock -s /var/run/docker.sock <args>` with `SKYDOCK_LOG=info`
    /// and the extra environment `envs`, without waiting for anything (for
    /// `-name skydns`, `SKYDNS_PORT_8080_TCP_ADDR`, an unreachable skydns,
    /// start-up errors). Must be called within a Tokio runtime.
    pub fn spawn(args: &[&str], envs: &[(&str, &str)]) -> Result<Self, String> {
        let mut cmd = Command::new(crate::binary("skydock"));
        cmd.args(["-s", DOCKER_SOCKET])
            .args(args)
            .env("SKYDOCK_LOG", "info")
            // Each agent its own control port, so parallel tests never collide.
            .env("SKYDOCK_HTTP", "127.0.0.1:0")
            .env_remove("SKYDNS_PORT_8080_TCP_ADDR")
            .env_remove("SKYDNS_PORT_8080_TCP_PORT")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start skydock: {e}"))?;
        let log = Arc::new(Mutex::new(String::new()));
        if let Some(out) = child.stdout.take() {
            crate::collect_lines(out, Arc::clone(&log));
        }
        if let Some(err) = child.stderr.take() {
            crate::collect_lines(err, Arc::clone(&log));
        }
        Ok(Self { child, log })
    }

    /// Waits (up to 20 s) for `skydock ready`; the log when skydock exits
    /// first or never gets ready.
    pub async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            if self.log().contains(READY) {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the readers drain what it wrote last.
                tokio::time::sleep(Duration::from_millis(100)).await;
                return Err(format!(
                    "skydock exited ({status}) before it was ready:\n{}",
                    self.log()
                ));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "skydock did not log `{READY}` within {READY_TIMEOUT:?}:\n{}",
                    self.log()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Everything skydock logged so far (stdout and stderr, line by line).
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The length of the log so far: a mark for [`SkyDock::wait_for_log_since`].
    pub fn log_len(&self) -> usize {
        self.log.lock().map(|l| l.len()).unwrap_or_default()
    }

    /// Waits up to `within` for a log line containing `needle` (anywhere in
    /// the log).
    pub async fn wait_for_log(&self, needle: &str, within: Duration) -> bool {
        self.wait_for_log_since(0, needle, within).await
    }

    /// Waits up to `within` for `needle` in what was logged after `mark`
    /// (a [`SkyDock::log_len`]).
    pub async fn wait_for_log_since(&self, mark: usize, needle: &str, within: Duration) -> bool {
        crate::eventually(within, || async {
            self.log
                .lock()
                .map(|l| l.get(mark..).is_some_and(|s| s.contains(needle)))
                .unwrap_or(false)
        })
        .await
    }

    /// The control endpoint's address, from its `control endpoint listening`
    /// log line (the harness starts skydock with `-http 127.0.0.1:0`).
    pub fn control_addr(&self) -> Option<SocketAddr> {
        let log = strip_ansi(&self.log());
        let line = log
            .lines()
            .find(|l| l.contains("control endpoint listening"))?;
        let rest = &line[line.find("http=")? + "http=".len()..];
        rest.split_whitespace().next()?.parse().ok()
    }

    /// `GET /metrics` on the control endpoint; the OpenMetrics text.
    pub async fn metrics(&self) -> Result<String, String> {
        let addr = self
            .control_addr()
            .ok_or_else(|| format!("no control endpoint in the log:\n{}", self.log()))?;
        let (status, body) = http_get(addr, "/metrics").await?;
        if status != 200 {
            return Err(format!("/metrics answered {status}: {body}"));
        }
        Ok(body)
    }

    /// The value of metric `name` (e.g. `skydock_events_total`), `None` when
    /// the endpoint does not serve it.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = self.metrics().await.ok()?;
        metric_value(&text, name)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// Sends a signal (`"STOP"`, `"CONT"`, `"KILL"`, `"TERM"`) with `kill(1)`.
    pub fn signal(&self, sig: &str) {
        crate::signal_pid(self.pid(), sig);
    }

    /// `kill -9` and wait for the process to be gone.
    pub async fn kill9(mut self) {
        self.signal("KILL");
        let _ = self.child.wait().await;
    }

    /// SIGTERM and wait (up to 10 s) for a clean exit; returns the exit
    /// status's success.
    pub async fn stop(mut self) -> bool {
        self.signal("TERM");
        matches!(tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await, Ok(Ok(s)) if s.success())
    }

    /// Waits up to `within` for the process to exit by itself.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        tokio::time::timeout(within, self.child.wait())
            .await
            .ok()?
            .ok()
    }
}

/// The text without ANSI colour codes (tracing colours its fields).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_escape = false;
    for ch in s.chars() {
        match ch {
            '\u{1b}' => in_escape = true,
            'm' if in_escape => in_escape = false,
            _ if !in_escape => out.push(ch),
            _ => {}
        }
    }
    out
}

/// The value of the sample `name` (no labels) in OpenMetrics text.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        (n == name).then(|| v.trim().parse().ok()).flatten()
    })
}

/// A plain HTTP/1.1 GET (`Connection: close`); status and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let io = async {
        let mut s = TcpStream::connect(addr).await?;
        let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(5), io)
        .await
        .map_err(|_| format!("GET {path} on {addr}: no answer in 5 s"))?
        .map_err(|e| format!("GET {path} on {addr}: {e}"))?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("GET {path} on {addr}: no status line in {head:?}"))?;
    // The control endpoint answers with chunked bodies: keep only the text
    // lines (chunk sizes are bare hex numbers, which no metric line is).
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body.split("\r\n")
            .enumerate()
            .filter(|(i, _)| i % 2 == 1)
            .map(|(_, l)| l)
            .collect::<String>()
    } else {
        body.to_string()
    };
    Ok((status, body))
}

/// A loopback TCP proxy in front of an HTTP server that records the request
/// line (`PATCH /skydns/services/abc HTTP/1.1`) of every request that goes
/// through it. Stopped (with every connection) when dropped.
pub struct HttpTap {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl HttpTap {
    /// Listens on `127.0.0.1:0` and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the tap");
        let addr = listener.local_addr().expect("tap address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            // Dropped with this task: aborting it closes every connection.
            let mut conns = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let sink = Arc::clone(&sink);
                conns.spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        relay(client, server, sink).await;
                    }
                });
                while conns.try_join_next().is_some() {}
            }
        });
        Self { addr, seen, task }
    }

    /// `http://<tap address>`: give this to skydock as `-skydns`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request line seen so far, in order.
    pub fn requests(&self) -> Vec<String> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for HttpTap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies both ways; records the request lines of the client's side.
async fn relay(client: TcpStream, server: TcpStream, seen: Arc<Mutex<Vec<String>>>) {
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let upstream = async move {
        let mut parser = RequestLines::default();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match from_client.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let chunk = buf.get(..n).unwrap_or_default();
            for line in parser.feed(chunk) {
                if let Ok(mut s) = seen.lock() {
                    s.push(line);
                }
            }
            if to_server.write_all(chunk).await.is_err() {
                break;
            }
        }
        let _ = to_server.shutdown().await;
    };
    let downstream = async move {
        let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
        let _ = to_client.shutdown().await;
    };
    tokio::join!(upstream, downstream);
}

/// Splits a client's byte stream into requests (head, then a
/// `Content-Length` body) and yields their request lines.
#[derive(Default)]
struct RequestLines {
    buf: Vec<u8>,
    body_left: usize,
}

impl RequestLines {
    fn feed(&mut self, chunk: &[u8]) -> Vec<String> {
        self.buf.extend_from_slice(chunk);
        let mut lines = Vec::new();
        loop {
            if self.body_left > 0 {
                let n = self.body_left.min(self.buf.len());
                self.buf.drain(..n);
                self.body_left -= n;
                if self.body_left > 0 {
                    break;
                }
            }
            let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                break;
            };
            let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
            self.buf.drain(..end + 4);
            let mut head_lines = head.lines();
            if let Some(first) = head_lines.next() {
                lines.push(first.to_string());
            }
            self.body_left = head_lines
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(0);
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_are_found_across_chunks_and_bodies() {
        let mut p = RequestLines::default();
        let a = b"PUT /skydns/services/a HTTP/1.1\r\ncontent-length: 7\r\n\r\n{\"x\":1}PATCH /sky";
        assert_eq!(p.feed(a), ["PUT /skydns/services/a HTTP/1.1"]);
        let b = b"dns/services/a HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}GET /x HTTP/1.1\r\n\r\n";
        assert_eq!(
            p.feed(b),
            ["PATCH /skydns/services/a HTTP/1.1", "GET /x HTTP/1.1"]
        );
    }

    #[test]
    fn metric_values_are_read_by_name() {
        let text = "# TYPE skydock_events counter\nskydock_events_total 12\nskydock_sync_pending 3\n# EOF\n";
        assert_eq!(metric_value(text, "skydock_events_total"), Some(12.0));
        assert_eq!(metric_value(text, "skydock_sync_pending"), Some(3.0));
        assert_eq!(metric_value(text, "nope"), None);
    }
}
