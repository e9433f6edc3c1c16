//! The zone apex: the domain's own SOA and NS records.

use std::net::IpAddr;

use hickory_proto::rr::{
    Label, Name, RData, Record,
    rdata::{A, AAAA, NS, SOA},
};

/// Negative-caching TTL (SOA minimum) and the SOA/NS records' TTL, in seconds.
/// Short on purpose: a name that appears when a container starts should not
/// stay NXDOMAIN in a resolver's cache for long.
pub(crate) const NEGATIVE_TTL: u32 = 5;
/// TTL of the apex NS record and the name server's address.
const NS_TTL: u32 = 3600;

/// The domain skydns is authoritative for, and its apex records.
#[derive(Debug, Clone)]
pub struct Zone {
    /// The domain, lowercase and fully qualified (`skydns.local.`).
    pub origin: Name,
    /// Its label count.
    pub labels: usize,
    /// `ns1.<domain>.`: the name server's own name.
    pub ns_name: Name,
    hostmaster: Name,
    /// The DNS listener's address, answered for `ns1.<domain>` when specific.
    pub ns_addr: Option<IpAddr>,
}

impl Zone {
    /// A zone for `domain` (`skydns.local`), served from `dns_ip`.
    ///
    /// # Errors
    /// When `domain` is not a valid DNS name.
    pub fn new(domain: &str, dns_ip: IpAddr) -> Result<Self, hickory_proto::ProtoError> {
        let mut origin = Name::from_ascii(domain.trim_end_matches('.'))?.to_lowercase();
        origin.set_fqdn(true);
        // ASCII labels: a `&str` would go through IDNA mapping, whose code
        // and tables start-up would otherwise page in for two fixed words.
        let ns_name = origin.prepend_label(Label::from_ascii("ns1")?)?;
        let hostmaster = origin.prepend_label(Label::from_ascii("hostmaster")?)?;
        let ns_addr = (!dns_ip.is_unspecified()).then_some(dns_ip);
        Ok(Self {
            labels: usize::from(origin.num_labels()),
            origin,
            ns_name,
            hostmaster,
            ns_addr,
        })
    }

    /// The SOA record with `serial`.
    pub fn soa(&self, serial: u32) -> Record {
        Record::from_rdata(
            self.origin.clone(),
            NEGATIVE_TTL,
            RData::SOA(SOA::new(
                self.ns_name.clone(),
                self.hostmaster.clone(),
                serial,
                28800,
                7200,
                604_800,
                NEGATIVE_TTL,
            )),
        )
    }

    /// The apex NS record.
    pub fn ns(&self) -> Record {
        Record::from_rdata(
            self.origin.clone(),
            NS_TTL,
            RData::NS(NS(self.ns_name.clone())),
        )
    }

    /// The name server's address record for `owner`, if it has one of `v6`'s family.
    pub fn ns_address(&self, owner: &Name, v6: bool) -> Option<Record> {
        match (self.ns_addr?, v6) {
            (IpAddr::V4(ip), false) => {
                Some(Record::from_rdata(owner.clone(), NS_TTL, RData::A(A(ip))))
            }
            (IpAddr::V6(ip), true) => Some(Record::from_rdata(
                owner.clone(),
                NS_TTL,
                RData::AAAA(AAAA(ip)),
            )),
            _ => None,
        }
    }
}
