//! Encoding a [`Reply`] for the wire, and the bare error responses sent
//! when a request cannot be parsed.

use hickory_proto::{
    op::{
        Edns, Header, HeaderCounts, LowerQuery, Message, MessageType, Metadata, ResponseCode,
        emit_message_parts,
    },
    rr::Record,
    serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder},
};
use hickory_server::{net::xfer::Protocol, server::Request};

use super::{
    DnsHandler, HEADER_LEN, MAX_UDP_PAYLOAD, dnssec::COMPACT_OK, forward::Answer, reply::Reply,
};

impl DnsHandler {
    /// Encodes `reply` for `request`, truncating over UDP to the client's payload.
    ///
    /// The question is written from its parsed form (not copied as raw bytes,
    /// as hickory-server's response builder does), so the encoder remembers
    /// its name and every owner name equal to it, or ending in it, becomes a
    /// 2-byte pointer (RFC 1035 4.1.4) — the first answer's owner included.
    pub(super) fn encode(&self, request: &Request, reply: &Reply, protocol: Protocol) -> Vec<u8> {
        self.encode_sections(
            request,
            &self.metadata(request, reply.rcode, reply.authoritative),
            [
                &mut reply.answers.iter().map(|r| &r.record),
                &mut reply.authority.iter().map(|r| &r.record),
                &mut reply.additionals.iter().map(|r| &r.record),
            ],
            protocol,
        )
    }

    /// Encodes an upstream's answer for `request` as [`Self::encode`] does,
    /// straight from its records (no copy of them is made first).
    pub(super) fn encode_forwarded(
        &self,
        request: &Request,
        answer: &Message,
        protocol: Protocol,
    ) -> Vec<u8> {
        self.encode_sections(
            request,
            &self.metadata(request, answer.metadata.response_code, false),
            [
                &mut answer.answers.iter(),
                &mut answer.authorities.iter(),
                &mut answer.additionals.iter(),
            ],
            protocol,
        )
    }

    /// The upstream's reply sent on as it came, under the header
    /// [`Self::encode_forwarded`] would write and the client's own question
    /// bytes, when that makes the same response: neither side used EDNS (an
    /// OPT record belongs to one hop), one question of the same length (so
    /// every compression pointer still points where it did), and it fits the
    /// client's transport. `None`: encode it instead.
    pub(super) fn relay(
        &self,
        request: &Request,
        answer: &Answer,
        protocol: Protocol,
    ) -> Option<Vec<u8>> {
        let wire = answer.wire.as_deref()?;
        let msg = &answer.message;
        if request.edns.is_some()
            || msg.edns.is_some()
            || msg.metadata.truncation
            || request.queries.len() != 1
            || msg.queries.len() != 1
            || (protocol == Protocol::Udp && wire.len() > 512)
        {
            return None;
        }
        let question = request.queries.as_bytes();
        let end = HEADER_LEN + question.len();
        if !wire.get(HEADER_LEN..end)?.eq_ignore_ascii_case(question) {
            return None;
        }
        let mut header = Header::read(&mut BinDecoder::new(wire)).ok()?;
        header.metadata = self.metadata(request, msg.metadata.response_code, false);
        let mut out = Vec::with_capacity(wire.len());
        header.emit(&mut BinEncoder::new(&mut out)).ok()?;
        out.extend_from_slice(question);
        out.extend_from_slice(wire.get(end..)?);
        Some(out)
    }

    fn encode_sections(
        &self,
        request: &Request,
        metadata: &Metadata,
        [answers, authority, additionals]: [&mut dyn Iterator<Item = &Record>; 3],
        protocol: Protocol,
    ) -> Vec<u8> {
        let edns = response_edns(request, self.options.dnssec.is_some());
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(match (protocol, &edns) {
            (Protocol::Udp, Some(edns)) => edns.max_payload(),
            (Protocol::Udp, None) => 512,
            _ => u16::MAX,
        });
        let emitted = emit_message_parts(
            metadata,
            &mut request.queries.queries().iter().map(LowerQuery::original),
            &mut { answers },
            &mut { authority },
            &mut { additionals },
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

    fn metadata(&self, request: &Request, rcode: ResponseCode, authoritative: bool) -> Metadata {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.message_type = MessageType::Response;
        metadata.authoritative = authoritative;
        metadata.recursion_available = self.forwarder.is_some();
        metadata.response_code = rcode;
        metadata
    }
}

/// A bare response with `rcode` to a request of which only `header` is known.
pub(super) fn bare(metadata: &Metadata, rcode: ResponseCode) -> Vec<u8> {
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
pub(super) fn counts_fit(header: &Header, len: usize) -> bool {
    let c = &header.counts;
    let records = usize::from(c.answers) + usize::from(c.authorities) + usize::from(c.additionals);
    12 + usize::from(c.queries) * 5 + records * 11 <= len
}

pub(super) fn formerr(header: &Header) -> Vec<u8> {
    bare(&header.metadata, ResponseCode::FormErr)
}

pub(super) fn servfail(metadata: &Metadata) -> Vec<u8> {
    bare(metadata, ResponseCode::ServFail)
}

/// The EDNS OPT record of a response: our payload size, capped by the
/// client's so that truncation happens at the size the client can take; the
/// DO flag copied (RFC 3225), and CO when answers are signed (RFC 9824).
pub(super) fn response_edns(request: &Request, signing: bool) -> Option<Edns> {
    let req = request.edns.as_ref()?;
    let mut edns = Edns::new();
    edns.set_version(0);
    edns.set_max_payload(req.max_payload().clamp(512, MAX_UDP_PAYLOAD));
    edns.set_dnssec_ok(req.flags().dnssec_ok);
    if signing {
        edns.flags_mut().z = req.flags().z & COMPACT_OK;
    }
    Some(edns)
}
