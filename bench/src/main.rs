//! `bench`: skydns's benchmarks, each run saved as JSON under `bench/runs/`.
//!
//! `cargo run --release -p skydns-bench -- <auth|forward|dnssec|etcd|api|propagation|overload|soak>`
//! (or `just bench-…`). Servers listen on free 127.0.0.1 ports; everything
//! started is stopped when the run ends. `bench/plot.py` draws the PNGs
//! from the saved runs; docs/performance.md explains the figures.

mod api;
mod api_load;
mod auth;
mod dnsperf;
mod dnssec;
mod etcd;
mod first_answer;
mod forward;
mod knot;
mod overload;
mod process;
mod propagation;
mod record;
mod rounds;
mod services;
mod soak;
mod tools;
mod unbound;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

/// Command line.
#[derive(Debug, Parser)]
#[command(about = "skydns benchmarks (loopback only); each run is saved as JSON")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
    /// Where the run's JSON goes.
    #[arg(long, global = true, default_value_os_t = record::workspace().join("bench/runs"))]
    out: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// Authoritative answers vs Knot DNS; memory, start-up, 100,000 services.
    Auth(auth::Args),
    /// Forwarding (cached and cache-miss) vs unbound, to one loopback stub.
    Forward(forward::Args),
    /// Signed answers (`-dnssec`, DO set) vs Knot DNS's mod-onlinesign.
    Dnssec(dnssec::Args),
    /// Several instances on one etcd registry: propagation, QPS vs redb,
    /// API rate, heartbeat writes, cold start with 100,000 services.
    Etcd(etcd::Args),
    /// REST API with the embedded store: register, heartbeat, delete.
    Api(api::Args),
    /// skydock: docker start/stop → DNS, on the real engine.
    Propagation(propagation::Args),
    /// DNS at a multiple of its capacity: load shed, memory bounded.
    Overload(overload::Args),
    /// Mixed DNS and API traffic for minutes: errors and memory growth.
    Soak(soak::Args),
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let (record, results) = match cli.bench {
        Bench::Auth(args) => auth::run(args).await?,
        Bench::Forward(args) => forward::run(args).await?,
        Bench::Dnssec(args) => dnssec::run(args).await?,
        Bench::Api(args) => api::run(args).await?,
        Bench::Etcd(args) => etcd::run(args).await?,
        Bench::Propagation(args) => propagation::run(args).await?,
        Bench::Overload(args) => overload::run(args).await?,
        Bench::Soak(args) => soak::run(args).await?,
    };
    // The headline figures: the comparison's best settings, or the summary;
    // never the per-run samples (they are in the saved file).
    let summary = ["best", "summary"]
        .iter()
        .find_map(|k| results.get(*k))
        .cloned()
        .unwrap_or_else(|| {
            let mut r = results.clone();
            if let Some(o) = r.as_object_mut() {
                o.remove("samples");
                o.remove("runs");
            }
            r
        });
    println!("{}", serde_json::to_string_pretty(&summary)?);
    let path = record.save(&cli.out, results)?;
    eprintln!("==> saved {}", path.display());
    Ok(())
}
