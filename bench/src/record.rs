//! One benchmark run as data: what was measured, on what machine, with which
//! tools, and the results; saved as `bench/runs/<kind>-<UTC time>.json`.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    time::SystemTime,
};

use anyhow::Context;
use serde::Serialize;
use serde_json::Value;

/// A run being recorded.
#[derive(Debug, Serialize)]
pub(crate) struct Record {
    /// The subcommand: auth, forward, api, propagation, overload, soak.
    pub(crate) kind: String,
    /// UTC start, `2026-12-03T12:00:00Z`.
    pub(crate) started: String,
    /// UTC end.
    pub(crate) finished: String,
    /// The machine and what else ran on it.
    pub(crate) machine: Machine,
    /// `git rev-parse --short HEAD`, with `+dirty` when crates/ has changes.
    pub(crate) revision: String,
    /// Versions of the reference servers and load generators used.
    pub(crate) tools: BTreeMap<String, String>,
    /// The knobs of this run (seconds, rounds, counts...).
    pub(crate) settings: Value,
    /// What was measured (per subcommand).
    pub(crate) results: Value,
    /// The command lines, for reproducing it by hand.
    pub(crate) commands: Vec<String>,
}

/// The machine a run was taken on.
#[derive(Debug, Serialize)]
pub(crate) struct Machine {
    pub(crate) cpus: usize,
    pub(crate) cpu: String,
    pub(crate) kernel: String,
    /// `/proc/loadavg`'s three figures at the start and at the end.
    pub(crate) load_start: String,
    pub(crate) load_end: String,
}

impl Record {
    /// Starts recording a run of `kind`.
    pub(crate) fn start(kind: &str, settings: Value) -> Self {
        Self {
            kind: kind.to_string(),
            started: utc_now(),
            finished: String::new(),
            machine: Machine {
                cpus: std::thread::available_parallelism().map_or(1, usize::from),
                cpu: cpu_model(),
                kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                    .map(|s| s.trim().to_string())
                    .unwrap_or_default(),
                load_start: load_average(),
                load_end: String::new(),
            },
            revision: revision(),
            tools: BTreeMap::new(),
            settings,
            results: Value::Null,
            commands: Vec::new(),
        }
    }

    /// Notes a tool's version (the Debian package's, else `?`).
    pub(crate) fn tool(&mut self, package: &str) {
        self.tools
            .insert(package.to_string(), crate::tools::version(package));
    }

    /// Finishes the run and writes it into `dir`; returns the file.
    pub(crate) fn save(mut self, dir: &Path, results: Value) -> anyhow::Result<PathBuf> {
        self.finished = utc_now();
        self.machine.load_end = load_average();
        self.results = results;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let stamp: String = self
            .started
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        let path = dir.join(format!("{}-{stamp}.json", self.kind));
        let mut text = serde_json::to_string_pretty(&self)?;
        text.push('\n');
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }
}

/// The workspace's root directory.
pub(crate) fn workspace() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    root.canonicalize().unwrap_or(root)
}

/// The first 1-minute load average figure, as a number.
pub(crate) fn load_1m() -> f64 {
    load_average()
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default()
}

fn revision() -> String {
    let out = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(workspace())
            .output()
            .ok()
    };
    let rev = out(&["rev-parse", "--short", "HEAD"])
        .filter(|o| o.status.success())
        .map_or_else(
            || "?".to_string(),
            |o| String::from_utf8_lossy(&o.stdout).trim().to_string(),
        );
    let dirty =
        out(&["diff", "--quiet", "HEAD", "--", "crates"]).is_some_and(|o| !o.status.success());
    if dirty { format!("{rev}+dirty") } else { rev }
}

/// Now in UTC, `YYYY-MM-DDTHH:MM:SSZ`.
fn utc_now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}
