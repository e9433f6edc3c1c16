//! What DNS and the API read: live services by uuid, pattern, address.

use super::*;

impl Registry {
    /// The live service registered as `uuid`.
    pub fn get(&self, uuid: &str) -> Option<Arc<Entry>> {
        self.get_entry(uuid)
    }

    /// Live services matching `pattern`, in no particular order.
    pub fn lookup(&self, pattern: &Pattern) -> Vec<Arc<Entry>> {
        let now = now_ms();
        let candidates = match pattern.at(name::pos::UUID) {
            Some(uuid) => Some(self.uuid_candidates(uuid)),
            None => self.inner.index.candidates(pattern),
        };
        match candidates {
            Some(found) => found
                .into_iter()
                .filter(|e| e.is_live(now) && pattern.matches(&e.labels))
                .collect(),
            None => self
                .inner
                .entries
                .iter()
                .map(|e| Arc::clone(&e.key().0))
                .filter(|e| e.is_live(now) && pattern.matches(&e.labels))
                .collect(),
        }
    }

    /// Entries (live or not) whose uuid label is `label`: the one registered
    /// under that very uuid, and those whose uuid only spells it otherwise.
    pub(super) fn uuid_candidates(&self, label: &str) -> Vec<Arc<Entry>> {
        let mut found = self.inner.index.with_uuid(label);
        if let Some(e) = self.inner.entries.get(label)
            && index::uuid_is_label(&e.key().0)
        {
            found.push(Arc::clone(&e.key().0));
        }
        found
    }

    /// Live services whose uuid, as a DNS label, is `label` (for `<uuid>.<domain>`).
    pub fn by_uuid_label(&self, label: &str) -> Vec<Arc<Entry>> {
        let now = now_ms();
        self.uuid_candidates(label)
            .into_iter()
            .filter(|e| e.is_live(now))
            .collect()
    }

    /// Live services whose Host is `ip` (for PTR answers).
    pub fn by_ip(&self, ip: IpAddr) -> Vec<Arc<Entry>> {
        let now = now_ms();
        self.inner
            .index
            .with_ip(ip)
            .into_iter()
            .filter(|e| e.is_live(now))
            .collect()
    }

    /// True when some registered name ends in this suffix of `depth` labels,
    /// whatever its deadline (used to tell NODATA from NXDOMAIN cheaply).
    pub fn has_suffix(&self, suffix: &str) -> bool {
        self.inner.index.has_suffix(suffix)
    }

    /// Number of live services per value of `field` (regions, environments).
    pub fn counts(&self, field: impl Fn(&ServiceRecord) -> &str) -> BTreeMap<String, u64> {
        let now = now_ms();
        let mut out = BTreeMap::new();
        for e in &self.inner.entries {
            let e = &e.key().0;
            if e.is_live(now) {
                *out.entry(field(&e.service).to_string()).or_insert(0) += 1;
            }
        }
        out
    }

    pub(super) fn get_entry(&self, uuid: &str) -> Option<Arc<Entry>> {
        let e = self
            .inner
            .entries
            .get(uuid)
            .map(|e| Arc::clone(&e.key().0))?;
        e.is_live(now_ms()).then_some(e)
    }
}
