//! A stub upstream DNS server for forwarding tests, on a loopback address the
//! test chooses. It answers every A query with one record, and can be told
//! to truncate over UDP, delay, drop, send a wrong-ID reply first, or answer
//! NXDOMAIN. It counts what it receives.

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use hickory_proto::{
    op::{Message, MessageType, ResponseCode},
    rr::{
        Name, RData, Record,
        rdata::{A, SOA},
    },
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, UdpSocket},
};

/// How the stub behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behavior {
    /// Answer at once.
    Answer,
    /// Over UDP answer with TC=1 and no records; answer fully over TCP.
    TruncateUdp,
    /// Answer after this delay.
    Delay(Duration),
    /// Never answer.
    Drop,
    /// First send a reply with a wrong ID (carrying [`SPOOFED`]), then the real one.
    WrongIdFirst,
    /// NXDOMAIN with an SOA whose minimum is 60.
    NxDomain,
}

/// The address every stub answer carries.
pub const ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The address carried by the spoofed (wrong-ID) reply.
pub const SPOOFED: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 66);
/// TTL of stub answers.
pub const TTL: u32 = 300;

/// A running stub; stops when dropped.
pub struct Stub {
    /// Where it listens (UDP and TCP).
    pub addr: SocketAddr,
    udp_count: Arc<AtomicUsize>,
    tcp_count: Arc<AtomicUsize>,
    /// Source port and ID of each UDP query received.
    udp_seen: Arc<std::sync::Mutex<Vec<(u16, u16)>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Stub {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Stub {
    /// Starts a stub on `ip` (port 0: any free port).
    pub async fn start(addr: &str, behavior: Behavior) -> Self {
        // With port 0, find a port free for both UDP and TCP.
        let mut bound = None;
        for _ in 0..32 {
            let udp = UdpSocket::bind(addr)
                .await
                .unwrap_or_else(|e| panic!("stub udp bind {addr}: {e}"));
            let local = udp.local_addr().expect("stub addr");
            match TcpListener::bind(local).await {
                Ok(tcp) => {
                    bound = Some((udp, tcp));
                    break;
                }
                Err(_) if addr.ends_with(":0") => continue,
                Err(e) => panic!("stub tcp bind {local}: {e}"),
            }
        }
        let (udp, tcp) = bound.expect("no port free for both UDP and TCP");
        let addr = udp.local_addr().expect("stub addr");
        let udp_count = Arc::new(AtomicUsize::new(0));
        let tcp_count = Arc::new(AtomicUsize::new(0));
        let udp_seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let udp = Arc::new(udp);
        let (uc, tc, seen) = (
            Arc::clone(&udp_count),
            Arc::clone(&tcp_count),
            Arc::clone(&udp_seen),
        );
        let udp_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, from)) = udp.recv_from(&mut buf).await else {
                    return;
                };
                uc.fetch_add(1, Ordering::SeqCst);
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                if let Ok(mut seen) = seen.lock() {
                    seen.push((from.port(), query.metadata.id));
                }
                let udp = Arc::clone(&udp);
                tokio::spawn(async move {
                    if behavior == Behavior::Drop {
                        return;
                    }
                    if let Behavior::Delay(d) = behavior {
                        tokio::time::sleep(d).await;
                    }
                    if behavior == Behavior::WrongIdFirst {
                        let mut spoof = reply(&query, behavior, false);
                        spoof.metadata.id = query.metadata.id.wrapping_add(1);
                        spoof.answers = vec![a_record(&query, SPOOFED)];
                        let _ = udp.send_to(&spoof.to_vec().unwrap_or_default(), from).await;
                    }
                    let r = reply(&query, behavior, true);
                    let _ = udp.send_to(&r.to_vec().unwrap_or_default(), from).await;
                });
            }
        });
        let tcp_task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = tcp.accept().await else {
                    return;
                };
                tc.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut len = [0u8; 2];
                    if s.read_exact(&mut len).await.is_err() {
                        return;
                    }
                    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
                    if s.read_exact(&mut buf).await.is_err() {
                        return;
                    }
                    let Ok(query) = Message::from_vec(&buf) else {
                        return;
                    };
                    if behavior == Behavior::Drop {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        return;
                    }
                    let bytes = reply(&query, behavior, false).to_vec().unwrap_or_default();
                    let len = u16::try_from(bytes.len()).unwrap_or(0).to_be_bytes();
                    let _ = s.write_all(&len).await;
                    let _ = s.write_all(&bytes).await;
                });
            }
        });
        Self {
            addr,
            udp_count,
            tcp_count,
            udp_seen,
            tasks: vec![udp_task, tcp_task],
        }
    }

    /// UDP queries received.
    pub fn udp_queries(&self) -> usize {
        self.udp_count.load(Ordering::SeqCst)
    }

    /// Source port and ID of each UDP query received, in order.
    pub fn udp_sources(&self) -> Vec<(u16, u16)> {
        self.udp_seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// TCP connections received.
    pub fn tcp_queries(&self) -> usize {
        self.tcp_count.load(Ordering::SeqCst)
    }
}

fn a_record(query: &Message, ip: Ipv4Addr) -> Record {
    let name = query
        .queries
        .first()
        .map(|q| q.name().clone())
        .unwrap_or_else(Name::root);
    Record::from_rdata(name, TTL, RData::A(A(ip)))
}

fn reply(query: &Message, behavior: Behavior, udp: bool) -> Message {
    let mut m = Message::new(
        query.metadata.id,
        MessageType::Response,
        query.metadata.op_code,
    );
    m.metadata.recursion_desired = query.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.add_queries(query.queries.clone());
    match behavior {
        Behavior::NxDomain => {
            m.metadata.response_code = ResponseCode::NXDomain;
            let zone = Name::from_ascii("example.").unwrap_or_else(|_| Name::root());
            let soa = SOA::new(zone.clone(), zone.clone(), 1, 3600, 600, 86400, 60);
            m.add_authority(Record::from_rdata(zone, 3600, RData::SOA(soa)));
        }
        Behavior::TruncateUdp if udp => m.metadata.truncation = true,
        _ => {
            m.add_answer(a_record(query, ANSWER));
        }
    }
    m
}

/// Binds UDP and TCP on one loopback port (`addr` with port 0: a free one).
async fn bind_pair(addr: &str) -> (UdpSocket, TcpListener) {
    for _ in 0..32 {
        let udp = UdpSocket::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("udp bind {addr}: {e}"));
        let local = udp.local_addr().expect("udp addr");
        match TcpListener::bind(local).await {
            Ok(tcp) => return (udp, tcp),
            Err(_) if addr.ends_with(":0") => continue,
            Err(e) => panic!("tcp bind {local}: {e}"),
        }
    }
    panic!("no port free for both UDP and TCP on {addr}")
}

/// A misbehaving upstream for fault tests; stops when dropped.
pub struct BadUpstream {
    /// Where it listens (UDP and TCP).
    pub addr: SocketAddr,
    udp_count: Arc<AtomicUsize>,
    tcp_open: Arc<AtomicUsize>,
    tcp_accepted: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for BadUpstream {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// How a [`BadUpstream`] misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Reads every UDP query and never answers; accepts every TCP connection
    /// and holds it open, reading, without ever answering.
    Blackhole,
    /// Answers every query with garbage and never with a valid reply: over
    /// UDP random bytes, a reply with the wrong ID and a reply to another
    /// question; over TCP a length-prefixed run of random bytes.
    Garbage,
}

impl BadUpstream {
    /// Starts one on `addr` (port 0: any free port).
    pub async fn start(addr: &str, fault: Fault) -> Self {
        let (udp, tcp) = bind_pair(addr).await;
        let addr = udp.local_addr().expect("addr");
        let udp_count = Arc::new(AtomicUsize::new(0));
        let tcp_open = Arc::new(AtomicUsize::new(0));
        let tcp_accepted = Arc::new(AtomicUsize::new(0));
        let uc = Arc::clone(&udp_count);
        let udp_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, from)) = udp.recv_from(&mut buf).await else {
                    return;
                };
                uc.fetch_add(1, Ordering::SeqCst);
                if fault == Fault::Blackhole {
                    continue;
                }
                for reply in garbage_replies(buf.get(..n).unwrap_or_default()) {
                    let _ = udp.send_to(&reply, from).await;
                }
            }
        });
        let (open, accepted) = (Arc::clone(&tcp_open), Arc::clone(&tcp_accepted));
        let tcp_task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((mut s, _)) = tcp.accept().await else {
                    return;
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                open.fetch_add(1, Ordering::SeqCst);
                let open = Arc::clone(&open);
                conns.spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    if fault == Fault::Garbage {
                        let junk: Vec<u8> = (0..64).map(|_| rand::random::<u8>()).collect();
                        let _ = s.write_all(&[0, 64]).await;
                        let _ = s.write_all(&junk).await;
                    }
                    // Hold the connection until the other side closes it.
                    while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
                    open.fetch_sub(1, Ordering::SeqCst);
                });
                while conns.try_join_next().is_some() {}
            }
        });
        Self {
            addr,
            udp_count,
            tcp_open,
            tcp_accepted,
            tasks: vec![udp_task, tcp_task],
        }
    }

    /// UDP datagrams received.
    pub fn udp_queries(&self) -> usize {
        self.udp_count.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far.
    pub fn tcp_accepted(&self) -> usize {
        self.tcp_accepted.load(Ordering::SeqCst)
    }

    /// TCP connections the other side has not closed yet.
    pub fn tcp_open(&self) -> usize {
        self.tcp_open.load(Ordering::SeqCst)
    }
}

/// What the garbage upstream sends for one query: random bytes, then (when
/// the query decodes) a reply with the wrong ID and a reply with the right ID
/// to another question.
fn garbage_replies(query: &[u8]) -> Vec<Vec<u8>> {
    let len = 12 + usize::from(rand::random::<u8>());
    let mut out = vec![(0..len).map(|_| rand::random::<u8>()).collect::<Vec<u8>>()];
    if let Ok(q) = Message::from_vec(query) {
        let mut wrong_id = reply(&q, Behavior::Answer, true);
        wrong_id.metadata.id = q.metadata.id.wrapping_add(1);
        out.push(wrong_id.to_vec().unwrap_or_default());
        let mut other = reply(&q, Behavior::Answer, true);
        let name = Name::from_ascii("other.invalid.").unwrap_or_else(|_| Name::root());
        other.queries = vec![hickory_proto::op::Query::query(
            name,
            hickory_proto::rr::RecordType::A,
        )];
        out.push(other.to_vec().unwrap_or_default());
    }
    out
}
