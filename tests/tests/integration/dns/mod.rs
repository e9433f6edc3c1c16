//! The DNS side over the wire, by topic. Shared helpers live here.

mod apex;
mod dnssec;
mod names;
mod ttl;
mod wire;

use std::net::{IpAddr, Ipv4Addr};

use hickory_proto::{
    op::{Message, ResponseCode},
    rr::{Name, RData, Record},
};
use skydns_tests::{Client, Service, service};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

pub(super) const RAILS: &str = "rails.production.skydns.local.";

pub(super) fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap_or_else(|e| panic!("bad name {s}: {e}"))
}

/// The addresses of the answer section, in the order sent.
pub(super) fn ordered_addrs(msg: &Message) -> Vec<IpAddr> {
    msg.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

pub(super) fn has_soa(records: &[Record]) -> bool {
    records
        .iter()
        .any(|r| matches!(r.data, RData::SOA(_)) && r.name == name("skydns.local."))
}

pub(super) fn assert_nxdomain(msg: &Message, what: &str) {
    assert_eq!(
        msg.metadata.response_code,
        ResponseCode::NXDomain,
        "{what}: {msg:?}"
    );
    assert!(msg.answers.is_empty(), "{what}: no answers");
    assert!(
        has_soa(&msg.authorities),
        "{what}: SOA in authority: {:?}",
        msg.authorities
    );
    assert!(msg.metadata.authoritative, "{what}: AA");
}

pub(super) fn assert_nodata(msg: &Message, what: &str) {
    assert_eq!(
        msg.metadata.response_code,
        ResponseCode::NoError,
        "{what}: {msg:?}"
    );
    assert!(
        msg.answers.is_empty(),
        "{what}: no answers, got {:?}",
        msg.answers
    );
    assert!(
        has_soa(&msg.authorities),
        "{what}: SOA in authority: {:?}",
        msg.authorities
    );
    assert!(msg.metadata.authoritative, "{what}: AA");
}

pub(super) fn readme(uuid_host: &str, region: &str, port: u16) -> Service {
    Service {
        name: "TestService".into(),
        version: "1.0.0".into(),
        environment: "Production".into(),
        region: region.into(),
        host: uuid_host.into(),
        port,
        ttl: 600,
        ..Service::default()
    }
}

pub(super) async fn register_readme(client: &Client) {
    client
        .add_service("1001", &readme("web1.site.com", "East", 80))
        .await
        .expect("1001");
    client
        .add_service("1002", &readme("web2.site.com", "East", 8080))
        .await
        .expect("1002");
    client
        .add_service("1003", &readme("web3.site.com", "West", 9000))
        .await
        .expect("1003");
    client
        .add_service("1004", &readme("web4.site.com", "West", 8080))
        .await
        .expect("1004");
}

pub(super) async fn register_many(client: &Client, svc: &str, n: u8, third_octet: u8) {
    for i in 1..=n {
        let host = Ipv4Addr::new(127, 0, third_octet, i).to_string();
        client
            .add_service(
                &format!("{svc}{i}"),
                &service(svc, "prod", "", &host, 80, 300),
            )
            .await
            .expect("add");
    }
}

/// One length-prefixed exchange over TCP, raw bytes both ways.
pub(super) async fn tcp_raw(server: std::net::SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(server).await.expect("connect");
    let len = u16::try_from(bytes.len()).expect("short query");
    stream.write_all(&len.to_be_bytes()).await.expect("write");
    stream.write_all(bytes).await.expect("write");
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await.expect("read length");
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut reply).await.expect("read");
    reply
}
