//! RRSIGs made with the zone key, kept per RRset content: an RRset answered
//! again with the same owner, type, original TTL and data (a heartbeat
//! changes none of them) reuses its signature until the signature is a day
//! old, so signing costs once per change, not once per query.

use dashmap::DashMap;
use hickory_proto::{
    dnssec::{
        TBS,
        rdata::{RRSIG, SigInput},
    },
    rr::{DNSClass, Name, Record, SerialNumber},
};
use prometheus_client::metrics::counter::Counter;

use super::key::ZoneKey;

/// How far back a signature's inception is dated: validators whose clocks
/// run behind ours still accept it.
pub(crate) const BACKDATE_SECS: u32 = 3600;
/// How long a signature is valid from the moment it is made.
pub(crate) const VALIDITY_SECS: u32 = 7 * 86_400;
/// How long a kept signature is reused: every signature served has at least
/// `VALIDITY_SECS - REFRESH_SECS` (6 days) of validity left.
pub(crate) const REFRESH_SECS: u32 = 86_400;
/// Signatures kept before the cache is emptied and refilled.
const CAPACITY: usize = 10_000;
/// Where the expiration and inception fields sit in the signed data: after
/// type covered (2), algorithm (1), labels (1), original TTL (4) — RFC 4034 3.1.
const TIMES: std::ops::Range<usize> = 8..16;

/// A signature and until when it is reused.
#[derive(Debug, Clone)]
pub(crate) struct Signed {
    /// The RRSIG data.
    pub(crate) rrsig: RRSIG,
    /// Unix time after which it is made again.
    pub(crate) refresh_at: u32,
}

/// Signs RRsets of the zone, caching the signatures.
pub(crate) struct Signatures {
    key: ZoneKey,
    signer_name: Name,
    /// Signed data with its times zeroed → the signature.
    cache: DashMap<Box<[u8]>, Signed, foldhash::fast::RandomState>,
    made: Counter,
}

impl std::fmt::Debug for Signatures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signatures")
            .field("key", &self.key)
            .field("kept", &self.cache.len())
            .finish_non_exhaustive()
    }
}

impl Signatures {
    /// Signatures by `key` for the zone `signer_name`; `made` counts each
    /// signature computed (not reused).
    pub(crate) fn new(key: ZoneKey, signer_name: Name, made: Counter) -> Self {
        Self {
            key,
            signer_name,
            cache: DashMap::default(),
            made,
        }
    }

    /// The RRSIG over `rrset` (records of one owner and type) with
    /// `original_ttl`, as of `now` (Unix seconds). `None` when it cannot be
    /// encoded or signed (logged).
    pub(crate) fn sign(&self, rrset: &[&Record], original_ttl: u32, now: u32) -> Option<Signed> {
        let first = rrset.first()?;
        let mut input = SigInput {
            type_covered: first.record_type(),
            algorithm: self.key.algorithm(),
            // Not counting a leading `*` (RFC 4034 3.1.3), as Name::num_labels does.
            num_labels: first.name.num_labels(),
            original_ttl,
            sig_expiration: SerialNumber::new(0),
            sig_inception: SerialNumber::new(0),
            key_tag: self.key.tag,
            signer_name: self.signer_name.clone(),
        };
        let unsigned = match TBS::from_input(
            &first.name,
            DNSClass::IN,
            &input,
            rrset.iter().copied(),
        ) {
            Ok(tbs) => tbs,
            Err(e) => {
                tracing::warn!(error = %e, name = %first.name, "cannot encode an RRset to sign");
                return None;
            }
        };
        let mut data = unsigned.as_ref().to_vec();
        if let Some(kept) = self.cache.get(data.as_slice())
            && now < kept.refresh_at
        {
            return Some(kept.clone());
        }
        let inception = now.saturating_sub(BACKDATE_SECS);
        let expiration = now.saturating_add(VALIDITY_SECS);
        let times = [expiration.to_be_bytes(), inception.to_be_bytes()].concat();
        data.get_mut(TIMES)?.copy_from_slice(&times);
        let signature = match self.key.signing.sign(&TBS::from(data.as_slice())) {
            Ok(signature) => signature,
            Err(e) => {
                tracing::warn!(error = %e, "cannot sign an RRset");
                return None;
            }
        };
        self.made.inc();
        input.sig_expiration = SerialNumber::new(expiration);
        input.sig_inception = SerialNumber::new(inception);
        let signed = Signed {
            rrsig: RRSIG::from_sig(input, signature),
            refresh_at: now.saturating_add(REFRESH_SECS),
        };
        if self.cache.len() >= CAPACITY {
            self.cache.clear();
        }
        data.get_mut(TIMES)?.fill(0);
        self.cache.insert(data.into_boxed_slice(), signed.clone());
        Some(signed)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::{
        dnssec::{Algorithm, Verifier, crypto::EcdsaSigningKey, rdata::DNSKEY},
        rr::{RData, rdata::A},
    };

    use super::*;

    fn signatures() -> (Signatures, DNSKEY, Counter) {
        let pkcs8 = EcdsaSigningKey::generate_pkcs8(Algorithm::ECDSAP256SHA256).expect("key");
        let signing = EcdsaSigningKey::from_pkcs8(&pkcs8, Algorithm::ECDSAP256SHA256).expect("key");
        let public = hickory_proto::dnssec::SigningKey::to_public_key(&signing).expect("public");
        let dnskey = DNSKEY::with_flags(257, public);
        let key = ZoneKey {
            tag: dnskey.calculate_key_tag().expect("tag"),
            dnskey: dnskey.clone(),
            signing: Box::new(signing),
        };
        let made = Counter::default();
        let zone = Name::from_ascii("skydns.local.").expect("name");
        (Signatures::new(key, zone, made.clone()), dnskey, made)
    }

    fn a(owner: &str, last: u8, ttl: u32) -> Record {
        Record::from_rdata(
            Name::from_ascii(owner).expect("name"),
            ttl,
            RData::A(A(Ipv4Addr::new(10, 0, 0, last))),
        )
    }

    #[test]
    fn a_signature_verifies_and_is_reused_for_the_same_content_in_any_case_or_order() {
        let (sigs, dnskey, made) = signatures();
        let now = 1_800_000_000;
        let set = [
            a("Redis.skydns.local.", 1, 25),
            a("Redis.skydns.local.", 2, 30),
        ];
        let refs: Vec<&Record> = set.iter().collect();
        let signed = sigs.sign(&refs, 30, now).expect("signed");
        let input = signed.rrsig.input();
        assert_eq!(input.sig_inception.get(), now - BACKDATE_SECS);
        assert_eq!(input.sig_expiration.get(), now + VALIDITY_SECS);
        assert_eq!(input.num_labels, 3);
        dnskey
            .verify_rrsig(&set[0].name, DNSClass::IN, &signed.rrsig, set.iter())
            .expect("verifies");

        // Same content, other letter case and order, other current TTLs: reused.
        let again = [
            a("redis.SKYDNS.local.", 2, 10),
            a("redis.skydns.local.", 1, 3),
        ];
        let refs: Vec<&Record> = again.iter().collect();
        let reused = sigs.sign(&refs, 30, now + 60).expect("signed");
        assert_eq!(reused.rrsig, signed.rrsig);
        assert_eq!(made.get(), 1);

        // New data, a new original TTL, or a day later: signed anew.
        let changed = [a("redis.skydns.local.", 3, 30)];
        sigs.sign(&changed.iter().collect::<Vec<_>>(), 30, now)
            .expect("signed");
        sigs.sign(&refs, 60, now).expect("signed");
        let later = sigs.sign(&refs, 30, now + REFRESH_SECS).expect("signed");
        assert_ne!(later.rrsig, signed.rrsig);
        assert_eq!(made.get(), 4);
        dnskey
            .verify_rrsig(&again[0].name, DNSClass::IN, &later.rrsig, again.iter())
            .expect("verifies");
    }

    #[test]
    fn a_tampered_rrset_does_not_verify() {
        let (sigs, dnskey, _) = signatures();
        let set = [a("db.skydns.local.", 1, 30)];
        let signed = sigs
            .sign(&set.iter().collect::<Vec<_>>(), 30, 1_800_000_000)
            .expect("signed");
        let other = [a("db.skydns.local.", 9, 30)];
        assert!(
            dnskey
                .verify_rrsig(&other[0].name, DNSClass::IN, &signed.rrsig, other.iter())
                .is_err()
        );
    }
}
