//! Prometheus metrics, served as text at `/metrics`.
//!
//! One [`Metrics`] value is built in `run()` and shared (behind an `Arc`) by
//! the DNS handler, the registry and the API; nothing is global.

use crate::dns::forward::ForwardMetrics;
use dashmap::DashMap;
use hickory_proto::{op::ResponseCode, rr::RecordType};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// Labels of `skydns_dns_queries_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueryLabels {
    /// Query type (`A`, `SRV`, ...).
    pub qtype: String,
    /// Response code (`NoError`, `NXDomain`, ...).
    pub rcode: String,
}

/// Labels of `skydns_api_requests_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    /// Matched route (`/skydns/services/{uuid}`), or `unmatched`.
    pub route: &'static str,
    /// HTTP method.
    pub method: &'static str,
    /// HTTP status code.
    pub status: u16,
}

/// Every metric skydns exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// DNS queries answered, by type and response code.
    pub dns_queries: Family<QueryLabels, Counter>,
    /// Time to answer a DNS query, in seconds.
    pub dns_latency: Histogram,
    /// Services currently registered.
    pub services: Gauge,
    /// Services removed because their TTL ran out.
    pub expired: Counter,
    /// 1 while the store answers (always, but for etcd while unreachable).
    pub store_connected: Gauge,
    /// Callback deliveries that failed.
    pub callback_failures: Counter,
    /// Callback deliveries dropped because the delivery queue was full.
    pub callbacks_dropped: Counter,
    /// API requests, by route, method and status.
    pub api_requests: Family<ApiLabels, Counter>,
    /// Forwarding: upstream attempts, cache, latency.
    pub forward: ForwardMetrics,
    /// RRSIGs computed (`-dnssec`; signatures reused from the cache not counted).
    pub dnssec_signatures: Counter,
    /// `dns_queries` counters by numeric type and rcode, so counting a query
    /// formats no label strings once its pair has been seen.
    dns_counters: DashMap<(u16, u16), Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("skydns");
        let dns_queries = Family::<QueryLabels, Counter>::default();
        registry.register("dns_queries", "DNS queries answered", dns_queries.clone());
        let dns_latency = Histogram::new([
            0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.05, 0.25, 1.0, 5.0,
        ]);
        registry.register(
            "dns_latency_seconds",
            "Time to answer a DNS query",
            dns_latency.clone(),
        );
        let services = Gauge::default();
        registry.register(
            "registry_services",
            "Services currently registered",
            services.clone(),
        );
        let store_connected = Gauge::default();
        store_connected.set(1);
        registry.register(
            "store_connected",
            "1 while the store (etcd with -etcd) is reachable; 0 while DNS answers from the last index",
            store_connected.clone(),
        );
        let expired = Counter::default();
        registry.register(
            "registry_expired",
            "Services removed by TTL expiry",
            expired.clone(),
        );
        let callback_failures = Counter::default();
        registry.register(
            "callback_failures",
            "Callback deliveries that failed",
            callback_failures.clone(),
        );
        let callbacks_dropped = Counter::default();
        registry.register(
            "callbacks_dropped",
            "Callback deliveries dropped because the delivery queue was full",
            callbacks_dropped.clone(),
        );
        let api_requests = Family::<ApiLabels, Counter>::default();
        registry.register("api_requests", "HTTP API requests", api_requests.clone());
        let forward = ForwardMetrics::new();
        registry.register(
            "forward_attempts",
            "Upstream attempts by upstream and outcome",
            forward.attempts.clone(),
        );
        registry.register(
            "forward_cache_hits",
            "Forwarded queries answered from the cache",
            forward.cache_hits.clone(),
        );
        registry.register(
            "forward_cache_misses",
            "Forwarded queries that missed the cache",
            forward.cache_misses.clone(),
        );
        registry.register(
            "forward_stale_answers",
            "Expired cached answers served while every upstream failed (serve-stale)",
            forward.stale_answers.clone(),
        );
        registry.register(
            "forward_prefetches",
            "Popular cached answers refreshed upstream before they expired (prefetch)",
            forward.prefetches.clone(),
        );
        registry.register(
            "forward_cache_entries",
            "Answers held in the forwarding cache",
            forward.cache_size.clone(),
        );
        registry.register(
            "forward_upstream_latency_seconds",
            "Upstream round-trip time",
            forward.latency.clone(),
        );
        let dnssec_signatures = Counter::default();
        registry.register(
            "dnssec_signatures",
            "RRSIGs computed (not reused from the signature cache)",
            dnssec_signatures.clone(),
        );
        Self {
            registry,
            dnssec_signatures,
            dns_queries,
            dns_latency,
            services,
            expired,
            store_connected,
            callback_failures,
            callbacks_dropped,
            api_requests,
            forward,
            dns_counters: DashMap::new(),
        }
    }

    /// The `dns_queries` counter of `qtype` (`Unknown(0)`: no question) and
    /// `rcode`. Types outside a fixed list count as `other`, so garbage
    /// cannot grow the label set.
    pub fn dns_counter(&self, qtype: RecordType, rcode: ResponseCode) -> Counter {
        use RecordType::{
            A, AAAA, ANY, AXFR, CAA, CNAME, DNSKEY, DS, HTTPS, IXFR, MX, NS, PTR, SOA, SRV, SVCB,
            TXT,
        };
        let qtype = match qtype {
            A
            | AAAA
            | ANY
            | AXFR
            | CAA
            | CNAME
            | DNSKEY
            | DS
            | HTTPS
            | IXFR
            | MX
            | NS
            | PTR
            | SOA
            | SRV
            | SVCB
            | TXT
            | RecordType::Unknown(0) => qtype,
            _ => RecordType::Unknown(u16::MAX),
        };
        let key = (u16::from(qtype), u16::from(rcode));
        if let Some(counter) = self.dns_counters.get(&key) {
            return counter.clone();
        }
        let labels = QueryLabels {
            qtype: match qtype {
                RecordType::Unknown(0) => "none".to_string(),
                RecordType::Unknown(u16::MAX) => "other".to_string(),
                other => other.to_string(),
            },
            rcode: rcode.to_string(),
        };
        let counter = self.dns_queries.get_or_create(&labels).clone();
        self.dns_counters.insert(key, counter.clone());
        counter
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        out
    }
}
