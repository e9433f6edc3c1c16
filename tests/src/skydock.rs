//! The `skydock` binary as a process, for the tests against the real Docker
//! engine.
//!
//! [`SkyDock::start`] runs `skydock -s /var/run/docker.sock -skydns <url>
//! <args>` with `SKYDOCK_LOG=info` and waits until it logs `skydock ready`
//! (printed once its initial sync is done). Its stdout and stderr are both
//! collected into [`SkyDock::log`]. The process is killed when the handle is
//! dropped.

use std::{
    process::{ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncRead, BufReader},
    process::{Child, Command},
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
            collect(out, Arc::clone(&log));
        }
        if let Some(err) = child.stderr.take() {
            collect(err, Arc::clone(&log));
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

/// Appends every line of `stream` to `log`.
fn collect<R: AsyncRead + Unpin + Send + 'static>(stream: R, log: Arc<Mutex<String>>) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(mut l) = log.lock() {
                l.push_str(&line);
                l.push('\n');
            }
        }
    });
}
