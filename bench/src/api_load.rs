//! The REST API load: `clients` concurrent clients over loopback HTTP/1.1
//! until `count` requests are done or `seconds` have passed; requests/s,
//! p50 and p99 latency, errors.
//!
//! Each client owns one keep-alive connection and sends its requests on it
//! with hyper directly, on the benchmark's one thread: what the figures
//! measure is skydns, so the generator spends as little as it can per
//! request (a client through reqwest spends about as much CPU per request
//! as skydns does, and on a two-core machine that caps what can be
//! measured). Request bodies are the wire types of `skydns-api`.
//!
//! Modes: `register` (PUT of uuids `load-<i>`, names spread over
//! `svc<i % 1000>`), `heartbeat` (PATCH on uuids `load-<i % pool>`),
//! `delete` (DELETE of `load-<i>`). A request counts as done when its status
//! is the one the API documents for success (201, 200, 200).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode, client::conn::http1};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use skydns_api::{Heartbeat, Service};

/// What each request does.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Mode {
    Register,
    Heartbeat,
    Delete,
}

/// One load.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    /// Base URL of the API; must be a loopback address (`http://127.0.0.1:8080`).
    pub(crate) url: String,
    pub(crate) mode: Mode,
    /// Concurrent clients, one connection each.
    pub(crate) clients: usize,
    /// Total requests.
    pub(crate) count: u64,
    /// For heartbeats: how many registered uuids to cycle through.
    pub(crate) pool: u64,
    /// Stop after this many seconds even if `count` is not reached.
    pub(crate) seconds: u64,
    /// TTL of registrations and heartbeats, in seconds.
    pub(crate) ttl: u32,
}

/// What a load measured.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Outcome {
    pub(crate) mode: Mode,
    pub(crate) clients: usize,
    pub(crate) ok: u64,
    pub(crate) errors: u64,
    pub(crate) seconds: f64,
    pub(crate) rps: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
}

/// The `host:port` of a plain-HTTP loopback URL, or `None`.
fn loopback_authority(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("http://")?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let loopback = authority.starts_with("127.")
        || authority.starts_with("[::1]")
        || authority.starts_with("localhost");
    loopback.then_some(authority)
}

fn service(i: u64, ttl: u32) -> Service {
    Service {
        name: format!("svc{}", i % 1000),
        version: "1".into(),
        environment: "bench".into(),
        region: format!("r{}", i % 7),
        host: format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255),
        port: 8080,
        ttl,
        ..Service::default()
    }
}

/// The method, path and body of request `i`, and the status that means done.
fn request(args: &Spec, i: u64) -> anyhow::Result<(Method, String, Vec<u8>, StatusCode)> {
    Ok(match args.mode {
        Mode::Register => {
            let n = i;
            let body = serde_json::to_vec(&service(n, args.ttl))?;
            (
                Method::PUT,
                format!("/skydns/services/load-{n}"),
                body,
                StatusCode::CREATED,
            )
        }
        Mode::Heartbeat => {
            let n = i % args.pool.max(1);
            let body = serde_json::to_vec(&Heartbeat {
                ttl: args.ttl,
                owner: None,
            })?;
            (
                Method::PATCH,
                format!("/skydns/services/load-{n}"),
                body,
                StatusCode::OK,
            )
        }
        Mode::Delete => (
            Method::DELETE,
            format!("/skydns/services/load-{i}"),
            Vec::new(),
            StatusCode::OK,
        ),
    })
}

/// One client: a keep-alive connection sending requests until the shared
/// counter reaches `count` or the deadline passes. Returns the latencies of
/// the requests that succeeded; counts the others in `errors`.
async fn client(
    args: Arc<Spec>,
    authority: String,
    next: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    deadline: Instant,
) -> anyhow::Result<Vec<Duration>> {
    let stream = tokio::net::TcpStream::connect(&authority)
        .await
        .with_context(|| format!("cannot connect to {authority}"))?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(conn);
    let mut latencies = Vec::new();
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= args.count || Instant::now() >= deadline {
            break;
        }
        let (method, path, body, want) = request(&args, i)?;
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, authority.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))?;
        let t = Instant::now();
        let sent = tokio::time::timeout(Duration::from_secs(10), async {
            sender.ready().await?;
            let resp = sender.send_request(req).await?;
            let status = resp.status();
            resp.into_body().collect().await?;
            Ok::<_, hyper::Error>(status)
        })
        .await;
        match sent {
            Ok(Ok(status)) if status == want => latencies.push(t.elapsed()),
            Ok(Ok(_)) => {
                errors.fetch_add(1, Ordering::Relaxed);
            }
            // A broken or stalled connection: count it and stop this client.
            Ok(Err(_)) | Err(_) => {
                errors.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
    }
    drop(sender);
    driver.abort();
    Ok(latencies)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let last = sorted.len() - 1;
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let idx = ((last as f64) * p).round() as usize;
    sorted
        .get(idx.min(last))
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// Runs one load to its end.
pub(crate) async fn run(spec: Spec) -> anyhow::Result<Outcome> {
    let Some(authority) = loopback_authority(&spec.url).map(str::to_string) else {
        bail!(
            "refusing {}: the load generator talks plain HTTP to loopback only",
            spec.url
        );
    };
    let args = Arc::new(spec);
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.clients.max(1) {
        tasks.spawn(client(
            Arc::clone(&args),
            authority.clone(),
            Arc::clone(&next),
            Arc::clone(&errors),
            deadline,
        ));
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(done.context("a client task failed")??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    #[allow(clippy::cast_precision_loss)]
    let rps = all.len() as f64 / elapsed.max(f64::EPSILON);
    Ok(Outcome {
        mode: args.mode,
        clients: args.clients,
        ok: all.len() as u64,
        errors: errors.load(Ordering::Relaxed),
        seconds: elapsed,
        rps,
        p50_ms: percentile(&all, 0.50),
        p99_ms: percentile(&all, 0.99),
    })
}
