//! A small DNS client over UDP and TCP, built on hickory-proto, and the
//! readers of answers the tests compare.

use std::{net::SocketAddr, time::Duration};

use hickory_proto::{
    op::{Edns, Message, MessageType, OpCode, Query},
    rr::{Name, RData, RecordType},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, UdpSocket},
};

/// How long a DNS query may take before the harness gives up.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(3);

/// A query message for `name`/`rtype`, with EDNS advertising `payload` if given.
pub fn query_message(name: &str, rtype: RecordType, payload: Option<u16>) -> Message {
    let mut msg = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    let name = Name::from_ascii(name).unwrap_or_else(|e| panic!("bad name {name}: {e}"));
    msg.add_query(Query::query(name, rtype));
    if let Some(p) = payload {
        let mut edns = Edns::new();
        edns.set_max_payload(p);
        msg.set_edns(edns);
    }
    msg
}

/// A query as a validating resolver sends it: EDNS with 1232 bytes and DO set.
pub fn dnssec_query(name: &str, rtype: RecordType) -> Message {
    let mut msg = query_message(name, rtype, Some(1232));
    if let Some(edns) = msg.edns.as_mut() {
        edns.set_dnssec_ok(true);
    }
    msg
}

/// Sends `msg` over UDP and decodes the answer.
pub async fn udp_exchange(server: SocketAddr, msg: &Message) -> Result<Message, String> {
    let bytes = msg.to_vec().map_err(|e| e.to_string())?;
    let reply = udp_raw(server, &bytes)
        .await
        .ok_or("no answer within the timeout")?;
    Message::from_vec(&reply).map_err(|e| format!("undecodable answer: {e}"))
}

/// A UDP query for `name`/`rtype` without EDNS.
pub async fn udp_query(
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
) -> Result<Message, String> {
    udp_exchange(server, &query_message(name, rtype, None)).await
}

/// Sends raw bytes over UDP; the raw answer, or `None` on timeout.
pub async fn udp_raw(server: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let bind = if server.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    };
    udp_raw_from(bind, server, bytes, QUERY_TIMEOUT).await
}

/// Sends raw bytes over UDP from `bind` (e.g. `127.0.0.2:0`), waiting up to
/// `timeout`; the raw answer, or `None`.
pub async fn udp_raw_from(
    bind: &str,
    server: SocketAddr,
    bytes: &[u8],
    timeout: Duration,
) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind(bind).await.ok()?;
    sock.send_to(bytes, server).await.ok()?;
    let mut buf = vec![0u8; 65535];
    let (n, _) = tokio::time::timeout(timeout, sock.recv_from(&mut buf))
        .await
        .ok()?
        .ok()?;
    buf.truncate(n);
    Some(buf)
}

/// Sends `msg` over TCP (length-prefixed) and decodes the answer.
pub async fn tcp_query(server: SocketAddr, msg: &Message) -> Result<Message, String> {
    let bytes = msg.to_vec().map_err(|e| e.to_string())?;
    let fut = async {
        let mut s = TcpStream::connect(server)
            .await
            .map_err(|e| e.to_string())?;
        let len = u16::try_from(bytes.len()).map_err(|e| e.to_string())?;
        s.write_all(&len.to_be_bytes())
            .await
            .map_err(|e| e.to_string())?;
        s.write_all(&bytes).await.map_err(|e| e.to_string())?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await.map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        Message::from_vec(&buf).map_err(|e| e.to_string())
    };
    tokio::time::timeout(QUERY_TIMEOUT, fut)
        .await
        .map_err(|_| "timeout".to_string())?
}

/// The IPv4 addresses in a message's answer section, sorted.
pub fn a_records(msg: &Message) -> Vec<String> {
    let mut v: Vec<String> = msg
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

/// `(priority, weight, port, target)` of every SRV answer, sorted.
pub fn srv_records(msg: &Message) -> Vec<(u16, u16, u16, String)> {
    let mut v: Vec<(u16, u16, u16, String)> = msg
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some((s.priority, s.weight, s.port, s.target.to_ascii())),
            _ => None,
        })
        .collect();
    v.sort();
    v
}
