//! DNS request path: bytes in → response bytes out through
//! `DnsHandler::respond`, the path skydns's UDP and TCP servers use (wire
//! cache included), over a registry holding services; no forwarder.
//!
//! Input: byte 0 chooses the transport (bit 0: UDP/TCP) and the client
//! (bit 1: loopback, allowed to recurse / an outside address); the rest is
//! the DNS message. The message is answered twice, the second time under
//! another ID, so a UDP answer comes from the wire cache (which patches ID,
//! question case and TTLs into stored bytes).
//!
//! Invariants besides "no panic": a response, when there is one, parses with
//! hickory-proto, carries its request's ID, has QR=1, fits the transport (UDP:
//! 512 bytes without EDNS, else the size advertised), echoes the question
//! exactly (same bytes, case included) when the request had one; and the
//! second (cached) answer has the first's response code and section counts
//! (when the question is still the same: a name compressed against the ID
//! changes with it).
#![no_main]

use std::{
    net::{IpAddr, SocketAddr},
    sync::LazyLock,
};

use hickory_proto::op::{Message, MessageType};
use hickory_server::net::xfer::Protocol;
use libfuzzer_sys::fuzz_target;
use skydns::fuzzing::Handler as DnsHandler;
use skydns_fuzz::{dns_handler, fixture_registry, runtime};

struct Fixture {
    rt: tokio::runtime::Runtime,
    handler: DnsHandler,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let rt = runtime();
    let handler = dns_handler(rt.block_on(fixture_registry()));
    Fixture { rt, handler }
});

/// Checks one response against its request; returns it parsed.
fn check(request: &[u8], response: &[u8], protocol: Protocol) -> Message {
    let parsed = Message::from_vec(response)
        .unwrap_or_else(|e| panic!("response does not parse: {e}; response {response:02x?}"));
    if let [a, b, ..] = request {
        assert_eq!(
            parsed.metadata.id,
            u16::from_be_bytes([*a, *b]),
            "response ID differs from the request's"
        );
    }
    assert_eq!(
        parsed.metadata.message_type,
        MessageType::Response,
        "QR is not set"
    );
    if protocol == Protocol::Udp {
        let limit = parsed
            .edns
            .as_ref()
            .map_or(512, |e| usize::from(e.max_payload()).max(512));
        assert!(
            response.len() <= limit,
            "UDP response of {} bytes over the {limit} allowed",
            response.len()
        );
    }
    if let Ok(asked) = Message::from_vec(request)
        && let ([q], [r]) = (asked.queries.as_slice(), parsed.queries.as_slice())
    {
        assert_eq!(
            (q.name().to_ascii(), q.query_type(), q.query_class()),
            (r.name().to_ascii(), r.query_type(), r.query_class()),
            "the response's question is not the request's"
        );
    }
    parsed
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, message)) = data.split_first() else {
        return;
    };
    let protocol = if mode & 1 == 0 {
        Protocol::Udp
    } else {
        Protocol::Tcp
    };
    let ip: IpAddr = if mode & 2 == 0 {
        [127, 0, 0, 1].into()
    } else {
        [192, 0, 2, 1].into()
    };
    let src = SocketAddr::new(ip, 53000);
    let fx = &*FIXTURE;
    let first = fx.rt.block_on(fx.handler.respond(message, src, protocol));
    let first = first.map(|r| check(message, &r, protocol));

    // The same question under another ID (from the cache, for UDP).
    let mut again = message.to_vec();
    if let Some(id) = again.get_mut(..2) {
        id[0] ^= 0x5a;
        id[1] ^= 0xa5;
    }
    let second = fx.rt.block_on(fx.handler.respond(&again, src, protocol));
    let second = second.map(|r| check(&again, &r, protocol));
    // Changing the ID changes the question itself when its name points
    // into the header (a compression pointer to offset 0 or 1).
    let question = |m: &[u8]| {
        Message::from_vec(m).ok().map(|m| {
            m.queries
                .iter()
                .map(|q| (q.name().to_ascii(), q.query_type(), q.query_class()))
                .collect::<Vec<_>>()
        })
    };
    if question(message) != question(&again) {
        return;
    }
    match (&first, &second) {
        (Some(a), Some(b)) => {
            assert_eq!(
                a.metadata.response_code, b.metadata.response_code,
                "the repeated question got another response code"
            );
            assert_eq!(
                (a.answers.len(), a.authorities.len(), a.additionals.len()),
                (b.answers.len(), b.authorities.len(), b.additionals.len()),
                "the repeated question got other sections"
            );
        }
        (None, None) => {}
        _ => panic!("answered once but not twice: {first:?} / {second:?}"),
    }
});
