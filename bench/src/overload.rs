//! `bench overload`: the release skydns's DNS capacity measured with dnsperf
//! for a few seconds, then FACTOR× that rate offered (`dnsperf -Q`) while
//! its memory and fds are sampled every 0.5 s: it must shed load (lost or
//! REFUSED) rather than queue without bound, keep memory bounded (RSS never
//! more than 256 MiB over idle), and answer a normal query right after.
//!
//! On a 2-core machine dnsperf cannot send twice what skydns answers when
//! both share the cores, so by default skydns is pinned to core 0 beside
//! `--hogs` busy loops (it gets about a quarter of that core) and dnsperf to
//! core 1: capacity is measured under the same constraint, and the offered
//! load really is FACTOR× it.

use std::{
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use hickory_proto::{
    op::{Message, ResponseCode},
    rr::RecordType,
};
use serde::Serialize;
use serde_json::{Value, json};
use skydns_tests::{SkyDns, open_fds, query_message, service, udp_query, udp_raw_from};

use crate::{
    dnsperf::{Outcome, query_file, run_argv},
    process::Memory,
    record::Record,
};

/// `bench overload` options.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Seconds of the capacity run.
    #[arg(long, default_value_t = 5)]
    capacity_seconds: u64,
    /// Seconds at the offered rate.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// The offered rate, as a multiple of the capacity.
    #[arg(long, default_value_t = 2.0)]
    factor: f64,
    /// Queries dnsperf keeps outstanding (`-q`): lost ones hold a slot for
    /// the whole 1 s timeout, so it must be large for dnsperf to keep
    /// sending at the offered rate.
    #[arg(long, default_value_t = 60_000)]
    outstanding: u64,
    /// No CPU pinning: skydns and dnsperf share the cores.
    #[arg(long)]
    no_pin: bool,
    /// Busy loops beside skydns on core 0 when pinned.
    #[arg(long, default_value_t = 3)]
    hogs: u32,
}

/// RSS growth over idle that fails the run, in KiB.
const MAX_GROWTH_KIB: u64 = 256 * 1024;
const NAME: &str = "web.prod.skydns.local";

/// Runs the benchmark; returns the record and the results (`passed` says
/// whether it held).
pub(crate) async fn run(args: Args) -> anyhow::Result<(Record, Value)> {
    crate::tools::need(&[("dnsperf", "dnsperf")])?;
    let mut record = Record::start(
        "overload",
        json!({ "capacity_seconds": args.capacity_seconds, "seconds": args.seconds, "factor": args.factor,
                "outstanding": args.outstanding, "pin": !args.no_pin, "hogs": args.hogs }),
    );
    record.tool("dnsperf");
    let bound = args.capacity_seconds + args.seconds + 120;
    let results = tokio::time::timeout(
        Duration::from_secs(bound.max(300)),
        overload(&args, bound, &mut record),
    )
    .await
    .context("the overload run took too long")??;
    Ok((record, results))
}

async fn overload(args: &Args, bound: u64, record: &mut Record) -> anyhow::Result<Value> {
    let skydns = SkyDns::try_spawn_on(
        "127.0.0.1:0",
        "127.0.0.1:0",
        &["-no-forward", "-log-level", "warn,skydns::server=info"],
    )
    .await
    .map_err(anyhow::Error::msg)?;
    let pid = skydns.pid();
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let pin = !args.no_pin && crate::tools::find("taskset").is_some() && cpus >= 2;
    let mut hogs = Vec::new();
    let (wrapper, constraint): (&[&str], String) = if pin {
        let status = std::process::Command::new("taskset")
            .args(["-a", "-p", "-c", "0", &pid.to_string()])
            .stdout(Stdio::null())
            .status()
            .context("cannot run taskset")?;
        if !status.success() {
            bail!("taskset -a -p -c 0 {pid} failed");
        }
        // Each loop ends by itself after the run's bound, should this
        // process die without killing it.
        let busy = format!("end=$((SECONDS + {bound})); while ((SECONDS < end)); do :; done");
        for _ in 0..args.hogs {
            hogs.push(
                tokio::process::Command::new("taskset")
                    .args(["-c", "0", "bash", "-c", &busy])
                    .stdin(Stdio::null())
                    .kill_on_drop(true)
                    .spawn()
                    .context("cannot start a busy loop")?,
            );
        }
        let share = args.hogs + 1;
        (
            &["taskset", "-c", "1"],
            format!(
                "skydns pinned to core 0 beside {} busy loops (about 1/{share} of it), dnsperf pinned to core 1",
                args.hogs
            ),
        )
    } else {
        (&[], "none: skydns and dnsperf share the cores".to_string())
    };
    for i in 1..=10 {
        let s = service("web", "prod", "east", &format!("10.0.0.{i}"), 80, 3600);
        skydns.client.add_service(&format!("web{i}"), &s).await?;
    }
    let check = udp_query(skydns.dns, NAME, RecordType::A)
        .await
        .map_err(anyhow::Error::msg)?;
    if check.metadata.response_code != ResponseCode::NoError || check.answers.len() != 10 {
        bail!(
            "skydns does not answer {NAME} with 10 addresses: {:?}",
            check.metadata.response_code
        );
    }
    let (mem_idle, fds_idle) = (Memory::of(pid), open_fds(pid).unwrap_or(0));
    let work = tempfile::tempdir()?;
    let queries = work.path().join("q.txt");
    query_file(&queries, [format!("{NAME} A")])?;
    let (port, q) = (skydns.dns.port(), queries.display().to_string());
    // `dnsperf -s 127.0.0.1 -p PORT -d q.txt -l SECONDS -c 10 -T 2 EXTRA`.
    let argv = |seconds: u64, extra: &str| -> Vec<String> {
        format!("-s 127.0.0.1 -p {port} -d {q} -l {seconds} -c 10 -T 2 {extra}")
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    let limit = |seconds: u64| Duration::from_secs(seconds + 30);

    eprintln!(
        "==> capacity: dnsperf -l {} -c 10 -T 2 (CPU: {constraint})",
        args.capacity_seconds
    );
    let cap_argv = argv(args.capacity_seconds, "-q 200");
    let (capacity, _) = run_argv(wrapper, &cap_argv, pid, limit(args.capacity_seconds)).await?;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let rate = (capacity.qps.floor() * args.factor).round() as u64;
    eprintln!(
        "==> capacity {:.0} queries/s; offering {rate} queries/s for {} s",
        capacity.qps, args.seconds
    );

    let sampler = Sampler::start(pid, Duration::from_millis(500));
    let over_extra = format!("-Q {rate} -q {} -t 1", args.outstanding);
    let over_argv = argv(args.seconds, &over_extra);
    let (over, text) = run_argv(wrapper, &over_argv, pid, limit(args.seconds)).await?;
    let after = normal_query(skydns.dns).await?;
    let samples = sampler.points();
    drop(sampler);
    eprintln!("==> right after: {after}");
    let post_argv = argv(3, "-q 200");
    let (post, _) = run_argv(wrapper, &post_argv, pid, limit(3)).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (mem_end, fds_end) = (Memory::of(pid), open_fds(pid).unwrap_or(0));
    drop(hogs);

    let sent = sent(&text);
    let rss_max = samples
        .iter()
        .map(|p| p.rss_kib)
        .max()
        .unwrap_or(0)
        .max(over.server_peak.rss_kib);
    let fds_max = samples.iter().map(|p| p.fds).max().unwrap_or(0);
    let mut reasons = Vec::new();
    if !(after["rcode"] == "NoError" && after["answers"] == 10) {
        reasons.push("no normal answer right after".to_string());
    }
    if rss_max > mem_idle.rss_kib + MAX_GROWTH_KIB {
        reasons.push(format!(
            "RSS grew by more than 256 MiB ({} → {rss_max} KiB)",
            mem_idle.rss_kib
        ));
    }
    let per_second = |n: u64| round2(n as f64 / args.seconds.max(1) as f64);
    let (refused, servfail) = (
        code_count(&over.response_codes, "REFUSED"),
        code_count(&over.response_codes, "SERVFAIL"),
    );
    let verdict = if reasons.is_empty() {
        "passed"
    } else {
        "FAILED"
    };
    eprintln!("==> overload {verdict} {reasons:?}");

    let shell = |argv: &[String]| {
        format!(
            "{} dnsperf {}",
            wrapper.join(" "),
            argv.join(" ")
                .replace(&q, "q.txt")
                .replace(&format!("-p {port} "), "-p PORT ")
        )
        .trim()
        .to_string()
    };
    record.commands = vec!["cargo build --release -p skydns --locked".into(),
        "target/release/skydns -dns 127.0.0.1:PORT -http 127.0.0.1:HTTP -no-forward -log-level warn,skydns::server=info".into()];
    if pin {
        record.commands.push(format!(
            "taskset -a -p -c 0 PID; {} x: taskset -c 0 bash -c 'while :; do :; done' &",
            args.hogs
        ));
    }
    record.commands.extend([
        "PUT /skydns/services/web<i> {\"Name\":\"web\",\"Version\":\"1.0.0\",\"Environment\":\"prod\",\"Region\":\"east\",\"Host\":\"10.0.0.<i>\",\"Port\":80,\"TTL\":3600} for i in 1..10; q.txt: `web.prod.skydns.local A`".into(),
        shell(&cap_argv),
        shell(&over_argv),
        shell(&post_argv),
    ]);
    drop(skydns);
    Ok(json!({
        "passed": reasons.is_empty(),
        "reasons": reasons,
        "cpu": constraint,
        "capacity": capacity,
        "offered": { "rate": rate, "factor": args.factor, "outstanding": args.outstanding, "sent": sent,
                     "sent_per_second": per_second(sent), "vs_capacity": round2(per_second(sent) / capacity.qps.max(1.0)),
                     "above_capacity": per_second(sent) > capacity.qps },
        "overload": summary(&over),
        "shed": { "lost": over.lost, "refused": refused, "servfail": servfail,
                  "fraction": round2((over.lost + refused) as f64 / sent.max(1) as f64) },
        "right_after": after,
        "capacity_after": summary(&post),
        "memory": { "idle": mem_idle, "rss_max_kib": rss_max, "peak": over.server_peak, "end": mem_end },
        "fds": { "idle": fds_idle, "max": fds_max, "end": fds_end },
        "samples": samples,
    }))
}

/// A process's memory and open fds at `t` seconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Point {
    pub(crate) t: f64,
    pub(crate) rss_kib: u64,
    pub(crate) anon_kib: u64,
    pub(crate) fds: usize,
}

/// Samples a process's memory and open fds at a fixed period (the first
/// at once) until dropped.
pub(crate) struct Sampler {
    points: Arc<Mutex<Vec<Point>>>,
    start: Instant,
    pid: u32,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    pub(crate) fn start(pid: u32, every: Duration) -> Self {
        let points = Arc::new(Mutex::new(Vec::new()));
        let start = Instant::now();
        let shared = Arc::clone(&points);
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            loop {
                ticks.tick().await;
                push(&shared, start, pid);
            }
        });
        Self {
            points,
            start,
            pid,
            task,
        }
    }

    /// Takes one sample now.
    pub(crate) fn sample(&self) {
        push(&self.points, self.start, self.pid);
    }

    /// The samples so far.
    pub(crate) fn points(&self) -> Vec<Point> {
        self.points.lock().map(|p| p.clone()).unwrap_or_default()
    }
}

fn push(points: &Mutex<Vec<Point>>, start: Instant, pid: u32) {
    let m = Memory::of(pid);
    let t = (start.elapsed().as_secs_f64() * 10.0).round() / 10.0;
    let point = Point {
        t,
        rss_kib: m.rss_kib,
        anon_kib: m.anon_kib,
        fds: open_fds(pid).unwrap_or(0),
    };
    if let Ok(mut p) = points.lock() {
        p.push(point);
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The figures of a dnsperf run worth keeping here.
fn summary(o: &Outcome) -> Value {
    json!({ "qps": o.qps, "completed": o.completed, "lost": o.lost, "avg_latency_ms": o.avg_latency_ms,
            "response_codes": o.response_codes, "server_cpu_us_per_query": o.server_cpu_us_per_query })
}

/// `NAME A` once, waiting up to 2 s: rcode, answers and ms (rcode
/// `timeout` when none came).
async fn normal_query(dns: std::net::SocketAddr) -> anyhow::Result<Value> {
    let bytes = query_message(NAME, RecordType::A, None).to_vec()?;
    let t = Instant::now();
    let reply = udp_raw_from("127.0.0.1:0", dns, &bytes, Duration::from_secs(2)).await;
    let ms = round2(t.elapsed().as_secs_f64() * 1000.0);
    Ok(match reply.and_then(|r| Message::from_vec(&r).ok()) {
        Some(m) => {
            json!({ "rcode": format!("{:?}", m.metadata.response_code), "answers": m.answers.len(), "ms": ms })
        }
        None => json!({ "rcode": "timeout", "answers": 0, "ms": ms }),
    })
}

/// dnsperf's "Queries sent" figure.
pub(crate) fn sent(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.trim_start().strip_prefix("Queries sent:"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The count of `code` in dnsperf's "Response codes" list
/// (`NOERROR 10 (90.91%), REFUSED 1 (9.09%)`), 0 when absent.
pub(crate) fn code_count(codes: &str, code: &str) -> u64 {
    codes
        .split(',')
        .filter_map(|c| c.trim().strip_prefix(code))
        .find_map(|rest| rest.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// To two decimals.
fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::{code_count, sent};

    #[test]
    fn figures_are_read_from_dnsperf() {
        assert_eq!(
            sent("  Queries sent:         1204293\n  Queries completed: 1\n"),
            1_204_293
        );
        assert_eq!(sent("nothing"), 0);
        let codes = "NOERROR 10 (90.91%), REFUSED 1 (9.09%)";
        assert_eq!(
            (code_count(codes, "REFUSED"), code_count(codes, "NOERROR")),
            (1, 10)
        );
        assert_eq!(code_count(codes, "SERVFAIL"), 0);
    }
}
