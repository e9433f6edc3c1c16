//! What the fuzz targets (`fuzz/`, built with cargo-fuzz) and their
//! regression tests need from inside the crate: the DNS answer path and the
//! API router over a registry, built as `start` builds them. Not a stable
//! API: hidden from the documentation.

use std::{
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
};

use crate::{
    Registry,
    api::{self, ApiLimits},
    config::default_allow_recursion,
    dns::{DnsHandler, DnsOptions, Zone, answer::TtlPolicy},
    metrics::Metrics,
    readiness::Readiness,
    registry::{LoadReport, RegistryError, RegistryOptions},
    store::Store,
};

pub use crate::dns::DnsHandler as Handler;
pub use crate::registry::{Pattern, name::to_label};

/// A registry on `store` serving `domain`, restored from it.
///
/// # Errors
/// When the store cannot be read at all.
pub async fn registry(
    store: Arc<dyn Store>,
    domain: &str,
) -> Result<(Registry, LoadReport), RegistryError> {
    let options = RegistryOptions {
        domain: domain.to_string(),
        no_expire_ttl: crate::config::defaults::NO_EXPIRE_TTL,
    };
    Registry::open(store, options, Arc::new(Metrics::new())).await
}

/// The DNS handler `start` builds over `registry` for `domain`, without a
/// forwarder (outside names are REFUSED).
///
/// # Errors
/// When `domain` is not a DNS name.
pub fn dns_handler(registry: Registry, domain: &str) -> Result<DnsHandler, String> {
    let zone = Zone::new(domain, IpAddr::V4(Ipv4Addr::LOCALHOST)).map_err(|e| e.to_string())?;
    let options = DnsOptions {
        zone,
        round_robin: true,
        ttl: TtlPolicy {
            no_expire_ttl: crate::config::defaults::NO_EXPIRE_TTL,
            max_ttl: 0,
        },
        allow_recursion: default_allow_recursion(),
        dnssec: None,
    };
    Ok(DnsHandler::new(
        registry,
        options,
        Arc::new(Metrics::new()),
        None,
    ))
}

/// The API router `start` builds over `registry`, ready, with no secret and
/// the default limits.
pub fn api_router(registry: Registry) -> axum::Router {
    api::router(
        registry,
        Arc::new(Metrics::new()),
        None,
        &ApiLimits::default(),
        Readiness::ready(),
    )
}
