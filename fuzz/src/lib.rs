//! Fixtures shared by the fuzz targets: a runtime, a registry holding a few
//! services on a `MemoryStore`, and the DNS handler the server builds over it.

use std::sync::Arc;

use skydns::{
    Registry,
    fuzzing::{self, Handler as DnsHandler},
    store::MemoryStore,
};
use skydns_api::Service;

/// The domain every fixture serves.
pub const DOMAIN: &str = "skydns.local";

/// A single-threaded runtime (the targets are single-threaded anyway).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime")
}

/// An empty registry on a `MemoryStore`, as `skydns` without `-data` has.
pub async fn empty_registry() -> Registry {
    let (registry, _) = fuzzing::registry(Arc::new(MemoryStore), DOMAIN)
        .await
        .expect("registry on a MemoryStore");
    registry
}

/// Services registered in the DNS fixture: IPv4, IPv6, a hostname, NoExpire,
/// two regions, dotted versions, mixed case.
pub fn fixture_services() -> Vec<(&'static str, Service)> {
    let svc = |name: &str, version: &str, env: &str, region: &str, host: &str, port: u16| Service {
        name: name.into(),
        version: version.into(),
        environment: env.into(),
        region: region.into(),
        host: host.into(),
        port,
        ttl: 3600,
        ..Service::default()
    };
    vec![
        (
            "1001",
            svc(
                "TestService",
                "1.0.0",
                "Production",
                "Test",
                "10.0.0.1",
                9000,
            ),
        ),
        (
            "1002",
            svc(
                "TestService",
                "1.0.0",
                "Production",
                "East",
                "10.0.0.2",
                9001,
            ),
        ),
        (
            "1003",
            svc("TestService", "2.0", "Dev", "East", "::1", 9002),
        ),
        (
            "web-1",
            svc("web", "v1", "production", "west", "web1.example.com", 80),
        ),
        (
            "ne",
            Service {
                no_expire: true,
                ttl: 0,
                ..svc("redis", "7", "production", "east", "192.168.0.7", 6379)
            },
        ),
    ]
}

/// A registry holding [`fixture_services`].
pub async fn fixture_registry() -> Registry {
    let registry = empty_registry().await;
    for (uuid, service) in fixture_services() {
        registry
            .register(uuid, service)
            .await
            .expect("fixture service registers");
    }
    registry
}

/// The DNS handler `skydns::start` builds, without a forwarder.
pub fn dns_handler(registry: Registry) -> DnsHandler {
    fuzzing::dns_handler(registry, DOMAIN).expect("the fixture domain is a DNS name")
}
