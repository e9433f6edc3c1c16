//! `bench api`: the REST API with the embedded store (`-data`): 64 clients
//! register services (each PUT acknowledged once durable), send heartbeats
//! (PATCH), then delete them (DELETE); as shipped and with `-workers 1`,
//! alternated over rounds, each on a fresh `-data` directory.

use std::collections::BTreeMap;

use anyhow::bail;
use serde_json::{Value, json};
use skydns_tests::SkyDns;

use crate::{
    api_load::{self, Mode, Spec},
    process::{Memory, cpu_seconds},
    record::Record,
};

/// `bench api` options.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Rounds (each setting once per round).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Services registered (then deleted) per round.
    #[arg(long, default_value_t = 20_000)]
    services: u64,
    /// Heartbeats per round, over the registered services.
    #[arg(long, default_value_t = 200_000)]
    heartbeats: u64,
    /// Concurrent clients, one keep-alive connection each.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Upper bound of each phase, in seconds.
    #[arg(long, default_value_t = 60)]
    limit: u64,
}

/// The settings compared: as shipped (one runtime thread per core) and one
/// runtime thread (the other core left to the load generator).
const SETTINGS: [(&str, &[&str]); 2] = [("shipped", &[]), ("workers-1", &["-workers", "1"])];

/// Runs the phases; returns the record and the results.
pub(crate) async fn run(args: Args) -> anyhow::Result<(Record, Value)> {
    let mut record = Record::start(
        "api",
        json!({ "rounds": args.rounds, "services": args.services, "heartbeats": args.heartbeats,
                "clients": args.clients, "limit_seconds": args.limit }),
    );
    let work = tempfile::tempdir()?;
    let mut runs = Vec::new();
    for round in 1..=args.rounds {
        let mut order: Vec<_> = SETTINGS.to_vec();
        if round % 2 == 0 {
            order.reverse();
        }
        for (setting, extra) in order {
            let data = work.path().join(format!("data-{round}-{setting}"));
            let data = data.display().to_string();
            let argv = [
                &[
                    "-data",
                    data.as_str(),
                    "-log-level",
                    "warn,skydns::server=info",
                ][..],
                extra,
            ]
            .concat();
            let skydns = SkyDns::spawn(&argv).await;
            let phases = [
                (Mode::Register, args.services),
                (Mode::Heartbeat, args.heartbeats),
                (Mode::Delete, args.services),
            ];
            for (mode, count) in phases {
                let before = cpu_seconds(skydns.pid());
                let outcome = api_load::run(Spec {
                    url: skydns.url(),
                    mode,
                    clients: args.clients,
                    count,
                    pool: args.services,
                    seconds: args.limit,
                    ttl: 3600,
                })
                .await?;
                let cpu = cpu_seconds(skydns.pid()) - before;
                if outcome.errors > 0 {
                    bail!(
                        "{setting}, round {round}: {} errors in {outcome:?}",
                        outcome.errors
                    );
                }
                #[allow(clippy::cast_precision_loss)]
                let cpu_us = if outcome.ok > 0 {
                    cpu * 1e6 / outcome.ok as f64
                } else {
                    0.0
                };
                eprintln!(
                    "==> round {round}, {setting}, {mode:?}: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {cpu_us:.1} µs CPU/req",
                    outcome.rps, outcome.p50_ms, outcome.p99_ms
                );
                let memory = Memory::of(skydns.pid());
                runs.push(
                    json!({ "round": round, "setting": setting, "skydns_cpu_us_per_request": cpu_us,
                                  "memory_after": memory, "outcome": outcome }),
                );
            }
        }
    }
    record.commands = vec![
        "cargo build --release -p skydns --locked".into(),
        "target/release/skydns -dns 127.0.0.1:PORT -http 127.0.0.1:PORT -nameserver 127.0.0.1:9 -data DIR [-workers 1]".into(),
        format!("{} clients: PUT /skydns/services/load-<i> ({} services), PATCH load-<i % services> ({} heartbeats), DELETE load-<i>",
            args.clients, args.services, args.heartbeats),
    ];
    Ok((record, json!({ "best": medians(&runs), "runs": runs })))
}

/// Median req/s, p50, p99 and CPU per request of each setting and phase.
fn medians(runs: &[Value]) -> Value {
    let mut out: BTreeMap<String, Value> = BTreeMap::new();
    for (setting, _) in SETTINGS {
        for mode in ["register", "heartbeat", "delete"] {
            let of = |field: &str| {
                let mut v: Vec<f64> = runs
                    .iter()
                    .filter(|r| r["setting"] == setting && r["outcome"]["mode"] == mode)
                    .filter_map(|r| r["outcome"][field].as_f64().or_else(|| r[field].as_f64()))
                    .collect();
                v.sort_by(f64::total_cmp);
                v.get(v.len() / 2).copied().unwrap_or(0.0)
            };
            out.insert(
                format!("{setting}/{mode}"),
                json!({ "rps": of("rps").round(), "p50_ms": of("p50_ms"), "p99_ms": of("p99_ms"),
                        "skydns_cpu_us_per_request": of("skydns_cpu_us_per_request") }),
            );
        }
    }
    json!(out)
}
