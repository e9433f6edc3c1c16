//! The response cache for forwarded answers.
//!
//! Positive answers live for their smallest TTL, negative ones (NXDOMAIN,
//! NODATA) for the SOA minimum (RFC 2308), both capped by `max_ttl`.
//! SERVFAIL is never cached. What a client sees has its TTLs counted down.
//! The cache holds at most `capacity` entries and evicts the oldest first.
//! Its tables grow as answers arrive, so a large `-cache-size` costs nothing
//! until it is used; at the bound, insert/remove churn may double the hash
//! table once (tombstones), and then it stays that size: memory reaches its
//! ceiling when the cache is full and stays there.
//!
//! Prefetch (unbound's `prefetch`, CoreDNS's `cache … prefetch`): an answer
//! asked at least `prefetch` times is refreshed upstream once the last
//! [`PREFETCH_PERCENT`] of its lifetime begins, so a popular name never
//! expires into a miss. [`Cache::get_timed`] says when that is due.
//!
//! LOCKING: one std mutex, held only for a map look-up or insert, never
//! across `.await`.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Message, Query, ResponseCode},
    rr::{DNSClass, RData, Record, RecordType},
};
use prometheus_client::metrics::counter::Counter;

/// The TTL of a stale answer (RFC 8767 §4 recommends 30 seconds).
pub(crate) const STALE_TTL: u32 = 30;
/// The last part of an answer's lifetime, in percent, in which a popular
/// answer is refreshed (unbound's 10 %).
pub(crate) const PREFETCH_PERCENT: u32 = 10;

type Fast = foldhash::fast::RandomState;

/// What a cached answer is filed under: the name in wire form (length-
/// prefixed labels), lowercased; type; class; and whether DNSSEC records
/// were asked for (DO), so a validating client never gets an answer
/// stripped of its signatures, nor a plain client one with them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CacheKey {
    name: Box<[u8]>,
    qtype: RecordType,
    class: DNSClass,
    dnssec_ok: bool,
}

impl CacheKey {
    /// The key of `query`, asked with DO set or not.
    pub(crate) fn of(query: &Query, dnssec_ok: bool) -> Self {
        let mut name = Vec::with_capacity(query.name().len() + 2);
        for label in query.name().iter() {
            // A label is at most 63 bytes (the parser enforces it).
            name.push(u8::try_from(label.len()).unwrap_or(u8::MAX));
            name.extend(label.iter().map(u8::to_ascii_lowercase));
        }
        Self {
            name: name.into_boxed_slice(),
            qtype: query.query_type(),
            class: query.query_class(),
            dnssec_ok,
        }
    }
}

#[derive(Debug)]
struct Entry {
    message: Arc<Message>,
    stored: Instant,
    expires: Instant,
    /// Where the prefetch window begins.
    refresh_at: Instant,
    /// Answers given from this entry, by either cache (the response cache
    /// counts its copies here too).
    hits: Counter,
    /// A prefetch has been started for this entry.
    refreshing: bool,
}

#[derive(Debug, Default)]
struct Inner {
    /// Entries are boxed so the table's slots stay small: under churn at the
    /// bound the table may hold up to twice the capacity in slots.
    map: HashMap<CacheKey, Box<Entry>, Fast>,
    order: VecDeque<CacheKey>,
}

/// A cached answer as [`Cache::get_timed`] gives it.
#[derive(Debug)]
pub(crate) struct Timed {
    /// The answer, TTLs as stored (not counted down).
    pub(crate) message: Arc<Message>,
    /// When it was stored: a client sees each TTL less the whole seconds since.
    pub(crate) stored: Instant,
    /// Until when a copy of it may be served without asking this cache
    /// again: its expiry, or the start of its prefetch window.
    pub(crate) keep_until: Instant,
    /// The entry's hit counter, for copies made elsewhere.
    pub(crate) hits: Counter,
    /// True once per entry: the caller should refresh it upstream now.
    pub(crate) refresh: bool,
}

/// A bounded TTL cache of upstream answers.
#[derive(Debug)]
pub(crate) struct Cache {
    capacity: usize,
    max_ttl: u32,
    /// Hits that make an answer worth prefetching (0: never prefetch).
    prefetch: u64,
    inner: Mutex<Inner>,
}

impl Cache {
    /// A cache of at most `capacity` answers (0: disabled) and `max_ttl`
    /// seconds, prefetching answers asked `prefetch` times (0: never).
    pub(crate) fn new(capacity: usize, max_ttl: u32, prefetch: u64) -> Self {
        Self {
            capacity,
            max_ttl,
            prefetch,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Entries held.
    pub(crate) fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// The cached answer for `key` with TTLs counted down, if still fresh.
    pub(crate) fn get(&self, key: &CacheKey) -> Option<Message> {
        if self.capacity == 0 {
            return None;
        }
        let now = Instant::now();
        let inner = self.lock();
        let entry = inner.map.get(key)?;
        if entry.expires <= now {
            return None;
        }
        let elapsed = u32::try_from(now.duration_since(entry.stored).as_secs()).unwrap_or(u32::MAX);
        entry.hits.inc();
        let mut msg = Message::clone(&entry.message);
        drop(inner);
        set_ttls(&mut msg, |ttl| {
            ttl.min(self.max_ttl).saturating_sub(elapsed)
        });
        Some(msg)
    }

    /// The cached answer for `key` with its TTLs as stored, when it was
    /// stored, until when a copy may be kept, and whether to prefetch it now
    /// ([`Timed`]); `None` when absent or stale. What a client sees at `t` is
    /// each TTL minus the whole seconds since `stored`, as [`Cache::get`] gives.
    pub(crate) fn get_timed(&self, key: &CacheKey) -> Option<Timed> {
        if self.capacity == 0 {
            return None;
        }
        let now = Instant::now();
        let mut inner = self.lock();
        let entry = inner.map.get_mut(key)?;
        if entry.expires <= now {
            return None;
        }
        entry.hits.inc();
        let prefetching = self.prefetch > 0 && !entry.refreshing;
        let refresh = prefetching && now >= entry.refresh_at && entry.hits.get() >= self.prefetch;
        entry.refreshing |= refresh;
        let keep_until = if prefetching && now < entry.refresh_at {
            entry.refresh_at
        } else {
            entry.expires
        };
        Some(Timed {
            message: Arc::clone(&entry.message),
            stored: entry.stored,
            keep_until,
            hits: entry.hits.clone(),
            refresh,
        })
    }

    /// The answer for `key` that expired less than `window` ago, every TTL
    /// set to [`STALE_TTL`] (or the cache's maximum, if lower), as RFC 8767
    /// serves it while every upstream fails; `None` when fresh (the caller
    /// asked upstream because there was none), absent, or older.
    pub(crate) fn get_stale(&self, key: &CacheKey, window: Duration) -> Option<Message> {
        if self.capacity == 0 || window.is_zero() {
            return None;
        }
        let now = Instant::now();
        let inner = self.lock();
        let entry = inner.map.get(key)?;
        if entry.expires > now || now.duration_since(entry.expires) >= window {
            return None;
        }
        let mut msg = Message::clone(&entry.message);
        drop(inner);
        let stale = STALE_TTL.min(self.max_ttl);
        set_ttls(&mut msg, |_| stale);
        Some(msg)
    }

    /// Caches `message` under `key` for as long as its records allow, its
    /// TTLs capped by the cache's maximum.
    pub(crate) fn insert(&self, key: CacheKey, message: &Arc<Message>) {
        if self.capacity == 0 {
            return;
        }
        let Some(ttl) = cache_ttl(message).map(|t| t.min(self.max_ttl)) else {
            return;
        };
        if ttl == 0 {
            return;
        }
        let message = if records(message).any(|r| r.ttl > self.max_ttl) {
            let mut capped = Message::clone(message);
            set_ttls(&mut capped, |t| t.min(self.max_ttl));
            Arc::new(capped)
        } else {
            Arc::clone(message)
        };
        let now = Instant::now();
        let life = Duration::from_secs(u64::from(ttl));
        let entry = Box::new(Entry {
            message,
            stored: now,
            expires: now + life,
            refresh_at: now + life - life * PREFETCH_PERCENT / 100,
            hits: Counter::default(),
            refreshing: false,
        });
        let mut inner = self.lock();
        if inner.map.insert(key.clone(), entry).is_none() {
            inner.order.push_back(key);
        }
        while inner.map.len() > self.capacity {
            let Some(old) = inner.order.pop_front() else {
                break;
            };
            inner.map.remove(&old);
        }
        // Keep the order queue from growing past the map (re-inserted keys).
        if inner.order.len() > self.capacity.saturating_mul(2) {
            let Inner { map, order } = &mut *inner;
            order.retain(|k| map.contains_key(k));
        }
    }
}

/// Every record of `msg`: answers, authority, additionals.
pub(super) fn records(msg: &Message) -> impl Iterator<Item = &Record> {
    msg.answers
        .iter()
        .chain(&msg.authorities)
        .chain(&msg.additionals)
}

/// Sets the TTL of every record of `msg` to `f(its TTL)`.
pub(super) fn set_ttls(msg: &mut Message, f: impl Fn(u32) -> u32) {
    for r in msg
        .answers
        .iter_mut()
        .chain(msg.authorities.iter_mut())
        .chain(msg.additionals.iter_mut())
    {
        r.ttl = f(r.ttl);
    }
}

/// How long `message` may be cached: the smallest answer TTL for a positive
/// answer; min(SOA TTL, SOA minimum) for NXDOMAIN/NODATA; never for errors.
pub(crate) fn cache_ttl(message: &Message) -> Option<u32> {
    let rcode = message.metadata.response_code;
    let negative = rcode == ResponseCode::NXDomain
        || (rcode == ResponseCode::NoError && message.answers.is_empty());
    if negative {
        return message
            .authorities
            .iter()
            .find_map(|r: &Record| match &r.data {
                RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
                _ => None,
            });
    }
    if rcode != ResponseCode::NoError || message.metadata.truncation {
        return None;
    }
    message.answers.iter().map(|r| r.ttl).min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::{
        op::{MessageType, OpCode},
        rr::{
            Name,
            rdata::{A, SOA},
        },
    };

    fn name(s: &str) -> Name {
        Name::from_ascii(s).expect("name")
    }

    fn answer(ttl: u32) -> Message {
        let mut m = Message::new(1, MessageType::Response, OpCode::Query);
        m.add_answer(Record::from_rdata(
            name("a.example."),
            ttl,
            RData::A(A([127, 0, 0, 1].into())),
        ));
        m
    }

    #[test]
    fn positive_and_negative_ttls() {
        assert_eq!(cache_ttl(&answer(30)), Some(30));
        let mut nx = Message::new(1, MessageType::Response, OpCode::Query);
        nx.metadata.response_code = ResponseCode::NXDomain;
        nx.add_authority(Record::from_rdata(
            name("example."),
            300,
            RData::SOA(SOA::new(
                name("ns.example."),
                name("h.example."),
                1,
                1,
                1,
                1,
                60,
            )),
        ));
        assert_eq!(cache_ttl(&nx), Some(60));
        let mut fail = answer(30);
        fail.metadata.response_code = ResponseCode::ServFail;
        assert_eq!(cache_ttl(&fail), None);
    }

    #[test]
    fn bounded_by_capacity_and_max_ttl() {
        let cache = Cache::new(2, 10, 0);
        let q = |n: &str| CacheKey::of(&Query::query(name(n), RecordType::A), false);
        cache.insert(q("a."), &Arc::new(answer(300)));
        cache.insert(q("b."), &Arc::new(answer(300)));
        cache.insert(q("c."), &Arc::new(answer(300)));
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&q("a.")).is_none(), "oldest evicted");
        let hit = cache.get(&q("c.")).expect("cached");
        assert_eq!(hit.answers[0].ttl, 10, "TTLs are capped by max_ttl");
        assert!(Cache::new(0, 10, 0).get(&q("c.")).is_none());
    }

    #[test]
    fn tables_grow_with_use_and_stop_growing_at_the_bound() {
        let cache = Cache::new(1_000_000, 10, 0);
        let q =
            |n: usize| CacheKey::of(&Query::query(name(&format!("n{n}.")), RecordType::A), false);
        cache.insert(q(0), &Arc::new(answer(300)));
        {
            let inner = cache.lock();
            assert!(
                inner.map.capacity() < 64 && inner.order.capacity() < 64,
                "nothing reserved up front for a million answers: {} / {}",
                inner.map.capacity(),
                inner.order.capacity()
            );
        }
        let cache = Cache::new(1000, 10, 0);
        for n in 0..20_000 {
            cache.insert(q(n), &Arc::new(answer(300)));
        }
        let (map_cap, order_cap) = {
            let inner = cache.lock();
            (inner.map.capacity(), inner.order.capacity())
        };
        assert!(
            map_cap <= 4 * 1000,
            "at most one doubling past the bound: {map_cap}"
        );
        for n in 20_000..100_000 {
            cache.insert(q(n), &Arc::new(answer(300)));
        }
        assert_eq!(cache.len(), 1000);
        let inner = cache.lock();
        // `capacity()` is live entries plus free slots, so tombstones lower it
        // until the next in-place clean-up; a grown table would raise it.
        assert!(inner.map.capacity() <= map_cap, "map stopped growing");
        assert!(
            inner.order.capacity() <= order_cap,
            "order queue stopped growing"
        );
    }

    #[test]
    fn a_popular_answer_is_refreshed_once_in_the_last_tenth_of_its_life() {
        let q = CacheKey::of(&Query::query(name("hot.example."), RecordType::A), false);
        let cache = Cache::new(10, 60, 2);
        cache.insert(q.clone(), &Arc::new(answer(1)));
        let first = cache.get_timed(&q).expect("cached");
        assert!(!first.refresh, "not in its last tenth yet");
        let expires = first.stored + Duration::from_secs(1);
        assert!(
            first.keep_until < expires,
            "copies elsewhere stop where the prefetch window begins"
        );
        std::thread::sleep(Duration::from_millis(920));
        let due = cache.get_timed(&q).expect("still fresh");
        assert!(due.refresh, "asked twice and in its last tenth: refresh");
        assert_eq!(due.keep_until, expires, "kept to its expiry from now on");
        assert_eq!(due.hits.get(), 2);
        assert!(
            !cache.get_timed(&q).expect("fresh").refresh,
            "once per entry"
        );

        let unpopular = Cache::new(10, 60, 5);
        unpopular.insert(q.clone(), &Arc::new(answer(1)));
        std::thread::sleep(Duration::from_millis(920));
        assert!(
            !unpopular.get_timed(&q).expect("fresh").refresh,
            "asked once"
        );

        let off = Cache::new(10, 60, 0);
        off.insert(q.clone(), &Arc::new(answer(1)));
        let got = off.get_timed(&q).expect("cached");
        assert_eq!(got.keep_until, got.stored + Duration::from_secs(1));
        std::thread::sleep(Duration::from_millis(920));
        assert!(!off.get_timed(&q).expect("fresh").refresh, "prefetch off");
    }

    #[test]
    fn keys_ignore_letter_case_and_tell_names_apart() {
        let key = |n: &str, t| CacheKey::of(&Query::query(name(n), t), false);
        assert_eq!(
            key("WWW.Example.", RecordType::A),
            key("www.example.", RecordType::A)
        );
        assert_ne!(
            key("www.example.", RecordType::A),
            key("www.example.", RecordType::AAAA)
        );
        assert_ne!(key("ab.c.", RecordType::A), key("a.bc.", RecordType::A));
    }

    #[test]
    fn stored_ttls_are_capped_by_the_maximum() {
        let q = CacheKey::of(&Query::query(name("a.example."), RecordType::A), false);
        let cache = Cache::new(10, 10, 0);
        cache.insert(q.clone(), &Arc::new(answer(300)));
        let got = cache.get_timed(&q).expect("cached");
        assert_eq!(got.message.answers[0].ttl, 10);
    }
}
