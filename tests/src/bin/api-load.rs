//! `api-load`: a bounded REST API load generator for skydns.
//!
//! Runs `--clients` concurrent clients over loopback HTTP (keep-alive, through
//! the project's typed client) until `--count` requests are done or
//! `--seconds` have passed, then prints one line: requests/s, p50 and p99
//! latency, and the error count. Used by `scripts/bench-api.sh`.
//!
//! Modes: `register` (PUT of uuids `load-<i>`, names spread over
//! `svc<i % 1000>`), `heartbeat` (PATCH on uuids `load-<i % pool>`),
//! `delete` (DELETE of `load-<i>`).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use skydns_api::{Client, Service};

/// What each request does.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    Register,
    Heartbeat,
    Delete,
}

/// Command line.
#[derive(Debug, Parser)]
#[command(about = "Bounded REST API load generator for skydns (loopback only)")]
struct Args {
    /// Base URL of the API; must be a loopback address.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// What to send.
    #[arg(long, value_enum, default_value = "register")]
    mode: Mode,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Total requests.
    #[arg(long, default_value_t = 50_000)]
    count: u64,
    /// First uuid index (`load-<start + i>`).
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// For heartbeats: how many registered uuids to cycle through.
    #[arg(long, default_value_t = 10_000)]
    pool: u64,
    /// Stop after this many seconds even if `count` is not reached.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// TTL of registrations and heartbeats, in seconds.
    #[arg(long, default_value_t = 3600)]
    ttl: u32,
}

fn loopback(url: &str) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or("");
    rest.starts_with("127.") || rest.starts_with("[::1]") || rest.starts_with("localhost")
}

fn service(i: u64, ttl: u32) -> Service {
    Service {
        name: format!("svc{}", i % 1000),
        version: "1".into(),
        environment: "bench".into(),
        region: format!("r{}", i % 7),
        host: format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255),
        port: 8080,
        ttl,
        ..Service::default()
    }
}

async fn one(client: &Client, mode: Mode, args: &Args, i: u64) -> bool {
    match mode {
        Mode::Register => {
            let n = args.start + i;
            client
                .add_service(&format!("load-{n}"), &service(n, args.ttl))
                .await
                .is_ok()
        }
        Mode::Heartbeat => {
            let n = args.start + i % args.pool.max(1);
            client
                .heartbeat(&format!("load-{n}"), args.ttl)
                .await
                .is_ok()
        }
        Mode::Delete => client
            .delete_service(&format!("load-{}", args.start + i))
            .await
            .is_ok(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let last = sorted.len() - 1;
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let idx = ((last as f64) * p).round() as usize;
    sorted
        .get(idx.min(last))
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    if !loopback(&args.url) {
        bail!(
            "refusing {}: the load generator talks to loopback only",
            args.url
        );
    }
    let client = Client::with_timeout(&args.url, Duration::from_secs(10))
        .context("cannot build the HTTP client")?;
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.clients.max(1) {
        let (client, args, next, errors) = (
            client.clone(),
            Arc::clone(&args),
            Arc::clone(&next),
            Arc::clone(&errors),
        );
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= args.count || Instant::now() >= deadline {
                    return latencies;
                }
                let t = Instant::now();
                if one(&client, args.mode, &args, i).await {
                    latencies.push(t.elapsed());
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(done.context("a client task failed")?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    #[allow(clippy::cast_precision_loss)]
    let rps = all.len() as f64 / elapsed.max(f64::EPSILON);
    println!(
        "mode={:?} clients={} ok={} errors={} seconds={:.2} rps={:.0} p50_ms={:.2} p99_ms={:.2}",
        args.mode,
        args.clients,
        all.len(),
        errors.load(Ordering::Relaxed),
        elapsed,
        rps,
        percentile(&all, 0.50),
        percentile(&all, 0.99),
    );
    Ok(())
}
