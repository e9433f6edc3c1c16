//! The response cache: encoded UDP responses for names under the domain (and
//! PTR), copied out with the ID, the question's letter case and the TTLs
//! patched, so a repeated question costs parse → lookup → copy.
//!
//! The key is the request after its ID, with the question name lowercased:
//! two requests with the same key get the same response apart from the ID,
//! the echoed name case, TTLs and the order of round-robin answers, since the
//! reply depends only on those bytes and on the registry (never on the client
//! address for names we are authoritative for). An entry is valid while the
//! registry's serial is the one it was built at (every add and remove bumps
//! it) and every entry it was built from is still live; TTLs are recounted
//! from those entries at copy time, so heartbeats and the countdown show
//! exactly as on the uncached path. Responses are produced by hickory-proto;
//! only the ID, question-name and TTL bytes are rewritten here.

use std::{sync::Arc, time::Instant};

use dashmap::DashMap;
use hickory_proto::{
    op::Header,
    rr::Name,
    serialize::binary::{BinDecodable, BinDecoder},
};
use prometheus_client::metrics::counter::Counter;
use rand::RngExt;

use super::{
    HEADER_LEN,
    answer::{Rec, TtlPolicy, TtlSource},
};
use crate::registry::Entry;

/// Longest request the cache looks at (longer ones take the full path).
pub(super) const MAX_KEY: usize = 512;
/// Entries held before the cache is emptied and refilled.
const CAPACITY: usize = 4096;
/// Orders kept of a round-robin answer whose records cannot be shuffled in
/// the copy (SRV with glue).
const ROUND_ROBIN_VARIANTS: usize = 4;
/// RR type of the EDNS OPT pseudo-record (its TTL field holds flags).
const OPT: u16 = 41;

/// A request as the cache sees it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Keyed<'a> {
    /// The request after its ID, question name lowercased.
    pub(super) key: &'a [u8],
    /// Where the question name ends.
    pub(super) qname_end: usize,
    /// The request itself.
    pub(super) request: &'a [u8],
}

/// The cache key of `request`, written into `buf`; `None` when the request
/// cannot be keyed (too long, no question).
pub(super) fn key<'a>(request: &'a [u8], buf: &'a mut [u8; MAX_KEY]) -> Option<Keyed<'a>> {
    if request.len() > MAX_KEY || request.len() <= HEADER_LEN {
        return None;
    }
    let qname_end = question_name_end(request)?;
    let key = buf.get_mut(..request.len() - 2)?;
    key.copy_from_slice(request.get(2..)?);
    key.get_mut(HEADER_LEN - 2..qname_end - 2)?
        .make_ascii_lowercase();
    Some(Keyed {
        key,
        qname_end,
        request,
    })
}

/// Where the first question's name ends when it is written out label by
/// label. `None` for a compression pointer (the question has no earlier name
/// to point to, so a pointer there aims into the header or loops), a reserved
/// label type, or a name longer than 255 bytes or than the message.
pub(super) fn question_name_end(request: &[u8]) -> Option<usize> {
    let mut at = HEADER_LEN;
    loop {
        let len = usize::from(*request.get(at)?);
        if len & 0xC0 != 0 {
            return None;
        }
        at += 1 + len;
        if at - HEADER_LEN > 255 {
            return None;
        }
        if len == 0 {
            return (at <= request.len()).then_some(at);
        }
    }
}

/// What a TTL field counts down from.
#[derive(Debug)]
enum Countdown {
    /// A registry entry's remaining life.
    Entry(Arc<Entry>),
    /// A TTL as cached from upstream, less the whole seconds since then.
    Upstream(u32),
}

/// The clocks a copy is made at.
#[derive(Debug, Clone, Copy)]
pub(super) struct Now {
    /// Milliseconds since the Unix epoch (registry deadlines).
    pub(super) ms: u64,
    /// The monotonic clock (forwarding cache times).
    pub(super) instant: Instant,
}

/// One encoded response and what to patch in it.
#[derive(Debug)]
pub(super) struct Variant {
    bytes: Box<[u8]>,
    qname_end: usize,
    /// Owner names spelled out (not compressed) that are the question's
    /// name: start and length of their inline part, rewritten in the
    /// asker's case.
    owners: Box<[(usize, usize)]>,
    /// Offset of each TTL field that counts down, and what it counts from.
    ttls: Box<[(usize, Countdown)]>,
    /// Entries the response was built from: it is valid while all are live.
    deps: Box<[Arc<Entry>]>,
    /// For a forwarded answer: when the forwarding cache stored it, and
    /// when it expires there.
    upstream: Option<(Instant, Instant)>,
    /// For a signed answer: when its signatures are made anew.
    valid_until: Option<Instant>,
    /// Answer records that are equal-sized, self-contained chunks (owner a
    /// pointer to the question): start, length, count — shuffled per copy.
    chunks: Option<(usize, usize, usize)>,
    /// Records in the answer section.
    answers: usize,
}

impl Variant {
    /// Analyses `bytes`, the encoding of a reply whose records are
    /// `sections` (answer, authority, additional; without OPT), built from
    /// the registry entries `deps`. A truncated response (TC) holds the
    /// first records of each section, as many as fitted. `None` when the
    /// response is not cacheable (its records do not match).
    pub(super) fn build(
        bytes: Vec<u8>,
        sections: [&[Rec]; 3],
        deps: &[Arc<Entry>],
        chunkable: bool,
        upstream: Option<(Instant, Instant)>,
        valid_until: Option<Instant>,
    ) -> Option<Self> {
        let mut d = BinDecoder::new(&bytes);
        let header = Header::read(&mut d).ok()?;
        if header.counts.queries != 1 {
            return None;
        }
        let truncated = header.metadata.truncation;
        let [answer_recs, authority_recs, additional_recs] = sections;
        let counts = [
            header.counts.answers,
            header.counts.authorities,
            header.counts.additionals,
        ]
        .map(usize::from);
        let mut recs = answer_recs
            .iter()
            .take(counts[0])
            .chain(authority_recs.iter().take(counts[1]))
            .chain(additional_recs.iter().take(counts[2]));
        let qname = Name::read(&mut d).ok()?;
        let qname_end = d.index();
        d.read_slice(4).ok()?;
        let mut owners = Vec::new();
        let mut ttls = Vec::new();
        let [answers, _, _] = counts;
        let total: usize = counts.iter().sum();
        let mut answer_spans = Vec::with_capacity(answers);
        let mut opts = 0;
        for i in 0..total {
            let start = d.index();
            let pointer = bytes.get(start).is_some_and(|b| b & 0xC0 == 0xC0);
            let owner = Name::read(&mut d).ok()?;
            if owner == qname && !pointer {
                let spelled = d.index() - start;
                let inline = if bytes.get(d.index() - 2).is_some_and(|b| b & 0xC0 == 0xC0) {
                    spelled - 2
                } else {
                    spelled
                };
                owners.push((start, inline));
            }
            let rtype = d.read_u16().ok()?.unverified();
            d.read_u16().ok()?;
            let ttl_at = d.index();
            d.read_u32().ok()?;
            let len = d.read_u16().ok()?.unverified();
            d.read_slice(usize::from(len)).ok()?;
            if i < answers {
                answer_spans.push((start, d.index() - start, pointer));
            }
            if rtype == OPT && i >= answers {
                opts += 1;
                continue;
            }
            let rec = recs.next()?;
            match &rec.source {
                TtlSource::Fixed => {}
                TtlSource::Entry(entry) => ttls.push((ttl_at, Countdown::Entry(Arc::clone(entry)))),
                TtlSource::Upstream(base) => ttls.push((ttl_at, Countdown::Upstream(*base))),
            }
        }
        if d.index() != bytes.len() {
            return None;
        }
        // Each section holds the first of its records (matched one by one
        // above); all of them unless the response is truncated.
        let emitted = [counts[0], counts[1], counts[2].checked_sub(opts)?];
        let fits = sections
            .iter()
            .zip(emitted)
            .all(|(recs, n)| n <= recs.len());
        let complete = sections
            .iter()
            .zip(emitted)
            .all(|(recs, n)| n == recs.len());
        if !fits || !(complete || truncated) {
            return None;
        }
        let chunks = match answer_spans.as_slice() {
            // A truncated answer is a subset: round robin keeps several
            // stored orders (each a different subset) rather than shuffling one.
            [(start, len, true), rest @ ..]
                if chunkable
                    && !truncated
                    && !rest.is_empty()
                    && rest.iter().all(|s| s.1 == *len && s.2) =>
            {
                Some((*start, *len, answer_spans.len()))
            }
            _ => None,
        };
        Some(Self {
            bytes: bytes.into_boxed_slice(),
            qname_end,
            owners: owners.into_boxed_slice(),
            ttls: ttls.into_boxed_slice(),
            deps: deps.into(),
            upstream,
            valid_until,
            chunks,
            answers,
        })
    }

    /// Whether round robin needs several stored orders: more than one
    /// answer, and the copy cannot shuffle them itself.
    fn needs_orders(&self) -> bool {
        self.chunks.is_none() && self.answers > 1
    }

    /// The response to `request` at `now_ms`: `None` when an entry it was
    /// built from is no longer live.
    fn copy(
        &self,
        request: &[u8],
        qname_end: usize,
        ttl: TtlPolicy,
        now: Now,
        shuffle: bool,
    ) -> Option<Vec<u8>> {
        if qname_end != self.qname_end {
            return None;
        }
        if self.deps.iter().any(|e| !e.is_live(now.ms))
            || self.valid_until.is_some_and(|t| t <= now.instant)
        {
            return None;
        }
        let elapsed = match self.upstream {
            Some((_, expires)) if expires <= now.instant => return None,
            Some((stored, _)) => {
                u32::try_from(now.instant.duration_since(stored).as_secs()).unwrap_or(u32::MAX)
            }
            None => 0,
        };
        let mut out = self.bytes.to_vec();
        out.get_mut(..2)?.copy_from_slice(request.get(..2)?);
        let asked = request.get(HEADER_LEN..qname_end)?;
        out.get_mut(HEADER_LEN..qname_end)?.copy_from_slice(asked);
        for (start, len) in &self.owners {
            out.get_mut(*start..*start + *len)?
                .copy_from_slice(asked.get(..*len)?);
        }
        for (at, countdown) in &self.ttls {
            let value = match countdown {
                Countdown::Entry(entry) => {
                    if !entry.is_live(now.ms) {
                        return None;
                    }
                    ttl.ttl(entry, now.ms)
                }
                Countdown::Upstream(base) => base.saturating_sub(elapsed),
            };
            out.get_mut(*at..*at + 4)?
                .copy_from_slice(&value.to_be_bytes());
        }
        if let (true, Some((start, len, count))) = (shuffle, self.chunks) {
            let section = out.get_mut(start..start + len * count)?;
            let mut rng = rand::rng();
            for i in (1..count).rev() {
                let j = rng.random_range(0..=i);
                if j != i {
                    let (head, tail) = section.split_at_mut(i * len);
                    head.get_mut(j * len..(j + 1) * len)?
                        .swap_with_slice(tail.get_mut(..len)?);
                }
            }
        }
        Some(out)
    }
}

/// The responses of one key.
#[derive(Debug)]
struct Slot {
    serial: u32,
    /// How many orders to keep (1, or [`ROUND_ROBIN_VARIANTS`]).
    wanted: usize,
    variants: Vec<Arc<Variant>>,
    /// Counters of a copy: `skydns_dns_queries_total` for this question's
    /// type and rcode, and for a forwarded answer the forwarding cache's hits.
    counters: Vec<Counter>,
    /// A forwarded answer: only for clients allowed to recurse.
    forwarded: bool,
}

/// Encoded responses by request key.
#[derive(Debug, Default)]
pub(super) struct ResponseCache {
    slots: DashMap<Box<[u8]>, Arc<Slot>>,
}

impl ResponseCache {
    /// The response for `key` (from [`key`]), patched for `request`, when one
    /// built at `serial` is held; counts it in the slot's metric.
    pub(super) fn get(
        &self,
        asked: &Keyed<'_>,
        serial: u32,
        ttl: TtlPolicy,
        now: Now,
        round_robin: bool,
        may_recurse: impl FnOnce() -> bool,
    ) -> Option<Vec<u8>> {
        let key = asked.key;
        let slot = Arc::clone(self.slots.get(key)?.value());
        if slot.serial != serial {
            self.slots.remove(key);
            return None;
        }
        if slot.forwarded && !may_recurse() {
            return None;
        }
        let pick = if slot.wanted > 1 {
            rand::rng().random_range(0..slot.wanted)
        } else {
            0
        };
        let variant = slot.variants.get(pick)?;
        match variant.copy(asked.request, asked.qname_end, ttl, now, round_robin) {
            Some(out) => {
                for counter in &slot.counters {
                    counter.inc();
                }
                Some(out)
            }
            None => {
                self.slots.remove(key);
                None
            }
        }
    }

    /// Stores `variant` for `key`, built at `serial`; `round_robin` asks for
    /// several orders when the copy cannot shuffle the answers itself.
    pub(super) fn insert(
        &self,
        key: &[u8],
        serial: u32,
        variant: Variant,
        round_robin: bool,
        counters: Vec<Counter>,
    ) {
        let wanted = if round_robin && variant.needs_orders() {
            ROUND_ROBIN_VARIANTS
        } else {
            1
        };
        let forwarded = variant.upstream.is_some();
        let variant = Arc::new(variant);
        let mut variants = match self.slots.get(key) {
            Some(slot) if slot.serial == serial => slot.variants.clone(),
            _ => Vec::new(),
        };
        if variants.len() >= wanted {
            return;
        }
        variants.push(variant);
        if self.slots.len() >= CAPACITY {
            self.slots.clear();
        }
        self.slots.insert(
            Box::from(key),
            Arc::new(Slot {
                serial,
                wanted,
                variants,
                counters,
                forwarded,
            }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::{
        op::{Message, MessageType, OpCode, Query},
        rr::{RData, Record, RecordType, rdata::A},
        serialize::binary::BinEncodable,
    };
    use skydns_api::Service;

    const T0: u64 = 1_000_000;
    const TTL: TtlPolicy = TtlPolicy {
        no_expire_ttl: 3600,
        max_ttl: 0,
    };

    fn entry(uuid: &str, secs: u64) -> Arc<Entry> {
        let s = Service {
            uuid: uuid.into(),
            name: "web".into(),
            host: "10.0.0.1".into(),
            ttl: 30,
            ..Default::default()
        };
        Arc::new(Entry::new_for_test(s, T0 + secs * 1000))
    }

    fn now(ms: u64) -> Now {
        Now {
            ms,
            instant: Instant::now(),
        }
    }

    fn request(name: &str, id: u16) -> Vec<u8> {
        let mut m = Message::new(id, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(
            Name::from_ascii(name).expect("name"),
            RecordType::A,
        ));
        m.to_bytes().expect("encode")
    }

    /// A response with `n` A answers for `name`, each from its own entry,
    /// encoded with the question's name compressed or spelled out.
    fn response(name: &str, entries: &[Arc<Entry>]) -> (Vec<u8>, Vec<Rec>) {
        let owner = Name::from_ascii(name).expect("name");
        let mut m = Message::new(9, MessageType::Response, OpCode::Query);
        m.add_query(Query::query(owner.clone(), RecordType::A));
        let mut recs = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let ip = std::net::Ipv4Addr::new(10, 0, 0, u8::try_from(i).expect("small") + 1);
            let r = Record::from_rdata(owner.clone(), TTL.ttl(e, T0), RData::A(A(ip)));
            m.add_answer(r.clone());
            recs.push(Rec {
                record: r,
                source: TtlSource::Entry(Arc::clone(e)),
            });
        }
        (m.to_bytes().expect("encode"), recs)
    }

    fn keyed<'a>(req: &'a [u8], buf: &'a mut [u8; MAX_KEY]) -> Keyed<'a> {
        key(req, buf).expect("keyed")
    }

    #[test]
    fn the_key_ignores_id_and_case_only() {
        let (a, b, c) = (
            request("web.prod.d.", 1),
            request("WEB.Prod.D.", 2),
            request("web.prod.e.", 1),
        );
        let (mut x, mut y, mut z) = ([0; MAX_KEY], [0; MAX_KEY], [0; MAX_KEY]);
        assert_eq!(keyed(&a, &mut x).key, keyed(&b, &mut y).key);
        assert_ne!(keyed(&a, &mut x).key, keyed(&c, &mut z).key);
        assert!(key(&[0; 12], &mut x).is_none(), "no question");
    }

    #[test]
    fn a_copy_has_the_askers_id_case_and_current_ttls() {
        let es = [entry("a", 30), entry("b", 3600)];
        let (bytes, recs) = response("web.prod.d.", &es);
        let variant =
            Variant::build(bytes, [&recs, &[], &[]], &[], false, None, None).expect("cacheable");
        let req = request("WeB.PROD.d.", 0xBEEF);
        let mut buf = [0; MAX_KEY];
        let k = keyed(&req, &mut buf);
        let out = variant
            .copy(k.request, k.qname_end, TTL, now(T0 + 10_500), false)
            .expect("live");
        let msg = Message::from_vec(&out).expect("decodes");
        assert_eq!(msg.metadata.id, 0xBEEF);
        assert_eq!(msg.queries[0].name().to_ascii(), "WeB.PROD.d.");
        let ttls: Vec<u32> = msg.answers.iter().map(|r| r.ttl).collect();
        assert_eq!(ttls, [20, 3590], "19.5 s and 3589.5 s left round up");
        assert!(
            msg.answers
                .iter()
                .all(|r| r.name.to_ascii() == "WeB.PROD.d."),
            "{:?}",
            msg.answers
        );
        assert!(
            variant
                .copy(k.request, k.qname_end, TTL, now(T0 + 30_000), false)
                .is_none(),
            "never served once an entry it holds has expired"
        );
    }

    #[test]
    fn a_copy_lapses_with_an_entry_it_was_built_from_even_unanswered() {
        let (bytes, _) = response("web.prod.d.", &[]);
        let variant = Variant::build(bytes, [&[], &[], &[]], &[entry("a", 5)], false, None, None)
            .expect("kept");
        let req = request("web.prod.d.", 1);
        let mut buf = [0; MAX_KEY];
        let k = keyed(&req, &mut buf);
        assert!(
            variant
                .copy(k.request, k.qname_end, TTL, now(T0 + 4_000), false)
                .is_some()
        );
        assert!(
            variant
                .copy(k.request, k.qname_end, TTL, now(T0 + 5_000), false)
                .is_none()
        );
    }

    #[test]
    fn shuffled_copies_keep_every_record_and_vary_the_order() {
        let es: Vec<_> = (0..10).map(|i| entry(&format!("e{i}"), 30 + i)).collect();
        let (bytes, recs) = response("web.prod.d.", &es);
        let variant =
            Variant::build(bytes, [&recs, &[], &[]], &[], true, None, None).expect("cacheable");
        assert!(
            !variant.needs_orders(),
            "address answers shuffle in the copy"
        );
        let req = request("web.prod.d.", 1);
        let mut buf = [0; MAX_KEY];
        let k = keyed(&req, &mut buf);
        let mut orders = std::collections::HashSet::new();
        for _ in 0..20 {
            let out = variant
                .copy(k.request, k.qname_end, TTL, now(T0), true)
                .expect("live");
            let msg = Message::from_vec(&out).expect("decodes");
            let got: Vec<(String, u32)> = msg
                .answers
                .iter()
                .map(|r| (r.data.to_string(), r.ttl))
                .collect();
            let mut sorted = got.clone();
            sorted.sort();
            let mut want: Vec<(String, u32)> = recs
                .iter()
                .map(|r| (r.record.data.to_string(), r.record.ttl))
                .collect();
            want.sort();
            assert_eq!(sorted, want, "each address keeps its own TTL");
            orders.insert(got);
        }
        assert!(orders.len() > 1, "20 copies, one order");
    }

    #[test]
    fn mismatched_responses_are_not_kept_and_truncated_ones_keep_what_fitted() {
        let (mut bytes, _) = response("web.prod.d.", &[entry("a", 30), entry("b", 60)]);
        assert!(
            Variant::build(bytes.clone(), [&[], &[], &[]], &[], false, None, None).is_none(),
            "more records than the reply has"
        );
        let (_, three) = response(
            "web.prod.d.",
            &[entry("a", 30), entry("b", 60), entry("c", 90)],
        );
        assert!(
            Variant::build(bytes.clone(), [&three, &[], &[]], &[], false, None, None).is_none(),
            "a record missing from a response not marked truncated"
        );
        if let Some(flags) = bytes.get_mut(2) {
            *flags |= 0x02;
        }
        let kept = Variant::build(bytes, [&three, &[], &[]], &[], true, None, None)
            .expect("truncated: the first two of three fitted");
        assert!(kept.needs_orders(), "a subset is not shuffled in the copy");
        let req = request("web.prod.d.", 7);
        let mut buf = [0; MAX_KEY];
        let k = keyed(&req, &mut buf);
        let out = kept
            .copy(k.request, k.qname_end, TTL, now(T0 + 10_500), false)
            .expect("live");
        let msg = Message::from_vec(&out).expect("decodes");
        assert!(msg.metadata.truncation);
        let ttls: Vec<u32> = msg.answers.iter().map(|r| r.ttl).collect();
        assert_eq!(ttls, [20, 50], "each TTL from its own entry");
    }

    #[test]
    fn the_cache_drops_entries_of_an_old_serial() {
        let cache = ResponseCache::default();
        let es = [entry("a", 30)];
        let (bytes, recs) = response("web.prod.d.", &es);
        let req = request("web.prod.d.", 3);
        let mut buf = [0; MAX_KEY];
        let k = keyed(&req, &mut buf);
        let v =
            Variant::build(bytes, [&recs, &[], &[]], &[], false, None, None).expect("cacheable");
        cache.insert(k.key, 7, v, false, Vec::new());
        assert!(cache.get(&k, 7, TTL, now(T0), false, || true).is_some());
        assert!(cache.get(&k, 8, TTL, now(T0), false, || true).is_none());
        assert!(
            cache.get(&k, 7, TTL, now(T0), false, || true).is_none(),
            "gone"
        );
    }

    #[test]
    fn question_names_with_pointers_or_overlong_are_refused() {
        let header = [0u8; 12];
        let plain = [&header[..], b"\x03web\x05local\x00\x00\x01\x00\x01"].concat();
        assert_eq!(question_name_end(&plain), Some(12 + 11));
        let pointer = [&header[..], b"\xc0\x02\x00\x01\x00\x01"].concat();
        assert_eq!(question_name_end(&pointer), None);
        let reserved = [&header[..], b"\x43abc\x00"].concat();
        assert_eq!(question_name_end(&reserved), None);
        let cut = [&header[..], b"\x03we"].concat();
        assert_eq!(question_name_end(&cut), None);
        let mut long = header.to_vec();
        for _ in 0..5 {
            long.push(63);
            long.extend([b'a'; 63]);
        }
        long.push(0);
        assert_eq!(question_name_end(&long), None, "321 bytes is over 255");
    }
}
