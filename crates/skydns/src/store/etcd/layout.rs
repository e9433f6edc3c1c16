//! Where records live in etcd and what their values hold: the SkyDNS2 /
//! CoreDNS layout, so CoreDNS's `etcd` plugin reads our names and we read
//! records written by SkyDNS2-era tools.
//!
//! - A record of `<uuid>.<host>.<region>.<version>.<name>.<env>.<domain>`
//!   is the key `<prefix>/` + the name's labels reversed, joined by `/`:
//!   `/skydns/local/skydns/dev/redis/1/east/1/0/0/10/<uuid>` for host
//!   10.0.0.1. Its value is JSON with CoreDNS's fields (`host`, `port`,
//!   `priority`, `weight`, `ttl`) and ours beside them under `skydns1`
//!   (a nested object, so Go's case-insensitive JSON decoding never mixes
//!   our `Host`/`TTL` with CoreDNS's `host`/`ttl`).
//! - A key without `skydns1` (written by etcdctl or SkyDNS2 tools) is read
//!   by position: the labels after the domain are environment, name,
//!   version, region; its uuid is derived from the key.
//! - Our own bookkeeping lives outside the domain's path, under
//!   `<prefix>/_skydns/`: `uuid/<uuid>` (one per uuid: the 409 rule across
//!   instances) and `fired/<uuid>/<incarnation>` (who removed a service, so
//!   callbacks fire once).
//!
//! Every prefix read or watched ends in `/`: `/skydns/local/skydns/` never
//! matches a sibling `/skydns/local/skydnsx` (SkyDNS2's etcd3 bug).

use serde::{Deserialize, Serialize};
use skydns_api::{Callback, Service};

use crate::{registry::name::to_label, store::StoredService};

/// SRV priority and weight written for CoreDNS (SkyDNS2's defaults).
const COREDNS_PRIORITY: u16 = 10;
const COREDNS_WEIGHT: u16 = 10;

/// The keys of one prefix and domain.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    /// `<prefix>/`: everything skydns reads or watches.
    root: String,
    /// `<prefix>/<domain reversed>/`: the records.
    zone: String,
    /// `<prefix>/_skydns/`: our bookkeeping.
    internal: String,
}

/// What a key under the root is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum KeyKind<'a> {
    /// A record; the labels after the domain, in key order.
    Record(Vec<&'a str>),
    /// A removal marker for `uuid`.
    Fired(&'a str),
    /// Anything else (another zone's records, uuid claims).
    Other,
}

impl Layout {
    /// The layout of `domain` under `prefix` (`/skydns`).
    pub(crate) fn new(prefix: &str, domain: &str) -> Self {
        let root = format!("{}/", prefix.trim_end_matches('/'));
        let mut zone = root.clone();
        for label in domain.trim_end_matches('.').rsplit('.') {
            zone.push_str(&label.to_ascii_lowercase());
            zone.push('/');
        }
        let internal = format!("{root}_skydns/");
        Self {
            root,
            zone,
            internal,
        }
    }

    /// `<prefix>/`, the watched range.
    pub(crate) fn root(&self) -> &str {
        &self.root
    }

    /// `<prefix>/<domain reversed>/`, the records.
    pub(crate) fn zone(&self) -> &str {
        &self.zone
    }

    /// The key of `service`'s record.
    pub(crate) fn record_key(&self, s: &Service) -> String {
        let host = s.host.trim_end_matches('.').to_ascii_lowercase();
        let mut key = self.zone.clone();
        for part in [&s.environment, &s.name, &s.version, &s.region] {
            key.push_str(&to_label(part));
            key.push('/');
        }
        for label in host.rsplit('.') {
            key.push_str(label);
            key.push('/');
        }
        key.push_str(&to_label(&s.uuid));
        key
    }

    /// The key that holds `uuid` for one registration at a time.
    pub(crate) fn uuid_key(&self, uuid: &str) -> String {
        format!("{}uuid/{uuid}", self.internal)
    }

    /// The marker saying the registration of `uuid` created at `created`
    /// (its etcd create revision) was removed by an instance, which fired
    /// its callbacks.
    pub(crate) fn fired_key(&self, uuid: &str, created: i64) -> String {
        format!("{}fired/{uuid}/{created}", self.internal)
    }

    /// What `key` is.
    pub(crate) fn kind<'a>(&self, key: &'a str) -> KeyKind<'a> {
        if let Some(rest) = key.strip_prefix(&self.zone) {
            return KeyKind::Record(rest.split('/').filter(|l| !l.is_empty()).collect());
        }
        if let Some(rest) = key.strip_prefix(&self.internal)
            && let Some(fired) = rest.strip_prefix("fired/")
            && let Some((uuid, _)) = fired.split_once('/')
        {
            return KeyKind::Fired(uuid);
        }
        KeyKind::Other
    }
}

/// A record's value.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Value {
    /// CoreDNS / SkyDNS2: the address or target name.
    #[serde(default)]
    pub(crate) host: String,
    /// CoreDNS / SkyDNS2: the port (SRV).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) port: u16,
    /// CoreDNS / SkyDNS2: SRV priority.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) priority: u16,
    /// CoreDNS / SkyDNS2: SRV weight.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) weight: u16,
    /// CoreDNS / SkyDNS2: the TTL to answer, in seconds (never a lease ID).
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub(crate) ttl: u32,
    /// Ours: the registration as the SkyDNS1 API knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) skydns1: Option<Ours>,
}

/// Our fields of a record.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Ours {
    /// The service as registered.
    #[serde(flatten)]
    pub(crate) service: Service,
    /// Callbacks to notify when it goes.
    #[serde(rename = "Callbacks", default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) callbacks: Vec<Callback>,
}

fn is_zero(n: &u16) -> bool {
    *n == 0
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

/// The value stored for `record`.
pub(crate) fn encode(record: &StoredService) -> Result<Vec<u8>, serde_json::Error> {
    let s = &record.service;
    let mut service = s.clone();
    service.expires = None;
    serde_json::to_vec(&Value {
        host: s.host.clone(),
        port: s.port,
        priority: COREDNS_PRIORITY,
        weight: COREDNS_WEIGHT,
        ttl: s.ttl,
        skydns1: Some(Ours {
            service,
            callbacks: record.callbacks.clone(),
        }),
    })
}

/// A record read back: ours (with its fields), or a foreign one read by
/// position. `default_ttl` is answered for a foreign record without `ttl`.
///
/// # Errors
/// A sentence saying why the value cannot be a service.
pub(crate) fn decode(
    key: &str,
    labels: &[&str],
    value: &[u8],
    default_ttl: u32,
) -> Result<StoredService, String> {
    let value: Value =
        serde_json::from_slice(value).map_err(|e| format!("value is not a record's JSON: {e}"))?;
    if let Some(ours) = value.skydns1 {
        return Ok(StoredService {
            service: ours.service,
            expires_ms: crate::store::LEASED,
            callbacks: ours.callbacks,
        });
    }
    let part = |i: usize| labels.get(i).map_or_else(String::new, |l| (*l).to_string());
    let service = Service {
        uuid: foreign_uuid(key),
        name: part(1),
        version: part(2),
        environment: part(0),
        region: part(3),
        host: value.host,
        port: value.port,
        ttl: if value.ttl == 0 {
            default_ttl
        } else {
            value.ttl
        },
        ..Service::default()
    };
    Ok(StoredService {
        service,
        expires_ms: crate::store::LEASED,
        callbacks: Vec::new(),
    })
}

/// A stable uuid for a record written by another tool: `etcd-` and the
/// FNV-1a hash of its key (the same on every instance, a valid label).
fn foreign_uuid(key: &str) -> String {
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("etcd-{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> Service {
        Service {
            uuid: "u1".into(),
            name: "Redis".into(),
            version: "1.0".into(),
            environment: "dev".into(),
            region: "east".into(),
            host: "10.0.0.1".into(),
            port: 6379,
            ttl: 30,
            ..Service::default()
        }
    }

    #[test]
    fn a_record_is_its_name_reversed_under_the_prefix() {
        let layout = Layout::new("/skydns/", "skydns.local.");
        assert_eq!(layout.root(), "/skydns/");
        assert_eq!(layout.zone(), "/skydns/local/skydns/");
        assert_eq!(
            layout.record_key(&service()),
            "/skydns/local/skydns/dev/redis/1-0/east/1/0/0/10/u1"
        );
        let key = layout.record_key(&service());
        assert_eq!(
            layout.kind(&key),
            KeyKind::Record(vec![
                "dev", "redis", "1-0", "east", "1", "0", "0", "10", "u1"
            ])
        );
        assert_eq!(layout.kind("/skydns/local/skydnsx/a"), KeyKind::Other);
        assert_eq!(layout.kind(&layout.uuid_key("u1")), KeyKind::Other);
        assert_eq!(
            layout.kind(&layout.fired_key("u1", 7)),
            KeyKind::Fired("u1")
        );
    }

    #[test]
    fn our_value_carries_coredns_fields_and_ours_and_reads_back() {
        let record = StoredService {
            service: service(),
            expires_ms: 5,
            callbacks: vec![Callback {
                uuid: "cb".into(),
                reply: "127.0.0.1".into(),
                port: 9,
                ..Callback::default()
            }],
        };
        let bytes = encode(&record).expect("encode");
        let json: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(json["host"], "10.0.0.1");
        assert_eq!(json["port"], 6379);
        assert_eq!(json["ttl"], 30);
        assert_eq!(json["priority"], 10);
        assert_eq!(json["skydns1"]["Name"], "Redis");
        let back = decode("k", &[], &bytes, 3600).expect("decode");
        assert_eq!(back.service, record.service);
        assert_eq!(back.callbacks, record.callbacks);
    }

    #[test]
    fn a_foreign_record_is_read_by_position_with_a_stable_uuid() {
        let layout = Layout::new("/skydns", "skydns.local");
        let key = "/skydns/local/skydns/prod/db";
        let KeyKind::Record(labels) = layout.kind(key) else {
            panic!("a record");
        };
        let r = decode(key, &labels, br#"{"host":"10.0.0.5","port":5432}"#, 3600).expect("read");
        assert_eq!(r.service.environment, "prod");
        assert_eq!(r.service.name, "db");
        assert_eq!(r.service.host, "10.0.0.5");
        assert_eq!(r.service.ttl, 3600, "no ttl: the default, never a lease");
        let again = decode(
            key,
            &labels,
            br#"{"host":"10.0.0.6","port":1,"ttl":60}"#,
            3600,
        )
        .expect("read");
        assert_eq!(again.service.uuid, r.service.uuid, "same key, same uuid");
        assert_eq!(again.service.ttl, 60);
        assert!(decode(key, &labels, b"not json", 3600).is_err());
    }
}
