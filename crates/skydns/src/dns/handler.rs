//! The answer path from bytes to bytes: [`DnsHandler::respond_now`] answers
//! from the response cache, or parses, checks protocol hygiene, decides
//! ([`super::authority`] for names under the domain, [`super::forwarded`]
//! for the rest) and encodes ([`super::encode`]).

use std::{net::SocketAddr, sync::Arc, time::Instant};

use super::{
    DnsOptions,
    encode::{counts_fit, formerr},
    forward::Forwarder,
    reply::{Decision, Reply, Step},
    response_cache::{self, ResponseCache},
};
use crate::{
    metrics::Metrics,
    registry::{Registry, now_ms},
};
use hickory_proto::{
    op::{Header, MessageType, OpCode, ResponseCode},
    rr::{DNSClass, Name, RecordType},
    serialize::binary::{BinDecodable, BinDecoder},
};
use hickory_server::{net::xfer::Protocol, server::Request};

/// Answers DNS queries from the registry.
#[derive(Debug, Clone)]
pub struct DnsHandler {
    pub(super) registry: Registry,
    pub(super) options: Arc<DnsOptions>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) forwarder: Option<Arc<Forwarder>>,
    pub(super) cache: Arc<ResponseCache>,
}

impl DnsHandler {
    /// A handler answering from `registry`, forwarding other names through
    /// `forwarder` when there is one.
    pub fn new(
        registry: Registry,
        options: DnsOptions,
        metrics: Arc<Metrics>,
        forwarder: Option<Arc<Forwarder>>,
    ) -> Self {
        Self {
            registry,
            options: Arc::new(options),
            metrics,
            forwarder,
            cache: Arc::new(ResponseCache::default()),
        }
    }

    /// Answers one DNS message: `request` bytes in, response bytes out
    /// (`None` when no reply is due: a response sent to us, or fewer bytes
    /// than a header). The path the servers use for `protocol`, the UDP wire
    /// cache included.
    pub async fn respond(
        &self,
        request: &[u8],
        src: SocketAddr,
        protocol: Protocol,
    ) -> Option<Vec<u8>> {
        match self.respond_now(request, src, protocol) {
            Step::Done(bytes) => bytes,
            Step::Forward(request) => Some(self.finish_forward(&request).await),
        }
    }

    /// Answers what can be answered without waiting: everything but
    /// forwarding. Repeated UDP questions under the domain come from the
    /// response cache.
    pub fn respond_now(&self, request: &[u8], src: SocketAddr, protocol: Protocol) -> Step {
        let start = Instant::now();
        let mut buf = [0u8; response_cache::MAX_KEY];
        let key = if protocol == Protocol::Udp {
            response_cache::key(request, &mut buf)
        } else {
            None
        };
        // Read before the lookup: a change racing with it leaves a stale serial.
        let serial = self.registry.serial();
        let now = response_cache::Now {
            ms: now_ms(),
            instant: start,
        };
        if let Some(asked) = &key
            && let Some(bytes) = self.cache.get(
                asked,
                serial,
                self.options.ttl,
                now,
                self.options.round_robin,
                || self.may_recurse(src),
            )
        {
            self.metrics
                .dns_latency
                .observe(start.elapsed().as_secs_f64());
            return Step::Done(Some(bytes));
        }
        let mut decoder = BinDecoder::new(request);
        let Ok(header) = Header::read(&mut decoder) else {
            return Step::Done(None);
        };
        if header.metadata.message_type == MessageType::Response {
            // Never answer responses: no reflection loops.
            return Step::Done(None);
        }
        if !counts_fit(&header, request.len()) {
            // Counts no message of this length can hold: the decoder would
            // reserve room for them first, which a flood turns into memory.
            self.count(RecordType::Unknown(0), ResponseCode::FormErr, start);
            return Step::Done(Some(formerr(&header)));
        }
        if header.counts.queries > 0 && response_cache::question_name_end(request).is_none() {
            // A compressed or overlong question name: hickory would echo it
            // verbatim, and a pointer into the header makes the reply unparseable.
            self.count(RecordType::Unknown(0), ResponseCode::FormErr, start);
            return Step::Done(Some(formerr(&header)));
        }
        let parsed = match Request::from_bytes(request.to_vec(), src, protocol) {
            Ok(parsed) => parsed,
            Err(e) => {
                tracing::debug!(error = %e, %src, "malformed DNS request");
                self.count(RecordType::Unknown(0), ResponseCode::FormErr, start);
                return Step::Done(Some(formerr(&header)));
            }
        };
        let (reply, upstream) = match self.reply_now(&parsed) {
            Some(reply) => (reply, None),
            // Not ours and nobody to forward to (or a client not allowed to
            // recurse): REFUSED at once, no trip through the forwarding queue.
            None if self.forwarder.is_none() || !self.may_recurse(src) => {
                (Reply::error(ResponseCode::Refused), None)
            }
            None => match self.forward_cached(&parsed) {
                Some((reply, times)) => (reply, Some(times)),
                None => return Step::Forward(Box::new(parsed)),
            },
        };
        let bytes = self.encode(&parsed, &reply, protocol);
        let mut counters = vec![self.count(qtype(&parsed), reply.rcode, start)];
        if let (Some(from), Some(forwarder)) = (&upstream, &self.forwarder) {
            counters.push(forwarder.cache_hits());
            counters.push(from.hits.clone());
        }
        if let Some(asked) = key.filter(|_| reply.cacheable)
            && let Some(variant) = response_cache::Variant::build(
                bytes.clone(),
                [&reply.answers, &reply.authority, &reply.additionals],
                &reply.deps,
                self.options.round_robin && upstream.is_none(),
                upstream.as_ref().map(|from| (from.stored, from.keep_until)),
                reply.valid_until,
            )
        {
            self.cache.insert(
                asked.key,
                serial,
                variant,
                self.options.round_robin && upstream.is_none(),
                counters,
            );
        }
        Step::Done(Some(bytes))
    }

    /// Forwards a request [`Self::respond_now`] handed back, and encodes the answer.
    pub async fn finish_forward(&self, request: &Request) -> Vec<u8> {
        let start = Instant::now();
        let protocol = request.protocol();
        let (bytes, rcode) = match self.forward(request).await {
            Ok(answer) => (
                self.relay(request, &answer, protocol)
                    .unwrap_or_else(|| self.encode_forwarded(request, &answer.message, protocol)),
                answer.message.metadata.response_code,
            ),
            Err(rcode) => (self.encode(request, &Reply::error(rcode), protocol), rcode),
        };
        self.count(qtype(request), rcode, start);
        bytes
    }

    /// The reply to a parsed request when it needs no I/O (`None`: forward it).
    fn reply_now(&self, request: &Request) -> Option<Reply> {
        if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            return Some(Reply::error(ResponseCode::BADVERS));
        }
        match self.decide(request) {
            Decision::Reply(reply) => Some(reply),
            Decision::Forward => None,
        }
    }

    /// Decides what to do with one request (no I/O).
    fn decide(&self, request: &Request) -> Decision {
        match self.decide_uncached(request) {
            Decision::Reply(mut reply) => {
                reply.cacheable =
                    matches!(reply.rcode, ResponseCode::NoError | ResponseCode::NXDomain);
                Decision::Reply(reply)
            }
            Decision::Forward => Decision::Forward,
        }
    }

    fn decide_uncached(&self, request: &Request) -> Decision {
        if request.metadata.op_code != OpCode::Query {
            return Decision::Reply(Reply::error(ResponseCode::NotImp));
        }
        let queries = request.queries.queries();
        let [query] = queries else {
            return Decision::Reply(Reply::error(ResponseCode::FormErr));
        };
        if query.query_class() != DNSClass::IN {
            return Decision::Reply(Reply::error(ResponseCode::Refused));
        }
        let qtype = query.query_type();
        if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
            return Decision::Reply(Reply::error(ResponseCode::Refused));
        }
        let owner = query.original().name();
        let qname = Name::from(query.name());
        let zone = &self.options.zone;
        if zone.origin.zone_of(&qname) {
            let reply = self.authoritative(owner, &qname, qtype);
            let edns = request.edns.as_ref().map(|e| e.flags());
            return Decision::Reply(match (&self.options.dnssec, edns) {
                (Some(dnssec), Some(flags)) if flags.dnssec_ok => {
                    let compact_ok = flags.z & super::dnssec::COMPACT_OK != 0;
                    self.signed(dnssec, reply, owner, qtype, compact_ok)
                }
                _ => reply,
            });
        }
        if let Some(reply) = self.reverse(owner, &qname, qtype) {
            return Decision::Reply(reply);
        }
        Decision::Forward
    }

    /// Whether `src` may have outside names forwarded (`-allow-recursion`).
    pub(super) fn may_recurse(&self, src: SocketAddr) -> bool {
        let client = src.ip().to_canonical();
        self.options
            .allow_recursion
            .iter()
            .any(|net| net.contains(&client))
    }

    /// Counts one answered query; returns its counter for the response cache.
    fn count(
        &self,
        qtype: RecordType,
        rcode: ResponseCode,
        start: Instant,
    ) -> prometheus_client::metrics::counter::Counter {
        let counter = self.metrics.dns_counter(qtype, rcode);
        counter.inc();
        self.metrics
            .dns_latency
            .observe(start.elapsed().as_secs_f64());
        counter
    }
}

/// The type asked (`Unknown(0)` when there is no question).
fn qtype(request: &Request) -> RecordType {
    request
        .queries
        .queries()
        .first()
        .map_or(RecordType::Unknown(0), |q| q.query_type())
}

#[cfg(test)]
mod tests {
    //! Protocol hygiene of the answer path, bytes in and bytes out, with no
    //! socket: what a request that is not a plain question gets.

    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    use hickory_proto::{
        op::{Edns, Message, MessageType, OpCode, Query, ResponseCode},
        rr::{Name, RecordType},
    };
    use hickory_server::net::xfer::Protocol;
    use skydns_api::Service;

    use super::*;
    use crate::{
        config::default_allow_recursion,
        dns::{MAX_UDP_PAYLOAD, Zone},
    };

    const RAILS: &str = "rails.production.skydns.local.";
    const CLIENT: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5353);

    async fn handler() -> DnsHandler {
        let registry = crate::registry::test_support::registry().await;
        let service = Service {
            name: "rails".into(),
            environment: "production".into(),
            host: "127.0.0.10".into(),
            port: 80,
            ttl: 60,
            ..Service::default()
        };
        registry.register("r1", service).await.expect("register");
        let options = DnsOptions {
            zone: Zone::new("skydns.local", IpAddr::V4(Ipv4Addr::LOCALHOST)).expect("zone"),
            round_robin: false,
            ttl: crate::dns::answer::TtlPolicy {
                no_expire_ttl: 3600,
                max_ttl: 0,
            },
            allow_recursion: default_allow_recursion(),
            dnssec: None,
        };
        DnsHandler::new(registry, options, Arc::new(Metrics::new()), None)
    }

    fn query(name: &str, rtype: RecordType) -> Message {
        let mut m = Message::new(4242, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(Name::from_ascii(name).expect("name"), rtype));
        m
    }

    async fn ask(h: &DnsHandler, m: &Message, protocol: Protocol) -> Message {
        let bytes = m.to_vec().expect("encode");
        let reply = h.respond(&bytes, CLIENT, protocol).await.expect("a reply");
        Message::from_vec(&reply).expect("decodable reply")
    }

    #[tokio::test]
    async fn a_plain_question_is_answered_as_the_baseline() {
        let h = handler().await;
        let r = ask(&h, &query(RAILS, RecordType::A), Protocol::Udp).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert_eq!(r.answers.len(), 1);
        assert!(r.metadata.authoritative);
        assert_eq!(r.metadata.id, 4242);
    }

    #[tokio::test]
    async fn an_unknown_edns_version_is_badvers_with_our_opt() {
        let h = handler().await;
        let mut q = query(RAILS, RecordType::A);
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        edns.set_version(1);
        q.set_edns(edns);
        let r = ask(&h, &q, Protocol::Udp).await;
        // BADVERS is extended rcode 16 (high bits in the OPT record); hickory
        // decodes 16 as BADSIG, the other name of the same number.
        assert_eq!(
            u16::from(r.metadata.response_code),
            u16::from(ResponseCode::BADVERS)
        );
        assert!(r.answers.is_empty());
        assert_eq!(r.edns.as_ref().map(Edns::version), Some(0));
    }

    #[tokio::test]
    async fn edns_is_echoed_with_our_payload_size_and_absent_when_not_asked() {
        let h = handler().await;
        for (payload, want) in [(4096, MAX_UDP_PAYLOAD), (1000, 1000), (100, 512)] {
            let mut q = query(RAILS, RecordType::A);
            let mut edns = Edns::new();
            edns.set_max_payload(payload);
            q.set_edns(edns);
            let r = ask(&h, &q, Protocol::Udp).await;
            assert_eq!(
                r.edns.as_ref().map(Edns::max_payload),
                Some(want),
                "{payload}"
            );
        }
        let mut nx = query("nosuch.skydns.local.", RecordType::A);
        nx.set_edns(Edns::new());
        let r = ask(&h, &nx, Protocol::Udp).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        assert!(r.edns.is_some(), "OPT on NXDOMAIN too");
        let r = ask(&h, &query(RAILS, RecordType::A), Protocol::Udp).await;
        assert!(r.edns.is_none(), "no OPT when the query had none");
    }

    #[tokio::test]
    async fn zero_or_two_questions_are_formerr_over_udp_and_tcp() {
        let h = handler().await;
        let none = Message::new(4242, MessageType::Query, OpCode::Query);
        let r = ask(&h, &none, Protocol::Udp).await;
        assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
        assert_eq!(r.metadata.id, 4242);
        let mut two = query(RAILS, RecordType::A);
        two.add_query(Query::query(
            Name::from_ascii("r1.skydns.local.").expect("name"),
            RecordType::A,
        ));
        for protocol in [Protocol::Udp, Protocol::Tcp] {
            let r = ask(&h, &two, protocol).await;
            assert_eq!(
                r.metadata.response_code,
                ResponseCode::FormErr,
                "{protocol:?}"
            );
            assert!(r.answers.is_empty());
        }
    }

    #[tokio::test]
    async fn opcodes_other_than_query_are_notimp() {
        let h = handler().await;
        for op in [OpCode::Status, OpCode::Notify, OpCode::Update] {
            let mut m = Message::new(7, MessageType::Query, op);
            m.add_query(Query::query(
                Name::from_ascii(RAILS).expect("name"),
                RecordType::A,
            ));
            let r = ask(&h, &m, Protocol::Udp).await;
            assert_eq!(r.metadata.response_code, ResponseCode::NotImp, "{op:?}");
            assert!(r.answers.is_empty(), "{op:?}");
        }
    }

    #[tokio::test]
    async fn zone_transfers_and_other_classes_are_refused() {
        let h = handler().await;
        for (rtype, protocol) in [
            (RecordType::AXFR, Protocol::Tcp),
            (RecordType::IXFR, Protocol::Tcp),
            (RecordType::AXFR, Protocol::Udp),
        ] {
            let r = ask(&h, &query("skydns.local.", rtype), protocol).await;
            assert_eq!(r.metadata.response_code, ResponseCode::Refused, "{rtype}");
            assert!(r.answers.is_empty());
        }
        let mut chaos = query(RAILS, RecordType::A);
        chaos.queries[0].set_query_class(hickory_proto::rr::DNSClass::CH);
        let r = ask(&h, &chaos, Protocol::Udp).await;
        assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    }

    #[tokio::test]
    async fn responses_and_fragments_get_no_reply_and_bad_headers_formerr() {
        let h = handler().await;
        let mut response = query(RAILS, RecordType::A);
        response.metadata.message_type = MessageType::Response;
        let bytes = response.to_vec().expect("encode");
        assert!(
            h.respond(&bytes, CLIENT, Protocol::Udp).await.is_none(),
            "QR=1: no reply"
        );
        assert!(
            h.respond(&bytes[..11], CLIENT, Protocol::Udp)
                .await
                .is_none(),
            "under a header"
        );

        // A header counting more records than the message could hold.
        let mut lying = query(RAILS, RecordType::A).to_vec().expect("encode");
        lying[6] = 0xff; // answer count 0xff00
        let r = h
            .respond(&lying, CLIENT, Protocol::Udp)
            .await
            .expect("reply");
        let r = Message::from_vec(&r).expect("decodable");
        assert_eq!(r.metadata.response_code, ResponseCode::FormErr);

        // A question name that is a compression pointer into the header.
        let mut pointer = query(RAILS, RecordType::A).to_vec().expect("encode");
        pointer.truncate(12);
        pointer.extend_from_slice(&[0xc0, 0x00, 0x00, 0x01, 0x00, 0x01]);
        let r = h
            .respond(&pointer, CLIENT, Protocol::Udp)
            .await
            .expect("reply");
        let r = Message::from_vec(&r).expect("the FORMERR reply itself parses");
        assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
    }

    #[tokio::test]
    async fn outside_names_are_refused_without_a_forwarder() {
        let h = handler().await;
        let r = ask(&h, &query("www.example.", RecordType::A), Protocol::Udp).await;
        assert_eq!(r.metadata.response_code, ResponseCode::Refused);
        assert!(!r.metadata.recursion_available);
    }
}
