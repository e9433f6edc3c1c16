//! `bench soak`: minutes of mixed traffic against the release skydns with
//! the embedded store: dnsperf at a fixed rate over local names (A, SRV,
//! NXDOMAIN, a 20-address name kept alive by heartbeats) and forwarded ones
//! (a stub upstream: a second skydns, authoritative for `upstream.test`; one
//! cached name and a stream of unique names that miss the cache), an API
//! checker doing registrations, heartbeats, deletes and expiries, each
//! checked, and memory and open fds sampled every 10 s.
//!
//! Passes when dnsperf lost nothing and got no SERVFAIL/REFUSED/FORMERR/
//! NOTIMP, the API checker saw no error, and RSS after the warm-up never
//! grew more than 10 % above its value at the end of the warm-up.

use std::{collections::BTreeMap, time::Duration};

use anyhow::{Context, bail};
use hickory_proto::{op::ResponseCode, rr::RecordType};
use serde::Serialize;
use serde_json::{Value, json};
use skydns_tests::{Client, ClientError, SkyDns, service, udp_query};
use tokio::time::Instant;

use crate::{
    dnsperf::{query_file, run_argv},
    overload::{Point, Sampler, code_count, sent},
    process::Memory,
    record::Record,
};

/// `bench soak` options.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Length of the soak.
    #[arg(long, default_value_t = 600)]
    seconds: u64,
    /// dnsperf's rate (`-Q`), queries per second.
    #[arg(long, default_value_t = 3000)]
    qps: u64,
    /// Seconds of warm-up before memory growth counts (default: the first
    /// 60 s, or a third of a shorter run).
    #[arg(long)]
    warmup: Option<u64>,
    /// The memory store instead of `-data` (to tell the store's memory
    /// from the rest).
    #[arg(long)]
    memory_store: bool,
    /// An extra flag for the skydns under test (repeatable:
    /// `--skydns-arg=-cache-size --skydns-arg=0`).
    #[arg(long = "skydns-arg", allow_hyphen_values = true)]
    skydns_args: Vec<String>,
}

const LOG: [&str; 2] = ["-log-level", "warn,skydns::server=info"];
/// Services heartbeated for the whole run, registered every second and
/// deleted 3 s later, and registered every second to expire.
const STEADY: u32 = 20;
const CHURN: u32 = 40;
const EXPIRE: u32 = 10;
/// Every block of the query file: these, then a unique forwarded name.
const MIX: [&str; 9] = [
    "web.prod.skydns.local A",
    "web.prod.skydns.local A",
    "web.prod.skydns.local A",
    "web.prod.skydns.local A",
    "web.prod.skydns.local SRV",
    "web.prod.skydns.local SRV",
    "nothere.prod.skydns.local A",
    "steady.soak.skydns.local A",
    "web.prod.upstream.test A",
];
/// RSS growth after the warm-up allowed, in percent.
const MAX_GROWTH: f64 = 10.0;

/// Runs the soak; returns the record and the results (`passed` says
/// whether it held).
pub(crate) async fn run(args: Args) -> anyhow::Result<(Record, Value)> {
    crate::tools::need(&[("dnsperf", "dnsperf")])?;
    let seconds = args.seconds.max(5);
    let warmup = args.warmup.unwrap_or((seconds / 3).min(60));
    let mut record = Record::start(
        "soak",
        json!({ "seconds": seconds, "qps": args.qps, "warmup": warmup,
                "store": if args.memory_store { "memory" } else { "redb" },
                "skydns_args": args.skydns_args, "dnsperf": "-c 4 -T 1 -t 2" }),
    );
    record.tool("dnsperf");
    let bound = Duration::from_secs(seconds + 300);
    let results = tokio::time::timeout(bound, soak(&args, seconds, warmup, &mut record))
        .await
        .with_context(|| format!("the soak took more than {} s", bound.as_secs()))??;
    Ok((record, results))
}

async fn soak(
    args: &Args,
    seconds: u64,
    warmup: u64,
    record: &mut Record,
) -> anyhow::Result<Value> {
    let stub_args = [&["-domain", "upstream.test", "-no-forward"][..], &LOG].concat();
    let stub = spawn(&stub_args).await?;
    for i in 1..=3 {
        let s = service("web", "prod", "east", &format!("192.0.2.{i}"), 80, 36_000);
        stub.client.add_service(&format!("up{i}"), &s).await?;
    }
    let work = tempfile::tempdir()?;
    let data = work.path().join("data").display().to_string();
    let upstream = stub.dns.to_string();
    let mut argv: Vec<&str> = vec!["-nameserver", &upstream, "-forward-timeout", "1s"];
    argv.extend(LOG);
    if !args.memory_store {
        argv.extend(["-data", &data]);
    }
    argv.extend(args.skydns_args.iter().map(String::as_str));
    let skydns = spawn(&argv).await?;
    let pid = skydns.pid();
    for i in 1..=10 {
        let s = service("web", "prod", "east", &format!("10.0.0.{i}"), 80, 36_000);
        skydns.client.add_service(&format!("web{i}"), &s).await?;
    }
    let fwd = udp_query(skydns.dns, "web.prod.upstream.test", RecordType::A)
        .await
        .map_err(anyhow::Error::msg)?;
    if fwd.metadata.response_code != ResponseCode::NoError || fwd.answers.len() != 3 {
        bail!(
            "forwarding to the stub does not work: {:?}, {} answers",
            fwd.metadata.response_code,
            fwd.answers.len()
        );
    }
    let queries = work.path().join("q.txt");
    query_file(
        &queries,
        (0..20_000).flat_map(|n| {
            let mut v: Vec<String> = MIX.iter().map(|q| (*q).to_string()).collect();
            v.push(format!("m{n}.prod.upstream.test A"));
            v
        }),
    )?;

    eprintln!(
        "==> soak: {seconds} s, dnsperf at {} queries/s, API traffic, memory every 10 s (warm-up {warmup} s)",
        args.qps
    );
    let sampler = Sampler::start(pid, Duration::from_secs(10));
    let api = tokio::spawn(api_traffic(skydns.client.clone(), seconds));
    // The steady services exist before dnsperf asks for them.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (port, q, qps) = (skydns.dns.port(), queries.display().to_string(), args.qps);
    let dnsperf: Vec<String> = format!(
        "-s 127.0.0.1 -p {port} -d {q} -l {} -c 4 -T 1 -Q {qps} -t 2",
        seconds - 1
    )
    .split_whitespace()
    .map(String::from)
    .collect();
    let dns = run_argv(&[], &dnsperf, pid, Duration::from_secs(seconds + 60)).await;
    let api = match tokio::time::timeout(Duration::from_secs(60), api).await {
        Ok(Ok(stats)) => stats,
        Ok(Err(e)) => ApiStats::failed(format!("the API checker failed: {e}")),
        Err(_) => ApiStats::failed("the API checker did not finish in time".into()),
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    sampler.sample();
    let samples = sampler.points();
    let end = Memory::of(pid);

    let after: Vec<&Point> = samples.iter().filter(|p| p.t >= warmup as f64).collect();
    let base = after
        .first()
        .copied()
        .or(samples.last())
        .map_or(0, |p| p.rss_kib);
    let peak = after.iter().map(|p| p.rss_kib).max().unwrap_or(base);
    #[allow(clippy::cast_precision_loss)]
    let growth = if base > 0 {
        (peak as f64 - base as f64) / base as f64 * 100.0
    } else {
        0.0
    };

    let mut reasons = Vec::new();
    let dns_json = match &dns {
        Ok((o, text)) => {
            let bad: Vec<&str> = o
                .response_codes
                .split(", ")
                .filter(|c| {
                    ["SERVFAIL", "REFUSED", "FORMERR", "NOTIMP"]
                        .iter()
                        .any(|b| c.starts_with(b))
                })
                .collect();
            if o.lost > 0 {
                reasons.push(format!("dnsperf lost {} queries", o.lost));
            }
            if !bad.is_empty() {
                reasons.push(format!("bad response codes: {}", bad.join(", ")));
            }
            json!({ "sent": sent(text), "qps": o.qps, "completed": o.completed, "lost": o.lost,
                    "response_codes": o.response_codes, "servfail": code_count(&o.response_codes, "SERVFAIL"),
                    "refused": code_count(&o.response_codes, "REFUSED"), "avg_latency_ms": o.avg_latency_ms,
                    "server_cpu_us_per_query": o.server_cpu_us_per_query, "server_peak": o.server_peak })
        }
        Err(e) => {
            reasons.push(format!("dnsperf failed: {e:#}"));
            json!({ "error": format!("{e:#}") })
        }
    };
    if api.errors > 0 {
        reasons.push(format!("{} API errors", api.errors));
    }
    if growth > MAX_GROWTH {
        reasons.push(format!(
            "RSS grew {growth:.1} % after the warm-up (more than {MAX_GROWTH} %)"
        ));
    }
    let verdict = if reasons.is_empty() {
        "passed"
    } else {
        "FAILED"
    };
    eprintln!("==> soak {verdict} {reasons:?}");

    record.commands = vec![
        "cargo build --release -p skydns --locked".into(),
        format!("target/release/skydns -dns 127.0.0.1:STUB -http 127.0.0.1:STUB_HTTP {}   # the stub upstream", stub_args.join(" ")),
        "PUT /skydns/services/up<i> {\"Name\":\"web\",\"Version\":\"1.0.0\",\"Environment\":\"prod\",\"Region\":\"east\",\"Host\":\"192.0.2.<i>\",\"Port\":80,\"TTL\":36000} on the stub for i in 1..3".into(),
        format!("target/release/skydns -dns 127.0.0.1:PORT -http 127.0.0.1:HTTP {}", argv.join(" ").replace(&upstream, "127.0.0.1:STUB").replace(&data, "DIR")),
        "PUT /skydns/services/web<i> {\"Name\":\"web\",...,\"Host\":\"10.0.0.<i>\",\"Port\":80,\"TTL\":36000} for i in 1..10".into(),
        "q.txt: 20000 x (4 x `web.prod.skydns.local A`, 2 x `web.prod.skydns.local SRV`, `nothere.prod.skydns.local A`, `steady.soak.skydns.local A`, `web.prod.upstream.test A`, `m<n>.prod.upstream.test A`)".into(),
        format!("dnsperf {}", dnsperf.join(" ").replace(&q, "q.txt").replace(&format!("-p {port} "), "-p PORT ")),
        format!("meanwhile over the API: {STEADY} services (TTL 6) heartbeated every 2 s; every second {CHURN} registered (TTL 60) and deleted 3 s later, then GET must be 404; every second {EXPIRE} with TTL 2, GET 404 5 s later; GET of the steady ones 200 at the end"),
    ];
    drop((skydns, stub));
    Ok(json!({
        "passed": reasons.is_empty(),
        "reasons": reasons,
        "dns": dns_json,
        "api": api,
        "memory": { "warmup_seconds": warmup, "rss_at_warmup_kib": base, "rss_peak_after_kib": peak,
                    "growth_percent": (growth * 10.0).round() / 10.0, "end": end },
        "fds": { "first": samples.first().map(|p| p.fds), "last": samples.last().map(|p| p.fds) },
        "samples": samples,
    }))
}

/// A skydns binary on free loopback ports.
async fn spawn(args: &[&str]) -> anyhow::Result<SkyDns> {
    SkyDns::try_spawn_on("127.0.0.1:0", "127.0.0.1:0", args)
        .await
        .map_err(anyhow::Error::msg)
}

/// What the API checker did: requests per kind, `<kind>_errors` per kind,
/// the total of errors and the first 20.
#[derive(Debug, Default, Serialize)]
struct ApiStats {
    counts: BTreeMap<String, u64>,
    errors: u64,
    first_errors: Vec<String>,
}

impl ApiStats {
    fn failed(why: String) -> Self {
        Self {
            errors: 1,
            first_errors: vec![why],
            ..Self::default()
        }
    }
}

/// What a checked request must give.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// Success (201 for a registration, 200 otherwise).
    Ok,
    /// 404.
    Gone,
}

/// Counts one request of `kind` and whether it gave what was wanted.
fn note(
    stats: &mut ApiStats,
    start: Instant,
    kind: &str,
    what: &str,
    got: Result<(), ClientError>,
    want: Want,
) {
    *stats.counts.entry(kind.to_string()).or_default() += 1;
    let fine = match want {
        Want::Ok => got.is_ok(),
        Want::Gone => matches!(got, Err(ClientError::NotFound(_))),
    };
    if !fine {
        *stats.counts.entry(format!("{kind}_errors")).or_default() += 1;
        stats.errors += 1;
        if stats.first_errors.len() < 20 {
            let got = got.map_or_else(|e| e.to_string(), |()| "success".into());
            stats.first_errors.push(format!(
                "{:.1} s {what}: want {want:?}, got {got}",
                start.elapsed().as_secs_f64()
            ));
        }
    }
}

/// Registers `uuid` as `<name>.soak` on `host` with `ttl`, and notes how it went.
async fn put(
    client: &Client,
    stats: &mut ApiStats,
    t0: Instant,
    uuid: &str,
    name: &str,
    host: String,
    ttl: u32,
) {
    let r = client
        .add_service(uuid, &service(name, "soak", "east", &host, 8080, ttl))
        .await;
    note(stats, t0, "register", &format!("PUT {uuid}"), r, Want::Ok);
}

/// The API traffic of the soak: `STEADY` services (TTL 6) heartbeated
/// every 2 s; every second `CHURN` registrations (TTL
/// 60) deleted 3 s later and then checked gone, and `EXPIRE` with TTL 2
/// checked gone (expired) 5 s later; the steady ones checked at the end.
async fn api_traffic(client: Client, seconds: u64) -> ApiStats {
    let mut stats = ApiStats::default();
    let t0 = Instant::now();
    for i in 0..STEADY {
        let uuid = format!("steady{i}");
        put(
            &client,
            &mut stats,
            t0,
            &uuid,
            "steady",
            format!("10.1.0.{}", i + 1),
            6,
        )
        .await;
    }
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let (mut tick, mut next_beat) = (0u64, start);
    let mut deletes: Vec<(Instant, String)> = Vec::new();
    let mut checks: Vec<(Instant, String, &'static str)> = Vec::new();
    while Instant::now() < end {
        let now = Instant::now();
        if now >= next_beat {
            for i in 0..STEADY {
                let r = client.heartbeat(&format!("steady{i}"), 6).await;
                note(
                    &mut stats,
                    t0,
                    "heartbeat",
                    &format!("PATCH steady{i}"),
                    r,
                    Want::Ok,
                );
            }
            next_beat += Duration::from_secs(2);
        }
        for j in 0..CHURN {
            let uuid = format!("c{tick}x{j}");
            let host = format!("10.2.{}.{}", j % 250, tick % 250 + 1);
            put(&client, &mut stats, t0, &uuid, "churn", host, 60).await;
            deletes.push((now + Duration::from_secs(3), uuid));
        }
        for j in 0..EXPIRE {
            let uuid = format!("e{tick}x{j}");
            let host = format!("10.3.{}.{}", j % 250, tick % 250 + 1);
            put(&client, &mut stats, t0, &uuid, "expire", host, 2).await;
            checks.push((now + Duration::from_secs(5), uuid, "expired"));
        }
        let (due, later): (Vec<_>, Vec<_>) = deletes.into_iter().partition(|d| d.0 <= now);
        deletes = later;
        for (_, uuid) in due {
            let r = client.delete_service(&uuid).await;
            note(
                &mut stats,
                t0,
                "delete",
                &format!("DELETE {uuid}"),
                r,
                Want::Ok,
            );
            checks.push((now, uuid, "deleted"));
        }
        let (due, later): (Vec<_>, Vec<_>) = checks.into_iter().partition(|c| c.0 <= now);
        checks = later;
        for (_, uuid, kind) in due {
            let r = client.get_service(&uuid).await.map(drop);
            note(&mut stats, t0, kind, &format!("GET {uuid}"), r, Want::Gone);
        }
        tick += 1;
        tokio::time::sleep_until(start + Duration::from_secs(tick)).await;
    }
    for i in 0..STEADY {
        let r = client.get_service(&format!("steady{i}")).await.map(drop);
        note(
            &mut stats,
            t0,
            "steady_at_end",
            &format!("GET steady{i}"),
            r,
            Want::Ok,
        );
    }
    stats
}
