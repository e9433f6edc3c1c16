//! Secondary indexes that let a query find its services without scanning
//! unrelated ones.
//!
//! Every service is filed under its name suffixes up to the region
//! (`production`, `web.production`, ...), under each (position, label) pair
//! of those four positions, and under its uuid. A query without wildcards is
//! one look-up; a query with wildcards starts from the smallest candidate set
//! among its concrete labels and filters. Only a query naming no label visits
//! every service. Sets of one id (most keys) are stored without a hash set.
//!
//! LOCKING: the maps are `DashMap`s (sharded `RwLock`s). Guards are never held
//! across `.await` (nothing here is async) nor while taking another map's
//! guard, so there is no lock ordering to get wrong. Writers are serialised by
//! the registry; readers may see an entry half-filed for an instant, which is
//! harmless because the registry re-checks every candidate against its labels.

use std::{collections::HashSet, net::IpAddr, sync::Arc};

use dashmap::DashMap;

use super::name::{Pattern, ServiceLabels, pos};

/// Deepest suffix indexed: `<region>.<version>.<service>.<environment>`.
/// Host and uuid labels are (nearly) unique per service, so indexing the two
/// deeper suffixes would cost two map entries per service for nothing: a
/// deeper query starts from its depth-4 suffix (or the uuid) and filters.
const SUFFIX_DEPTH: usize = 4;

/// A set of ids, compact for the common case of a single member (a unique
/// suffix, a uuid, an address).
#[derive(Debug)]
enum Ids {
    One(Arc<str>),
    Many(HashSet<Arc<str>>),
}

impl Ids {
    fn insert(&mut self, id: &Arc<str>) {
        match self {
            Self::One(existing) if **existing == **id => {}
            Self::One(existing) => {
                let set = HashSet::from([Arc::clone(existing), Arc::clone(id)]);
                *self = Self::Many(set);
            }
            Self::Many(set) => {
                set.insert(Arc::clone(id));
            }
        }
    }

    /// Removes `id`; true when the set is now empty.
    fn remove(&mut self, id: &str) -> bool {
        match self {
            Self::One(existing) => &**existing == id,
            Self::Many(set) => {
                set.remove(id);
                if set.len() == 1
                    && let Some(last) = set.iter().next().cloned()
                {
                    *self = Self::One(last);
                }
                set_is_empty(self)
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::One(_) => 1,
            Self::Many(set) => set.len(),
        }
    }

    fn to_vec(&self) -> Vec<Arc<str>> {
        match self {
            Self::One(id) => vec![Arc::clone(id)],
            Self::Many(set) => set.iter().cloned().collect(),
        }
    }
}

fn set_is_empty(ids: &Ids) -> bool {
    matches!(ids, Ids::Many(set) if set.is_empty())
}

fn add<K: std::hash::Hash + Eq>(map: &DashMap<K, Ids>, key: K, id: &Arc<str>) {
    map.entry(key)
        .and_modify(|ids| ids.insert(id))
        .or_insert_with(|| Ids::One(Arc::clone(id)));
}

fn drop_id<K: std::hash::Hash + Eq>(map: &DashMap<K, Ids>, key: &K, id: &str) {
    map.remove_if_mut(key, |_, ids| ids.remove(id));
}

fn ids_of<K: std::hash::Hash + Eq>(map: &DashMap<K, Ids>, key: &K) -> Vec<Arc<str>> {
    map.get(key).map(|ids| ids.to_vec()).unwrap_or_default()
}

/// The secondary indexes.
#[derive(Debug, Default)]
pub(crate) struct Index {
    /// `web.production` → services under it (suffix depths 1 to 4).
    by_suffix: DashMap<Box<str>, Ids>,
    /// (position, label) → services, positions 0 to 3, for wildcard queries.
    by_label: DashMap<(u8, Box<str>), Ids>,
    /// uuid label → services (`<uuid>.<domain>` and queries naming a uuid).
    by_uuid: DashMap<Box<str>, Ids>,
    /// Host address → services (PTR).
    by_ip: DashMap<IpAddr, Ids>,
}

impl Index {
    pub(crate) fn insert(&self, id: &Arc<str>, labels: &ServiceLabels, ip: Option<IpAddr>) {
        for depth in 1..=SUFFIX_DEPTH {
            add(&self.by_suffix, labels.suffix(depth).into(), id);
        }
        for (pos, label) in labels.0.iter().enumerate().take(SUFFIX_DEPTH) {
            add(&self.by_label, (pos_u8(pos), label.clone()), id);
        }
        add(&self.by_uuid, labels.at(pos::UUID).into(), id);
        if let Some(ip) = ip {
            add(&self.by_ip, ip, id);
        }
    }

    pub(crate) fn remove(&self, id: &str, labels: &ServiceLabels, ip: Option<IpAddr>) {
        for depth in 1..=SUFFIX_DEPTH {
            drop_id(&self.by_suffix, &labels.suffix(depth).into(), id);
        }
        for (pos, label) in labels.0.iter().enumerate().take(SUFFIX_DEPTH) {
            drop_id(&self.by_label, &(pos_u8(pos), label.clone()), id);
        }
        drop_id(&self.by_uuid, &labels.at(pos::UUID).into(), id);
        if let Some(ip) = ip {
            drop_id(&self.by_ip, &ip, id);
        }
    }

    /// Candidate ids for `pattern` (a superset of the matches: the caller
    /// filters), or `None` when the pattern names no indexed label (every
    /// service is a candidate).
    pub(crate) fn candidates(&self, pattern: &Pattern) -> Option<Vec<Arc<str>>> {
        let concrete = pattern.concrete_suffix_len().min(SUFFIX_DEPTH);
        if let Some(uuid) = pattern.at(pos::UUID) {
            return Some(ids_of(&self.by_uuid, &Box::<str>::from(uuid)));
        }
        if concrete == pattern.depth() && concrete > 0 {
            return Some(ids_of(&self.by_suffix, &pattern.suffix(concrete).into()));
        }
        let mut best: Option<Vec<Arc<str>>> =
            (concrete > 0).then(|| ids_of(&self.by_suffix, &pattern.suffix(concrete).into()));
        for pos in concrete..pattern.depth().min(SUFFIX_DEPTH) {
            let Some(label) = pattern.at(pos) else {
                continue;
            };
            let key = (pos_u8(pos), Box::<str>::from(label));
            let size = self.by_label.get(&key).map_or(0, |ids| ids.len());
            if best.as_ref().is_none_or(|b| size < b.len()) {
                best = Some(ids_of(&self.by_label, &key));
            }
        }
        best
    }

    /// Ids of services whose uuid label is `label`.
    pub(crate) fn with_uuid(&self, label: &str) -> Vec<Arc<str>> {
        ids_of(&self.by_uuid, &Box::<str>::from(label))
    }

    /// True when some service's name ends in this suffix of at most four
    /// labels (the name exists, possibly with no record of the asked type).
    pub(crate) fn has_suffix(&self, suffix: &str) -> bool {
        self.by_suffix.contains_key(suffix)
    }

    /// Ids of services whose Host is `ip`.
    pub(crate) fn with_ip(&self, ip: IpAddr) -> Vec<Arc<str>> {
        ids_of(&self.by_ip, &ip)
    }
}

fn pos_u8(pos: usize) -> u8 {
    u8::try_from(pos).unwrap_or(u8::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(uuid: &str, region: &str, name: &str) -> ServiceLabels {
        ServiceLabels::new(uuid, "h", region, "1", name, "prod")
    }

    #[test]
    fn candidates_come_from_the_most_selective_label() {
        let idx = Index::default();
        for i in 0..50 {
            let id: Arc<str> = format!("u{i}").into();
            idx.insert(
                &id,
                &svc(&id, if i == 7 { "east" } else { "west" }, "web"),
                None,
            );
        }
        let p = Pattern::parse("east.*.web.prod").expect("parses");
        let c = idx.candidates(&p).expect("has concrete labels");
        assert_eq!(c.len(), 1);
        let exact = idx
            .candidates(&Pattern::parse("web.prod").expect("parses"))
            .expect("some");
        assert_eq!(exact.len(), 50);
        assert!(
            idx.candidates(&Pattern::parse("*.*").expect("parses"))
                .is_none()
        );
        idx.remove("u7", &svc("u7", "east", "web"), None);
        assert!(idx.candidates(&p).expect("some").is_empty());
        assert!(!idx.has_suffix("east.1.web.prod"));
    }
}
