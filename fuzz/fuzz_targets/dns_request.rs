//! DNS request path: bytes in → response bytes out, through the handler the
//! server uses, over a registry holding services.
//!
//! Input: byte 0 chooses the transport (bit 0: UDP/TCP) and the client
//! (bit 1: loopback, allowed to recurse / an outside address); the rest is
//! the DNS message. Invariants besides "no panic": a response, when there is
//! one, parses with hickory-proto, carries the request's ID, has QR=1, and
//! fits the transport (UDP: 512 bytes without EDNS, else the advertised size).
#![no_main]

use std::{
    net::{IpAddr, SocketAddr},
    sync::LazyLock,
};

use hickory_proto::op::{Message, MessageType};
use hickory_server::{
    net::xfer::Protocol,
    server::{Request, RequestHandler},
};
use libfuzzer_sys::fuzz_target;
use skydns::DnsHandler;
use skydns_fuzz::{Capture, dns_handler, fixture_registry, runtime};

struct Fixture {
    rt: tokio::runtime::Runtime,
    handler: DnsHandler,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let rt = runtime();
    let handler = dns_handler(rt.block_on(fixture_registry()));
    Fixture { rt, handler }
});

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

    // Bytes that do not parse as a request are dropped by the server before
    // the handler (hickory answers FORMERR itself when the header parses).
    let Ok(request) = Request::from_bytes(message.to_vec(), src, protocol) else {
        return;
    };
    let request_id = request.metadata.id;
    let capture = Capture::new(protocol);
    fx.rt.block_on(
        fx.handler
            .handle_request::<_, hickory_server::net::runtime::TokioTime>(
                &request,
                capture.clone(),
            ),
    );
    let Some(response) = capture.take() else {
        return;
    };
    let parsed = Message::from_vec(&response)
        .unwrap_or_else(|e| panic!("response does not parse: {e}; response {response:02x?}"));
    assert_eq!(parsed.metadata.id, request_id, "response ID differs");
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
});
