//! DNSSEC (`-dnssec`): answers checked by real validators — BIND's `delv`
//! with the key as trust anchor, unbound validating through skydns (and
//! through a relay that alters one byte) — and by `kdig +dnssec`; keys made
//! by `dnssec-keygen` and Knot's `keymgr`.

use std::path::{Path, PathBuf};

use hickory_proto::{op::ResponseCode, rr::RecordType};
use skydns_tests::{
    SkyDns, service,
    stub::{Behavior, Stub},
    validator::{Tamper, Unbound, dnssec_keygen, tool},
};

const ZONE: &str = "skydns.local";
/// The Compact Answers OK EDNS flag (RFC 9824).
const COMPACT_OK: u16 = 0x4000;
const REDIS: &str = "redis.dev.skydns.local";

/// A key made by `dnssec-keygen -a <algorithm> -f KSK skydns.local` in
/// `dir`: its basename (what `-dnssec` takes).
fn keygen(dir: &Path, algorithm: &str) -> PathBuf {
    dnssec_keygen(dir, algorithm, ZONE)
}

/// The DNSKEY line of a BIND `.key` file: `skydns.local. IN DNSKEY 257 3 13 <key>`.
fn dnskey_line(base: &Path) -> String {
    let text = std::fs::read_to_string(format!("{}.key", base.display())).expect("read .key");
    text.lines()
        .find(|l| !l.starts_with(';') && l.contains("DNSKEY"))
        .expect("a DNSKEY line")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// A delv trust-anchors file for the DNSKEY `line` (of its owner's zone).
fn anchor_file(dir: &Path, line: &str) -> PathBuf {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let at = fields
        .iter()
        .position(|f| *f == "DNSKEY")
        .expect("DNSKEY field");
    let [flags, protocol, algorithm, key @ ..] = &fields[at + 1..] else {
        panic!("short DNSKEY line {line}");
    };
    let owner = fields.first().expect("owner");
    let path = dir.join(format!("anchor-{}.conf", rand::random::<u32>()));
    std::fs::write(
        &path,
        format!(
            "trust-anchors {{ {owner} static-key {flags} {protocol} {algorithm} \"{}\"; }};\n",
            key.concat()
        ),
    )
    .expect("write anchor");
    path
}

/// What `delv` says of `name`/`rtype` asked of `sky` with `anchor` trusted.
async fn delv(sky: &SkyDns, anchor: &Path, name: &str, rtype: &str) -> String {
    delv_under(sky, anchor, ZONE, name, rtype).await
}

/// [`delv`] with the trust anchor at `root`.
async fn delv_under(sky: &SkyDns, anchor: &Path, root: &str, name: &str, rtype: &str) -> String {
    let out = tokio::process::Command::new(tool("delv"))
        .arg(format!("@{}", sky.dns.ip()))
        .args(["-p", &sky.dns.port().to_string(), "-a"])
        .arg(anchor)
        .arg(format!("+root={root}"))
        .args([name, rtype])
        .output()
        .await
        .expect("run delv");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `kdig` output for `name`/`rtype` asked of `sky`, with `+dnssec` or not.
async fn kdig(sky: &SkyDns, name: &str, rtype: &str, dnssec: bool) -> String {
    let mut cmd = tokio::process::Command::new(tool("kdig"));
    cmd.arg(format!("@{}", sky.dns.ip()))
        .args(["-p", &sky.dns.port().to_string(), "+norec"]);
    if dnssec {
        cmd.arg("+dnssec");
    }
    let out = cmd.args([name, rtype]).output().await.expect("run kdig");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// skydns signing with `key`, two redis containers (IP hosts) and a web
/// service on a named host.
async fn signed_skydns(key: &Path) -> SkyDns {
    let sky = SkyDns::start(&["-dnssec", &key.display().to_string()]).await;
    for (uuid, host) in [("r1", "10.0.0.1"), ("r2", "10.0.0.2")] {
        sky.client
            .add_service(uuid, &service("redis", "dev", "east", host, 6379, 300))
            .await
            .expect("add");
    }
    sky.client
        .add_service(
            "w1",
            &service("web", "dev", "east", "web1.example.org", 80, 300),
        )
        .await
        .expect("add");
    sky
}

#[tokio::test]
async fn delv_fully_validates_answers_and_denials_with_either_algorithm() {
    let dir = tempfile::tempdir().expect("tempdir");
    for algorithm in ["ECDSAP256SHA256", "ED25519"] {
        let key = keygen(dir.path(), algorithm);
        let anchor = anchor_file(dir.path(), &dnskey_line(&key));
        let sky = signed_skydns(&key).await;
        for (name, rtype, want) in [
            (REDIS, "A", "; fully validated"),
            (REDIS, "SRV", "; fully validated"),
            ("r1.skydns.local", "A", "; fully validated"),
            ("*.dev.skydns.local", "A", "; fully validated"),
            ("east.*.redis.dev.skydns.local", "SRV", "; fully validated"),
            (ZONE, "SOA", "; fully validated"),
            (ZONE, "DNSKEY", "; fully validated"),
            (
                "nosuch.dev.skydns.local",
                "A",
                "; negative response, fully validated",
            ),
            (REDIS, "TXT", "; negative response, fully validated"),
            (ZONE, "TXT", "; negative response, fully validated"),
        ] {
            let said = delv(&sky, &anchor, name, rtype).await;
            assert!(said.contains(want), "{algorithm} {name} {rtype}: {said}");
        }

        // The check can fail: another key as trust anchor is not a proof.
        let other = keygen(dir.path(), algorithm);
        let wrong = anchor_file(dir.path(), &dnskey_line(&other));
        let said = delv(&sky, &wrong, REDIS, "A").await;
        assert!(!said.contains("fully validated"), "{algorithm}: {said}");
    }
}

#[tokio::test]
async fn rrsigs_come_only_with_do_and_denial_is_compact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sky = signed_skydns(&keygen(dir.path(), "ECDSAP256SHA256")).await;

    let signed = kdig(&sky, REDIS, "SRV", true).await;
    let rrsigs: Vec<&str> = signed.lines().filter(|l| l.contains("RRSIG")).collect();
    assert!(
        rrsigs.iter().any(|l| l.contains("RRSIG\tSRV")),
        "SRV signed: {signed}"
    );
    assert!(
        rrsigs
            .iter()
            .any(|l| l.starts_with("r1.skydns.local.") && l.contains("RRSIG\tA")),
        "the glue A in the additional section is signed: {signed}"
    );
    assert!(signed.contains("flags: do"), "DO echoed: {signed}");
    let plain = kdig(&sky, REDIS, "SRV", false).await;
    assert!(plain.contains("SRV"), "{plain}");
    assert!(!plain.contains("RRSIG"), "no RRSIG without DO: {plain}");

    // A name that does not exist: with DO, NOERROR and one NSEC at the name
    // (NXNAME = TYPE128); without, the plain NXDOMAIN.
    let signed = kdig(&sky, "nosuch.dev.skydns.local", "A", true).await;
    assert!(signed.contains("status: NOERROR"), "{signed}");
    assert!(
        signed.contains("nosuch.dev.skydns.local.")
            && signed.contains("NSEC\t\\000.nosuch.dev.skydns.local. RRSIG NSEC TYPE128"),
        "compact NSEC: {signed}"
    );
    let plain = kdig(&sky, "nosuch.dev.skydns.local", "A", false).await;
    assert!(plain.contains("status: NXDOMAIN"), "{plain}");
    assert!(!plain.contains("NSEC"), "{plain}");
    // With Compact Answers OK (the CO flag) the code says NXDOMAIN, the
    // proof is the same NSEC, and CO is echoed.
    let mut q = skydns_tests::dnssec_query("nosuch.dev.skydns.local.", RecordType::A);
    if let Some(edns) = q.edns.as_mut() {
        edns.flags_mut().z = COMPACT_OK;
    }
    let co = skydns_tests::udp_exchange(sky.dns, &q)
        .await
        .expect("answer");
    assert_eq!(co.metadata.response_code, ResponseCode::NXDomain, "{co:?}");
    assert!(
        co.authorities
            .iter()
            .any(|r| r.record_type() == RecordType::NSEC),
        "{co:?}"
    );
    assert_eq!(
        co.edns.as_ref().map(|e| e.flags().z & COMPACT_OK),
        Some(COMPACT_OK)
    );

    // A name without the type asked: the NSEC lists what it has.
    let nodata = kdig(&sky, REDIS, "TXT", true).await;
    assert!(
        nodata.contains("NSEC\t\\000.redis.dev.skydns.local. A SRV RRSIG NSEC"),
        "{nodata}"
    );
    // The key at the apex, signed only for DO.
    let dnskey = kdig(&sky, ZONE, "DNSKEY", false).await;
    assert!(
        dnskey.contains("DNSKEY\t257 3 13") && !dnskey.contains("RRSIG"),
        "{dnskey}"
    );
}

#[tokio::test]
async fn unbound_validates_through_skydns_and_refuses_a_tampered_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = keygen(dir.path(), "ECDSAP256SHA256");
    let line = dnskey_line(&key);
    let sky = signed_skydns(&key).await;

    let unbound = Unbound::start(ZONE, &line, sky.dns).await;
    let msg = unbound.query(&format!("{REDIS}."), RecordType::A).await;
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError, "{msg:?}");
    assert!(msg.metadata.authentic_data, "AD: {msg:?}");
    assert_eq!(skydns_tests::a_records(&msg).len(), 2, "{msg:?}");
    let nx = unbound
        .query("nosuch.dev.skydns.local.", RecordType::A)
        .await;
    assert!(nx.metadata.authentic_data, "denial validated: {nx:?}");
    assert!(nx.answers.is_empty(), "{nx:?}");

    // One byte of 10.0.0.1 changed on the way: the signature no longer holds.
    let tamper = Tamper::start(sky.dns, vec![10, 0, 0, 1], vec![10, 0, 0, 99]).await;
    let fooled = Unbound::start(ZONE, &line, tamper.addr).await;
    let msg = fooled.query(&format!("{REDIS}."), RecordType::A).await;
    assert_eq!(
        msg.metadata.response_code,
        ResponseCode::ServFail,
        "tampered: {msg:?}"
    );
    // The relay alters only that answer: others through it still validate.
    let web = fooled.query(&format!("{ZONE}."), RecordType::SOA).await;
    assert!(web.metadata.authentic_data, "{web:?}");
}

/// `skydns_dnssec_signatures_total` from `/metrics`.
async fn signatures_made(sky: &SkyDns) -> u64 {
    let text = sky.metrics().await;
    text.lines()
        .find_map(|l| l.strip_prefix("skydns_dnssec_signatures_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no skydns_dnssec_signatures_total in {text}"))
}

#[tokio::test]
async fn a_heartbeat_re_signs_nothing_and_a_change_signs_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sky = signed_skydns(&keygen(dir.path(), "ED25519")).await;
    // Over TCP, so no copy from the response cache hides the signing path.
    let ask = || async {
        let msg = skydns_tests::dnssec_query(&format!("{REDIS}."), RecordType::A);
        skydns_tests::tcp_query(sky.dns, &msg).await.expect("query")
    };
    ask().await;
    let first = signatures_made(&sky).await;
    assert!(first >= 1, "{first}");
    ask().await;
    sky.client.heartbeat("r1", 300).await.expect("heartbeat");
    sky.client.heartbeat("r2", 300).await.expect("heartbeat");
    let msg = ask().await;
    assert_eq!(signatures_made(&sky).await, first, "nothing changed");
    assert_eq!(msg.answers.len(), 3, "two A and their RRSIG: {msg:?}");

    sky.client
        .add_service(
            "r3",
            &service("redis", "dev", "east", "10.0.0.3", 6379, 300),
        )
        .await
        .expect("add");
    let msg = ask().await;
    assert_eq!(signatures_made(&sky).await, first + 1, "the new set, once");
    ask().await;
    assert_eq!(signatures_made(&sky).await, first + 1);
    assert_eq!(msg.answers.len(), 4, "{msg:?}");
}

#[tokio::test]
async fn a_knot_keymgr_key_loads_and_validates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kasp = dir.path().join("kasp");
    std::fs::create_dir_all(&kasp).expect("mkdir");
    let keymgr = |args: &[&str]| {
        let out = std::process::Command::new(tool("keymgr"))
            .arg("-D")
            .arg(&kasp)
            .arg(format!("{ZONE}."))
            .args(args)
            .output()
            .expect("run keymgr");
        assert!(out.status.success(), "keymgr {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let id = keymgr(&[
        "generate",
        "algorithm=ecdsap256sha256",
        "ksk=yes",
        "zsk=yes",
    ]);
    let line = keymgr(&["dnskey", &id]);
    let pem = kasp.join("keys").join(format!("{id}.pem"));
    let sky = signed_skydns(&pem).await;
    let anchor = anchor_file(dir.path(), &line);
    let said = delv(&sky, &anchor, REDIS, "SRV").await;
    assert!(said.contains("; fully validated"), "{said}");
}

#[tokio::test]
async fn a_key_for_another_zone_or_a_missing_file_fails_the_start_in_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = keygen(dir.path(), "ECDSAP256SHA256");
    let key = key.display().to_string();
    for (args, want) in [
        (
            vec!["-domain", "example.org", "-dnssec", key.as_str()],
            "not for -domain example.org.",
        ),
        (vec!["-dnssec", "/nonexistent/Kx"], "No such file"),
    ] {
        let err = SkyDns::try_spawn_on("127.0.0.1:0", "127.0.0.1:0", &args)
            .await
            .err()
            .expect("refused");
        let last = err.trim_end().lines().last().unwrap_or_default();
        assert!(last.starts_with("skydns: cannot load -dnssec"), "{err}");
        assert!(last.contains(want), "{err}");
    }
}

#[tokio::test]
async fn forwarded_answers_are_cached_apart_for_do_and_plain_clients() {
    let stub = Stub::start("127.0.0.1:0", Behavior::Answer).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let key = keygen(dir.path(), "ECDSAP256SHA256").display().to_string();
    let sky = SkyDns::start(&["-nameserver", &stub.addr.to_string(), "-dnssec", &key]).await;
    for dnssec_ok in [false, true, false, true] {
        let msg = if dnssec_ok {
            skydns_tests::dnssec_query("www.example.org.", RecordType::A)
        } else {
            skydns_tests::query_message("www.example.org.", RecordType::A, Some(1232))
        };
        let reply = skydns_tests::udp_exchange(sky.dns, &msg)
            .await
            .expect("answer");
        assert_eq!(skydns_tests::a_records(&reply).len(), 1, "{reply:?}");
        assert_eq!(
            reply.edns.as_ref().map(|e| e.flags().dnssec_ok),
            Some(dnssec_ok),
            "DO echoed"
        );
        assert!(
            !reply.metadata.authoritative,
            "forwarded, not ours: {reply:?}"
        );
    }
    assert_eq!(stub.udp_queries(), 2, "one upstream query per DO value");
}

#[tokio::test]
async fn during_a_rollover_both_keys_are_published_and_either_anchor_validates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let old = keygen(dir.path(), "ECDSAP256SHA256");
    let new = keygen(dir.path(), "ED25519");
    let sky = SkyDns::start(&[
        "-dnssec",
        &old.display().to_string(),
        "-dnssec",
        &new.display().to_string(),
    ])
    .await;
    sky.client
        .add_service(
            "r1",
            &service("redis", "dev", "east", "10.0.0.1", 6379, 300),
        )
        .await
        .expect("add");
    let keys = kdig(&sky, ZONE, "DNSKEY", true).await;
    assert_eq!(keys.matches("\tDNSKEY\t").count(), 2, "{keys}");
    let answer = kdig(&sky, REDIS, "A", true).await;
    assert_eq!(
        answer.matches("RRSIG\tA").count(),
        2,
        "one per key: {answer}"
    );
    for key in [&old, &new] {
        let anchor = anchor_file(dir.path(), &dnskey_line(key));
        for (name, rtype, want) in [
            (REDIS, "A", "; fully validated"),
            (
                "nosuch.skydns.local",
                "A",
                "; negative response, fully validated",
            ),
        ] {
            let said = delv(&sky, &anchor, name, rtype).await;
            assert!(said.contains(want), "{} {name}: {said}", key.display());
        }
    }
}

#[tokio::test]
async fn a_signed_zone_forwarded_through_skydns_still_validates() {
    // Upstream: a skydns authoritative and signing for example.org. In
    // front: a skydns for skydns.local forwarding everything else to it.
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dnssec_keygen(dir.path(), "ECDSAP256SHA256", "example.org");
    let upstream = SkyDns::start(&[
        "-domain",
        "example.org",
        "-no-forward",
        "-dnssec",
        &key.display().to_string(),
    ])
    .await;
    upstream
        .client
        .add_service("db1", &service("db", "prod", "east", "10.0.9.1", 5432, 300))
        .await
        .expect("add");
    let front = SkyDns::start(&["-nameserver", &upstream.dns.to_string()]).await;
    let anchor = anchor_file(dir.path(), &dnskey_line(&key));
    for (name, rtype, want) in [
        ("db.prod.example.org", "A", "; fully validated"),
        ("db.prod.example.org", "SRV", "; fully validated"),
        (
            "nosuch.example.org",
            "A",
            "; negative response, fully validated",
        ),
    ] {
        let said = delv_under(&front, &anchor, "example.org", name, rtype).await;
        assert!(
            said.contains(want),
            "through the forwarder: {name} {rtype}: {said}"
        );
    }
}

#[tokio::test]
async fn a_signed_answer_too_big_for_udp_is_truncated_and_validates_over_tcp() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = keygen(dir.path(), "ECDSAP256SHA256");
    let sky = SkyDns::start(&["-dnssec", &key.display().to_string()]).await;
    for i in 1..=10 {
        sky.client
            .add_service(
                &format!("big{i}"),
                &service("big", "dev", "east", &format!("10.0.3.{i}"), 80, 300),
            )
            .await
            .expect("add");
    }
    // 10 SRV, 10 glue A and 11 RRSIGs are more than 1232 bytes.
    let q = skydns_tests::dnssec_query("big.dev.skydns.local.", RecordType::SRV);
    let udp = skydns_tests::udp_exchange(sky.dns, &q).await.expect("udp");
    assert!(udp.metadata.truncation, "TC over UDP: {udp:?}");
    let tcp = skydns_tests::tcp_query(sky.dns, &q).await.expect("tcp");
    assert!(!tcp.metadata.truncation);
    let count = |t| {
        tcp.additionals
            .iter()
            .filter(|r| r.record_type() == t)
            .count()
    };
    assert_eq!(
        (count(RecordType::A), count(RecordType::RRSIG)),
        (10, 10),
        "every glue A signed over TCP: {tcp:?}"
    );
    // delv retries over TCP by itself and validates the whole answer.
    let anchor = anchor_file(dir.path(), &dnskey_line(&key));
    let said = delv(&sky, &anchor, "big.dev.skydns.local", "SRV").await;
    assert!(said.contains("; fully validated"), "{said}");
    assert_eq!(said.matches("\tSRV\t").count(), 10, "{said}");
}
