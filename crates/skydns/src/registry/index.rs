//! Secondary indexes that let a query find its services without scanning
//! unrelated ones.
//!
//! Every service is filed under each of its six name suffixes
//! (`production`, `web.production`, ...) and under each (position, label)
//! pair. A query without wildcards is one suffix look-up; a query with
//! wildcards starts from the smallest candidate set among its concrete
//! labels and filters. Only an all-wildcard query visits every service.
//!
//! LOCKING: the maps are `DashMap`s (sharded `RwLock`s). Guards are never held
//! across `.await` (nothing here is async) nor while taking another map's
//! guard, so there is no lock ordering to get wrong. Writers are serialised by
//! the registry; readers may see an entry half-filed for an instant, which is
//! harmless because the registry re-checks every candidate against its labels.

use std::{collections::HashSet, net::IpAddr, sync::Arc};

use dashmap::DashMap;

use super::name::{DEPTH, Pattern, ServiceLabels};

type Ids = HashSet<Arc<str>>;

/// The secondary indexes.
#[derive(Debug, Default)]
pub(crate) struct Index {
    by_suffix: DashMap<Box<str>, Ids>,
    by_label: DashMap<(u8, Box<str>), Ids>,
    by_ip: DashMap<IpAddr, Ids>,
}

impl Index {
    pub(crate) fn insert(&self, id: &Arc<str>, labels: &ServiceLabels, ip: Option<IpAddr>) {
        for depth in 1..=DEPTH {
            self.by_suffix
                .entry(labels.suffix(depth).into())
                .or_default()
                .insert(Arc::clone(id));
        }
        for (pos, label) in labels.0.iter().enumerate() {
            self.by_label
                .entry((pos_u8(pos), label.clone()))
                .or_default()
                .insert(Arc::clone(id));
        }
        if let Some(ip) = ip {
            self.by_ip.entry(ip).or_default().insert(Arc::clone(id));
        }
    }

    pub(crate) fn remove(&self, id: &str, labels: &ServiceLabels, ip: Option<IpAddr>) {
        for depth in 1..=DEPTH {
            let key: Box<str> = labels.suffix(depth).into();
            self.by_suffix.remove_if_mut(&key, |_, ids| {
                ids.remove(id);
                ids.is_empty()
            });
        }
        for (pos, label) in labels.0.iter().enumerate() {
            self.by_label
                .remove_if_mut(&(pos_u8(pos), label.clone()), |_, ids| {
                    ids.remove(id);
                    ids.is_empty()
                });
        }
        if let Some(ip) = ip {
            self.by_ip.remove_if_mut(&ip, |_, ids| {
                ids.remove(id);
                ids.is_empty()
            });
        }
    }

    /// Candidate ids for `pattern`, or `None` when the pattern names no label
    /// (every service is a candidate).
    pub(crate) fn candidates(&self, pattern: &Pattern) -> Option<Vec<Arc<str>>> {
        let concrete = pattern.concrete_suffix_len();
        if concrete == pattern.depth() && concrete > 0 {
            return Some(self.suffix_ids(&pattern.suffix(concrete)));
        }
        let mut best: Option<Vec<Arc<str>>> =
            (concrete > 0).then(|| self.suffix_ids(&pattern.suffix(concrete)));
        for pos in concrete..pattern.depth() {
            let Some(label) = pattern.at(pos) else {
                continue;
            };
            let key = (pos_u8(pos), Box::<str>::from(label));
            let size = self.by_label.get(&key).map_or(0, |ids| ids.len());
            if best.as_ref().is_none_or(|b| size < b.len()) {
                best = Some(
                    self.by_label
                        .get(&key)
                        .map(|ids| ids.iter().cloned().collect())
                        .unwrap_or_default(),
                );
            }
        }
        best
    }

    /// Ids of services whose `pos` label is exactly `label`.
    pub(crate) fn with_label(&self, pos: usize, label: &str) -> Vec<Arc<str>> {
        self.by_label
            .get(&(pos_u8(pos), Box::<str>::from(label)))
            .map(|ids| ids.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// True when some service's name ends in this suffix (the name exists,
    /// possibly with no record of the asked type).
    pub(crate) fn has_suffix(&self, suffix: &str) -> bool {
        self.by_suffix.contains_key(suffix)
    }

    /// Ids of services whose Host is `ip`.
    pub(crate) fn with_ip(&self, ip: IpAddr) -> Vec<Arc<str>> {
        self.by_ip
            .get(&ip)
            .map(|ids| ids.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn suffix_ids(&self, suffix: &str) -> Vec<Arc<str>> {
        self.by_suffix
            .get(suffix)
            .map(|ids| ids.iter().cloned().collect())
            .unwrap_or_default()
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
