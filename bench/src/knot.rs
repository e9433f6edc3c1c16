//! Knot DNS as the authoritative reference: the records skydns answers for
//! the benchmark's 10 services, in a static zone, served by `knotd`.

use std::{fmt::Write as _, path::Path};

use anyhow::Context;

use crate::process::Daemon;

/// The zone both servers answer for.
pub(crate) const DOMAIN: &str = "skydns.local";

/// The zone file: what skydns answers for `web-1`…`web-10` registered as
/// `web.prod` on 10.0.0.1–10 port 8080 (A and SRV of `web.prod`, the SRV
/// targets with their addresses as glue, SOA and NS).
pub(crate) fn zone() -> String {
    let mut z = format!(
        "$ORIGIN {DOMAIN}.\n$TTL 86400\n@\t5\tIN\tSOA\tns1.{DOMAIN}. hostmaster.{DOMAIN}. 1 28800 7200 604800 5\n@\t\tIN\tNS\tns1.{DOMAIN}.\n"
    );
    for i in 1..=10 {
        let _ = writeln!(z, "web.prod\tIN\tA\t10.0.0.{i}");
    }
    for i in 1..=10 {
        let _ = writeln!(z, "web.prod\tIN\tSRV\t10 10 8080 web-{i}.{DOMAIN}.");
    }
    for i in 1..=10 {
        let _ = writeln!(z, "web-{i}\tIN\tA\t10.0.0.{i}");
    }
    z
}

/// How both authoritative benchmarks start skydns: the zone above, a dead
/// upstream (nothing is forwarded), start-up lines only.
pub(crate) const SKYDNS_ARGS: [&str; 6] = [
    "-domain",
    DOMAIN,
    "-nameserver",
    "127.0.0.1:9",
    "-log-level",
    "warn,skydns::server=info",
];

/// The authoritative loads' query files in `dir`, as both benchmarks ask:
/// `a.txt` (`web.prod A`), `srv.txt` (`<srv_owner>.prod SRV`), `nx.txt`
/// (`nothere.prod A`).
pub(crate) fn query_files(dir: &Path, srv_owner: &str) -> anyhow::Result<()> {
    use crate::dnsperf::query_file;
    query_file(&dir.join("a.txt"), [format!("web.prod.{DOMAIN} A")])?;
    query_file(
        &dir.join("srv.txt"),
        [format!("{srv_owner}.prod.{DOMAIN} SRV")],
    )?;
    query_file(&dir.join("nx.txt"), [format!("nothere.prod.{DOMAIN} A")])
}

/// How knotd serves the zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signing {
    /// As a plain zone.
    Off,
    /// Signed per answer by `mod-onlinesign` with an ECDSAP256SHA256 key
    /// Knot makes itself (single-type signing: one CSK, as skydns's key).
    Online,
}

/// knotd's configuration: listen on 127.0.0.1@`port`, `udp-workers` when
/// given (default: one per core), the zone from `dir`, nothing written back.
pub(crate) fn config(dir: &Path, port: u16, udp_workers: Option<u32>, signing: Signing) -> String {
    let d = dir.display();
    let workers = udp_workers.map_or_else(String::new, |w| format!("    udp-workers: {w}\n"));
    let (kasp, policy, module) = match signing {
        Signing::Off => (String::new(), "", ""),
        Signing::Online => (
            format!("    kasp-db: \"{d}/kasp\"\n"),
            "policy:\n  - id: csk\n    algorithm: ecdsap256sha256\n    single-type-signing: on\n\
mod-onlinesign:\n  - id: sign\n    policy: csk\n",
            "    module: mod-onlinesign/sign\n",
        ),
    };
    format!(
        "server:\n    rundir: \"{d}/run\"\n    listen: 127.0.0.1@{port}\n{workers}\
log:\n  - target: stderr\n    any: info\n\
database:\n    storage: \"{d}/db\"\n{kasp}{policy}\
template:\n  - id: default\n    storage: \"{d}\"\n    file: \"%s.zone\"\n    zonefile-sync: -1\n    journal-content: none\n\
zone:\n  - domain: {DOMAIN}\n{module}"
    )
}

/// Starts knotd in `dir` (created) on a free port serving `zone` (the
/// zone file's text); returns it, its port and its configuration text.
pub(crate) async fn start(
    dir: &Path,
    udp_workers: Option<u32>,
    signing: Signing,
    zone: &str,
) -> anyhow::Result<(Daemon, u16, String)> {
    for sub in ["run", "db"] {
        std::fs::create_dir_all(dir.join(sub)).context("cannot create knot's directories")?;
    }
    std::fs::write(dir.join(format!("{DOMAIN}.zone")), zone).context("cannot write the zone")?;
    let port = crate::process::free_port()?;
    let conf = config(dir, port, udp_workers, signing);
    let path = dir.join("knot.conf");
    std::fs::write(&path, &conf).context("cannot write knot.conf")?;
    let knotd = crate::tools::find("knotd").context("knotd is not installed")?;
    let path = path.display().to_string();
    let daemon = Daemon::start(
        &knotd,
        &["-c", &path],
        &["loaded, serial", "server started"],
    )
    .await?;
    Ok((daemon, port, conf))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_zone_has_the_answers_skydns_gives() {
        let z = super::zone();
        assert_eq!(z.matches("\tIN\tSRV\t").count(), 10);
        assert_eq!(z.matches("web.prod\tIN\tA\t").count(), 10);
        assert!(z.contains("web-10\tIN\tA\t10.0.0.10"));
    }
}
