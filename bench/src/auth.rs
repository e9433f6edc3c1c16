//! `bench auth`: skydns against Knot DNS as authoritative servers, same
//! records, loaded alternately with dnsperf (A with 10 answers, SRV with
//! glue over EDNS0, NXDOMAIN); private and resident memory of both; time to
//! the first answer; skydns with 100,000 more services (QPS against the
//! 10-service figure, memory, restart time with `-data`).

use std::{collections::BTreeMap, path::Path};

use anyhow::{Context, bail};
use hickory_proto::{op::ResponseCode, rr::RecordType};
use serde_json::{Value, json};
use skydns_tests::{Client, SkyDns, query_message, udp_exchange, udp_query};

use crate::{
    first_answer::{FirstAnswer, measure},
    knot::{self, DOMAIN, SKYDNS_ARGS as ARGS, Signing},
    process::Daemon,
    record::Record,
    rounds::{self, Server},
    services::{register_many, register_web},
};

/// `bench auth` options.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    runs: rounds::Settings,
    /// Services registered on the `skydns-100k` server besides the 10.
    #[arg(long, default_value_t = 100_000)]
    services: u32,
    /// Start-up trials of each server.
    #[arg(long, default_value_t = 5)]
    start_trials: usize,
    /// Another skydns binary (an older build, the images' static one) to
    /// measure beside, as `baseline`: a before/after in one run.
    #[arg(long)]
    baseline: Option<std::path::PathBuf>,
}

const QUERIES: [&str; 3] = ["a", "srv", "nx"];

/// Runs the comparison; returns the record and the results.
pub(crate) async fn run(args: Args) -> anyhow::Result<(Record, Value)> {
    crate::tools::need(&[("dnsperf", "dnsperf"), ("knotd", "knot")])?;
    crate::tools::stop_system_daemon("knot", "knotd", &["/run/knot/knot.pid"]);
    let mut record = Record::start(
        "auth",
        json!({ "rounds": args.runs.rounds, "seconds": args.runs.seconds, "services": args.services,
                "start_trials": args.start_trials, "dnsperf": "-c 10 -T 2",
                "baseline": args.baseline.as_ref().map(|p| p.display().to_string()) }),
    );
    record.tool("dnsperf");
    record.tool("knot");
    let work = tempfile::tempdir()?;
    let skydns_bin = skydns_tests::binary("skydns");

    let start = start_times(&args, &skydns_bin, work.path()).await?;

    // The servers, all running at once, each on its own ports.
    let shipped = SkyDns::spawn(&ARGS).await;
    let two = SkyDns::spawn(&[&ARGS[..], &["-dns-workers", "2"]].concat()).await;
    let data = work.path().join("data-many");
    let data_arg = data.display().to_string();
    let many = SkyDns::spawn(&[&ARGS[..], &["-data", &data_arg]].concat()).await;
    let baseline = match &args.baseline {
        Some(bin) => Some(spawn_baseline(bin).await?),
        None => None,
    };
    let (knot1, knot1_port, knot_conf) = knot::start(
        &work.path().join("knot-1"),
        Some(1),
        Signing::Off,
        &knot::zone(),
    )
    .await?;
    let (knot_d, knot_d_port, _) = knot::start(
        &work.path().join("knot-default"),
        None,
        Signing::Off,
        &knot::zone(),
    )
    .await?;
    let mut servers = vec![
        Server::new("skydns", shipped.dns.port(), shipped.pid()),
        Server::new("skydns-2w", two.dns.port(), two.pid()),
        Server::new("skydns-100k", many.dns.port(), many.pid()),
        Server::new("knot-1", knot1_port, knot1.pid),
        Server::new("knot-default", knot_d_port, knot_d.pid),
    ];
    if let Some((daemon, port, _)) = &baseline {
        servers.insert(2, Server::new("baseline", *port, daemon.pid));
    }
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let idle = rounds::memory(&servers);

    for client in [&shipped.client, &two.client, &many.client]
        .into_iter()
        .chain(baseline.as_ref().map(|(_, _, c)| c))
    {
        register_web(client, "10.0.0").await?;
    }
    eprintln!(
        "==> registering {} services on skydns-100k (-data, 16 at a time)",
        args.services
    );
    let took = register_many(&many.client, args.services, 16).await?;
    eprintln!("==> registered in {:.1} s", took.as_secs_f64());
    for s in &servers {
        check(s).await?;
    }
    let loaded = rounds::memory(&servers);

    let dir = work.path().to_path_buf();
    knot::query_files(&dir, "web")?;
    let samples = rounds::run(
        &servers,
        &QUERIES,
        args.runs.rounds,
        args.runs.seconds,
        |q, _, _| {
            let extra = if q == "srv" { vec!["-e"] } else { Vec::new() };
            Ok((dir.join(format!("{q}.txt")), extra))
        },
    )
    .await?;
    let after = rounds::memory(&servers);

    // Restart the 100k server on its -data: time to the first answer.
    let many_pid = many.pid();
    drop(many);
    while std::path::Path::new(&format!("/proc/{many_pid}")).exists() {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut restarts = Vec::new();
    for trial in 1..=3 {
        let (dns, http) = (crate::process::free_port()?, crate::process::free_port()?);
        let argv = skydns_argv(dns, http, &["-data", &data_arg]);
        let r = measure(
            &skydns_bin,
            argv,
            dns,
            (&format!("app1.staging.{DOMAIN}"), RecordType::A),
            1,
        )
        .await?;
        eprintln!(
            "==> restart {trial} with {} services: {:.1} ms",
            args.services + 10,
            r.ms
        );
        restarts.push(r);
    }

    let ours: Vec<&str> = ["skydns", "skydns-2w"].into();
    let summary = rounds::summary(&samples, &QUERIES, &ours, &["knot-1", "knot-default"]);
    let many_ratio: BTreeMap<&str, f64> = QUERIES
        .iter()
        .filter_map(|q| {
            let m = rounds::median(&samples, q, "skydns-100k")?;
            let base = rounds::median(&samples, q, "skydns")?;
            Some((*q, rounds::ratio(m.qps, base.qps)))
        })
        .collect();
    record.commands = commands(&servers, &knot_conf);
    drop((knot1, knot_d, baseline));
    let results = json!({
        "best": summary["best"],
        "medians": summary["medians"],
        "memory": { "idle": idle, "with_services": loaded, "after_runs": after },
        "many": { "services": args.services + 10, "register_seconds": took.as_secs_f64(),
                  "qps_vs_10_services": many_ratio, "restart": restarts },
        "start": start,
        "runs": samples,
    });
    Ok((record, results))
}

/// The argv of a skydns on the given ports with the benchmark's settings.
fn skydns_argv(dns: u16, http: u16, extra: &[&str]) -> Vec<String> {
    let mut v = vec![
        "-dns".to_string(),
        format!("127.0.0.1:{dns}"),
        "-http".into(),
        format!("127.0.0.1:{http}"),
    ];
    v.extend(ARGS.iter().chain(extra).map(|s| (*s).to_string()));
    v
}

/// Start to first answer of skydns (no stored data) and of Knot
/// (`udp-workers: 1`, zone from its file): `skydns.local SOA`.
async fn start_times(args: &Args, skydns: &Path, work: &Path) -> anyhow::Result<Value> {
    let mut sk: Vec<FirstAnswer> = Vec::new();
    let mut kn: Vec<FirstAnswer> = Vec::new();
    let knotd = crate::tools::find("knotd").context("knotd is not installed")?;
    for trial in 0..args.start_trials {
        let (dns, http) = (crate::process::free_port()?, crate::process::free_port()?);
        sk.push(
            measure(
                skydns,
                skydns_argv(dns, http, &[]),
                dns,
                (DOMAIN, RecordType::SOA),
                1,
            )
            .await?,
        );
        let dir = work.join(format!("knot-start-{trial}"));
        for sub in ["run", "db"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        std::fs::write(dir.join(format!("{DOMAIN}.zone")), knot::zone())?;
        let port = crate::process::free_port()?;
        std::fs::write(
            dir.join("knot.conf"),
            knot::config(&dir, port, Some(1), Signing::Off),
        )?;
        let conf = dir.join("knot.conf").display().to_string();
        kn.push(
            measure(
                &knotd,
                vec!["-c".into(), conf],
                port,
                (DOMAIN, RecordType::SOA),
                1,
            )
            .await?,
        );
    }
    Ok(json!({ "skydns": sk, "knot": kn }))
}

/// Another skydns binary on free ports, with the 10 services' client.
async fn spawn_baseline(bin: &Path) -> anyhow::Result<(Daemon, u16, Client)> {
    let (dns, http) = (crate::process::free_port()?, crate::process::free_port()?);
    let argv = skydns_argv(dns, http, &[]);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let daemon = Daemon::start(bin, &argv, &["listening dns="]).await?;
    let client = Client::new(&format!("http://127.0.0.1:{http}"))?;
    Ok((daemon, dns, client))
}

/// Checks a server's answers before it is measured: 10 A; 10 SRV with 10
/// glue A over EDNS0; NXDOMAIN.
async fn check(s: &Server) -> anyhow::Result<()> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], s.port));
    let fail = |what: String| anyhow::anyhow!("{}: {what}", s.name);
    let a = udp_query(addr, &format!("web.prod.{DOMAIN}"), RecordType::A)
        .await
        .map_err(fail)?;
    let srv = udp_exchange(
        addr,
        &query_message(&format!("web.prod.{DOMAIN}"), RecordType::SRV, Some(4096)),
    )
    .await
    .map_err(fail)?;
    let nx = udp_query(addr, &format!("nothere.prod.{DOMAIN}"), RecordType::A)
        .await
        .map_err(fail)?;
    let glue = srv
        .additionals
        .iter()
        .filter(|r| r.record_type() == RecordType::A)
        .count();
    if a.answers.len() != 10
        || srv.answers.len() != 10
        || glue != 10
        || nx.metadata.response_code != ResponseCode::NXDomain
    {
        bail!(
            "{}: unexpected answers: {} A, {} SRV + {glue} glue, nothere {:?} (want 10, 10 + 10, NXDOMAIN)",
            s.name,
            a.answers.len(),
            srv.answers.len(),
            nx.metadata.response_code
        );
    }
    Ok(())
}

/// How to start each server by hand.
fn commands(servers: &[Server], knot_conf: &str) -> Vec<String> {
    let mut v = vec!["cargo build --release -p skydns --locked".to_string()];
    for s in servers {
        v.push(match s.name.as_str() {
            "skydns" => format!(
                "target/release/skydns -dns 127.0.0.1:PORT -http 127.0.0.1:PORT {}",
                ARGS.join(" ")
            ),
            "skydns-2w" => format!(
                "target/release/skydns -dns 127.0.0.1:PORT -http 127.0.0.1:PORT {} -dns-workers 2",
                ARGS.join(" ")
            ),
            "skydns-100k" => format!(
                "target/release/skydns -dns 127.0.0.1:PORT -http 127.0.0.1:PORT {} -data DIR",
                ARGS.join(" ")
            ),
            "baseline" => format!(
                "BASELINE -dns 127.0.0.1:PORT -http 127.0.0.1:PORT {}",
                ARGS.join(" ")
            ),
            "knot-1" => format!("knotd -c knot-1.conf   # {}", knot_conf.replace('\n', "; ")),
            _ => "knotd -c knot-default.conf   # the same without udp-workers".to_string(),
        });
    }
    v.push("PUT /skydns/services/web-<i> {\"Name\":\"web\",\"Version\":\"1.0.0\",\"Environment\":\"prod\",\"Region\":\"east\",\"Host\":\"10.0.0.<i>\",\"Port\":8080,\"TTL\":86400} for i in 1..10".into());
    v.push("dnsperf -s 127.0.0.1 -p PORT -l SECONDS -c 10 -T 2 -d a.txt   # `web.prod.skydns.local A`; nx.txt: `nothere.prod.skydns.local A`".into());
    v.push("dnsperf -s 127.0.0.1 -p PORT -l SECONDS -c 10 -T 2 -e -d srv.txt   # `web.prod.skydns.local SRV`".into());
    v
}
