//! DNSSEC: authoritative answers signed online, for queries with DO set.
//!
//! A registry that changes every second cannot keep an NSEC chain, so
//! denial is compact (RFC 9824, "black lies"): a name that does not exist
//! gets NOERROR and one NSEC at the query name listing only NSEC, RRSIG and
//! NXNAME; a name without the type asked gets the same NSEC listing the
//! types it has. Every answer is signed under the query name, so wildcard
//! and partial-name answers need no wildcard proof.
//!
//! # Layout
//! - `key`: the zone key, from BIND's `.key`/`.private` pair or a PEM file.
//! - `signatures`: RRSIGs, kept per RRset content.
//! - this file: signing a [`Reply`] and its denial of existence.

mod key;
mod signatures;

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use hickory_proto::{
    dnssec::rdata::{DNSSECRData, NSEC},
    op::ResponseCode,
    rr::{Label, Name, RData, Record, RecordType},
};
use prometheus_client::metrics::counter::Counter;

pub use key::KeyError;
pub(crate) use key::ZoneKey;
use signatures::Signatures;

use super::{
    DnsHandler,
    answer::{Rec, TtlPolicy, TtlSource},
    reply::Reply,
    zone::NEGATIVE_TTL,
};

/// TTL of the apex DNSKEY record.
pub(crate) const DNSKEY_TTL: u32 = 3600;
/// The NXNAME pseudo-type (RFC 9824): the name does not exist.
const NXNAME: RecordType = RecordType::Unknown(128);
/// The Compact Answers OK EDNS flag (RFC 9824): NXDOMAIN may be signalled.
pub(crate) const COMPACT_OK: u16 = 0x4000;

/// The zone's signer: its keys (one, or two during a rollover), their
/// DNSKEY records and signature caches.
#[derive(Debug)]
pub struct Dnssec {
    signers: Vec<Signatures>,
    dnskeys: Vec<Record>,
}

impl Dnssec {
    /// Signs the zone `origin` with every key of `keys` (each RRset gets one
    /// RRSIG per key); `made` counts signatures computed.
    pub fn new(keys: Vec<ZoneKey>, origin: &Name, made: &Counter) -> Self {
        let dnskeys = keys
            .iter()
            .map(|key| {
                Record::from_rdata(
                    origin.clone(),
                    DNSKEY_TTL,
                    RData::DNSSEC(DNSSECRData::DNSKEY(key.dnskey.clone())),
                )
            })
            .collect();
        let signers = keys
            .into_iter()
            .map(|key| Signatures::new(key, origin.clone(), made.clone()))
            .collect();
        Self { signers, dnskeys }
    }

    /// The apex DNSKEY records.
    pub(crate) fn dnskeys(&self) -> &[Record] {
        &self.dnskeys
    }
}

impl DnsHandler {
    /// `reply`, an answer under the domain for `owner` (the name as asked)
    /// and `qtype`, with RRSIGs on every RRset and its denial of existence
    /// made compact. `compact_ok`: the query had the CO flag, so a name that
    /// does not exist keeps its NXDOMAIN code.
    pub(super) fn signed(
        &self,
        dnssec: &Dnssec,
        mut reply: Reply,
        owner: &Name,
        qtype: RecordType,
        compact_ok: bool,
    ) -> Reply {
        let nxdomain = reply.rcode == ResponseCode::NXDomain;
        if nxdomain || (reply.rcode == ResponseCode::NoError && reply.answers.is_empty()) {
            let types = if nxdomain {
                vec![NXNAME]
            } else {
                self.types_at(owner, qtype)
            };
            reply.authority.push(Rec::fixed(denial(owner, types)));
            if nxdomain && !compact_ok {
                reply.rcode = ResponseCode::NoError;
            }
        }
        let now_ms = crate::registry::now_ms();
        let now = u32::try_from(now_ms / 1000).unwrap_or(u32::MAX);
        let mut refresh_at = u32::MAX;
        for section in [
            &mut reply.answers,
            &mut reply.authority,
            &mut reply.additionals,
        ] {
            let sigs = sign_section(dnssec, section, self.options.ttl, now_ms, now);
            for (sig, refresh) in sigs {
                refresh_at = refresh_at.min(refresh);
                section.push(sig);
            }
        }
        if refresh_at != u32::MAX {
            let left = Duration::from_secs(u64::from(refresh_at.saturating_sub(now)));
            reply.valid_until = Some(Instant::now() + left);
        }
        reply
    }

    /// The types that exist at `owner` (for a NODATA denial), other than `qtype`.
    fn types_at(&self, owner: &Name, qtype: RecordType) -> Vec<RecordType> {
        let qname = owner.to_lowercase();
        let mut types: Vec<RecordType> = self
            .authoritative(owner, &qname, RecordType::ANY)
            .answers
            .iter()
            .map(|r| r.record.record_type())
            .filter(|t| *t != qtype)
            .collect();
        types.sort_unstable_by_key(|t| u16::from(*t));
        types.dedup();
        types
    }
}

/// The compact denial NSEC at `owner`: the next name is `\000.<owner>` (the
/// closest possible successor), the bitmap `types` plus NSEC and RRSIG.
fn denial(owner: &Name, types: Vec<RecordType>) -> Record {
    let lower = owner.to_lowercase();
    // A name too long for one more label covers only itself: still a proof
    // for the name asked.
    let next = Label::from_raw_bytes(&[0])
        .ok()
        .and_then(|zero| lower.prepend_label(zero).ok())
        .unwrap_or(lower);
    Record::from_rdata(
        owner.clone(),
        NEGATIVE_TTL,
        RData::DNSSEC(DNSSECRData::NSEC(NSEC::new_cover_self(next, types))),
    )
}

/// RRSIGs for each RRset of `section` and until when each is reused.
fn sign_section(
    dnssec: &Dnssec,
    section: &[Rec],
    ttl: TtlPolicy,
    now_ms: u64,
    now: u32,
) -> Vec<(Rec, u32)> {
    let mut sets: Vec<Vec<&Rec>> = Vec::new();
    let mut index: HashMap<(&Name, RecordType), usize> = HashMap::new();
    for rec in section {
        let key = (&rec.record.name, rec.record.record_type());
        match index.get(&key) {
            Some(&at) => {
                if let Some(set) = sets.get_mut(at) {
                    set.push(rec);
                }
            }
            None => {
                index.insert(key, sets.len());
                sets.push(vec![rec]);
            }
        }
    }
    let mut sigs = Vec::new();
    for set in &sets {
        // The RRSIG's TTL is the set's (its shortest), counting down with it.
        let Some(youngest) = set.iter().min_by_key(|r| r.record.ttl) else {
            continue;
        };
        let original = set
            .iter()
            .map(|r| full_ttl(r, ttl, now_ms))
            .max()
            .unwrap_or(0);
        let records: Vec<&Record> = set.iter().map(|r| &r.record).collect();
        for signed in dnssec
            .signers
            .iter()
            .filter_map(|signer| signer.sign(&records, original, now))
        {
            let rrsig = Record::from_rdata(
                youngest.record.name.clone(),
                youngest.record.ttl,
                RData::DNSSEC(DNSSECRData::RRSIG(signed.rrsig)),
            );
            let rec = Rec {
                record: rrsig,
                source: youngest.source.clone(),
            };
            sigs.push((rec, signed.refresh_at));
        }
    }
    sigs
}

/// The TTL `rec` has when its entry is fresh (the RRSIG's original TTL): a
/// countdown must never show more than what was signed.
fn full_ttl(rec: &Rec, ttl: TtlPolicy, now_ms: u64) -> u32 {
    match &rec.source {
        TtlSource::Entry(entry) => ttl.full(entry, now_ms).max(rec.record.ttl),
        TtlSource::Fixed | TtlSource::Upstream(_) => rec.record.ttl,
    }
}
