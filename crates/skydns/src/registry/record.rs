//! A registered service as the registry holds it: the API's [`Service`]
//! fields, with the values that repeat across services (name, version,
//! environment, region) shared through an [`Interner`] and every string a
//! single allocation. With 100,000 services this is most of the registry's
//! memory, so it is kept compact; [`ServiceRecord::to_service`] gives the
//! API's type back.

use std::sync::Arc;

use skydns_api::Service;

use super::name::{Interner, Shared};

/// One registered service's fields (`uuid` set; `ttl` is the TTL last given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRecord {
    /// The registration's id (also the registry's map key, shared).
    pub uuid: Arc<str>,
    /// Service name (`Name`), shared.
    pub name: Shared,
    /// Version, shared.
    pub version: Shared,
    /// Environment, shared.
    pub environment: Shared,
    /// Region, shared.
    pub region: Shared,
    /// Host: an address or a hostname.
    pub host: Box<str>,
    /// Port.
    pub port: u16,
    /// Seconds the registration lives without a heartbeat, as last given.
    pub ttl: u32,
    /// Never expires.
    pub no_expire: bool,
    /// The agent that made the registration.
    pub owner: Option<Box<str>>,
}

impl ServiceRecord {
    /// The compact form of `service`, sharing repeated values via `interner`.
    pub fn new(service: Service, interner: &Interner) -> Self {
        Self {
            uuid: Arc::from(service.uuid),
            name: interner.get(&service.name),
            version: interner.get(&service.version),
            environment: interner.get(&service.environment),
            region: interner.get(&service.region),
            host: service.host.into_boxed_str(),
            port: service.port,
            ttl: service.ttl,
            no_expire: service.no_expire,
            owner: service.owner.map(String::into_boxed_str),
        }
    }

    /// The API's form (`Expires` unset).
    pub fn to_service(&self) -> Service {
        Service {
            uuid: self.uuid.to_string(),
            name: self.name.to_string(),
            version: self.version.to_string(),
            environment: self.environment.to_string(),
            region: self.region.to_string(),
            host: self.host.to_string(),
            port: self.port,
            ttl: self.ttl,
            expires: None,
            no_expire: self.no_expire,
            owner: self.owner.as_deref().map(str::to_string),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_shares_repeated_values() {
        let interner = Interner::default();
        let s = Service {
            uuid: "u1".into(),
            name: "web".into(),
            version: "1.0".into(),
            environment: "prod".into(),
            region: "east".into(),
            host: "10.0.0.1".into(),
            port: 80,
            ttl: 30,
            owner: Some("skydock@h".into()),
            ..Service::default()
        };
        let a = ServiceRecord::new(s.clone(), &interner);
        let b = ServiceRecord::new(
            Service {
                uuid: "u2".into(),
                ..s.clone()
            },
            &interner,
        );
        assert_eq!(a.to_service(), s);
        assert!(Shared::ptr_eq(&a.name, &b.name));
        assert!(Shared::ptr_eq(&a.region, &b.region));
    }
}
