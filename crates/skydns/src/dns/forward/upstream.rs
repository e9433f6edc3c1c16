//! One exchange with one upstream: the query sent (random ID, the client's
//! question and EDNS size), and replies accepted only when they match it
//! (RFC 5452), over UDP from a fresh connected socket, or over TCP.

use std::net::SocketAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, UdpSocket},
};

use super::MAX_UPSTREAM_UDP;

/// The message sent upstream: a random ID, recursion desired, the client's
/// question and EDNS payload size.
pub(super) fn upstream_request(query: &Query, edns: Option<&Edns>) -> Message {
    let mut msg = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.add_query(query.clone());
    if let Some(client) = edns {
        let mut e = Edns::new();
        e.set_max_payload(client.max_payload().max(512));
        e.set_dnssec_ok(client.flags().dnssec_ok);
        msg.set_edns(e);
    }
    msg
}

fn invalid(msg: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.to_string())
}

/// True when `reply` answers `request`: same ID, a response, same question.
fn matches(request: &Message, reply: &Message) -> bool {
    let same_question = match (request.queries.first(), reply.queries.first()) {
        (Some(q), Some(r)) => {
            q.query_type() == r.query_type()
                && q.query_class() == r.query_class()
                && q.name().eq_ignore_root(r.name())
                && reply.queries.len() == 1
        }
        _ => false,
    };
    reply.metadata.id == request.metadata.id
        && reply.metadata.message_type == MessageType::Response
        && same_question
}

pub(super) async fn udp_exchange(
    upstream: SocketAddr,
    request: &Message,
) -> std::io::Result<Message> {
    let bind: SocketAddr = if upstream.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let sock = UdpSocket::bind(bind).await?;
    // Connected: the kernel drops datagrams from other sources, and an ICMP
    // port-unreachable surfaces as ConnectionRefused at once.
    sock.connect(upstream).await?;
    let bytes = request.to_vec().map_err(|e| invalid(&e.to_string()))?;
    sock.send(&bytes).await?;
    let mut buf = vec![0u8; MAX_UPSTREAM_UDP];
    loop {
        let n = sock.recv(&mut buf).await?;
        let Some(data) = buf.get(..n) else { continue };
        match Message::from_vec(data) {
            Ok(reply) if matches(request, &reply) => return Ok(reply),
            Ok(_) | Err(_) => {
                tracing::debug!(%upstream, "dropped a reply that does not match the query (ID or question)");
            }
        }
    }
}

pub(super) async fn tcp_exchange(
    upstream: SocketAddr,
    request: &Message,
) -> std::io::Result<Message> {
    let mut stream = TcpStream::connect(upstream).await?;
    let bytes = request.to_vec().map_err(|e| invalid(&e.to_string()))?;
    let len = u16::try_from(bytes.len()).map_err(|_| invalid("query too long"))?;
    stream.write_all(&len.to_be_bytes()).await?;
    stream.write_all(&bytes).await?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).await?;
    let reply = Message::from_vec(&buf).map_err(|e| invalid(&e.to_string()))?;
    if matches(request, &reply) {
        Ok(reply)
    } else {
        Err(invalid("TCP reply does not match the query"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::{Name, RecordType};

    #[test]
    fn replies_must_match_id_and_question() {
        let q = Query::query(
            Name::from_ascii("example.org.").expect("name"),
            RecordType::A,
        );
        let req = upstream_request(&q, None);
        let mut reply = req.clone();
        reply.metadata.message_type = MessageType::Response;
        assert!(matches(&req, &reply));
        let mut wrong_id = reply.clone();
        wrong_id.metadata.id = req.metadata.id.wrapping_add(1);
        assert!(!matches(&req, &wrong_id));
        let mut wrong_q = reply.clone();
        wrong_q.queries = vec![Query::query(
            Name::from_ascii("evil.org.").expect("name"),
            RecordType::A,
        )];
        assert!(!matches(&req, &wrong_q));
    }
}
