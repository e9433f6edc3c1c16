//! The DNS answer path: hickory-server's [`RequestHandler`] over the registry.
//!
//! [`DnsHandler::handle_request`] checks protocol hygiene (opcode, question
//! count, EDNS version, zone transfers), then answers names under the domain
//! from the registry ([`answer`]), reverse names of registered IPs with PTR,
//! and forwards everything else upstream ([`forward`]) for clients allowed to
//! recurse; others get REFUSED, so skydns is never an open resolver.

pub mod answer;
pub mod forward;
pub mod tcp;
pub mod udp;
pub mod wire;
pub mod zone;

use std::{net::IpAddr, net::SocketAddr, sync::Arc, time::Instant};

use hickory_proto::{
    op::{
        Edns, Header, HeaderCounts, LowerQuery, MessageType, Metadata, OpCode, ResponseCode,
        emit_message_parts,
    },
    rr::{DNSClass, Name, RecordType},
    serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder},
};
use hickory_server::{
    net::{runtime::Time, xfer::Protocol},
    server::{Request, RequestHandler, ResponseHandler, ResponseInfo},
    zone_handler::MessageResponseBuilder,
};
use ipnet::IpNet;
use rand::seq::SliceRandom;

use crate::{
    metrics::Metrics,
    registry::{Entry, Pattern, Registry, name::pos, now_ms},
};
use answer::{Rec, TtlPolicy, TtlSource};
use forward::{Forwarder, Outcome};
use wire::WireCache;
pub use zone::Zone;

/// Largest UDP payload we advertise and send (RFC 9715's safe 1232 bytes).
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// Settings of the DNS side.
#[derive(Debug, Clone)]
pub struct DnsOptions {
    /// The zone served.
    pub zone: Zone,
    /// Shuffle A/AAAA answers (SkyDNS v1 default; `-no-round-robin` turns it off).
    pub round_robin: bool,
    /// Answer TTLs.
    pub ttl: TtlPolicy,
    /// Clients allowed to have outside names forwarded (`-allow-recursion`).
    pub allow_recursion: Vec<IpNet>,
}

/// Answers DNS queries from the registry.
#[derive(Debug, Clone)]
pub struct DnsHandler {
    registry: Registry,
    options: Arc<DnsOptions>,
    metrics: Arc<Metrics>,
    forwarder: Option<Arc<Forwarder>>,
    cache: Arc<WireCache>,
}

/// What to do with a request.
#[derive(Debug)]
enum Decision {
    /// Answer with this.
    Reply(Reply),
    /// Not ours: forward upstream (if allowed).
    Forward,
}

/// A response before encoding.
#[derive(Debug, Default)]
struct Reply {
    rcode: ResponseCode,
    authoritative: bool,
    answers: Vec<Rec>,
    authority: Vec<Rec>,
    additionals: Vec<Rec>,
    /// Built from the registry alone (not forwarded): the wire cache may keep it.
    cacheable: bool,
    /// Every entry the reply was built from, answered or not: a kept copy
    /// is valid only while all of them are live.
    deps: Vec<Arc<Entry>>,
}

impl Reply {
    fn error(rcode: ResponseCode) -> Self {
        Self {
            rcode,
            ..Self::default()
        }
    }
}

/// The first step of answering raw bytes: done at once, or a forward to await.
#[derive(Debug)]
pub enum Step {
    /// The response bytes (`None`: no reply is due).
    Done(Option<Vec<u8>>),
    /// A name outside the domain: finish with [`DnsHandler::finish_forward`].
    Forward(Box<Request>),
}

fn fixed(records: impl IntoIterator<Item = hickory_proto::rr::Record>) -> Vec<Rec> {
    records.into_iter().map(Rec::fixed).collect()
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
            cache: Arc::new(WireCache::default()),
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
    /// wire cache.
    pub fn respond_now(&self, request: &[u8], src: SocketAddr, protocol: Protocol) -> Step {
        let start = Instant::now();
        let mut buf = [0u8; wire::MAX_KEY];
        let key = if protocol == Protocol::Udp {
            wire::key(request, &mut buf)
        } else {
            None
        };
        // Read before the lookup: a change racing with it leaves a stale serial.
        let serial = self.registry.serial();
        let now = wire::Now {
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
        if header.counts.queries > 0 && wire::question_name_end(request).is_none() {
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
        if let (Some(_), Some(forwarder)) = (upstream, &self.forwarder) {
            counters.push(forwarder.cache_hits());
        }
        if let Some(asked) = key.filter(|_| reply.cacheable)
            && let Some(variant) = wire::Variant::build(
                bytes.clone(),
                [&reply.answers, &reply.authority, &reply.additionals],
                &reply.deps,
                self.options.round_robin && upstream.is_none(),
                upstream,
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
        let reply = self.forward(request).await;
        let bytes = self.encode(request, &reply, request.protocol());
        self.count(qtype(request), reply.rcode, start);
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

    /// Encodes `reply` for `request`, truncating over UDP to the client's payload.
    ///
    /// The question is written from its parsed form (not copied as raw bytes,
    /// as hickory-server's response builder does), so the encoder remembers
    /// its name and every owner name equal to it, or ending in it, becomes a
    /// 2-byte pointer (RFC 1035 4.1.4) — the first answer's owner included.
    fn encode(&self, request: &Request, reply: &Reply, protocol: Protocol) -> Vec<u8> {
        let edns = response_edns(request);
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(match (protocol, &edns) {
            (Protocol::Udp, Some(edns)) => edns.max_payload(),
            (Protocol::Udp, None) => 512,
            _ => u16::MAX,
        });
        let emitted = emit_message_parts(
            &self.metadata(request, reply),
            &mut request.queries.queries().iter().map(LowerQuery::original),
            &mut reply.answers.iter().map(|r| &r.record),
            &mut reply.authority.iter().map(|r| &r.record),
            &mut reply.additionals.iter().map(|r| &r.record),
            edns.as_ref(),
            None,
            &mut encoder,
        );
        if let Err(e) = emitted {
            tracing::warn!(error = %e, "cannot encode DNS response");
            return servfail(&request.metadata);
        }
        // A record that did not fit was rolled back, but the bytes it wrote
        // before running out of room are still in the buffer: cut them off.
        let end = encoder.offset();
        bytes.truncate(end);
        bytes
    }

    fn metadata(&self, request: &Request, reply: &Reply) -> Metadata {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.message_type = MessageType::Response;
        metadata.authoritative = reply.authoritative;
        metadata.recursion_available = self.forwarder.is_some();
        metadata.response_code = reply.rcode;
        metadata
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
            return Decision::Reply(self.authoritative(owner, &qname, qtype));
        }
        if let Some(reply) = self.reverse(owner, &qname, qtype) {
            return Decision::Reply(reply);
        }
        Decision::Forward
    }

    /// Whether `src` may have outside names forwarded (`-allow-recursion`).
    fn may_recurse(&self, src: SocketAddr) -> bool {
        let client = src.ip().to_canonical();
        self.options
            .allow_recursion
            .iter()
            .any(|net| net.contains(&client))
    }

    /// A forwarded answer the forwarding cache holds, without waiting; with
    /// when it was stored and when it expires. `None`: go the async way.
    fn forward_cached(&self, request: &Request) -> Option<(Reply, (Instant, Instant))> {
        let forwarder = self.forwarder.as_ref()?;
        if !self.may_recurse(request.src()) {
            return None;
        }
        let query = request.queries.queries().first()?;
        let (msg, stored, expires) = forwarder.cached(query.original())?;
        let elapsed = u32::try_from(stored.elapsed().as_secs()).unwrap_or(u32::MAX);
        let counted = |records: &[hickory_proto::rr::Record]| -> Vec<Rec> {
            records
                .iter()
                .map(|r| {
                    let mut record = r.clone();
                    record.ttl = r.ttl.saturating_sub(elapsed);
                    Rec {
                        record,
                        source: TtlSource::Upstream(r.ttl),
                    }
                })
                .collect()
        };
        let reply = Reply {
            rcode: msg.metadata.response_code,
            authoritative: false,
            answers: counted(&msg.answers),
            authority: counted(&msg.authorities),
            additionals: counted(&msg.additionals),
            cacheable: true,
            deps: Vec::new(),
        };
        Some((reply, (stored, expires)))
    }

    /// Forwards a name outside the domain, for clients allowed to recurse.
    async fn forward(&self, request: &Request) -> Reply {
        let Some(forwarder) = &self.forwarder else {
            return Reply::error(ResponseCode::Refused);
        };
        if !self.may_recurse(request.src()) {
            return Reply::error(ResponseCode::Refused);
        }
        let Some(query) = request.queries.queries().first() else {
            return Reply::error(ResponseCode::FormErr);
        };
        let tcp = request.protocol() == Protocol::Tcp;
        match forwarder
            .resolve(query.original(), request.edns.as_ref(), tcp)
            .await
        {
            Outcome::Answer(msg) => Reply {
                rcode: msg.metadata.response_code,
                authoritative: false,
                answers: fixed(msg.answers.iter().cloned()),
                authority: fixed(msg.authorities.iter().cloned()),
                additionals: fixed(msg.additionals.iter().cloned()),
                cacheable: false,
                deps: Vec::new(),
            },
            Outcome::Failed => Reply::error(ResponseCode::ServFail),
        }
    }

    /// Answers a name under the domain.
    fn authoritative(&self, owner: &Name, qname: &Name, qtype: RecordType) -> Reply {
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
                RecordType::ANY => {
                    reply
                        .answers
                        .push(Rec::fixed(zone.soa(self.registry.serial())));
                    reply.answers.push(Rec::fixed(zone.ns()));
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
                reply.answers.extend(fixed(
                    zone.ns_address(owner, qtype == RecordType::AAAA)
                        .filter(|_| matches!(qtype, RecordType::A | RecordType::AAAA)),
                ));
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
    fn reverse(&self, owner: &Name, qname: &Name, qtype: RecordType) -> Option<Reply> {
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

    fn finish_nodata(&self, mut reply: Reply) -> Reply {
        if reply.answers.is_empty() {
            reply.authority = vec![Rec::fixed(self.options.zone.soa(self.registry.serial()))];
        }
        reply
    }

    /// Counts one answered query; returns its counter for the wire cache.
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

/// A bare response with `rcode` to a request of which only `header` is known.
fn bare(metadata: &Metadata, rcode: ResponseCode) -> Vec<u8> {
    let mut metadata = Metadata::response_from_request(metadata);
    metadata.message_type = MessageType::Response;
    metadata.response_code = rcode;
    let header = Header {
        metadata,
        counts: HeaderCounts::default(),
    };
    let mut bytes = Vec::with_capacity(12);
    let mut encoder = BinEncoder::new(&mut bytes);
    if header.emit(&mut encoder).is_err() {
        bytes.clear();
    }
    bytes
}

/// Whether a message of `len` bytes can hold the records its header counts:
/// a question takes at least 5 bytes (root name, type, class), a record 11.
fn counts_fit(header: &Header, len: usize) -> bool {
    let c = &header.counts;
    let records = usize::from(c.answers) + usize::from(c.authorities) + usize::from(c.additionals);
    12 + usize::from(c.queries) * 5 + records * 11 <= len
}

fn formerr(header: &Header) -> Vec<u8> {
    bare(&header.metadata, ResponseCode::FormErr)
}

fn servfail(metadata: &Metadata) -> Vec<u8> {
    bare(metadata, ResponseCode::ServFail)
}

fn owner_is(qname: &Name, name: &Name) -> bool {
    qname.eq_ignore_root(name)
}

/// The EDNS OPT record of a response: our payload size, capped by the
/// client's so that truncation happens at the size the client can take.
fn response_edns(request: &Request) -> Option<Edns> {
    let req = request.edns.as_ref()?;
    let mut edns = Edns::new();
    edns.set_version(0);
    edns.set_max_payload(req.max_payload().clamp(512, MAX_UDP_PAYLOAD));
    Some(edns)
}

#[async_trait::async_trait]
impl RequestHandler for DnsHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let start = Instant::now();
        let edns = response_edns(request);
        let reply = match self.reply_now(request) {
            Some(reply) => reply,
            None => self.forward(request).await,
        };
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(edns) = &edns {
            builder.edns(edns);
        }
        let response = builder.build(
            self.metadata(request, &reply),
            reply.answers.iter().map(|r| &r.record),
            reply.authority.iter().map(|r| &r.record),
            std::iter::empty(),
            reply.additionals.iter().map(|r| &r.record),
        );
        self.count(qtype(request), reply.rcode, start);
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, "cannot send DNS response");
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}
