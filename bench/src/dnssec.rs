//! `bench dnssec`: signed answers, skydns `-dnssec` against Knot DNS's
//! `mod-onlinesign`, both ECDSAP256SHA256, same names, DO set (dnsperf
//! `-D`): A with 10 answers, SRV with 3 glue records (10 SRV and their
//! signed glue do not fit 1232 bytes: we truncate, Knot answers SERVFAIL),
//! NXDOMAIN; and NXDOMAIN for a million names that differ (`nx-unique`),
//! where no copy of an answer helps: every denial needs a fresh signature
//! (its NSEC is at the name asked), the path an online signer is judged by.
//! The same skydns servers are also loaded without DO
//! (`-unsigned` rows), for the cost of signing against our own unsigned
//! answers, in the same run.

use anyhow::{Context, bail};
use hickory_proto::rr::RecordType;
use serde_json::{Value, json};
use skydns_tests::{SkyDns, dnssec_query, udp_exchange};

use crate::{
    dnsperf::query_file,
    knot::{self, DOMAIN, SKYDNS_ARGS as ARGS, Signing},
    record::Record,
    rounds::{self, Server},
    services::register_web,
};

/// `bench dnssec` options.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    runs: rounds::Settings,
}

const QUERIES: [&str; 4] = ["a", "srv", "nx", "nx-unique"];
/// Distinct names in the `nx-unique` file (more than a run asks).
const UNIQUE_NAMES: u32 = 1_000_000;
/// Servers whose rows are loaded without DO.
const UNSIGNED: [&str; 2] = ["skydns-unsigned", "skydns-2w-unsigned"];

/// Runs the comparison; returns the record and the results.
pub(crate) async fn run(args: Args) -> anyhow::Result<(Record, Value)> {
    crate::tools::need(&[
        ("dnsperf", "dnsperf"),
        ("knotd", "knot"),
        ("dnssec-keygen", "bind9-utils"),
    ])?;
    crate::tools::stop_system_daemon("knot", "knotd", &["/run/knot/knot.pid"]);
    let mut record = Record::start(
        "dnssec",
        json!({ "rounds": args.runs.rounds, "seconds": args.runs.seconds,
                "dnsperf": "-c 10 -T 2 -D (signed rows), -e for unsigned SRV",
                "algorithm": "ECDSAP256SHA256" }),
    );
    record.tool("dnsperf");
    record.tool("knot");
    record.tool("bind9-utils");
    let work = tempfile::tempdir()?;
    let key = skydns_tests::validator::dnssec_keygen(work.path(), "ECDSAP256SHA256", DOMAIN);
    let key_arg = key.display().to_string();
    let signed_args = [&ARGS[..], &["-dnssec", &key_arg]].concat();

    let one = SkyDns::spawn(&signed_args).await;
    let two = SkyDns::spawn(&[&signed_args[..], &["-dns-workers", "2"]].concat()).await;
    let zone = format!("{}{}", knot::zone(), api_zone());
    let (knot1, knot1_port, knot_conf) =
        knot::start(&work.path().join("knot-1"), Some(1), Signing::Online, &zone).await?;
    let (knot_d, knot_d_port, _) = knot::start(
        &work.path().join("knot-default"),
        None,
        Signing::Online,
        &zone,
    )
    .await?;
    let servers = vec![
        Server::new("skydns", one.dns.port(), one.pid()),
        Server::new("skydns-2w", two.dns.port(), two.pid()),
        Server::new("skydns-unsigned", one.dns.port(), one.pid()),
        Server::new("skydns-2w-unsigned", two.dns.port(), two.pid()),
        Server::new("knot-onlinesign-1", knot1_port, knot1.pid),
        Server::new("knot-onlinesign", knot_d_port, knot_d.pid),
    ];
    for client in [&one.client, &two.client] {
        register_web(client, "10.0.0").await?;
        for i in 1..=API_SERVICES {
            client
                .add_service(
                    &format!("api-{i}"),
                    &skydns_tests::service(
                        "api",
                        "prod",
                        "east",
                        &format!("10.0.1.{i}"),
                        9000,
                        86_400,
                    ),
                )
                .await
                .with_context(|| format!("cannot register api-{i}"))?;
        }
    }
    for s in servers
        .iter()
        .filter(|s| !UNSIGNED.contains(&s.name.as_str()))
    {
        check_signed(s).await?;
    }
    let idle = rounds::memory(&servers);

    let dir = work.path().to_path_buf();
    knot::query_files(&dir, "api")?;
    let salt: u32 = rand::random();
    query_file(
        &dir.join("nx-unique.txt"),
        (0..UNIQUE_NAMES).map(|i| format!("n{i}-{salt:x}.prod.{DOMAIN} A")),
    )?;
    let samples = rounds::run(
        &servers,
        &QUERIES,
        args.runs.rounds,
        args.runs.seconds,
        |q, server, _| {
            let extra = match (UNSIGNED.contains(&server), q) {
                (false, _) => vec!["-D"],
                (true, "srv") => vec!["-e"],
                (true, _) => Vec::new(),
            };
            Ok((dir.join(format!("{q}.txt")), extra))
        },
    )
    .await?;
    let after = rounds::memory(&servers);

    let summary = rounds::summary(
        &samples,
        &QUERIES,
        &["skydns", "skydns-2w"],
        &["knot-onlinesign-1", "knot-onlinesign"],
    );
    let vs_unsigned = rounds::summary(&samples, &QUERIES, &["skydns", "skydns-2w"], &UNSIGNED);
    record.commands = vec![
        "dnssec-keygen -a ECDSAP256SHA256 -f KSK skydns.local".into(),
        format!(
            "target/release/skydns -dns 127.0.0.1:PORT -http 127.0.0.1:PORT {} -dnssec Kskydns.local.+013+TAG [-dns-workers 2]",
            ARGS.join(" ")
        ),
        format!(
            "knotd -c knot.conf   # {}",
            knot_conf.replace('\n', "; ")
        ),
        "dnsperf -s 127.0.0.1 -p PORT -l SECONDS -c 10 -T 2 -D -d a.txt|srv.txt|nx.txt|nx-unique.txt   # without -D (and -e for SRV) for the -unsigned rows; nx-unique.txt: n<i>-<salt>.prod.skydns.local A for i < 1,000,000".into(),
    ];
    drop((knot1, knot_d));
    let results = json!({
        "best": summary["best"],
        "medians": summary["medians"],
        "signed_vs_unsigned": vs_unsigned["best"],
        "memory": { "idle": idle, "after_runs": after },
        "runs": samples,
    });
    Ok((record, results))
}

/// Services behind the SRV row.
const API_SERVICES: u8 = 3;

/// Knot's records for what skydns answers for `api-1`…`api-3` registered as
/// `api.prod` on 10.0.1.1–3 port 9000 (weights split 100 three ways).
fn api_zone() -> String {
    (1..=API_SERVICES)
        .map(|i| {
            format!("api.prod\tIN\tSRV\t10 33 9000 api-{i}.{DOMAIN}.\napi-{i}\tIN\tA\t10.0.1.{i}\n")
        })
        .collect()
}

/// Checks that a server signs before it is measured: the A set with DO
/// comes with an RRSIG over it, and the SRV answer with its glue fits.
async fn check_signed(s: &Server) -> anyhow::Result<()> {
    let srv = ask_with_do(s, "api", RecordType::SRV).await?;
    let glue = count(&srv.additionals, RecordType::A);
    if srv.metadata.truncation || glue != usize::from(API_SERVICES) {
        bail!(
            "{}: SRV with DO: truncated {}, {glue} glue (want {API_SERVICES}, whole): {srv:?}",
            s.name,
            srv.metadata.truncation
        );
    }
    let msg = ask_with_do(s, "web", RecordType::A).await?;
    let (a, sigs) = (
        count(&msg.answers, RecordType::A),
        count(&msg.answers, RecordType::RRSIG),
    );
    if a != 10 || sigs != 1 {
        bail!("{}: {a} A and {sigs} RRSIG with DO (want 10 and 1)", s.name);
    }
    Ok(())
}

/// `<service>.prod.<domain>` asked of `s` with DO set.
async fn ask_with_do(
    s: &Server,
    service: &str,
    rtype: RecordType,
) -> anyhow::Result<hickory_proto::op::Message> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], s.port));
    udp_exchange(
        addr,
        &dnssec_query(&format!("{service}.prod.{DOMAIN}"), rtype),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{}: {e}", s.name))
}

fn count(records: &[hickory_proto::rr::Record], rtype: RecordType) -> usize {
    records.iter().filter(|r| r.record_type() == rtype).count()
}
