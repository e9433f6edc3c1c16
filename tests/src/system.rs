//! What the tests look at in other processes and sockets: signals, open
//! file descriptors, idle connections, and waiting for a condition.

use std::{net::SocketAddr, time::Duration};

use tokio::net::TcpStream;

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

/// Appends every line of `stream` (a child's stdout or stderr) to `log`,
/// on a task of its own, until the stream ends.
pub fn collect_lines<R>(stream: R, log: std::sync::Arc<std::sync::Mutex<String>>)
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    use tokio::io::AsyncBufReadExt;
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(mut l) = log.lock() {
                l.push_str(&line);
                l.push('\n');
            }
        }
    });
}
