//! `bench forward`: skydns against unbound as caching forwarders to the
//! same loopback stub upstream, answering from the cache (`cached`: one
//! name repeated) and on cache misses (`miss`: every name unique, each one
//! a round trip to the stub).

use std::net::SocketAddr;

use anyhow::bail;
use hickory_proto::{op::ResponseCode, rr::RecordType};
use serde_json::{Value, json};
use skydns_tests::{SkyDns, udp_query};

use crate::{
    dnsperf::query_file,
    record::Record,
    rounds::{self, Server},
    services::register_web,
    unbound,
};

/// `bench forward` options.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    runs: rounds::Settings,
    /// Unique names per cache-miss run (more than a run can send).
    #[arg(long, default_value_t = 500_000)]
    miss_names: u32,
}

/// The stub's domain: everything under it is forwarded by the servers.
const STUB_DOMAIN: &str = "example.org";
const LOADS: [&str; 2] = ["cached", "miss"];
const LOG: [&str; 2] = ["-log-level", "warn,skydns::server=info"];

/// Runs the comparison; returns the record and the results.
pub(crate) async fn run(args: Args) -> anyhow::Result<(Record, Value)> {
    crate::tools::need(&[("dnsperf", "dnsperf"), ("unbound", "unbound")])?;
    crate::tools::stop_system_daemon("unbound", "unbound", &["/run/unbound.pid"]);
    let mut record = Record::start(
        "forward",
        json!({ "rounds": args.runs.rounds, "seconds": args.runs.seconds, "miss_names": args.miss_names,
                "dnsperf": "-c 10 -T 2; miss: -n 1" }),
    );
    record.tool("dnsperf");
    record.tool("unbound");
    let work = tempfile::tempdir()?;

    // The stub upstream: a skydns authoritative for example.org only, with
    // 10 A records at web.prod.example.org and NXDOMAIN for the rest.
    let stub = SkyDns::spawn(&[&["-domain", STUB_DOMAIN, "-no-forward"][..], &LOG].concat()).await;
    register_web(&stub.client, "10.0.0").await?;
    let upstream = stub.dns.to_string();
    let fwd = ["-domain", "skydns.local", "-nameserver", &upstream];
    let shipped = SkyDns::spawn(&[&fwd[..], &LOG].concat()).await;
    let two = SkyDns::spawn(&[&fwd[..], &LOG, &["-dns-workers", "2"]].concat()).await;
    let (ub1, ub1_port, ub_conf) =
        unbound::start(&work.path().join("unbound-1"), 1, stub.dns.port()).await?;
    let (ub2, ub2_port, _) =
        unbound::start(&work.path().join("unbound-2"), 2, stub.dns.port()).await?;
    let servers = vec![
        Server::new("skydns", shipped.dns.port(), shipped.pid()),
        Server::new("skydns-2w", two.dns.port(), two.pid()),
        Server::new("unbound-1", ub1_port, ub1.pid),
        Server::new("unbound-2", ub2_port, ub2.pid),
    ];
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    for s in &servers {
        check(s).await?;
    }
    let idle = rounds::memory(&servers);

    let dir = work.path().to_path_buf();
    query_file(
        &dir.join("cached.txt"),
        [format!("web.prod.{STUB_DOMAIN} A")],
    )?;
    let miss_names = args.miss_names;
    let samples = rounds::run(
        &servers,
        &LOADS,
        args.runs.rounds,
        args.runs.seconds,
        |load, server, round| {
            if load == "cached" {
                return Ok((dir.join("cached.txt"), Vec::new()));
            }
            // Names no other run uses: a label per run, each name sent once.
            let tag = format!("x{round}{}", server.replace('-', ""));
            let file = dir.join("miss.txt");
            query_file(
                &file,
                (0..miss_names).map(|i| format!("r{i}.{tag}.miss.{STUB_DOMAIN} A")),
            )?;
            Ok((file, vec!["-n", "1"]))
        },
    )
    .await?;
    let after = rounds::memory(&servers);
    let summary = rounds::summary(
        &samples,
        &LOADS,
        &["skydns", "skydns-2w"],
        &["unbound-1", "unbound-2"],
    );
    record.commands = vec![
        "cargo build --release -p skydns --locked".into(),
        format!("target/release/skydns -dns 127.0.0.1:STUB -http 127.0.0.1:PORT -domain {STUB_DOMAIN} -no-forward   # the stub upstream, then PUT web-1..10 as web.prod"),
        "target/release/skydns -dns 127.0.0.1:PORT -http 127.0.0.1:PORT -domain skydns.local -nameserver 127.0.0.1:STUB [-dns-workers 2]".into(),
        format!("unbound -d -c unbound-1.conf   # {}", ub_conf.replace('\n', "; ")),
        "unbound -d -c unbound-2.conf   # the same with num-threads: 2".into(),
        format!("dnsperf -s 127.0.0.1 -p PORT -l SECONDS -c 10 -T 2 -d cached.txt   # `web.prod.{STUB_DOMAIN} A`"),
        format!("dnsperf -s 127.0.0.1 -p PORT -l SECONDS -c 10 -T 2 -n 1 -d miss.txt   # r<N>.<run>.miss.{STUB_DOMAIN} A, unique per run"),
    ];
    drop((ub1, ub2, shipped, two, stub));
    Ok((
        record,
        json!({
            "best": summary["best"],
            "medians": summary["medians"],
            "memory": { "idle": idle, "after_runs": after },
            "runs": samples,
        }),
    ))
}

/// Checks a forwarder before it is measured: 10 A for the cached name,
/// NXDOMAIN for a miss name.
async fn check(s: &Server) -> anyhow::Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], s.port));
    let fail = |what: String| anyhow::anyhow!("{}: {what}", s.name);
    let a = udp_query(addr, &format!("web.prod.{STUB_DOMAIN}"), RecordType::A)
        .await
        .map_err(fail)?;
    let nx = udp_query(addr, &format!("check.miss.{STUB_DOMAIN}"), RecordType::A)
        .await
        .map_err(fail)?;
    if a.answers.len() != 10 || nx.metadata.response_code != ResponseCode::NXDomain {
        bail!(
            "{}: unexpected answers: {} A, check.miss {:?} (want 10 and NXDOMAIN)",
            s.name,
            a.answers.len(),
            nx.metadata.response_code
        );
    }
    Ok(())
}
