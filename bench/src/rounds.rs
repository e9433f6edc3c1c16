//! Side-by-side dnsperf comparisons: every server loaded in turn, the order
//! reversed every round so that none always runs first, medians over the
//! rounds, and the best setting of ours against the best of a reference.

use std::path::PathBuf;

use serde::Serialize;
use serde_json::{Value, json};

use crate::{
    dnsperf::{Load, Outcome},
    process::Memory,
};

/// The rounds and run length of a comparison (`--rounds`, `--seconds`).
#[derive(Debug, Clone, Copy, clap::Args)]
pub(crate) struct Settings {
    /// Rounds (every server loaded once per query and round).
    #[arg(long, default_value_t = 3)]
    pub(crate) rounds: usize,
    /// Seconds per dnsperf run.
    #[arg(long, default_value_t = 10)]
    pub(crate) seconds: u64,
}

/// A server under load.
#[derive(Debug, Clone)]
pub(crate) struct Server {
    /// `skydns`, `skydns-2w`, `knot-1`...
    pub(crate) name: String,
    pub(crate) port: u16,
    pub(crate) pid: u32,
}

impl Server {
    pub(crate) fn new(name: &str, port: u16, pid: u32) -> Self {
        Self {
            name: name.to_string(),
            port,
            pid,
        }
    }
}

/// The memory of each server now, by name.
pub(crate) fn memory(servers: &[Server]) -> std::collections::BTreeMap<String, Memory> {
    servers
        .iter()
        .map(|s| (s.name.clone(), Memory::of(s.pid)))
        .collect()
}

/// One dnsperf run of the comparison.
#[derive(Debug, Serialize)]
pub(crate) struct Sample {
    pub(crate) query: String,
    pub(crate) server: String,
    pub(crate) round: usize,
    #[serde(flatten)]
    pub(crate) outcome: Outcome,
}

/// Runs `rounds` rounds: for each query in turn, every server (A B C, then
/// C B A...). `prepare(query, server, round)` gives the query file and the
/// extra dnsperf arguments of that run.
pub(crate) async fn run(
    servers: &[Server],
    queries: &[&str],
    rounds: usize,
    seconds: u64,
    mut prepare: impl FnMut(&str, &str, usize) -> anyhow::Result<(PathBuf, Vec<&'static str>)>,
) -> anyhow::Result<Vec<Sample>> {
    let mut samples = Vec::new();
    for round in 1..=rounds {
        let mut order: Vec<&Server> = servers.iter().collect();
        if round % 2 == 0 {
            order.reverse();
        }
        for query in queries {
            for server in &order {
                let (file, args) = prepare(query, &server.name, round)?;
                let load = Load {
                    port: server.port,
                    seconds,
                    args: &args,
                    queries: &file,
                };
                let outcome = load.run(server.pid).await?;
                eprintln!(
                    "==> round {round}, {query}, {}: {:.0} QPS, {:.3} ms, lost {}, {}",
                    server.name,
                    outcome.qps,
                    outcome.avg_latency_ms,
                    outcome.lost,
                    outcome.response_codes
                );
                samples.push(Sample {
                    query: (*query).to_string(),
                    server: server.name.clone(),
                    round,
                    outcome,
                });
            }
        }
    }
    Ok(samples)
}

/// The medians of one server on one query.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Median {
    pub(crate) qps: f64,
    pub(crate) qps_min: f64,
    pub(crate) qps_max: f64,
    pub(crate) avg_latency_ms: f64,
    pub(crate) server_cpu_us_per_query: f64,
    pub(crate) lost: u64,
    pub(crate) avg_response_bytes: f64,
    pub(crate) response_codes: String,
    /// The highest memory figures over all its runs of this query.
    pub(crate) server_peak: Memory,
}

/// Medians of `server` on `query`, if it ran.
pub(crate) fn median(samples: &[Sample], query: &str, server: &str) -> Option<Median> {
    let runs: Vec<&Outcome> = samples
        .iter()
        .filter(|s| s.query == query && s.server == server)
        .map(|s| &s.outcome)
        .collect();
    let first = runs.first()?;
    let mid = |f: fn(&Outcome) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(|o| f(o)).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let qps: Vec<f64> = runs.iter().map(|o| o.qps).collect();
    Some(Median {
        qps: mid(|o| o.qps),
        qps_min: qps.iter().copied().fold(f64::INFINITY, f64::min),
        qps_max: qps.iter().copied().fold(0.0, f64::max),
        avg_latency_ms: mid(|o| o.avg_latency_ms),
        server_cpu_us_per_query: mid(|o| o.server_cpu_us_per_query),
        lost: runs.iter().map(|o| o.lost).sum(),
        avg_response_bytes: first.avg_response_bytes,
        response_codes: first.response_codes.clone(),
        server_peak: runs
            .iter()
            .fold(Memory::default(), |m, o| m.max(o.server_peak)),
    })
}

/// The summary of a comparison as JSON: medians per query and server (all
/// of them), and
/// per query the best of `ours` against the best of `reference` (by QPS)
/// with the two ratios (ours / reference).
pub(crate) fn summary(
    samples: &[Sample],
    queries: &[&str],
    ours: &[&str],
    reference: &[&str],
) -> Value {
    let mut medians = serde_json::Map::new();
    let mut best = serde_json::Map::new();
    for query in queries {
        // Every server that ran, the ones compared and the others alike.
        let mut per_server = serde_json::Map::new();
        for s in samples.iter().filter(|s| s.query == *query) {
            if !per_server.contains_key(&s.server)
                && let Some(m) = median(samples, query, &s.server)
            {
                per_server.insert(s.server.clone(), json!(m));
            }
        }
        medians.insert((*query).to_string(), Value::Object(per_server));
        let pick = |names: &[&str]| {
            names
                .iter()
                .filter_map(|n| median(samples, query, n).map(|m| ((*n).to_string(), m)))
                .max_by(|a, b| a.1.qps.total_cmp(&b.1.qps))
        };
        if let (Some((a, ma)), Some((b, mb))) = (pick(ours), pick(reference)) {
            best.insert(
                (*query).to_string(),
                json!({
                    "ours": a,
                    "reference": b,
                    "ours_qps": ma.qps.round(),
                    "reference_qps": mb.qps.round(),
                    "qps_ratio": ratio(ma.qps, mb.qps),
                    "ours_latency_ms": ma.avg_latency_ms,
                    "reference_latency_ms": mb.avg_latency_ms,
                    "latency_ratio": ratio(ma.avg_latency_ms, mb.avg_latency_ms),
                    "ours_cpu_us": ma.server_cpu_us_per_query,
                    "reference_cpu_us": mb.server_cpu_us_per_query,
                }),
            );
        }
    }
    json!({ "medians": medians, "best": best })
}

/// `a / b` to three decimals (0 when `b` is 0).
pub(crate) fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        (a / b * 1000.0).round() / 1000.0
    }
}
