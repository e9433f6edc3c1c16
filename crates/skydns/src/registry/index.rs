//! Secondary indexes that let a query find its services without scanning
//! unrelated ones.
//!
//! Every service is filed under its name suffixes of one and two labels
//! (`production`, `web.production`), under each (position, label) pair
//! of positions 1 to 3 (position 0 is the depth-1 suffix already), under its
//! uuid label when that differs from its uuid (otherwise the registry's own
//! map finds it), and under its address. A query without wildcards is one
//! look-up; a query with wildcards starts from the smallest candidate set
//! among its concrete labels and filters. Only a query naming no label visits
//! every service.
//!
//! MEMORY: the sets hold the entries themselves (`Arc<Entry>`, one pointer,
//! compared by address) rather than their uuids, and a set of one member (most
//! keys) is stored inline; a larger set is boxed so the common case stays two
//! words. With 100,000 services this index is most of the registry's
//! footprint after the entries.
//!
//! LOCKING: the maps are `DashMap`s (sharded `RwLock`s). Guards are never held
//! across `.await` (nothing here is async) nor while taking another map's
//! guard, so there is no lock ordering to get wrong. Writers are serialised by
//! the registry; readers may see an entry half-filed for an instant, which is
//! harmless because the registry re-checks every candidate against its labels.

use std::{
    borrow::Borrow,
    collections::HashSet,
    hash::{Hash, Hasher},
    net::IpAddr,
    sync::Arc,
};

use dashmap::DashMap;
use foldhash::fast::RandomState as Fast;

use super::{
    Entry,
    name::{Pattern, Shared, pos},
};

/// Deepest suffix indexed: `<service>.<environment>`. Deeper suffixes
/// (version, region, host, uuid) nearly always name a handful of services of
/// one `<service>.<environment>`, so filing them would cost a key and a set
/// per service for little: a deeper query starts from the smallest of its
/// depth-2 suffix and its version and region labels, and filters.
const SUFFIX_DEPTH: usize = 2;

/// Positions filed by label (service, version, region), for queries with
/// wildcards and deep ones.
const LABEL_DEPTH: usize = 4;

/// An index: key → the entries filed under it. Hashed with foldhash
/// (seeded per process) rather than SipHash: filing 100,000 services on a
/// restart spent a tenth of its instructions in SipHash.
type Map<K> = DashMap<K, Ids, Fast>;

/// An entry in a set, hashed and compared by address: the registry files
/// and unfiles the very `Arc` it holds.
#[derive(Debug, Clone)]
struct ById(Arc<Entry>);

impl PartialEq for ById {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for ById {}

impl Hash for ById {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::ptr::hash(Arc::as_ptr(&self.0), state);
    }
}

/// A set of entries, compact for the common case of a single member (a
/// unique suffix, a uuid, an address).
///
/// The set is boxed on purpose: it keeps `Ids` two words (a `HashSet` inline
/// is six), and most sets have one member. Its key hashes by address, never
/// by the entry's mutable fields (`mutable_key_type` does not apply).
#[allow(clippy::box_collection, clippy::mutable_key_type)]
#[derive(Debug)]
enum Ids {
    One(Arc<Entry>),
    Many(Box<HashSet<ById, Fast>>),
}

#[allow(clippy::mutable_key_type)]
impl Ids {
    fn insert(&mut self, entry: &Arc<Entry>) {
        match self {
            Self::One(existing) if Arc::ptr_eq(existing, entry) => {}
            Self::One(existing) => {
                let set = [ById(Arc::clone(existing)), ById(Arc::clone(entry))]
                    .into_iter()
                    .collect();
                *self = Self::Many(Box::new(set));
            }
            Self::Many(set) => {
                set.insert(ById(Arc::clone(entry)));
            }
        }
    }

    /// Removes `entry`; true when the set is now empty.
    fn remove(&mut self, entry: &Arc<Entry>) -> bool {
        match self {
            Self::One(existing) => Arc::ptr_eq(existing, entry),
            Self::Many(set) => {
                set.remove(&ById(Arc::clone(entry)));
                if set.len() == 1
                    && let Some(last) = set.iter().next().cloned()
                {
                    *self = Self::One(last.0);
                    return false;
                }
                if set.capacity() > 4 * set.len().max(4) {
                    set.shrink_to_fit();
                }
                set.is_empty()
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::One(_) => 1,
            Self::Many(set) => set.len(),
        }
    }

    fn to_vec(&self) -> Vec<Arc<Entry>> {
        match self {
            Self::One(e) => vec![Arc::clone(e)],
            Self::Many(set) => set.iter().map(|e| Arc::clone(&e.0)).collect(),
        }
    }
}

/// Files `entry` under `key`; the key is copied (`owned`) only when new.
fn add<K, Q>(map: &Map<K>, key: &Q, owned: impl FnOnce() -> K, entry: &Arc<Entry>)
where
    K: Hash + Eq + Borrow<Q>,
    Q: Hash + Eq + ?Sized,
{
    if let Some(mut ids) = map.get_mut(key) {
        ids.insert(entry);
        return;
    }
    map.entry(owned())
        .and_modify(|ids| ids.insert(entry))
        .or_insert_with(|| Ids::One(Arc::clone(entry)));
}

fn drop_id<K, Q>(map: &Map<K>, key: &Q, entry: &Arc<Entry>)
where
    K: Hash + Eq + Borrow<Q>,
    Q: Hash + Eq + ?Sized,
{
    map.remove_if_mut(key, |_, ids| ids.remove(entry));
}

fn ids_of<K, Q>(map: &Map<K>, key: &Q) -> Vec<Arc<Entry>>
where
    K: Hash + Eq + Borrow<Q>,
    Q: Hash + Eq + ?Sized,
{
    map.get(key).map(|ids| ids.to_vec()).unwrap_or_default()
}

/// True when the entry's uuid label is its uuid verbatim, so the registry's
/// uuid map finds it and the uuid index need not.
pub(crate) fn uuid_is_label(entry: &Entry) -> bool {
    *entry.service.uuid == *entry.labels.at(pos::UUID)
}

/// The secondary indexes.
#[derive(Debug, Default)]
pub(crate) struct Index {
    /// `web.production` → services under it (suffix depths 1 to 4).
    by_suffix: Map<Box<str>>,
    /// (position, label) → services, positions 1 to 3, for wildcard queries;
    /// the labels are the entries' own shared ones.
    by_label: Map<(u8, Shared)>,
    /// uuid label → services whose uuid differs from its label (uppercase,
    /// dots); the others are found by uuid in the registry's map.
    by_uuid: Map<Box<str>>,
    /// Host IPv4 address → services (PTR); keyed by the bare number so a
    /// slot is 24 bytes, not 40.
    by_v4: Map<u32>,
    /// Host IPv6 address → services (PTR).
    by_v6: Map<u128>,
}

impl Index {
    pub(crate) fn insert(&self, entry: &Arc<Entry>) {
        let labels = &entry.labels;
        for depth in 1..=SUFFIX_DEPTH {
            let suffix = labels.suffix(depth);
            add(
                &self.by_suffix,
                suffix.as_str(),
                || suffix.as_str().into(),
                entry,
            );
        }
        for (pos, label) in labels.shared().iter().enumerate().take(LABEL_DEPTH).skip(1) {
            let key = (pos_u8(pos), label.clone());
            add(&self.by_label, &key, || key.clone(), entry);
        }
        if !uuid_is_label(entry) {
            let uuid = labels.at(pos::UUID);
            add(&self.by_uuid, uuid, || uuid.into(), entry);
        }
        match entry.ip {
            Some(IpAddr::V4(ip)) => add(&self.by_v4, &ip.to_bits(), || ip.to_bits(), entry),
            Some(IpAddr::V6(ip)) => add(&self.by_v6, &ip.to_bits(), || ip.to_bits(), entry),
            None => {}
        }
    }

    pub(crate) fn remove(&self, entry: &Arc<Entry>) {
        let labels = &entry.labels;
        for depth in 1..=SUFFIX_DEPTH {
            drop_id(&self.by_suffix, labels.suffix(depth).as_str(), entry);
        }
        for (pos, label) in labels.shared().iter().enumerate().take(LABEL_DEPTH).skip(1) {
            drop_id(&self.by_label, &(pos_u8(pos), label.clone()), entry);
        }
        if !uuid_is_label(entry) {
            drop_id(&self.by_uuid, labels.at(pos::UUID), entry);
        }
        match entry.ip {
            Some(IpAddr::V4(ip)) => drop_id(&self.by_v4, &ip.to_bits(), entry),
            Some(IpAddr::V6(ip)) => drop_id(&self.by_v6, &ip.to_bits(), entry),
            None => {}
        }
    }

    /// How many services are filed under the label at `pos` (position 0 is
    /// the depth-1 suffix).
    fn count_at(&self, pos: usize, label: &str) -> (usize, Option<(u8, Shared)>) {
        if pos == pos::ENVIRONMENT {
            let size = self.by_suffix.get(label).map_or(0, |ids| ids.len());
            return (size, None);
        }
        let key = (pos_u8(pos), Shared::new(label));
        let size = self.by_label.get(&key).map_or(0, |ids| ids.len());
        (size, Some(key))
    }

    /// Candidate entries for `pattern` (a superset of the matches: the caller
    /// filters), or `None` when the pattern names no indexed label (every
    /// service is a candidate). Uuid patterns are the registry's to resolve.
    pub(crate) fn candidates(&self, pattern: &Pattern) -> Option<Vec<Arc<Entry>>> {
        let concrete = pattern.concrete_suffix_len().min(SUFFIX_DEPTH);
        if concrete == pattern.depth() && concrete > 0 {
            return Some(ids_of(&self.by_suffix, pattern.suffix(concrete).as_str()));
        }
        let mut best: Option<(usize, Vec<Arc<Entry>>)> = (concrete > 0).then(|| {
            let ids = ids_of(&self.by_suffix, pattern.suffix(concrete).as_str());
            (ids.len(), ids)
        });
        for pos in concrete..pattern.depth().min(LABEL_DEPTH) {
            let Some(label) = pattern.at(pos) else {
                continue;
            };
            let (size, key) = self.count_at(pos, label);
            if best.as_ref().is_none_or(|(b, _)| size < *b) {
                let ids = match key {
                    Some(key) => ids_of(&self.by_label, &key),
                    None => ids_of(&self.by_suffix, label),
                };
                best = Some((ids.len(), ids));
            }
        }
        best.map(|(_, ids)| ids)
    }

    /// Entries whose uuid label is `label` but whose uuid is spelled otherwise.
    pub(crate) fn with_uuid(&self, label: &str) -> Vec<Arc<Entry>> {
        ids_of(&self.by_uuid, label)
    }

    /// True when some service's name ends in this suffix (the name exists,
    /// possibly with no record of the asked type), whatever its deadline.
    pub(crate) fn has_suffix(&self, suffix: &str) -> bool {
        let suffix = suffix.trim_end_matches('.');
        if suffix.split('.').count() <= SUFFIX_DEPTH {
            return self.by_suffix.contains_key(suffix);
        }
        let Some(pattern) = Pattern::parse(suffix) else {
            return false;
        };
        match self.candidates(&pattern) {
            Some(found) => found.iter().any(|e| pattern.matches(&e.labels)),
            None => false,
        }
    }

    /// Entries whose Host is `ip`.
    pub(crate) fn with_ip(&self, ip: IpAddr) -> Vec<Arc<Entry>> {
        match ip {
            IpAddr::V4(ip) => ids_of(&self.by_v4, &ip.to_bits()),
            IpAddr::V6(ip) => ids_of(&self.by_v6, &ip.to_bits()),
        }
    }
}

fn pos_u8(pos: usize) -> u8 {
    u8::try_from(pos).unwrap_or(u8::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use skydns_api::Service;

    fn svc(uuid: &str, region: &str, name: &str) -> Arc<Entry> {
        let s = Service {
            uuid: uuid.into(),
            host: "h".into(),
            region: region.into(),
            version: "1".into(),
            name: name.into(),
            environment: "prod".into(),
            ..Service::default()
        };
        Arc::new(Entry::new_for_test(s, u64::MAX))
    }

    #[test]
    fn candidates_come_from_the_most_selective_label() {
        let idx = Index::default();
        let mut seven = None;
        for i in 0..50 {
            let e = svc(
                &format!("u{i}"),
                if i == 7 { "east" } else { "west" },
                "web",
            );
            idx.insert(&e);
            if i == 7 {
                seven = Some(e);
            }
        }
        let p = Pattern::parse("east.*.web.prod").expect("parses");
        let c = idx.candidates(&p).expect("has concrete labels");
        assert_eq!(c.len(), 1);
        let exact = idx
            .candidates(&Pattern::parse("web.prod").expect("parses"))
            .expect("some");
        assert_eq!(exact.len(), 50);
        let by_env = idx
            .candidates(&Pattern::parse("*.*.prod").expect("parses"))
            .expect("some");
        assert_eq!(by_env.len(), 50);
        assert!(
            idx.candidates(&Pattern::parse("*.*").expect("parses"))
                .is_none()
        );
        idx.remove(&seven.expect("filed"));
        assert!(idx.candidates(&p).expect("some").is_empty());
        assert!(!idx.has_suffix("east.1.web.prod"));
        assert!(
            idx.with_uuid("u8").is_empty(),
            "found by the registry's map"
        );
        let upper = svc("U.1", "west", "web");
        idx.insert(&upper);
        assert_eq!(idx.with_uuid("u-1").len(), 1);
        idx.remove(&upper);
        assert!(idx.with_uuid("u-1").is_empty());
    }
}
