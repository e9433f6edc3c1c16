//! `bench propagation`: how long a container takes to appear in DNS after
//! `docker start` returns, and to disappear after `docker stop -t 1` is
//! issued. Release skydns (memory store, upstream 127.0.0.1:9) and skydock
//! on loopback, the real Docker engine, the local busybox test image (never
//! pulled), containers one after the other; p50/p99 of both.
//!
//! Per container: `docker create` (not timed), `docker start`, then an A
//! query for `<container>.busybox.<env>.skydns.local` over UDP every 10 ms
//! until it answers the container's address; 200 ms later `docker stop -t 1`
//! is issued and the name polled until NXDOMAIN. busybox httpd ignores
//! SIGTERM, so every stop takes its 1 s grace; skydock deregisters at the
//! kill event, at the start of that grace.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use hickory_proto::{
    op::{Message, ResponseCode},
    rr::RecordType,
};
use serde::Serialize;
use serde_json::{Value, json};
use skydns_tests::{
    SkyDns, a_records,
    docker::{BUSYBOX, Container, TEST_LABEL, cleanup_prefix, docker, ensure_test_images},
    query_message,
    skydock::SkyDock,
    udp_raw_from,
};

use crate::record::Record;

/// `bench propagation` options.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Containers started and stopped, one at a time.
    #[arg(long, default_value_t = 50)]
    containers: usize,
}

/// Time between two polls of the name.
const POLL: Duration = Duration::from_millis(10);
/// How long a name may take to appear or go before the run fails.
const WAIT: Duration = Duration::from_secs(30);
/// The bound of every docker command.
const DOCKER_LIMIT: Duration = Duration::from_secs(60);

/// The intervals of one container, in ms.
#[derive(Debug, Clone, Serialize)]
struct Sample {
    container: String,
    /// `docker start` returned → the name answers its address.
    appear_ms: f64,
    /// `docker start` issued → the name answers its address.
    appear_issued_ms: f64,
    /// `docker stop -t 1` issued → NXDOMAIN.
    gone_ms: f64,
    /// The `docker start` CLI round trip, for scale.
    start_cli_ms: f64,
    /// The `docker stop -t 1` CLI round trip, for scale.
    stop_cli_ms: f64,
}

/// Removes what is left of the run's containers, even on error.
struct Leftovers(String);

impl Drop for Leftovers {
    fn drop(&mut self) {
        let prefix = self.0.clone();
        // cleanup_prefix panics when docker fails: never while unwinding.
        let _ = std::panic::catch_unwind(move || cleanup_prefix(&prefix));
    }
}

/// Runs the benchmark; returns the record and the results.
pub(crate) async fn run(args: Args) -> anyhow::Result<(Record, Value)> {
    let engine = dock(&["version", "--format", "{{.Server.Version}}"])
        .await
        .context("no Docker engine at /var/run/docker.sock")?;
    let n = args.containers.max(1);
    let mut record = Record::start(
        "propagation",
        json!({ "containers": n, "poll_ms": 10, "stop": "-t 1" }),
    );
    record.tools.insert("docker-engine".into(), engine);
    // The image build and the binaries' build panic on failure: as errors.
    tokio::task::spawn_blocking(|| {
        ensure_test_images();
        (
            skydns_tests::binary("skydns"),
            skydns_tests::binary("skydock"),
        )
    })
    .await
    .map_err(|e| anyhow::anyhow!("cannot prepare the test image or the binaries: {e}"))?;

    let tag = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
    let prefix = format!("bench-prop-{tag}");
    let env = format!("b{tag}");
    let _leftovers = Leftovers(prefix.clone());
    let skydns = SkyDns::try_spawn_on(
        "127.0.0.1:0",
        "127.0.0.1:0",
        &["-nameserver", "127.0.0.1:9"],
    )
    .await
    .map_err(anyhow::Error::msg)?;
    let owner = format!("bench@{env}");
    let skydock = SkyDock::try_start(&skydns.url(), &["-environment", &env, "-owner", &owner])
        .await
        .map_err(anyhow::Error::msg)?;
    eprintln!("==> skydock ready (environment {env}); {n} containers, one at a time");

    let bound = Duration::from_secs(120 + 30 * n as u64);
    let samples = tokio::time::timeout(bound, measure(skydns.dns, &prefix, &env, n))
        .await
        .with_context(|| format!("the run took more than {} s", bound.as_secs()))??;
    drop(skydock);
    drop(skydns);

    record.commands = vec![
        "cargo build --release -p skydns -p skydock --locked; scripts/docker-test-image.sh".into(),
        "target/release/skydns -dns 127.0.0.1:PORT -http 127.0.0.1:HTTP -nameserver 127.0.0.1:9".into(),
        format!("SKYDOCK_LOG=info target/release/skydock -s /var/run/docker.sock -skydns http://127.0.0.1:HTTP -environment {env} -owner {owner}"),
        format!("docker create --name NAME --label {TEST_LABEL} {BUSYBOX}; docker start NAME   # then `NAME.busybox.{env}.skydns.local A` over UDP every 10 ms until it answers the container's address"),
        "sleep 0.2; docker stop -t 1 NAME   # meanwhile the same name every 10 ms until NXDOMAIN; then docker rm -f -v NAME".into(),
    ];
    let stat = |f: fn(&Sample) -> f64| percentiles(&samples.iter().map(f).collect::<Vec<_>>());
    let results = json!({
        "summary": {
            "containers": n,
            "appear_after_start_returned_ms": stat(|s| s.appear_ms),
            "appear_after_start_issued_ms": stat(|s| s.appear_issued_ms),
            "gone_after_stop_issued_ms": stat(|s| s.gone_ms),
            "start_cli_ms": stat(|s| s.start_cli_ms),
            "stop_cli_ms": stat(|s| s.stop_cli_ms),
        },
        "samples": samples,
    });
    Ok((record, results))
}

/// Starts and stops `n` containers one after the other.
async fn measure(
    dns: SocketAddr,
    prefix: &str,
    env: &str,
    n: usize,
) -> anyhow::Result<Vec<Sample>> {
    let mut samples = Vec::with_capacity(n);
    for i in 1..=n {
        let name = skydns_tests::docker::unique_name(prefix);
        let id = dock(&["create", "--name", &name, "--label", TEST_LABEL, BUSYBOX]).await?;
        let id = id.lines().last().unwrap_or_default().trim().to_string();
        let container = Container::adopt(&id, &name);
        let fqdn = format!("{name}.busybox.{env}.skydns.local.");

        let t0 = Instant::now();
        dock(&["start", &id]).await?;
        let t1 = Instant::now();
        let ip = dock(&[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            &id,
        ])
        .await?;
        let t2 = wait_for(dns, &fqdn, |rcode, addrs| {
            rcode == ResponseCode::NoError && addrs == std::slice::from_ref(&ip)
        })
        .await?;

        tokio::time::sleep(Duration::from_millis(200)).await;
        let t3 = Instant::now();
        let stop = tokio::process::Command::new("docker")
            .args(["stop", "-t", "1", &id])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("cannot run docker stop")?;
        let t4 = wait_for(dns, &fqdn, |rcode, _| rcode == ResponseCode::NXDomain).await?;
        let out = tokio::time::timeout(DOCKER_LIMIT, stop.wait_with_output())
            .await
            .context("docker stop did not return in time")??;
        if !out.status.success() {
            bail!(
                "docker stop {name} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let t5 = Instant::now();
        drop(container);

        let ms =
            |a: Instant, b: Instant| round(b.saturating_duration_since(a).as_secs_f64() * 1000.0);
        let s = Sample {
            container: name,
            appear_ms: ms(t1, t2),
            appear_issued_ms: ms(t0, t2),
            gone_ms: ms(t3, t4),
            start_cli_ms: ms(t0, t1),
            stop_cli_ms: ms(t3, t5),
        };
        eprintln!(
            "{i:3}/{n}: appear {:7.1} ms after start returned, gone {:7.1} ms after stop issued",
            s.appear_ms, s.gone_ms
        );
        samples.push(s);
    }
    Ok(samples)
}

/// `docker <args>`, bounded; its trimmed stdout.
async fn dock(args: &[&str]) -> anyhow::Result<String> {
    tokio::time::timeout(DOCKER_LIMIT, docker(args))
        .await
        .with_context(|| format!("docker {} did not return in time", args.join(" ")))?
        .map_err(anyhow::Error::msg)
}

/// Polls `name A` every 10 ms until `done(rcode, addresses)`; when it held.
async fn wait_for(
    dns: SocketAddr,
    name: &str,
    done: impl Fn(ResponseCode, &[String]) -> bool,
) -> anyhow::Result<Instant> {
    let start = Instant::now();
    let mut last = String::from("no answer");
    loop {
        let bytes = query_message(name, RecordType::A, None).to_vec()?;
        let reply = udp_raw_from("127.0.0.1:0", dns, &bytes, Duration::from_secs(1)).await;
        let now = Instant::now();
        if let Some(msg) = reply.and_then(|r| Message::from_vec(&r).ok()) {
            let addrs = a_records(&msg);
            if done(msg.metadata.response_code, &addrs) {
                return Ok(now);
            }
            last = format!("{:?} {addrs:?}", msg.metadata.response_code);
        }
        if now.duration_since(start) > WAIT {
            bail!("{name}: still {last} after {} s", WAIT.as_secs());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// p50, p99 (nearest rank), min and max of `values`, in ms.
pub(crate) fn percentiles(values: &[f64]) -> Value {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = |p: usize| {
        let k = (v.len() * p).div_ceil(100).max(1);
        v.get(k - 1).copied().unwrap_or(0.0)
    };
    json!({
        "p50": rank(50),
        "p99": rank(99),
        "min": v.first().copied().unwrap_or(0.0),
        "max": v.last().copied().unwrap_or(0.0),
    })
}

/// To 0.1 ms.
fn round(ms: f64) -> f64 {
    (ms * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::percentiles;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=50).map(f64::from).collect();
        let p = percentiles(&v);
        assert_eq!(
            (p["p50"].as_f64(), p["p99"].as_f64()),
            (Some(25.0), Some(50.0))
        );
        assert_eq!(
            (p["min"].as_f64(), p["max"].as_f64()),
            (Some(1.0), Some(50.0))
        );
        assert_eq!(percentiles(&[7.0])["p99"].as_f64(), Some(7.0));
    }
}
