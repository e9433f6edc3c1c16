//! Pure functions that turn registry entries into DNS records.
//!
//! Nothing here touches sockets or the clock: callers pass `now_ms`, so every
//! rule (region priorities, weights, glue, TTL countdown) is unit-tested.

use std::{net::IpAddr, sync::Arc};

use hickory_proto::rr::{
    Label, Name, RData, Record,
    rdata::{A, AAAA, PTR, SRV},
};

use crate::registry::{Entry, name::pos};

/// Where a record's TTL comes from. The response cache uses it to recount the
/// TTL of a stored answer at the moment it is copied out.
#[derive(Debug, Clone)]
pub(crate) enum TtlSource {
    /// A fixed TTL.
    Fixed,
    /// The remaining life of a registry entry ([`TtlPolicy::ttl`]).
    Entry(Arc<Entry>),
    /// An upstream answer's TTL as cached, less the whole seconds since it was cached.
    Upstream(u32),
}

/// A record and where its TTL comes from.
#[derive(Debug, Clone)]
pub(crate) struct Rec {
    /// The record as answered now.
    pub record: Record,
    /// Where its TTL comes from.
    pub source: TtlSource,
}

impl Rec {
    /// A record with a fixed TTL.
    pub(crate) fn fixed(record: Record) -> Self {
        Self {
            record,
            source: TtlSource::Fixed,
        }
    }

    fn from_entry(record: Record, entry: &Arc<Entry>) -> Self {
        Self {
            record,
            source: TtlSource::Entry(Arc::clone(entry)),
        }
    }
}

/// SRV priority of services in the region asked for (or of all, when no
/// region is asked).
pub(crate) const PRIORITY_PRIMARY: u16 = 10;
/// SRV priority of services in other regions, listed for fail-over.
pub(crate) const PRIORITY_FALLBACK: u16 = 20;

/// Per-answer settings.
#[derive(Debug, Clone, Copy)]
pub struct TtlPolicy {
    /// TTL answered for NoExpire services.
    pub no_expire_ttl: u32,
    /// Upper bound on every answer's TTL (0: none).
    pub max_ttl: u32,
}

impl TtlPolicy {
    /// The TTL to answer for `entry` at `now_ms`.
    pub fn ttl(&self, entry: &Entry, now_ms: u64) -> u32 {
        let ttl = entry.remaining_secs(now_ms).unwrap_or(self.no_expire_ttl);
        if self.max_ttl > 0 {
            ttl.min(self.max_ttl)
        } else {
            ttl
        }
    }

    /// The TTL answered for `entry` right after a heartbeat: its registered
    /// TTL (NoExpire: `no_expire_ttl`), capped as [`Self::ttl`] is.
    pub fn full(&self, entry: &Entry, now_ms: u64) -> u32 {
        let ttl = match entry.remaining_secs(now_ms) {
            Some(_) => entry.service.ttl,
            None => self.no_expire_ttl,
        };
        if self.max_ttl > 0 {
            ttl.min(self.max_ttl)
        } else {
            ttl
        }
    }
}

/// A/AAAA records (`v6` picks the family) for the entries whose Host is an IP.
pub(crate) fn address_records(
    owner: &Name,
    entries: &[Arc<Entry>],
    v6: bool,
    ttl: TtlPolicy,
    now_ms: u64,
) -> Vec<Rec> {
    // One record per address: a container registered once per port must not
    // be answered several times (a record set holds no duplicates).
    let mut seen = std::collections::HashSet::new();
    entries
        .iter()
        .filter_map(|e| {
            let ip = e.ip?;
            let rdata = match (ip, v6) {
                (IpAddr::V4(ip), false) => RData::A(A(ip)),
                (IpAddr::V6(ip), true) => RData::AAAA(AAAA(ip)),
                _ => return None,
            };
            seen.insert(ip).then(|| {
                Rec::from_entry(
                    Record::from_rdata(owner.clone(), ttl.ttl(e, now_ms), rdata),
                    e,
                )
            })
        })
        .collect()
}

/// The name an IP-host service is reached by: `<uuid>.<domain>.`.
pub(crate) fn uuid_name(entry: &Entry, origin: &Name) -> Option<Name> {
    let uuid = entry.labels.at(pos::UUID);
    // Registry labels are ASCII already; IDNA mapping only for what the
    // strict ASCII rules refuse (a leading `-`).
    match Label::from_ascii(uuid) {
        Ok(label) => origin.prepend_label(label).ok(),
        Err(_) => origin.prepend_label(uuid).ok(),
    }
}

/// SRV records for `primary` (priority 10) and `fallback` (priority 20), each
/// group splitting a weight of 100 evenly; plus the A/AAAA glue for targets
/// that are IP hosts.
pub(crate) fn srv_records(
    owner: &Name,
    origin: &Name,
    primary: &[Arc<Entry>],
    fallback: &[Arc<Entry>],
    ttl: TtlPolicy,
    now_ms: u64,
) -> (Vec<Rec>, Vec<Rec>) {
    let mut answers = Vec::with_capacity(primary.len() + fallback.len());
    let mut glue = Vec::new();
    for (group, priority) in [(primary, PRIORITY_PRIMARY), (fallback, PRIORITY_FALLBACK)] {
        let weight = u16::try_from(100 / group.len().max(1)).unwrap_or(0);
        for e in group {
            let t = ttl.ttl(e, now_ms);
            let target = match e.ip {
                Some(ip) => {
                    let Some(name) = uuid_name(e, origin) else {
                        continue;
                    };
                    let rdata = match ip {
                        IpAddr::V4(v4) => RData::A(A(v4)),
                        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
                    };
                    glue.push(Rec::from_entry(
                        Record::from_rdata(name.clone(), t, rdata),
                        e,
                    ));
                    name
                }
                None => {
                    match Name::from_ascii(format!("{}.", e.service.host.trim_end_matches('.'))) {
                        Ok(name) => name,
                        Err(_) => continue,
                    }
                }
            };
            let srv = SRV::new(priority, weight, e.service.port, target);
            answers.push(Rec::from_entry(
                Record::from_rdata(owner.clone(), t, RData::SRV(srv)),
                e,
            ));
        }
    }
    (answers, glue)
}

/// PTR records for a reverse name, pointing at each service's full name
/// (or `<uuid>.<domain>.` when a label of it is empty).
pub(crate) fn ptr_records(
    owner: &Name,
    origin: &Name,
    entries: &[Arc<Entry>],
    ttl: TtlPolicy,
    now_ms: u64,
) -> Vec<Rec> {
    entries
        .iter()
        .filter_map(|e| {
            let full = if e.labels.is_complete() {
                Name::from_ascii(format!("{}.{}", e.labels, origin)).ok()
            } else {
                None
            };
            let target = full.or_else(|| uuid_name(e, origin))?;
            Some(Rec::from_entry(
                Record::from_rdata(owner.clone(), ttl.ttl(e, now_ms), RData::PTR(PTR(target))),
                e,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use skydns_api::Service;

    fn entry(uuid: &str, host: &str, region: &str) -> Arc<Entry> {
        let s = Service {
            uuid: uuid.into(),
            name: "web".into(),
            version: "1.0".into(),
            environment: "prod".into(),
            region: region.into(),
            host: host.into(),
            port: 8080,
            ttl: 30,
            ..Default::default()
        };
        Arc::new(Entry::new_for_test(s, 1_000_000 + 30_000))
    }

    const TTL: TtlPolicy = TtlPolicy {
        no_expire_ttl: 3600,
        max_ttl: 0,
    };

    fn n(s: &str) -> Name {
        Name::from_ascii(s).expect("valid name")
    }

    #[test]
    fn uuid_names_take_ascii_labels_as_they_are_and_others_through_idna() {
        let origin = n("skydns.local.");
        let plain = entry("web-1_a", "10.0.0.1", "east");
        assert_eq!(uuid_name(&plain, &origin), Some(n("web-1_a.skydns.local.")));
        // A leading hyphen fails the strict ASCII rules: the name is what the
        // IDNA path makes of it, as before.
        let hyphen = entry("-x", "10.0.0.2", "east");
        assert_eq!(uuid_name(&hyphen, &origin), origin.prepend_label("-x").ok());
    }

    #[test]
    fn srv_priorities_and_weights_follow_regions() {
        let p = [
            entry("a", "10.0.0.1", "east"),
            entry("b", "web2.site.com", "east"),
        ];
        let f = [
            entry("c", "10.0.0.3", "west"),
            entry("d", "10.0.0.4", "west"),
            entry("e", "::1", "west"),
        ];
        let (srv, glue) = srv_records(&n("east.*.web.prod.d."), &n("d."), &p, &f, TTL, 1_000_000);
        let got: Vec<(u16, u16)> = srv
            .iter()
            .filter_map(|r| match &r.record.data {
                RData::SRV(s) => Some((s.priority, s.weight)),
                _ => None,
            })
            .collect();
        assert_eq!(got, [(10, 50), (10, 50), (20, 33), (20, 33), (20, 33)]);
        assert_eq!(glue.len(), 4, "one glue record per IP host");
        assert_eq!(glue[0].record.name, n("a.d."));
        assert!(matches!(&srv[1].record.data, RData::SRV(s) if s.target == n("web2.site.com.")));
    }

    #[test]
    fn one_address_record_per_ip() {
        let e = [
            entry("a", "10.0.0.1", ""),
            entry("b", "10.0.0.1", ""),
            entry("c", "10.0.0.2", ""),
        ];
        assert_eq!(
            address_records(&n("x."), &e, false, TTL, 1_000_000).len(),
            2
        );
    }

    #[test]
    fn ttl_counts_down_and_is_capped() {
        let e = entry("a", "10.0.0.1", "");
        let recs = address_records(
            &n("web.prod.d."),
            &[Arc::clone(&e)],
            false,
            TTL,
            1_000_000 + 10_500,
        );
        assert_eq!(recs[0].record.ttl, 20, "19.5 s left rounds up");
        let capped = TtlPolicy { max_ttl: 5, ..TTL };
        assert_eq!(capped.ttl(&e, 1_000_000), 5);
        assert!(
            address_records(&n("x."), &[e], true, TTL, 0).is_empty(),
            "no AAAA for a v4 host"
        );
    }

    #[test]
    fn ptr_points_at_the_full_name() {
        let e = entry("a", "10.0.0.1", "east");
        let recs = ptr_records(&n("1.0.0.10.in-addr.arpa."), &n("d."), &[e], TTL, 1_000_000);
        assert!(
            matches!(&recs[0].record.data, RData::PTR(p) if p.0 == n("a.10-0-0-1.east.1-0.web.prod.d."))
        );
        let no_region = entry("b", "10.0.0.2", "");
        let recs = ptr_records(&n("x."), &n("d."), &[no_region], TTL, 1_000_000);
        assert!(matches!(&recs[0].record.data, RData::PTR(p) if p.0 == n("b.d.")));
    }
}
