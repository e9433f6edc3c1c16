//! One exchange with one upstream: the query sent (random ID, the client's
//! question and EDNS size), and replies accepted only when they match it
//! (RFC 5452), over UDP from a fresh connected socket, or over TCP.

use std::net::SocketAddr;

use hickory_proto::{
    ProtoError,
    op::{Edns, EmitAndCount, Message, MessageType, Metadata, OpCode, Query, emit_message_parts},
    rr::Record,
    serialize::binary::{BinEncodable, BinEncoder, NameEncoding},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, UdpSocket},
};

use super::MAX_UPSTREAM_UDP;

/// The query sent upstream for one question, made once for every attempt: a
/// random ID, recursion desired, the client's question and EDNS payload size
/// and DO bit. A reply must match its ID and question.
#[derive(Debug)]
pub(super) struct UpstreamQuery {
    id: u16,
    query: Query,
    bytes: Vec<u8>,
}

/// The question section of an upstream query.
enum Question<'a> {
    /// As the client wrote it: copied as is (hickory-server copies it into
    /// responses the same way), so it is not encoded again.
    Wire(&'a [u8]),
    /// Encoded from its parsed form.
    Parsed(&'a Query),
}

impl EmitAndCount for Question<'_> {
    fn emit(&mut self, encoder: &mut BinEncoder<'_>) -> Result<usize, ProtoError> {
        match self {
            Self::Wire(bytes) => encoder.emit_vec(bytes)?,
            Self::Parsed(query) => query.emit(encoder)?,
        }
        Ok(1)
    }
}

impl UpstreamQuery {
    /// The query for `query`; `wire` is its question section as the client
    /// sent it (one question), when there is one.
    pub(super) fn new(
        query: &Query,
        wire: Option<&[u8]>,
        edns: Option<&Edns>,
    ) -> std::io::Result<Self> {
        let id = rand::random();
        let mut metadata = Metadata::new(id, MessageType::Query, OpCode::Query);
        metadata.recursion_desired = true;
        let edns = edns.map(|client| {
            let mut e = Edns::new();
            e.set_max_payload(client.max_payload().max(512));
            e.set_dnssec_ok(client.flags().dnssec_ok);
            e
        });
        let mut question = match wire {
            Some(bytes) => Question::Wire(bytes),
            None => Question::Parsed(query),
        };
        let mut bytes = Vec::with_capacity(64);
        let mut encoder = BinEncoder::new(&mut bytes);
        // One name: nothing to compress it against.
        encoder.set_name_encoding(NameEncoding::Uncompressed);
        let none = || std::iter::empty::<&Record>();
        emit_message_parts(
            &metadata,
            &mut question,
            &mut none(),
            &mut none(),
            &mut none(),
            edns.as_ref(),
            None,
            &mut encoder,
        )
        .map_err(|e| invalid(&e.to_string()))?;
        Ok(Self {
            id,
            query: query.clone(),
            bytes,
        })
    }

    /// True when `reply` answers this query: same ID, a response, same question.
    fn answered_by(&self, reply: &Message) -> bool {
        let q = &self.query;
        let same_question = match reply.queries.as_slice() {
            [r] => {
                q.query_type() == r.query_type()
                    && q.query_class() == r.query_class()
                    && q.name().eq_ignore_root(r.name())
            }
            _ => false,
        };
        reply.metadata.id == self.id
            && reply.metadata.message_type == MessageType::Response
            && same_question
    }
}

fn invalid(msg: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.to_string())
}

/// Sends `request` from a fresh socket on a random port and waits for the
/// reply that matches it: parsed, and as it came.
pub(super) async fn udp_exchange(
    upstream: SocketAddr,
    request: &UpstreamQuery,
) -> std::io::Result<(Message, Vec<u8>)> {
    let sock = connected_socket(upstream)?;
    sock.send(&request.bytes).await?;
    // Read into spare capacity: no page of it is zeroed first.
    let mut buf = Vec::with_capacity(MAX_UPSTREAM_UDP);
    loop {
        buf.clear();
        sock.recv_buf(&mut buf).await?;
        match Message::from_vec(&buf) {
            Ok(reply) if request.answered_by(&reply) => return Ok((reply, buf)),
            Ok(_) | Err(_) => {
                tracing::debug!(%upstream, "dropped a reply that does not match the query (ID or question)");
            }
        }
    }
}

/// A fresh UDP socket connected to `upstream`: the kernel gives it a random
/// port as it connects (no separate bind), drops datagrams from any other
/// source, and reports an ICMP port-unreachable as ConnectionRefused at once.
fn connected_socket(upstream: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    #[cfg(target_os = "linux")]
    let kind = Type::DGRAM.nonblocking();
    #[cfg(not(target_os = "linux"))]
    let kind = Type::DGRAM;
    let socket = Socket::new(Domain::for_address(upstream), kind, Some(Protocol::UDP))?;
    #[cfg(not(target_os = "linux"))]
    socket.set_nonblocking(true)?;
    socket.connect(&upstream.into())?;
    UdpSocket::from_std(socket.into())
}

/// Sends `request` over a new TCP connection and reads the reply, which must
/// match it: parsed, and as it came.
pub(super) async fn tcp_exchange(
    upstream: SocketAddr,
    request: &UpstreamQuery,
) -> std::io::Result<(Message, Vec<u8>)> {
    let mut stream = TcpStream::connect(upstream).await?;
    let bytes = &request.bytes;
    let len = u16::try_from(bytes.len()).map_err(|_| invalid("query too long"))?;
    // One write: the length and the query in one segment.
    stream
        .write_all(&[&len.to_be_bytes()[..], bytes].concat())
        .await?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).await?;
    let reply = Message::from_vec(&buf).map_err(|e| invalid(&e.to_string()))?;
    if request.answered_by(&reply) {
        Ok((reply, buf))
    } else {
        Err(invalid("TCP reply does not match the query"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::{Name, RecordType};

    fn example(name: &str) -> Query {
        Query::query(Name::from_ascii(name).expect("name"), RecordType::A)
    }

    #[test]
    fn replies_must_match_id_and_question() {
        let q = example("example.org.");
        let req = UpstreamQuery::new(&q, None, None).expect("query");
        let mut reply = Message::from_vec(&req.bytes).expect("parses");
        assert!(reply.metadata.recursion_desired);
        reply.metadata.message_type = MessageType::Response;
        assert!(req.answered_by(&reply));
        let mut wrong_id = reply.clone();
        wrong_id.metadata.id = req.id.wrapping_add(1);
        assert!(!req.answered_by(&wrong_id));
        let mut wrong_q = reply.clone();
        wrong_q.queries = vec![example("evil.org.")];
        assert!(!req.answered_by(&wrong_q));
        let mut two = reply;
        two.queries.push(example("example.org."));
        assert!(!req.answered_by(&two), "one question, not two");
    }

    #[test]
    fn the_clients_question_bytes_are_sent_as_they_came_with_its_edns_size() {
        let q = example("MiXeD.Example.org.");
        let mut client = Message::new(7, MessageType::Query, OpCode::Query);
        client.add_query(q.clone());
        let wire = client.to_vec().expect("encodes");
        let question = wire.get(12..).expect("question");
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        edns.set_dnssec_ok(true);
        let req = UpstreamQuery::new(&q, Some(question), Some(&edns)).expect("query");
        let sent = Message::from_vec(&req.bytes).expect("parses");
        assert_eq!(sent.queries, vec![q.clone()]);
        assert_eq!(
            sent.queries[0].name().to_ascii(),
            "MiXeD.Example.org.",
            "case kept"
        );
        let sent_edns = sent.edns.expect("EDNS carried");
        assert_eq!(sent_edns.max_payload(), 1232);
        assert!(sent_edns.flags().dnssec_ok);
        let parsed = UpstreamQuery::new(&q, None, Some(&edns)).expect("query");
        assert_eq!(
            req.bytes.get(2..),
            parsed.bytes.get(2..),
            "the copied question makes the same query as the encoded one, ID aside"
        );
    }
}
