//! Reference servers started as children (killed on drop) and what a
//! process costs: memory and CPU time from `/proc`.

use std::{
    path::Path,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context, bail};
use serde::Serialize;
use tokio::process::{Child, Command};

/// A server started by a benchmark; killed when dropped.
pub(crate) struct Daemon {
    /// Held for `kill_on_drop`.
    _child: Child,
    /// What it printed (stdout and stderr).
    log: Arc<Mutex<String>>,
    /// Its process id.
    pub(crate) pid: u32,
}

impl Daemon {
    /// Starts `program args` and waits (at most 10 s) until its output
    /// contains every one of `ready` (`"server started"`).
    pub(crate) async fn start(
        program: &Path,
        args: &[&str],
        ready: &[&str],
    ) -> anyhow::Result<Self> {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let pid = child.id().context("no pid")?;
        let log = Arc::new(Mutex::new(String::new()));
        if let Some(out) = child.stdout.take() {
            skydns_tests::collect_lines(out, Arc::clone(&log));
        }
        if let Some(err) = child.stderr.take() {
            skydns_tests::collect_lines(err, Arc::clone(&log));
        }
        let daemon = Self {
            _child: child,
            log,
            pid,
        };
        for _ in 0..100 {
            let text = daemon.log();
            if ready.iter().all(|r| text.contains(r)) {
                return Ok(daemon);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("{} did not start:\n{}", program.display(), daemon.log())
    }

    /// Its output so far.
    pub(crate) fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

/// A 127.0.0.1 port free for both UDP and TCP.
pub(crate) fn free_port() -> anyhow::Result<u16> {
    for _ in 0..200 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let port = udp.local_addr()?.port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free 127.0.0.1 port")
}

/// A process's memory, in KiB.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct Memory {
    /// Resident now (`VmRSS`): private plus the file pages it maps.
    pub(crate) rss_kib: u64,
    /// Resident peak (`VmHWM`).
    pub(crate) rss_peak_kib: u64,
    /// Anonymous resident pages (`RssAnon`): heap, stacks, what the
    /// process alone holds.
    pub(crate) anon_kib: u64,
    /// File-backed resident pages (`RssFile`): mostly the binary's code,
    /// shared and reclaimable.
    pub(crate) file_kib: u64,
    /// Pages written by this process alone (`Private_Dirty` of
    /// `smaps_rollup`): anonymous memory plus written data sections.
    pub(crate) private_dirty_kib: u64,
}

impl Memory {
    /// The figures of `pid` now (zeros once it is gone).
    pub(crate) fn of(pid: u32) -> Self {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let rollup =
            std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
        Self {
            rss_kib: kib(&status, "VmRSS:"),
            rss_peak_kib: kib(&status, "VmHWM:"),
            anon_kib: kib(&status, "RssAnon:"),
            file_kib: kib(&status, "RssFile:"),
            private_dirty_kib: kib(&rollup, "Private_Dirty:"),
        }
    }

    /// The larger of each figure.
    pub(crate) fn max(self, other: Self) -> Self {
        Self {
            rss_kib: self.rss_kib.max(other.rss_kib),
            rss_peak_kib: self.rss_peak_kib.max(other.rss_peak_kib),
            anon_kib: self.anon_kib.max(other.anon_kib),
            file_kib: self.file_kib.max(other.file_kib),
            private_dirty_kib: self.private_dirty_kib.max(other.private_dirty_kib),
        }
    }
}

/// The KiB figure on the line starting with `key`.
fn kib(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Samples a process's memory every 100 ms until dropped; keeps the
/// highest of each figure (the kernel keeps a peak for RSS only).
pub(crate) struct PeakSampler {
    peak: Arc<Mutex<Memory>>,
    task: tokio::task::JoinHandle<()>,
}

impl PeakSampler {
    pub(crate) fn start(pid: u32) -> Self {
        let peak = Arc::new(Mutex::new(Memory::of(pid)));
        let shared = Arc::clone(&peak);
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let now = Memory::of(pid);
                if let Ok(mut p) = shared.lock() {
                    *p = p.max(now);
                }
            }
        });
        Self { peak, task }
    }

    /// The highest figures seen so far.
    pub(crate) fn peak(&self) -> Memory {
        self.peak.lock().map(|p| *p).unwrap_or_default()
    }
}

impl Drop for PeakSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// CPU time (user + system) `pid` has used, in seconds.
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after ")".
    #[allow(clippy::cast_precision_loss)]
    let t = (ticks(11) + ticks(12)) as f64;
    t / clock_ticks()
}

/// `sysconf(_SC_CLK_TCK)`, through getconf (100 on Linux).
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

#[cfg(test)]
mod tests {
    use super::{Memory, cpu_seconds, kib};

    #[test]
    fn figures_are_read_from_proc() {
        let status = "Name:\tx\nVmHWM:\t  9000 kB\nVmRSS:\t  8000 kB\nRssAnon:\t 700 kB\n";
        assert_eq!(kib(status, "VmRSS:"), 8000);
        assert_eq!(kib(status, "RssAnon:"), 700);
        assert_eq!(kib(status, "RssShmem:"), 0);
        let me = Memory::of(std::process::id());
        assert!(
            me.rss_kib > 0 && me.anon_kib > 0 && me.private_dirty_kib > 0,
            "{me:?}"
        );
        assert!(cpu_seconds(std::process::id()) >= 0.0);
    }
}
