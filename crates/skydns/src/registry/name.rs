//! How services map to DNS names, and how a query name becomes a pattern.
//!
//! A service is named `<uuid>.<host>.<region>.<version>.<service>.<environment>`
//! under the domain. Positions are counted from the right (the environment is
//! position 0), because queries may name any suffix: `web.production` asks for
//! positions 0 and 1. Labels are compared in lowercase; dots in Version and
//! Host (and colons of IPv6 hosts) become hyphens.

use std::{
    collections::HashSet,
    fmt,
    sync::{Arc, Mutex},
};

/// Number of labels in a full service name under the domain.
pub const DEPTH: usize = 6;

/// Position of each field, counted from the right of the name.
pub mod pos {
    /// `<environment>`
    pub const ENVIRONMENT: usize = 0;
    /// `<service>` (the `Name` field)
    pub const SERVICE: usize = 1;
    /// `<version>`
    pub const VERSION: usize = 2;
    /// `<region>`
    pub const REGION: usize = 3;
    /// `<host>`
    pub const HOST: usize = 4;
    /// `<uuid>`
    pub const UUID: usize = 5;
}

/// A shared string one pointer wide (an `Arc<str>` is two): the values that
/// repeat across services are held as these, once each, via an [`Interner`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shared(Arc<Box<str>>);

impl Shared {
    /// A new, unshared value.
    pub fn new(value: &str) -> Self {
        Self(Arc::new(Box::from(value)))
    }

    /// True when both are the same shared value.
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }
}

impl std::ops::Deref for Shared {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Shared {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self)
    }
}

/// The six DNS labels of one service, lowercase, read right to left with
/// [`ServiceLabels::at`].
///
/// The four that repeat across services (environment, service, version,
/// region) are [`Shared`] from an [`Interner`], so 100,000 services over
/// 10,000 names hold each name once; the host and uuid labels, unique per
/// service, share one allocation (`<host>.<uuid>`: a label has no dot).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServiceLabels {
    /// Positions 0 to 3: environment, service, version, region.
    shared: [Shared; 4],
    /// `<host label>.<uuid label>`.
    host_uuid: Box<str>,
}

impl ServiceLabels {
    /// Derives the labels from a service's fields.
    pub fn new(uuid: &str, host: &str, region: &str, version: &str, name: &str, env: &str) -> Self {
        Self::from_parts(
            [env, name, version, region].map(|f| Shared::new(&to_label(f))),
            host,
            uuid,
        )
    }

    /// Labels from their parts: the four shared ones (environment first),
    /// and the host and uuid fields (made labels here).
    pub fn from_parts(shared: [Shared; 4], host: &str, uuid: &str) -> Self {
        let mut host_uuid = String::with_capacity(host.len() + 1 + uuid.len());
        host_uuid.push_str(&to_label(host));
        host_uuid.push('.');
        host_uuid.push_str(&to_label(uuid));
        Self {
            shared,
            host_uuid: host_uuid.into_boxed_str(),
        }
    }

    /// The label at `pos` (0 = environment).
    pub fn at(&self, pos: usize) -> &str {
        match pos {
            pos::HOST => self.host_uuid.split_once('.').map_or("", |(h, _)| h),
            pos::UUID => self.host_uuid.split_once('.').map_or("", |(_, u)| u),
            _ => self.shared.get(pos).map_or("", |l| l),
        }
    }

    /// The shared labels at positions 0 to 3 (environment first).
    pub fn shared(&self) -> &[Shared; 4] {
        &self.shared
    }

    /// True when no label is empty (the name is a valid DNS name).
    pub fn is_complete(&self) -> bool {
        (0..DEPTH).all(|i| !self.at(i).is_empty())
    }

    /// The right-most `depth` labels joined with dots, as a query would spell
    /// them (`web.production` for depth 2).
    pub fn suffix(&self, depth: usize) -> String {
        let mut parts: Vec<&str> = (0..depth.min(DEPTH)).map(|i| self.at(i)).collect();
        parts.reverse();
        parts.join(".")
    }
}

impl fmt::Display for ServiceLabels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.suffix(DEPTH))
    }
}

/// Lowercases a field and turns `.` and `:` into `-`, as SkyDNS v1 did for
/// Version (`1.0.0` → `1-0-0`) and Host.
pub fn to_label(field: &str) -> Box<str> {
    // One allocation of the exact size in the common case (no `.` or `:`);
    // both are ASCII, so the label has the field's length in bytes.
    let mut label = field.to_ascii_lowercase();
    if label.contains(['.', ':']) {
        label = label.replace(['.', ':'], "-");
    }
    label.into_boxed_str()
}

/// Shares equal strings: one `Arc<str>` per distinct value in use.
///
/// Values nobody holds any more are dropped now and then (after as many
/// releases as there are values), so the set stays the size of what is
/// registered.
#[derive(Debug, Default)]
pub struct Interner(Mutex<Interned>);

#[derive(Debug, Default)]
struct Interned {
    set: HashSet<Shared, foldhash::fast::RandomState>,
    released: usize,
}

impl Interner {
    /// The shared copy of `value`.
    pub fn get(&self, value: &str) -> Shared {
        let mut inner = self.lock();
        if let Some(shared) = inner.set.get(value) {
            return shared.clone();
        }
        let shared = Shared::new(value);
        inner.set.insert(shared.clone());
        shared
    }

    /// The shared label of `field` ([`to_label`]); the field's own shared
    /// copy when it is a label already.
    pub fn label(&self, field: &Shared) -> Shared {
        let label = to_label(field);
        if *label == **field {
            field.clone()
        } else {
            self.get(&label)
        }
    }

    /// Notes that a holder of shared values went away; sweeps the values
    /// nobody else holds once releases outnumber the values.
    pub fn release(&self) {
        let mut inner = self.lock();
        inner.released = inner.released.saturating_add(1);
        if inner.released > inner.set.len() {
            inner.released = 0;
            inner.set.retain(|v| Arc::strong_count(&v.0) > 1);
            inner.set.shrink_to_fit();
        }
    }

    /// Number of distinct values held.
    pub fn len(&self) -> usize {
        self.lock().set.len()
    }

    /// True when no value is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Interned> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A query under the domain: one entry per label, right to left; `None` is a
/// wildcard (`*` or `any`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(pub Vec<Option<Box<str>>>);

impl Pattern {
    /// Parses the labels left of the domain, given left to right as they
    /// appear in the name (`["east", "*", "web", "production"]`).
    ///
    /// Returns `None` when there are more labels than a service name has.
    pub fn from_labels<'a, I>(labels: I) -> Option<Self>
    where
        I: IntoIterator<Item = &'a str>,
        I::IntoIter: DoubleEndedIterator,
    {
        let parts: Vec<Option<Box<str>>> = labels
            .into_iter()
            .rev()
            .map(|l| {
                let l = l.to_ascii_lowercase();
                (l != "*" && l != "any").then(|| l.into_boxed_str())
            })
            .collect();
        (parts.len() <= DEPTH).then_some(Self(parts))
    }

    /// Parses a dotted relative name (`east.*.web.production`); the empty
    /// string is the pattern that matches everything.
    pub fn parse(relative: &str) -> Option<Self> {
        let relative = relative.trim_end_matches('.');
        if relative.is_empty() {
            return Some(Self(Vec::new()));
        }
        Self::from_labels(relative.split('.'))
    }

    /// Number of labels in the query.
    pub fn depth(&self) -> usize {
        self.0.len()
    }

    /// The label at `pos` (0 = environment), `None` for a wildcard or a
    /// position the query does not reach.
    pub fn at(&self, pos: usize) -> Option<&str> {
        self.0.get(pos).and_then(|l| l.as_deref())
    }

    /// True when every named label equals the service's.
    pub fn matches(&self, labels: &ServiceLabels) -> bool {
        self.0
            .iter()
            .enumerate()
            .all(|(i, want)| want.as_deref().is_none_or(|w| w == labels.at(i)))
    }

    /// How many labels from the right are named before the first wildcard.
    pub fn concrete_suffix_len(&self) -> usize {
        self.0.iter().take_while(|l| l.is_some()).count()
    }

    /// The named right-most labels joined as [`ServiceLabels::suffix`] would.
    pub fn suffix(&self, depth: usize) -> String {
        let mut parts: Vec<&str> = self
            .0
            .iter()
            .take(depth)
            .map(|l| l.as_deref().unwrap_or("*"))
            .collect();
        parts.reverse();
        parts.join(".")
    }

    /// The same pattern with the region position turned into a wildcard.
    pub fn without_region(&self) -> Self {
        let mut p = self.clone();
        if let Some(slot) = p.0.get_mut(pos::REGION) {
            *slot = None;
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> ServiceLabels {
        ServiceLabels::new(
            "1001",
            "web1.site.com",
            "East",
            "1.0.0",
            "TestService",
            "Production",
        )
    }

    #[test]
    fn labels_are_lowercase_with_hyphens() {
        assert_eq!(
            labels().to_string(),
            "1001.web1-site-com.east.1-0-0.testservice.production"
        );
        assert_eq!(labels().suffix(2), "testservice.production");
        assert_eq!(&*to_label("::1"), "--1");
    }

    #[test]
    fn patterns_match_suffixes_and_wildcards() {
        let l = labels();
        for q in [
            "production",
            "testservice.production",
            "1-0-0.testservice.production",
            "east.*.testservice.production",
            "EAST.any.TestService.Production",
            "*.*",
            "",
            "1001.web1-site-com.east.1-0-0.testservice.production",
        ] {
            assert!(Pattern::parse(q).expect("parses").matches(&l), "{q}");
        }
        for q in [
            "staging",
            "west.*.testservice.production",
            "2-0-0.testservice.production",
        ] {
            assert!(!Pattern::parse(q).expect("parses").matches(&l), "{q}");
        }
        assert!(Pattern::parse("a.b.c.d.e.f.g").is_none());
    }

    #[test]
    fn the_interner_shares_values_and_forgets_unused_ones() {
        let interner = Interner::default();
        let a = interner.get("web");
        let b = interner.get("web");
        assert!(Shared::ptr_eq(&a, &b));
        assert!(Shared::ptr_eq(&interner.label(&a), &a), "already a label");
        let v = interner.get("1.0");
        assert_eq!(&*interner.label(&v), "1-0");
        drop((a, b, v));
        for _ in 0..4 {
            interner.release();
        }
        assert!(interner.is_empty(), "{}", interner.len());
    }

    #[test]
    fn concrete_suffix_stops_at_first_wildcard() {
        let p = Pattern::parse("east.*.web.production").expect("parses");
        assert_eq!(p.concrete_suffix_len(), 2);
        assert_eq!(p.suffix(2), "web.production");
        assert_eq!(p.without_region().at(pos::REGION), None);
        assert_eq!(p.at(pos::REGION), Some("east"));
    }
}
