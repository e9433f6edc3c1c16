//! dnsperf runs against one server: the command, its summary parsed, and
//! what the server spent meanwhile (CPU time, peak memory).

use std::{path::Path, time::Duration};

use anyhow::{Context, bail};
use serde::Serialize;

use crate::process::{Memory, PeakSampler, cpu_seconds};

/// The load of one run: `dnsperf -s 127.0.0.1 -p PORT -l SECONDS -c 10 -T 2
/// ARGS -d QUERIES` (the setting of every figure in docs/performance.md).
pub(crate) struct Load<'a> {
    pub(crate) port: u16,
    pub(crate) seconds: u64,
    /// Extra dnsperf arguments (`-e`, `-n 1`, `-Q 50000`).
    pub(crate) args: &'a [&'a str],
    /// The query file (`name type` per line).
    pub(crate) queries: &'a Path,
}

/// What one run measured.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Outcome {
    pub(crate) qps: f64,
    /// dnsperf's average latency, in ms (mostly queueing at saturation).
    pub(crate) avg_latency_ms: f64,
    pub(crate) completed: u64,
    pub(crate) lost: u64,
    /// dnsperf's "Response codes" line (`NOERROR 1204293 (100.00%)`).
    pub(crate) response_codes: String,
    pub(crate) avg_response_bytes: f64,
    /// The server's CPU time per completed query, in µs.
    pub(crate) server_cpu_us_per_query: f64,
    /// The server's memory at its highest during the run.
    pub(crate) server_peak: Memory,
    /// The machine's 1-minute load average when the run started.
    pub(crate) load_1m: f64,
}

impl Load<'_> {
    /// The command line, for the record.
    pub(crate) fn command(&self) -> Vec<String> {
        let mut argv: Vec<String> = [
            "-s",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-l",
            &self.seconds.to_string(),
            "-c",
            "10",
            "-T",
            "2",
        ]
        .iter()
        .map(|s| (*s).to_string())
        .collect();
        argv.extend(self.args.iter().map(|s| (*s).to_string()));
        argv.extend(["-d".to_string(), self.queries.display().to_string()]);
        argv
    }

    /// Runs dnsperf against the server `pid` (bounded: the run's length
    /// plus 30 s) and reads its summary.
    pub(crate) async fn run(&self, pid: u32) -> anyhow::Result<Outcome> {
        let limit = Duration::from_secs(self.seconds + 30);
        let (outcome, _) = run_argv(&[], &self.command(), pid, limit).await?;
        Ok(outcome)
    }
}

/// Runs `wrapper… dnsperf argv` (a wrapper such as `taskset -c 1`, or
/// none) against the server `pid`, bounded by `limit`: for settings other
/// than [`Load`]'s. The summary with the server's figures, and the output.
pub(crate) async fn run_argv(
    wrapper: &[&str],
    argv: &[String],
    pid: u32,
    limit: Duration,
) -> anyhow::Result<(Outcome, String)> {
    let load_1m = crate::record::load_1m();
    let sampler = PeakSampler::start(pid);
    let cpu0 = cpu_seconds(pid);
    let (program, before) = wrapper
        .split_first()
        .map_or(("dnsperf", &[][..]), |(p, r)| (*p, r));
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(before);
    if !wrapper.is_empty() {
        cmd.arg("dnsperf");
    }
    let out = tokio::time::timeout(limit, cmd.args(argv).kill_on_drop(true).output())
        .await
        .context("dnsperf did not finish in time")?
        .context("cannot run dnsperf")?;
    let cpu = cpu_seconds(pid) - cpu0;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "dnsperf {} failed:\n{text}{}",
            argv.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut outcome =
        parse(&text).with_context(|| format!("cannot read dnsperf's summary:\n{text}"))?;
    outcome.load_1m = load_1m;
    outcome.server_peak = sampler.peak().max(Memory::of(pid));
    #[allow(clippy::cast_precision_loss)]
    if outcome.completed > 0 {
        outcome.server_cpu_us_per_query = cpu * 1e6 / outcome.completed as f64;
    }
    Ok((outcome, text))
}

/// Reads dnsperf's summary (the server figures are left at zero).
pub(crate) fn parse(text: &str) -> Option<Outcome> {
    let after = |label: &str| {
        text.lines()
            .find_map(|l| l.trim_start().strip_prefix(label))
            .map(str::trim)
    };
    let first_number = |s: &str| {
        s.split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
    };
    let qps = first_number(after("Queries per second:")?)?;
    let latency = first_number(after("Average Latency (s):")?)?;
    let completed = first_number(after("Queries completed:")?)?;
    let lost = first_number(after("Queries lost:")?)?;
    let codes = after("Response codes:").unwrap_or_default().to_string();
    let size = after("Average packet size:")
        .and_then(|s| s.rsplit_once("response"))
        .and_then(|(_, r)| first_number(r))
        .unwrap_or(0.0);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Some(Outcome {
        qps,
        avg_latency_ms: latency * 1000.0,
        completed: completed as u64,
        lost: lost as u64,
        response_codes: codes,
        avg_response_bytes: size,
        server_cpu_us_per_query: 0.0,
        server_peak: Memory::default(),
        load_1m: 0.0,
    })
}

/// Writes a query file: one `name type` line per query.
pub(crate) fn query_file(
    path: &Path,
    lines: impl IntoIterator<Item = String>,
) -> anyhow::Result<()> {
    let mut text = String::new();
    for line in lines {
        text.push_str(&line);
        text.push('\n');
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::parse;

    const SUMMARY: &str = "\
Statistics:

  Queries sent:         1204293
  Queries completed:    1204293 (100.00%)
  Queries lost:         0 (0.00%)

  Response codes:       NOERROR 1204293 (100.00%)
  Average packet size:  request 41, response 199
  Run time (s):         10.000218
  Queries per second:   120426.674

  Average Latency (s):  0.000646 (min 0.000016, max 0.010223)
  Latency StdDev (s):   0.000239
";

    #[test]
    fn the_summary_is_read() {
        let o = parse(SUMMARY).expect("parsed");
        assert!((o.qps - 120_426.674).abs() < 1e-6);
        assert!((o.avg_latency_ms - 0.646).abs() < 1e-9);
        assert_eq!((o.completed, o.lost), (1_204_293, 0));
        assert_eq!(o.response_codes, "NOERROR 1204293 (100.00%)");
        assert!((o.avg_response_bytes - 199.0).abs() < f64::EPSILON);
    }

    #[test]
    fn an_output_without_a_summary_is_refused() {
        assert!(parse("Error: socket: connection refused").is_none());
    }
}
