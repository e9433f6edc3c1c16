//! Forwarding of names outside the domain to upstream nameservers.
//!
//! A caching forwarder in the spirit of CoreDNS `forward` + `cache`:
//! - every upstream query goes from a fresh, connected UDP socket (random
//!   source port) with a random ID; a reply must match the ID, the question
//!   and (by the connected socket) the source, else it is dropped (RFC 5452);
//! - a truncated reply is retried over TCP, and a client that asked over TCP
//!   is forwarded over TCP; the client's EDNS payload size is carried through;
//! - upstreams are tried in order, each within its timeout; a closed port
//!   (ICMP unreachable) fails at once; upstreams that keep failing are put at
//!   the back for a while, so one dead upstream does not cost every query a
//!   timeout; when all fail the client gets SERVFAIL — or, with
//!   `-cache-serve-stale`, the cached answer that expired less than that long
//!   ago (RFC 8767);
//! - identical queries in flight are sent upstream once ([`Coalescer`]);
//! - answers are cached ([`cache`]) with TTLs counted down, and with
//!   `-cache-prefetch` a popular answer is refreshed before it expires.

pub(crate) mod cache;
mod coalesce;
mod upstream;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use prometheus_client::metrics::{
    counter::Counter, family::Family, gauge::Gauge, histogram::Histogram,
};
use tokio::{sync::broadcast, task::JoinSet};

use cache::{Cache, CacheKey, Timed};
use coalesce::{Coalescer, Joined};
use upstream::{UpstreamQuery, tcp_exchange, udp_exchange};

/// Failures in a row after which an upstream is moved to the back.
const FAILS_BEFORE_BACKOFF: u32 = 2;
/// How long a failing upstream stays at the back unless a probe revives it.
const BACKOFF: Duration = Duration::from_secs(30);
/// How often upstreams at the back are probed.
const PROBE_EVERY: Duration = Duration::from_secs(2);
/// Largest UDP reply accepted from an upstream.
const MAX_UPSTREAM_UDP: usize = 4096;
/// Prefetches running at once; a popular answer due while they run is
/// refreshed by its next miss instead.
const MAX_PREFETCHES: usize = 64;

/// Forwarding settings.
#[derive(Debug, Clone)]
pub struct ForwardOptions {
    /// Upstream nameservers, in order of preference.
    pub upstreams: Vec<SocketAddr>,
    /// Time allowed to one upstream for one attempt.
    pub timeout: Duration,
    /// Most cached answers (0 disables the cache).
    pub cache_size: usize,
    /// Longest time an answer is cached, in seconds.
    pub cache_max_ttl: u32,
    /// How long past expiry a cached answer may be served while every
    /// upstream fails (RFC 8767); zero: never.
    pub serve_stale: Duration,
    /// Hits after which a cached answer is refreshed upstream in the last
    /// tenth of its life (0: never).
    pub prefetch: u64,
}

/// Forwarding metrics (registered by [`crate::metrics::Metrics`]).
#[derive(Debug, Clone)]
pub struct ForwardMetrics {
    /// Upstream attempts by upstream and outcome (`ok`, `timeout`, `error`, `truncated`).
    pub attempts: Family<UpstreamLabels, Counter>,
    /// Answers served from the cache.
    pub cache_hits: Counter,
    /// Queries that missed the cache.
    pub cache_misses: Counter,
    /// Entries in the cache.
    pub cache_size: Gauge,
    /// Expired answers served because every upstream failed (serve-stale).
    pub stale_answers: Counter,
    /// Popular answers refreshed before they expired.
    pub prefetches: Counter,
    /// Upstream round-trip time in seconds.
    pub latency: Histogram,
}

impl ForwardMetrics {
    /// Fresh metrics with the latency buckets used for upstream round trips.
    pub fn new() -> Self {
        Self {
            attempts: Family::default(),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            cache_size: Gauge::default(),
            stale_answers: Counter::default(),
            prefetches: Counter::default(),
            latency: Histogram::new([0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.0, 5.0]),
        }
    }
}

impl Default for ForwardMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Labels of upstream attempts.
#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct UpstreamLabels {
    /// `IP:port` of the upstream.
    pub upstream: String,
    /// `ok`, `timeout`, `refused`, `error`, `truncated`.
    pub outcome: String,
}

/// The answer to a forwarded query, shared between coalesced askers.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The upstream's reply (its ID is meaningless to the client).
    Answer(Answer),
    /// Every upstream failed.
    Failed,
}

/// A question to forward, as the client asked it.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    /// The question.
    pub query: &'a Query,
    /// Its question section as the client wrote it (one question): copied
    /// into the upstream query when given.
    pub wire: Option<&'a [u8]>,
    /// The client's EDNS.
    pub edns: Option<&'a Edns>,
    /// Whether the client asked over TCP.
    pub tcp: bool,
}

/// An answer to a forwarded question.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The answer, parsed.
    pub message: Arc<Message>,
    /// The upstream's reply as it came, when it is exactly `message` (no TTL
    /// was capped; not from the cache): its records can be sent on as they
    /// are, under the client's own header and question.
    pub wire: Option<Arc<[u8]>>,
}

impl Answer {
    fn parsed(message: Message) -> Self {
        Self {
            message: Arc::new(message),
            wire: None,
        }
    }
}

#[derive(Debug, Default)]
struct Health {
    fails: u32,
    down_until: Option<Instant>,
}

/// The attempt counters of one upstream, made once (not per query).
#[derive(Debug)]
struct Attempts {
    ok: Counter,
    timeout: Counter,
    refused: Counter,
    error: Counter,
    truncated: Counter,
}

impl Attempts {
    fn of(metrics: &ForwardMetrics, upstream: SocketAddr) -> Self {
        let counter = |outcome: &str| {
            metrics
                .attempts
                .get_or_create(&UpstreamLabels {
                    upstream: upstream.to_string(),
                    outcome: outcome.into(),
                })
                .clone()
        };
        Self {
            ok: counter("ok"),
            timeout: counter("timeout"),
            refused: counter("refused"),
            error: counter("error"),
            truncated: counter("truncated"),
        }
    }
}

/// The forwarder: shared by every DNS task.
#[derive(Debug)]
pub struct Forwarder {
    options: ForwardOptions,
    health: Vec<Mutex<Health>>,
    attempts: Vec<Attempts>,
    cache: Cache,
    coalescer: Coalescer,
    /// Refreshes of popular answers, owned here: dropped with the forwarder.
    prefetches: Mutex<JoinSet<()>>,
    metrics: ForwardMetrics,
}

impl Forwarder {
    /// A forwarder over `options.upstreams`.
    pub fn new(options: ForwardOptions, metrics: ForwardMetrics) -> Self {
        let health = options
            .upstreams
            .iter()
            .map(|_| Mutex::new(Health::default()))
            .collect();
        let attempts = options
            .upstreams
            .iter()
            .map(|&u| Attempts::of(&metrics, u))
            .collect();
        let cache = Cache::new(options.cache_size, options.cache_max_ttl, options.prefetch);
        Self {
            options,
            health,
            attempts,
            cache,
            coalescer: Coalescer::default(),
            prefetches: Mutex::new(JoinSet::new()),
            metrics,
        }
    }

    /// The upstreams.
    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.options.upstreams
    }

    /// The cached answer to `query` (asked with `edns`: DO picks the DNSSEC
    /// or the plain copy) without waiting: TTLs as stored, with
    /// when it was stored, how long a copy may be kept and whether it is due
    /// for a prefetch (see [`Cache::get_timed`]). Counts a cache hit; a miss
    /// is counted by [`Self::resolve`].
    pub(crate) fn cached(&self, query: &Query, edns: Option<&Edns>) -> Option<Timed> {
        let got = self
            .cache
            .get_timed(&CacheKey::of(query, dnssec_ok(edns)))?;
        self.metrics.cache_hits.inc();
        Some(got)
    }

    /// Forwarded answers served from the cache (to count wire-cache copies).
    pub fn cache_hits(&self) -> Counter {
        self.metrics.cache_hits.clone()
    }

    /// Resolves a question upstream (or from the cache).
    pub async fn resolve(&self, asked: Asked<'_>) -> Outcome {
        let key = CacheKey::of(asked.query, dnssec_ok(asked.edns));
        if let Some(msg) = self.cache.get(&key) {
            self.metrics.cache_hits.inc();
            return Outcome::Answer(Answer::parsed(msg));
        }
        self.metrics.cache_misses.inc();
        self.fetch(key, asked).await
    }

    /// Refreshes the cached answer to `query` upstream in the background (a
    /// prefetch), unless [`MAX_PREFETCHES`] are running. Runs on the calling
    /// thread's runtime; the task belongs to the forwarder.
    pub(crate) fn prefetch(self: &Arc<Self>, query: Query, edns: Option<Edns>) {
        let mut running = self
            .prefetches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while running.try_join_next().is_some() {}
        if running.len() >= MAX_PREFETCHES {
            return;
        }
        self.metrics.prefetches.inc();
        let forwarder = Arc::clone(self);
        running.spawn(async move {
            let key = CacheKey::of(&query, dnssec_ok(edns.as_ref()));
            let asked = Asked {
                query: &query,
                wire: None,
                edns: edns.as_ref(),
                tcp: false,
            };
            forwarder.fetch(key, asked).await;
        });
    }

    /// Asks the upstreams (once for every identical question in flight) and
    /// caches the answer; when all fail, the stale answer if serve-stale allows.
    async fn fetch(&self, key: CacheKey, asked: Asked<'_>) -> Outcome {
        // CANCEL-SAFETY: the leader's `Flight` removes the question when
        // this future is dropped; a waiter whose leader went away leads the
        // next attempt, and nobody waits past the forwarding deadline.
        let deadline = tokio::time::Instant::now() + self.deadline();
        loop {
            let flight = match self.coalescer.join((key.clone(), asked.tcp)) {
                Joined::Lead(flight) => flight,
                Joined::Wait(mut rx) => {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Ok(outcome)) => return outcome,
                        // The leader was dropped before it was done.
                        Ok(Err(broadcast::error::RecvError::Closed)) => continue,
                        Ok(Err(broadcast::error::RecvError::Lagged(_))) | Err(_) => {
                            return Outcome::Failed;
                        }
                    }
                }
            };
            let mut outcome = self.ask_upstreams(asked).await;
            match &outcome {
                Outcome::Answer(answer) => {
                    self.cache.insert(key, &answer.message);
                    self.metrics
                        .cache_size
                        .set(i64::try_from(self.cache.len()).unwrap_or(i64::MAX));
                }
                Outcome::Failed => {
                    if let Some(stale) = self.cache.get_stale(&key, self.options.serve_stale) {
                        tracing::warn!(name = %asked.query.name(), "every upstream failed: serving the expired cached answer (serve-stale)");
                        self.metrics.stale_answers.inc();
                        outcome = Outcome::Answer(Answer::parsed(stale));
                    }
                }
            }
            flight.finish(&outcome);
            return outcome;
        }
    }

    /// The longest one forwarded question can take: every upstream tried
    /// once, each within its timeout (UDP and a TCP retry share it).
    fn deadline(&self) -> Duration {
        let tries = u32::try_from(self.options.upstreams.len().max(1)).unwrap_or(u32::MAX);
        self.options.timeout.saturating_mul(tries)
    }

    /// Questions being forwarded now (leaders only; waiters share them).
    pub fn in_flight(&self) -> usize {
        self.coalescer.len()
    }

    /// Probes upstreams marked down every [`PROBE_EVERY`] with a `. NS`
    /// query; one that answers is put back in front. Runs until `token` fires.
    pub async fn run_probes(self: Arc<Self>, token: tokio_util::sync::CancellationToken) {
        let probe = Query::query(
            hickory_proto::rr::Name::root(),
            hickory_proto::rr::RecordType::NS,
        );
        let mut tick = tokio::time::interval(PROBE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = token.cancelled() => return,
                _ = tick.tick() => {}
            }
            let down: Vec<usize> = self
                .health
                .iter()
                .enumerate()
                .filter(|(_, h)| {
                    h.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .down_until
                        .is_some()
                })
                .map(|(i, _)| i)
                .collect();
            for i in down {
                let Some(&upstream) = self.options.upstreams.get(i) else {
                    continue;
                };
                let Ok(request) = UpstreamQuery::new(&probe, None, None) else {
                    continue;
                };
                let ok = matches!(
                    tokio::time::timeout(self.options.timeout, udp_exchange(upstream, &request))
                        .await,
                    Ok(Ok(_))
                );
                if ok {
                    tracing::info!(%upstream, "upstream answers again");
                    self.mark(i, true);
                }
            }
        }
    }

    /// Upstream indexes, healthy ones first.
    fn order(&self) -> Vec<usize> {
        let now = Instant::now();
        let is_down = |i: &usize| {
            self.health.get(*i).is_some_and(|h| {
                h.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .down_until
                    .is_some_and(|t| t > now)
            })
        };
        // A stable sort: each group keeps the configured order.
        let mut order: Vec<usize> = (0..self.health.len()).collect();
        order.sort_by_key(is_down);
        order
    }

    fn mark(&self, i: usize, ok: bool) {
        if let Some(h) = self.health.get(i) {
            let mut h = h.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if ok {
                *h = Health::default();
            } else {
                h.fails += 1;
                if h.fails >= FAILS_BEFORE_BACKOFF {
                    h.down_until = Some(Instant::now() + BACKOFF);
                }
            }
        }
    }

    async fn ask_upstreams(&self, asked: Asked<'_>) -> Outcome {
        let Asked {
            query,
            wire,
            edns,
            tcp,
        } = asked;
        let request = match UpstreamQuery::new(query, wire, edns) {
            Ok(request) => request,
            Err(e) => {
                tracing::warn!(error = %e, name = %query.name(), "cannot encode the upstream query");
                return Outcome::Failed;
            }
        };
        for i in self.order() {
            let (Some(&upstream), Some(attempts)) =
                (self.options.upstreams.get(i), self.attempts.get(i))
            else {
                continue;
            };
            let start = Instant::now();
            let result = tokio::time::timeout(
                self.options.timeout,
                self.exchange(upstream, attempts, &request, tcp),
            )
            .await;
            let (outcome, counter, answer) = match result {
                Err(_) => ("timeout", &attempts.timeout, None),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    ("refused", &attempts.refused, None)
                }
                Ok(Err(_)) => ("error", &attempts.error, None),
                Ok(Ok(reply)) => ("ok", &attempts.ok, Some(reply)),
            };
            counter.inc();
            match answer {
                Some((mut msg, wire)) if msg.metadata.response_code != ResponseCode::ServFail => {
                    // What clients see never outlives what the cache may keep.
                    let cap = self.options.cache_max_ttl;
                    let capped = cache::records(&msg).any(|r| r.ttl > cap);
                    if capped {
                        cache::set_ttls(&mut msg, |ttl| ttl.min(cap));
                    }
                    self.metrics.latency.observe(start.elapsed().as_secs_f64());
                    self.mark(i, true);
                    return Outcome::Answer(Answer {
                        message: Arc::new(msg),
                        wire: (!capped).then(|| Arc::from(wire)),
                    });
                }
                _ => {
                    tracing::warn!(%upstream, outcome, name = %query.name(), "forwarding failed, trying the next upstream");
                    self.mark(i, false);
                }
            }
        }
        Outcome::Failed
    }

    /// One exchange with one upstream: UDP (then TCP if truncated), or TCP.
    async fn exchange(
        &self,
        upstream: SocketAddr,
        attempts: &Attempts,
        request: &UpstreamQuery,
        tcp: bool,
    ) -> std::io::Result<(Message, Vec<u8>)> {
        if !tcp {
            let reply = udp_exchange(upstream, request).await?;
            if !reply.0.metadata.truncation {
                return Ok(reply);
            }
            attempts.truncated.inc();
        }
        tcp_exchange(upstream, request).await
    }
}

/// Whether the client set DO (asked for DNSSEC records).
fn dnssec_ok(edns: Option<&Edns>) -> bool {
    edns.is_some_and(|e| e.flags().dnssec_ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::{Name, RecordType};
    use tokio::net::UdpSocket;

    /// A forwarder to an upstream that reads and never answers.
    async fn silent_forwarder(timeout: Duration) -> (Forwarder, UdpSocket) {
        let silent = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let options = ForwardOptions {
            upstreams: vec![silent.local_addr().expect("addr")],
            timeout,
            cache_size: 0,
            cache_max_ttl: 60,
            serve_stale: Duration::ZERO,
            prefetch: 0,
        };
        (Forwarder::new(options, ForwardMetrics::new()), silent)
    }

    #[tokio::test]
    async fn a_leader_dropped_before_it_is_done_leaves_nothing_in_flight() {
        let (fwd, _silent) = silent_forwarder(Duration::from_secs(30)).await;
        let q = Query::query(Name::from_ascii("x.example.").expect("name"), RecordType::A);
        let leader = tokio::time::timeout(
            Duration::from_millis(100),
            fwd.resolve(Asked {
                query: &q,
                wire: None,
                edns: None,
                tcp: false,
            }),
        );
        assert!(leader.await.is_err(), "the upstream never answers");
        assert_eq!(fwd.in_flight(), 0, "the dropped leader's question is gone");
    }

    #[tokio::test]
    async fn a_waiter_whose_leader_is_dropped_leads_and_is_bounded_by_the_deadline() {
        let (fwd, _silent) = silent_forwarder(Duration::from_millis(300)).await;
        let q = Query::query(Name::from_ascii("y.example.").expect("name"), RecordType::A);
        let started = Instant::now();
        let (leader, waiter) = tokio::join!(
            tokio::time::timeout(
                Duration::from_millis(100),
                fwd.resolve(Asked {
                    query: &q,
                    wire: None,
                    edns: None,
                    tcp: false
                })
            ),
            fwd.resolve(Asked {
                query: &q,
                wire: None,
                edns: None,
                tcp: false
            }),
        );
        assert!(leader.is_err(), "the leader was dropped");
        assert!(matches!(waiter, Outcome::Failed));
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "the waiter took over and failed within the deadline, not forever: {took:?}"
        );
        assert_eq!(fwd.in_flight(), 0);
    }
}
