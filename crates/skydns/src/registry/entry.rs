//! One registered service as the registry holds it.

use super::*;

/// One registered service.
#[derive(Debug)]
pub struct Entry {
    /// The service as registered (`uuid` set; `ttl` is the TTL last given),
    /// compact; [`Entry::view`] gives the API's form.
    pub service: ServiceRecord,
    /// Its DNS labels, lowercase.
    pub labels: ServiceLabels,
    /// Host parsed as an IP, when it is one.
    pub ip: Option<IpAddr>,
    /// Changed in place (not by replacing the `Arc`), so a heartbeat racing
    /// with `add_callback` is never lost on a stale copy. (Callbacks live in
    /// the registry's side map: few services have any.)
    pub(super) expires_ms: AtomicU64,
}

impl Entry {
    pub(super) fn new(service: Service, expires_ms: u64, interner: &Interner) -> Self {
        let ip = service.host.parse().ok();
        let service = ServiceRecord::new(service, interner);
        let s = &service;
        let labels = ServiceLabels::from_parts(
            [
                interner.label(&s.environment),
                interner.label(&s.name),
                interner.label(&s.version),
                interner.label(&s.region),
            ],
            s.host.trim_end_matches('.'),
            &s.uuid,
        );
        Self {
            labels,
            ip,
            expires_ms: AtomicU64::new(expires_ms),
            service,
        }
    }

    /// An entry for unit tests elsewhere in the crate.
    #[cfg(test)]
    pub(crate) fn new_for_test(service: Service, expires_ms: u64) -> Self {
        Self::new(service, expires_ms, &Interner::default())
    }

    /// Deadline in milliseconds since the Unix epoch ([`NEVER`] for NoExpire).
    pub fn expires_ms(&self) -> u64 {
        self.expires_ms.load(Ordering::Acquire)
    }

    /// True while the deadline is in the future.
    pub fn is_live(&self, now_ms: u64) -> bool {
        self.expires_ms() > now_ms
    }

    /// Seconds left, rounded up (a live entry never reports 0); `None` for
    /// NoExpire; its TTL for an entry the store expires ([`LEASED`]: the
    /// deadline is etcd's lease, renewed on whichever instance).
    pub fn remaining_secs(&self, now_ms: u64) -> Option<u32> {
        let deadline = self.expires_ms();
        if deadline == LEASED {
            return (!self.service.no_expire).then_some(self.service.ttl);
        }
        (deadline != NEVER).then(|| {
            let ms = deadline.saturating_sub(now_ms);
            u32::try_from(ms.div_ceil(1000)).unwrap_or(u32::MAX)
        })
    }

    /// The service as the API shows it: remaining TTL and `Expires` filled in.
    pub fn view(&self, now_ms: u64) -> Service {
        let mut s = self.service.to_service();
        match self.remaining_secs(now_ms) {
            Some(left) if self.expires_ms() == LEASED => s.ttl = left,
            Some(left) => {
                s.ttl = left;
                s.expires = Some(
                    humantime::format_rfc3339_millis(
                        UNIX_EPOCH + Duration::from_millis(self.expires_ms()),
                    )
                    .to_string(),
                );
            }
            None => s.expires = None,
        }
        s
    }

    pub(super) fn stored(&self) -> StoredService {
        StoredService {
            service: self.service.to_service(),
            expires_ms: self.expires_ms(),
            callbacks: Vec::new(),
        }
    }
}
