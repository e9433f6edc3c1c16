//! Authoritative answers: names under the domain from the registry, the
//! zone apex, and PTR for reverse names of registered IPs (pure: no I/O).

use std::{net::IpAddr, sync::Arc};

use hickory_proto::{
    op::ResponseCode,
    rr::{Name, RecordType},
};
use rand::seq::SliceRandom;

use super::{
    DnsHandler, answer,
    answer::Rec,
    reply::{Reply, fixed},
};
use crate::registry::{Entry, Pattern, name::pos, now_ms};

impl DnsHandler {
    /// Answers a name under the domain.
    pub(super) fn authoritative(&self, owner: &Name, qname: &Name, qtype: RecordType) -> Reply {
        let zone = &self.options.zone;
        let now = now_ms();
        let relative: Vec<&[u8]> = qname
            .iter()
            .take(qname.iter().count().saturating_sub(zone.labels))
            .collect();
        let mut reply = Reply {
            authoritative: true,
            ..Reply::default()
        };

        if relative.is_empty() {
            match qtype {
                RecordType::SOA => reply
                    .answers
                    .push(Rec::fixed(zone.soa(self.registry.serial()))),
                RecordType::NS => {
                    reply.answers.push(Rec::fixed(zone.ns()));
                    reply
                        .additionals
                        .extend(fixed(zone.ns_address(&zone.ns_name, false)));
                    reply
                        .additionals
                        .extend(fixed(zone.ns_address(&zone.ns_name, true)));
                }
                RecordType::DNSKEY => reply.answers.extend(self.dnskey()),
                RecordType::ANY => {
                    reply
                        .answers
                        .push(Rec::fixed(zone.soa(self.registry.serial())));
                    reply.answers.push(Rec::fixed(zone.ns()));
                    reply.answers.extend(self.dnskey());
                }
                _ => {}
            }
            return self.finish_nodata(reply);
        }

        let labels: Option<Vec<&str>> = relative
            .iter()
            .map(|l| std::str::from_utf8(l).ok())
            .collect();
        let Some(pattern) = labels
            .as_deref()
            .and_then(|l| Pattern::from_labels(l.iter().copied()))
        else {
            return self.nxdomain(reply);
        };

        let (mut primary, mut fallback) = self.matches(&pattern);
        if primary.is_empty() && fallback.is_empty() && pattern.depth() == 1 {
            // `<uuid>.<domain>`: the target of an SRV record for an IP host.
            if let Some(label) = pattern.at(pos::ENVIRONMENT) {
                primary = self.registry.by_uuid_label(label);
            }
        }
        if primary.is_empty() && fallback.is_empty() {
            if pattern.depth() == 1 && owner_is(qname, &zone.ns_name) {
                for v6 in [false, true] {
                    let wanted = if v6 { RecordType::AAAA } else { RecordType::A };
                    if qtype == wanted || qtype == RecordType::ANY {
                        reply.answers.extend(fixed(zone.ns_address(owner, v6)));
                    }
                }
                return self.finish_nodata(reply);
            }
            return self.nxdomain(reply);
        }
        reply.deps = primary.iter().chain(&fallback).cloned().collect();
        if self.options.round_robin {
            primary.shuffle(&mut rand::rng());
        } else {
            primary.sort_by(|a, b| a.service.uuid.cmp(&b.service.uuid));
        }
        fallback.sort_by(|a, b| a.service.uuid.cmp(&b.service.uuid));

        let ttl = self.options.ttl;
        // Address answers come from the region asked for; when it has none,
        // from the fail-over regions, so a client still reaches the service.
        let addr_source = if primary.iter().any(|e| e.ip.is_some()) {
            &primary
        } else {
            &fallback
        };
        let want_a = matches!(qtype, RecordType::A | RecordType::ANY);
        let want_aaaa = matches!(qtype, RecordType::AAAA | RecordType::ANY);
        if want_a {
            reply
                .answers
                .extend(answer::address_records(owner, addr_source, false, ttl, now));
        }
        if want_aaaa {
            reply
                .answers
                .extend(answer::address_records(owner, addr_source, true, ttl, now));
        }
        if matches!(qtype, RecordType::SRV | RecordType::ANY) {
            let (srv, glue) =
                answer::srv_records(owner, &zone.origin, &primary, &fallback, ttl, now);
            reply.answers.extend(srv);
            reply.additionals.extend(glue);
        }
        self.finish_nodata(reply)
    }

    /// Services matching `pattern` in the region asked for, and — when the
    /// query names a region — those in other regions for SRV fail-over.
    fn matches(&self, pattern: &Pattern) -> (Vec<Arc<Entry>>, Vec<Arc<Entry>>) {
        let primary = self.registry.lookup(pattern);
        let Some(region) = pattern.at(pos::REGION) else {
            return (primary, Vec::new());
        };
        let fallback = self
            .registry
            .lookup(&pattern.without_region())
            .into_iter()
            .filter(|e| e.labels.at(pos::REGION) != region)
            .collect();
        (primary, fallback)
    }

    /// PTR for the reverse name of a registered IP; `None` when the name is
    /// not a reverse name of one.
    pub(super) fn reverse(&self, owner: &Name, qname: &Name, qtype: RecordType) -> Option<Reply> {
        let net = qname.parse_arpa_name().ok()?;
        let full = match net.addr() {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        if net.prefix_len() != full {
            return None;
        }
        let entries = self.registry.by_ip(net.addr());
        if entries.is_empty() {
            return None;
        }
        let mut reply = Reply {
            authoritative: true,
            deps: entries.clone(),
            ..Reply::default()
        };
        if matches!(qtype, RecordType::PTR | RecordType::ANY) {
            reply.answers = answer::ptr_records(
                owner,
                &self.options.zone.origin,
                &entries,
                self.options.ttl,
                now_ms(),
            );
        }
        Some(reply)
    }

    fn nxdomain(&self, mut reply: Reply) -> Reply {
        reply.rcode = ResponseCode::NXDomain;
        reply.answers.clear();
        reply.authority = vec![Rec::fixed(self.options.zone.soa(self.registry.serial()))];
        reply
    }

    /// The apex DNSKEY records, when answers are signed.
    fn dnskey(&self) -> Vec<Rec> {
        self.options
            .dnssec
            .as_ref()
            .map(|d| fixed(d.dnskeys().iter().cloned()))
            .unwrap_or_default()
    }

    fn finish_nodata(&self, mut reply: Reply) -> Reply {
        if reply.answers.is_empty() {
            reply.authority = vec![Rec::fixed(self.options.zone.soa(self.registry.serial()))];
        }
        reply
    }
}

fn owner_is(qname: &Name, name: &Name) -> bool {
    qname.eq_ignore_root(name)
}
