//! The wire: round-robin order, name compression, truncation over UDP and
//! TCP fallback, and garbage that must neither crash nor stall the server.
//! (Header hygiene — FORMERR, NOTIMP, BADVERS, REFUSED — is unit-tested in
//! `crates/skydns/src/dns/handler.rs`.)

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Message, ResponseCode},
    rr::RecordType,
    serialize::binary::{BinDecodable, BinDecoder},
};
use skydns_tests::{
    SkyDns, a_records, query_message, service, srv_records, tcp_query, udp_exchange, udp_raw,
    udp_raw_from,
};
use tokio::{io::AsyncWriteExt, net::TcpStream};

use super::*;

#[tokio::test]
async fn round_robin_by_default_varies_the_order() {
    let sky = SkyDns::start(&[]).await;
    register_many(&sky.client, "rr", 10, 1).await;
    let mut orders = HashSet::new();
    for _ in 0..30 {
        let msg = sky.query("rr.prod.skydns.local.", RecordType::A).await;
        let order = ordered_addrs(&msg);
        assert_eq!(order.len(), 10);
        orders.insert(order);
    }
    assert!(orders.len() >= 2, "30 answers, always the same order");
}

#[tokio::test]
async fn no_round_robin_gives_a_stable_order() {
    let sky = SkyDns::start(&["-no-round-robin"]).await;
    register_many(&sky.client, "rr", 10, 1).await;
    let mut orders = HashSet::new();
    for _ in 0..30 {
        let msg = sky.query("rr.prod.skydns.local.", RecordType::A).await;
        let order = ordered_addrs(&msg);
        assert_eq!(order.len(), 10);
        orders.insert(order);
    }
    assert_eq!(
        orders.len(),
        1,
        "stable order with -no-round-robin: {orders:?}"
    );
}

#[tokio::test]
async fn every_owner_name_is_a_pointer_to_the_question() {
    let sky = SkyDns::start(&[]).await;
    register_many(&sky.client, "web", 10, 3).await;
    let asked = "Web.prod.skydns.local.";
    let question = 1 + 3 + 1 + 4 + 1 + 6 + 1 + 5 + 1 + 4; // labels, root, type, class
    let bytes = query_message(asked, RecordType::A, None)
        .to_vec()
        .expect("encode");
    // Twice over UDP (built, then copied from the wire cache), then over TCP.
    for round in 0..3 {
        let reply = if round < 2 {
            udp_raw(sky.dns, &bytes).await.expect("answer")
        } else {
            tcp_raw(sky.dns, &bytes).await
        };
        // Header, question, then 10 x (pointer 2 + type, class, TTL, length 10 + address 4).
        assert_eq!(
            reply.len(),
            12 + question + 10 * 16,
            "round {round}: {reply:?}"
        );
        for i in 0..10 {
            let at = 12 + question + i * 16;
            assert_eq!(reply[at..at + 2], [0xC0, 12], "round {round}, answer {i}");
        }
        let msg = Message::from_vec(&reply).expect("decode");
        assert!(msg.answers.iter().all(|r| r.name.to_ascii() == asked));
    }
}

#[tokio::test]
async fn large_answers_are_truncated_over_udp_and_complete_over_tcp() {
    let sky = SkyDns::start(&[]).await;
    register_many(&sky.client, "big", 60, 2).await;
    let q = "big.prod.skydns.local.";

    let udp = sky.query(q, RecordType::A).await;
    assert!(udp.metadata.truncation, "TC over UDP without EDNS");
    assert!(
        udp.answers.len() < 60,
        "{} answers in 512 bytes?",
        udp.answers.len()
    );
    let small = udp.answers.len();
    // Asked again: the truncated answer comes from the wire cache, the same
    // size, still marked TC, and round robin still varies which records fit.
    let mut subsets = HashSet::new();
    for _ in 0..30 {
        let again = sky.query(q, RecordType::A).await;
        assert!(again.metadata.truncation, "TC on a repeated question");
        assert_eq!(again.answers.len(), small);
        let mut got = a_records(&again);
        got.sort();
        subsets.insert(got);
    }
    assert!(
        subsets.len() > 1,
        "30 truncated answers, always the same records"
    );

    let tcp = sky.query_tcp(q, RecordType::A).await;
    assert!(!tcp.metadata.truncation, "no TC over TCP");
    assert_eq!(tcp.answers.len(), 60);
    let want: Vec<String> = (1..=60).map(|i| format!("127.0.2.{i}")).collect();
    let mut want = want;
    want.sort();
    assert_eq!(a_records(&tcp), want);

    let big = udp_exchange(sky.dns, &query_message(q, RecordType::A, Some(4096)))
        .await
        .expect("answer");
    assert!(
        big.answers.len() > small,
        "EDNS lets more fit: {} vs {small}",
        big.answers.len()
    );
    assert_eq!(big.answers.len(), 60, "60 A records fit in ~1 KB");
    assert!(!big.metadata.truncation);

    // A truncated answer ends where its last whole record does: no bytes of
    // the record that did not fit trail it (first built, then from the cache).
    let srv_query = query_message(q, RecordType::SRV, None)
        .to_vec()
        .expect("encode");
    for _ in 0..2 {
        let raw = udp_raw(sky.dns, &srv_query).await.expect("answer");
        let mut decoder = BinDecoder::new(&raw);
        let msg = Message::read(&mut decoder).expect("decodes");
        assert!(msg.metadata.truncation);
        assert!(
            decoder.is_empty(),
            "{} bytes after the message's {} records",
            raw.len() - decoder.index(),
            msg.answers.len() + msg.additionals.len()
        );
    }

    // SRV with glue does not fit: truncated over UDP, complete over TCP.
    let srv = udp_exchange(sky.dns, &query_message(q, RecordType::SRV, Some(1232)))
        .await
        .expect("answer");
    assert!(srv.metadata.truncation, "60 SRV + glue exceed 1232 bytes");
    let srv = tcp_query(sky.dns, &query_message(q, RecordType::SRV, None))
        .await
        .expect("tcp");
    assert_eq!(srv_records(&srv).len(), 60);
    assert!(!srv.metadata.truncation);
}

#[tokio::test]
async fn a_burst_of_garbage_neither_crashes_nor_stalls_the_server() {
    let sky = SkyDns::start(&[]).await;
    sky.client
        .add_service(
            "r1",
            &service("rails", "production", "east", "127.0.0.10", 80, 60),
        )
        .await
        .expect("add");
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    for i in 0..2000u32 {
        let len: usize = rand::random_range(0..512);
        let mut pkt: Vec<u8> = (0..len).map(|_| rand::random::<u8>()).collect();
        // A quarter look like queries (QR=0, opcode QUERY), to reach the parser and handler.
        if i % 4 == 0 && pkt.len() > 2 {
            pkt[2] &= 0x07;
        }
        let _ = sock.send_to(&pkt, sky.dns).await;
    }
    // Garbage over TCP too: bad lengths, truncated messages, abrupt closes.
    for _ in 0..20 {
        if let Ok(mut s) = TcpStream::connect(sky.dns).await {
            let len: usize = rand::random_range(0..300);
            let junk: Vec<u8> = (0..len).map(|_| rand::random::<u8>()).collect();
            let _ = s.write_all(&junk).await;
        }
    }
    // The burst overflows the server's socket buffer, so the kernel may drop
    // the next datagram or two whatever the server does: ask as a resolver
    // would, retrying briefly, and require a correct answer within 2 s.
    let start = Instant::now();
    let bytes = query_message(RAILS, RecordType::A, None)
        .to_vec()
        .expect("encode");
    let mut answer = None;
    while answer.is_none() && start.elapsed() < Duration::from_secs(2) {
        answer = udp_raw_from("127.0.0.1:0", sky.dns, &bytes, Duration::from_millis(200)).await;
    }
    let raw =
        answer.unwrap_or_else(|| panic!("no answer within {:?} after the burst", start.elapsed()));
    let msg = Message::from_vec(&raw).expect("decodable answer");
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_records(&msg), ["127.0.0.10"]);
    let msg = sky.query_tcp(RAILS, RecordType::SRV).await;
    assert_eq!(
        srv_records(&msg),
        [(10, 100, 80, "r1.skydns.local.".to_string())]
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "answers took {:?}",
        start.elapsed()
    );
    // And the API is still up.
    assert_eq!(
        sky.client.get_service("r1").await.expect("api alive").host,
        "127.0.0.10"
    );
}
