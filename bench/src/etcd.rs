//! `bench etcd`: skydns instances sharing one registry in etcd (`-etcd`),
//! all on this machine with a local etcd cluster (Debian's etcd-server) on
//! loopback:
//! 1. propagation A → B: a registration acknowledged by instance A until
//!    instance B answers it (B polled over UDP), p50/p99 over `--propagations`;
//! 2. DNS QPS of an etcd-backed instance vs a redb-backed one holding the
//!    same services, dnsperf, rounds A B A B;
//! 3. registrations/s through A's API with `--clients` clients,
//!    and the etcd revisions (= writes) they took;
//! 4. heartbeats of every service and etcd's write rate meanwhile
//!    (a heartbeat renews a lease: no write);
//! 5. cold start of a new instance with `--services` in etcd: exec → first
//!    answer, and its RSS then.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hickory_proto::rr::RecordType;
use serde_json::{Value, json};
use skydns_tests::{SkyDns, a_records, etcd::EtcdCluster, service, udp_query};

use crate::{
    api_load::{self, Mode, Spec},
    dnsperf::{self, Load},
    first_answer,
    process::{Memory, free_port},
    propagation::percentiles,
    record::Record,
};

/// `bench etcd` options.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// etcd members, all on this machine.
    #[arg(long, default_value_t = 3)]
    members: usize,
    /// Registrations timed from A to B.
    #[arg(long, default_value_t = 1000)]
    propagations: usize,
    /// Services registered for the API rate, the heartbeats and the cold start.
    #[arg(long, default_value_t = 100_000)]
    services: u64,
    /// Concurrent API clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Rounds of the QPS comparison (each: etcd-backed, redb-backed).
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Seconds of each dnsperf run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

/// How long B may take to answer one registration before the run fails.
const PROPAGATION_LIMIT: Duration = Duration::from_secs(5);
/// TTL of the bulk registrations and their heartbeats: long enough that the
/// first of 100,000 is still alive when the last is registered (at about
/// 2,000/s), so the heartbeat phase renews every one. A heartbeat's cost in
/// etcd does not depend on the TTL (a lease renewal, never a write); what
/// TTL 30 changes is how many heartbeats a second are needed (`needed_per_s`
/// at TTL 30, one beat per TTL/3).
const TTL: u32 = 120;
/// The TTL the heartbeat rate needed is given for.
const TTL_30: u32 = 30;

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}

/// One API load on `sky` over every service (TTL [`TTL`]), and the etcd
/// revisions (= writes) it took.
async fn load(
    etcd: &EtcdCluster,
    sky: &SkyDns,
    mode: Mode,
    args: &Args,
) -> anyhow::Result<(api_load::Outcome, i64)> {
    let before = etcd.revision().await;
    let outcome = api_load::run(Spec {
        url: sky.url(),
        mode,
        clients: args.clients,
        count: args.services,
        pool: args.services,
        seconds: 600,
        ttl: TTL,
    })
    .await?;
    Ok((outcome, etcd.revision().await - before))
}

/// Runs the benchmark; returns the record and the results.
pub(crate) async fn run(args: Args) -> anyhow::Result<(Record, Value)> {
    let mut record = Record::start(
        "etcd",
        json!({ "members": args.members, "propagations": args.propagations, "services": args.services,
                "clients": args.clients, "rounds": args.rounds, "seconds": args.seconds, "ttl": TTL }),
    );
    for package in ["etcd-server", "dnsperf"] {
        record.tool(package);
    }
    let skydns_bin = tokio::task::spawn_blocking(|| skydns_tests::binary("skydns"))
        .await
        .map_err(|e| anyhow::anyhow!("cannot build skydns: {e}"))?;
    let etcd = EtcdCluster::start(args.members).await;
    let endpoints = etcd.endpoints();
    let shared = [
        "-etcd",
        endpoints.as_str(),
        "-no-forward",
        "-log-level",
        "warn,skydns::server=info",
    ];
    let a = SkyDns::try_spawn_on("127.0.0.1:0", "127.0.0.1:0", &shared)
        .await
        .map_err(anyhow::Error::msg)?;
    let b = SkyDns::try_spawn_on("127.0.0.1:0", "127.0.0.1:0", &shared)
        .await
        .map_err(anyhow::Error::msg)?;
    let data = tempfile::tempdir()?;
    let data_dir = data.path().display().to_string();
    let redb = SkyDns::try_spawn_on(
        "127.0.0.1:0",
        "127.0.0.1:0",
        &[
            "-data",
            &data_dir,
            "-no-forward",
            "-log-level",
            "warn,skydns::server=info",
        ],
    )
    .await
    .map_err(anyhow::Error::msg)?;

    // 1. Propagation, one registration at a time.
    eprintln!("==> propagation A → B, {} registrations", args.propagations);
    let mut samples = Vec::with_capacity(args.propagations);
    for i in 0..args.propagations {
        let uuid = format!("p{i}");
        let host = format!("10.9.{}.{}", i / 250, i % 250 + 1);
        let s = service(&uuid, "bench", "east", &host, 80, 3600);
        a.client
            .add_service(&uuid, &s)
            .await
            .context("register on A")?;
        let acked = Instant::now();
        let name = format!("{uuid}.bench.skydns.local.");
        loop {
            if let Ok(answer) = udp_query(b.dns, &name, RecordType::A).await
                && a_records(&answer) == [host.clone()]
            {
                break;
            }
            if acked.elapsed() > PROPAGATION_LIMIT {
                bail!("B did not answer {name} within {PROPAGATION_LIMIT:?}");
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        samples.push(ms(acked.elapsed()));
        redb.client
            .add_service(&uuid, &s)
            .await
            .context("register on the redb instance")?;
    }
    let propagation = percentiles(&samples);
    eprintln!("    {propagation}");

    // 2. QPS: the same names from an etcd-backed and a redb-backed instance.
    let work = tempfile::tempdir()?;
    let queries = work.path().join("queries");
    dnsperf::query_file(
        &queries,
        (0..args.propagations.min(100)).map(|i| format!("p{i}.bench.skydns.local A")),
    )?;
    let mut qps = Vec::new();
    for round in 1..=args.rounds {
        for (backend, sky) in [("etcd", &a), ("redb", &redb)] {
            let outcome = Load {
                port: sky.dns.port(),
                seconds: args.seconds,
                args: &[],
                queries: &queries,
            }
            .run(sky.pid())
            .await?;
            eprintln!("==> round {round}, {backend}: {:.0} QPS", outcome.qps);
            qps.push(json!({ "round": round, "backend": backend, "outcome": outcome }));
        }
    }
    let median = |backend: &str| {
        let mut v: Vec<f64> = qps
            .iter()
            .filter(|r| r["backend"] == backend)
            .filter_map(|r| r["outcome"]["qps"].as_f64())
            .collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let (etcd_qps, redb_qps) = (median("etcd"), median("redb"));
    drop(redb);

    // 3. Registrations through A's API.
    eprintln!(
        "==> {} registrations, {} clients",
        args.services, args.clients
    );
    let (register, register_revisions) = load(&etcd, &a, Mode::Register, &args).await?;
    eprintln!(
        "    {:.0}/s, {} errors, {register_revisions} etcd revisions",
        register.rps, register.errors
    );

    // 4. Every service heartbeats once, as fast as the clients go.
    let (heartbeat, heartbeat_revisions) = load(&etcd, &a, Mode::Heartbeat, &args).await?;
    #[allow(clippy::cast_precision_loss)]
    let writes_per_s = heartbeat_revisions as f64 / heartbeat.seconds.max(1e-9);
    // At TTL 30 with a beat every TTL/3, every service beats every 10 s.
    #[allow(clippy::cast_precision_loss)]
    let needed_rate = args.services as f64 / f64::from(TTL_30 / 3);
    eprintln!(
        "    heartbeats {:.0}/s ({needed_rate:.0}/s keep {} services alive), {} errors; etcd writes meanwhile {writes_per_s:.1}/s",
        heartbeat.rps, args.services, heartbeat.errors
    );
    let memory_a = Memory::of(a.pid());

    // 5. Cold start of a new instance on everything etcd holds.
    let (dns_port, http_port) = (free_port()?, free_port()?);
    let argv: Vec<String> = [
        "-dns",
        &format!("127.0.0.1:{dns_port}"),
        "-http",
        &format!("127.0.0.1:{http_port}"),
        "-etcd",
        &endpoints,
        "-no-forward",
        "-log-level",
        "warn",
    ]
    .iter()
    .map(|s| (*s).to_string())
    .collect();
    let cold = first_answer::measure(
        &skydns_bin,
        argv,
        dns_port,
        ("svc999.bench.skydns.local.", RecordType::A),
        1,
    )
    .await?;
    eprintln!(
        "==> cold start with {} services: first answer after {:.0} ms, RSS {} KiB",
        args.services, cold.ms, cold.memory.rss_kib
    );

    record.commands = vec![
        "cargo build --release -p skydns --locked".into(),
        format!("etcd ×{} on 127.0.0.1 (tests/src/etcd.rs: --heartbeat-interval 50 --election-timeout 500)", args.members),
        "target/release/skydns -etcd URLS -no-forward   # A and B; and one with -data DIR for the QPS baseline".into(),
        "propagation: PUT p<i> on A, then p<i>.bench.skydns.local A to B every 0.2 ms until it answers".into(),
        format!("dnsperf {} (100 names)", Load { port: 0, seconds: args.seconds, args: &[], queries: &queries }.command().join(" ")),
        format!("{} clients: PUT load-<i> TTL {TTL} ({} services), then PATCH each once", args.clients, args.services),
        "cold start: exec skydns -etcd URLS until svc999.bench.skydns.local A answers".into(),
    ];
    #[allow(clippy::cast_precision_loss)]
    let results = json!({
        "summary": {
            "propagation_ms": propagation,
            "qps": { "etcd": etcd_qps.round(), "redb": redb_qps.round(),
                     "etcd_vs_redb": ((etcd_qps / redb_qps.max(1.0)) * 1000.0).round() / 1000.0 },
            "registrations": { "per_s": register.rps.round(), "errors": register.errors,
                               "p99_ms": register.p99_ms, "etcd_revisions": register_revisions },
            "heartbeats": { "per_s": heartbeat.rps.round(), "errors": heartbeat.errors,
                            "needed_per_s": needed_rate, "etcd_revisions": heartbeat_revisions,
                            "etcd_writes_per_s": writes_per_s },
            "instance_a_memory_after": memory_a,
            "cold_start": { "services": args.services, "first_answer_ms": cold.ms, "memory": cold.memory },
        },
        "propagation_samples_ms": samples,
        "qps_runs": qps,
        "register": register,
        "heartbeat": heartbeat,
    });
    drop((a, b));
    Ok((record, results))
}
