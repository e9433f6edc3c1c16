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
        let udp = Arc::new(udp);
        let (uc, tc) = (Arc::clone(&udp_count), Arc::clone(&tcp_count));
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
            tasks: vec![udp_task, tcp_task],
        }
    }

    /// UDP queries received.
    pub fn udp_queries(&self) -> usize {
        self.udp_count.load(Ordering::SeqCst)
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
