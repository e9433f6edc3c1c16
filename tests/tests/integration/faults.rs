//! Faults, against the real binary: upstreams that never answer or answer
//! garbage, thousands of idle TCP DNS connections, slowloris HTTP clients,
//! HTTP connections beyond the cap, and a flood of garbage UDP. Each proves
//! that new clients keep being answered and that the process's open file
//! descriptors (`/proc/<pid>/fd`) come back to their baseline.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use hickory_proto::{op::ResponseCode, rr::RecordType};
use skydns_tests::{
    SkyDns, a_records, fds_back_to, http, is_closed_by_peer, open_fds, open_idle_connections,
    query_message, service,
    stub::{BadUpstream, Fault},
    tcp_query, udp_exchange, udp_raw_from,
};
use tokio::{io::AsyncWriteExt, task::JoinSet};

/// `-forward-timeout` of the forwarding tests.
const FORWARD_TIMEOUT: &str = "500ms";
/// The tests that do not forward: nothing can leave loopback.
const NO_UPSTREAM: [&str; 1] = ["-no-forward"];
/// How long fds may take to come back to their baseline.
const SETTLE: Duration = Duration::from_secs(10);

fn fds(sky: &SkyDns) -> usize {
    open_fds(sky.pid()).expect("/proc/<pid>/fd is readable")
}

async fn expect_fds_back(sky: &SkyDns, baseline: usize, what: &str) {
    if let Err(now) = fds_back_to(sky.pid(), baseline, SETTLE).await {
        panic!(
            "{what}: skydns holds {now} fds, baseline {baseline}\n{}",
            sky.log()
        );
    }
}

/// A registered service and its name, for "still answering" checks.
async fn with_service(sky: &SkyDns) -> &'static str {
    sky.client
        .add_service(
            "f1",
            &service("alive", "prod", "east", "10.9.9.9", 80, 3600),
        )
        .await
        .expect("register");
    "alive.prod.skydns.local."
}

/// Many forwarded queries (half UDP, half TCP, distinct names so none are
/// coalesced or cached) to an upstream with `fault`: each gets SERVFAIL
/// within the harness timeout, and afterwards skydns and the upstream hold
/// no sockets for them.
async fn bad_upstream_costs_a_bounded_servfail_and_no_fds(fault: Fault) {
    let upstream = BadUpstream::start("127.0.0.1:0", fault).await;
    let ns = upstream.addr.to_string();
    let sky = SkyDns::spawn(&["-nameserver", &ns, "-forward-timeout", FORWARD_TIMEOUT]).await;
    let name = with_service(&sky).await;
    // Warm up both paths once, then take the baseline.
    let _ = udp_exchange(
        sky.dns,
        &query_message("warm.example.", RecordType::A, None),
    )
    .await;
    let _ = tcp_query(
        sky.dns,
        &query_message("warm2.example.", RecordType::A, None),
    )
    .await;
    assert!(skydns_tests::eventually(SETTLE, || async { upstream.tcp_open() == 0 }).await);
    let baseline = fds(&sky);

    let mut set = JoinSet::new();
    for i in 0..200 {
        let dns = sky.dns;
        set.spawn(async move {
            let msg = query_message(&format!("q{i}.fault.example."), RecordType::A, None);
            let started = Instant::now();
            let reply = if i % 2 == 0 {
                udp_exchange(dns, &msg).await
            } else {
                tcp_query(dns, &msg).await
            };
            (
                i,
                reply.map(|m| m.metadata.response_code),
                started.elapsed(),
            )
        });
    }
    let mut slowest = Duration::ZERO;
    while let Some(done) = set.join_next().await {
        let (i, code, took) = done.expect("task");
        assert_eq!(
            code,
            Ok(ResponseCode::ServFail),
            "query {i} ({fault:?} upstream)"
        );
        slowest = slowest.max(took);
    }
    eprintln!("{fault:?}: 200 SERVFAILs, slowest {slowest:?}");
    assert!(
        upstream.udp_queries() >= 100,
        "the upstream was asked over UDP"
    );
    assert!(upstream.tcp_accepted() >= 100, "and over TCP");
    // The local names are still answered.
    assert_eq!(
        a_records(&sky.query(name, RecordType::A).await),
        ["10.9.9.9"]
    );

    assert!(
        skydns_tests::eventually(SETTLE, || async { upstream.tcp_open() == 0 }).await,
        "skydns still holds {} TCP connections to the {fault:?} upstream",
        upstream.tcp_open()
    );
    expect_fds_back(
        &sky,
        baseline,
        &format!("after 200 queries to a {fault:?} upstream"),
    )
    .await;
}

#[tokio::test]
async fn an_upstream_that_never_answers_costs_a_bounded_servfail_and_no_fds() {
    bad_upstream_costs_a_bounded_servfail_and_no_fds(Fault::Blackhole).await;
}

#[tokio::test]
async fn an_upstream_that_answers_garbage_costs_a_bounded_servfail_and_no_fds() {
    bad_upstream_costs_a_bounded_servfail_and_no_fds(Fault::Garbage).await;
}

#[tokio::test]
async fn five_thousand_idle_tcp_dns_connections_do_not_lock_out_new_clients() {
    let sky = SkyDns::spawn(&NO_UPSTREAM).await;
    let name = with_service(&sky).await;
    let _ = sky.query_tcp(name, RecordType::A).await;
    let baseline = fds(&sky);

    let idle = open_idle_connections(sky.dns, 5000, 250).await;
    eprintln!(
        "opened {} idle TCP connections; skydns holds {} fds",
        idle.len(),
        fds(&sky)
    );
    assert!(idle.len() >= 4900, "only {} connections opened", idle.len());
    // New clients, over UDP and TCP, are answered while they are open.
    assert_eq!(
        a_records(&sky.query(name, RecordType::A).await),
        ["10.9.9.9"]
    );
    assert_eq!(
        a_records(&sky.query_tcp(name, RecordType::A).await),
        ["10.9.9.9"]
    );

    // skydns closes them itself (idle timeout or cap) while we still hold
    // them; on a loaded machine accepting 5,000 takes a while.
    let within = SETTLE * 3;
    let all_closed =
        skydns_tests::eventually(within, || async { idle.iter().all(is_closed_by_peer) }).await;
    if !all_closed {
        // A connection the kernel dropped from a full accept queue looks
        // established to the client but never reached skydns: asked a
        // question, it gets a reset. One that skydns still holds answers.
        let open: Vec<_> = idle.iter().filter(|s| !is_closed_by_peer(s)).collect();
        let held = open.iter().filter(|s| answers_a_query(s)).count();
        assert_eq!(
            held,
            0,
            "{held} of {} idle connections still open after {within:?} are held by skydns",
            open.len()
        );
    }
    expect_fds_back(
        &sky,
        baseline,
        "with 5,000 idle connections held by the client",
    )
    .await;
    drop(idle);
    assert_eq!(
        a_records(&sky.query_tcp(name, RecordType::A).await),
        ["10.9.9.9"]
    );
}

#[tokio::test]
async fn slowloris_http_clients_are_timed_out_and_others_are_served() {
    let sky = SkyDns::spawn(&NO_UPSTREAM).await;
    let health = http(sky.http, "GET", "/health", &[], None)
        .await
        .expect("health");
    assert_eq!(health.status, 200);
    let baseline = fds(&sky);

    // 300 clients send a request's headers one byte every 500 ms.
    let closed = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut slow = JoinSet::new();
    for _ in 0..300 {
        let (addr, closed, stop) = (sky.http, Arc::clone(&closed), Arc::clone(&stop));
        slow.spawn(async move {
            let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
                return;
            };
            let head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
            for b in head.iter().cycle() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                if s.write_all(&[*b]).await.is_err() {
                    closed.fetch_add(1, Ordering::SeqCst);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
    }
    let connected = skydns_tests::eventually(Duration::from_secs(5), || async {
        fds(&sky) >= baseline + 250
    })
    .await;
    assert!(
        connected,
        "the slow clients are connected ({} fds)",
        fds(&sky)
    );

    // A normal client is served while they trickle.
    let reply = http(sky.http, "GET", "/health", &[], None)
        .await
        .expect("served");
    assert_eq!(reply.status, 200);
    sky.client
        .add_service("s1", &service("busy", "prod", "", "10.0.0.1", 80, 60))
        .await
        .expect("a write is served too");

    // The header read timeout closes every slow connection.
    let timed_out = skydns_tests::eventually(Duration::from_secs(20), || async {
        closed.load(Ordering::SeqCst) == 300
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    assert!(
        timed_out,
        "only {} of 300 slow connections were closed by skydns",
        closed.load(Ordering::SeqCst)
    );
    while slow.join_next().await.is_some() {}
    // The typed client keeps a pooled connection: it is closed as idle too.
    expect_fds_back(&sky, baseline, "after 300 slowloris clients").await;
}

#[tokio::test]
async fn http_connections_beyond_the_cap_are_closed_at_once() {
    let sky = SkyDns::spawn(&NO_UPSTREAM).await;
    let _ = http(sky.http, "GET", "/health", &[], None)
        .await
        .expect("health");
    let baseline = fds(&sky);
    let cap = skydns::config::limits::MAX_CONNECTIONS;

    let idle = open_idle_connections(sky.http, cap + 200, 200).await;
    assert_eq!(idle.len(), cap + 200);
    let rejected = || idle.iter().filter(|s| is_closed_by_peer(s)).count();
    let capped =
        skydns_tests::eventually(Duration::from_secs(5), || async { rejected() >= 200 }).await;
    assert!(
        capped,
        "{} of {} connections beyond the cap were closed",
        rejected(),
        200
    );
    assert!(
        fds(&sky) <= baseline + cap + 8,
        "skydns holds {} fds with the cap at {cap}",
        fds(&sky)
    );
    drop(idle);
    let reply = http(sky.http, "GET", "/health", &[], None)
        .await
        .expect("served again");
    assert_eq!(reply.status, 200);
    expect_fds_back(&sky, baseline, "after the idle connections left").await;
}

/// One datagram of garbage: random bytes, every third one behind a
/// plausible query header.
fn junk(n: usize) -> Vec<u8> {
    let len = 1 + usize::from(rand::random::<u8>());
    let mut junk: Vec<u8> = (0..len).map(|_| rand::random::<u8>()).collect();
    if n.is_multiple_of(3) && junk.len() > 12 {
        junk.splice(..6, [0x12, 0x34, 0x01, 0x00, 0x00, 0x01]);
    }
    junk
}

/// Attempts a client makes (500 ms apart) before it gives up on a query,
/// as a stub resolver does.
const ATTEMPTS: usize = 3;
/// Sockets the garbage comes from.
const SENDERS: usize = 3;

#[tokio::test]
async fn a_flood_of_garbage_udp_does_not_stop_normal_answers() {
    let sky = SkyDns::spawn(&NO_UPSTREAM).await;
    let name = with_service(&sky).await;
    let flood_for = Duration::from_secs(10);
    let stop = Arc::new(AtomicBool::new(false));
    // One OS thread sends garbage from SENDERS sockets (source ports) in
    // turn, as fast as the kernel takes it: a core's worth of flood, leaving
    // the other core to skydns and the tests running alongside.
    let sender = {
        let (dns, stop) = (sky.dns, Arc::clone(&stop));
        std::thread::spawn(move || {
            let socks: Vec<std::net::UdpSocket> = (0..SENDERS)
                .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").expect("bind"))
                .collect();
            let datagrams: Vec<Vec<u8>> = (0..1024).map(junk).collect();
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let _ = socks[n % SENDERS].send_to(&datagrams[n % datagrams.len()], dns);
                n += 1;
            }
            n
        })
    };

    let (mut asked, mut first_try, mut answered) = (0usize, 0usize, 0usize);
    let until = Instant::now() + flood_for;
    let query = query_message(name, RecordType::A, None)
        .to_vec()
        .expect("encode");
    while Instant::now() < until {
        asked += 1;
        if let Some((msg, attempt)) = ask_as_a_stub_resolver(sky.dns, &query).await {
            assert_eq!(a_records(&msg), ["10.9.9.9"]);
            answered += 1;
            if attempt == 0 {
                first_try += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let garbage = sender.join().expect("sender");
    eprintln!(
        "garbage datagrams sent: {garbage}; normal queries answered {answered}/{asked} \
         within {ATTEMPTS} attempts, {first_try}/{asked} at the first"
    );
    assert!(
        garbage > asked * 100,
        "the flood was a flood ({garbage} datagrams)"
    );
    assert!(
        answered * 10 >= asked * 9,
        "only {answered} of {asked} normal queries were answered during the flood"
    );
    // And at once afterwards (the flood's last datagrams may still fill the
    // socket buffer for a moment: a stub resolver's retries ride over that).
    let after = ask_as_a_stub_resolver(sky.dns, &query).await;
    let Some((msg, _)) = after else {
        panic!("no answer within {ATTEMPTS} attempts right after the flood");
    };
    assert_eq!(a_records(&msg), ["10.9.9.9"]);
}

/// Sends `query` up to [`ATTEMPTS`] times, 500 ms apart, as a stub resolver
/// does; the answer and the attempt (0-based) that got it.
async fn ask_as_a_stub_resolver(
    dns: std::net::SocketAddr,
    query: &[u8],
) -> Option<(hickory_proto::op::Message, usize)> {
    for attempt in 0..ATTEMPTS {
        let reply = udp_raw_from("127.0.0.1:0", dns, query, Duration::from_millis(500)).await;
        if let Some(reply) = reply {
            let msg = hickory_proto::op::Message::from_vec(&reply).expect("decodes");
            return Some((msg, attempt));
        }
    }
    None
}

/// Whether the server end of `stream` answers a DNS question over it (a
/// connection it holds) rather than resetting it or staying silent for 2 s.
fn answers_a_query(stream: &&std::net::TcpStream) -> bool {
    use std::io::{Read as _, Write as _};
    let query = skydns_tests::query_message("skydns.local.", RecordType::SOA, None);
    let Ok(bytes) = query.to_vec() else {
        return false;
    };
    let Ok(len) = u16::try_from(bytes.len()) else {
        return false;
    };
    let mut s = *stream;
    if s.set_nonblocking(false).is_err()
        || s.set_read_timeout(Some(Duration::from_secs(2))).is_err()
        || s.write_all(&len.to_be_bytes()).is_err()
        || s.write_all(&bytes).is_err()
    {
        return false;
    }
    let mut buf = [0u8; 2];
    matches!(s.read(&mut buf), Ok(n) if n > 0)
}

/// Sends one length-prefixed DNS query on `stream` without reading the answer.
async fn send_tcp_query(stream: &mut tokio::net::TcpStream, name: &str) {
    let bytes = query_message(name, RecordType::A, None)
        .to_vec()
        .expect("encode");
    let len = u16::try_from(bytes.len()).expect("short").to_be_bytes();
    stream.write_all(&len).await.expect("length");
    stream.write_all(&bytes).await.expect("query");
}

#[tokio::test]
async fn a_tcp_client_evicted_mid_forward_leaves_its_name_answerable() {
    // A TCP client asks for a name, the upstream never answers, and the
    // client's connection is closed at -max-tcp-connections: the question it
    // led must not stay "in flight" for good, or every later asker of that
    // name would wait on it forever.
    let upstream = BadUpstream::start("127.0.0.1:0", Fault::Blackhole).await;
    let ns = upstream.addr.to_string();
    let sky = SkyDns::spawn(&[
        "-nameserver",
        &ns,
        "-forward-timeout",
        "1s",
        "-max-tcp-connections",
        "1",
    ])
    .await;
    let name = "evicted.fault.example.";
    let mut first = tokio::net::TcpStream::connect(sky.dns).await.expect("c1");
    send_tcp_query(&mut first, name).await;
    assert!(
        skydns_tests::eventually(Duration::from_secs(2), || async {
            upstream.udp_queries() + upstream.tcp_accepted() > 0
        })
        .await,
        "the question reached the upstream"
    );
    // A second connection evicts the first (the oldest), mid-forward.
    let started = Instant::now();
    let again = tcp_query(sky.dns, &query_message(name, RecordType::A, None)).await;
    assert_eq!(
        again.map(|m| m.metadata.response_code),
        Ok(ResponseCode::ServFail),
        "the same name over TCP after the eviction: SERVFAIL within the forwarding deadline, in {:?}",
        started.elapsed()
    );
    let over_udp = udp_exchange(sky.dns, &query_message(name, RecordType::A, None)).await;
    assert_eq!(
        over_udp.map(|m| m.metadata.response_code),
        Ok(ResponseCode::ServFail),
        "and over UDP"
    );
    drop(first);
}

#[tokio::test]
async fn a_tcp_client_that_never_reads_is_disconnected_after_wtimeout() {
    use tokio::io::AsyncReadExt;
    // -rtimeout far above the test's length: only -wtimeout can close it.
    let sky = SkyDns::spawn(&["-no-forward", "-rtimeout", "60s", "-wtimeout", "300ms"]).await;
    for i in 0..200u32 {
        let host = format!("10.7.{}.{}", i / 250, i % 250 + 1);
        sky.client
            .add_service(
                &format!("w{i}"),
                &service("wide", "prod", "", &host, 80, 600),
            )
            .await
            .expect("add");
    }
    let name = "wide.prod.skydns.local.";
    let one = tcp_query(sky.dns, &query_message(name, RecordType::A, None))
        .await
        .expect("one answer");
    assert_eq!(one.answers.len(), 200);
    let answer_len = one.to_vec().expect("encode").len() + 2;

    // Thousands of questions whose answers (about 13 MB) the client never
    // reads, on a socket with a small receive buffer: skydns's writes block.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let mut stream = socket.connect(sky.dns).await.expect("connect");
    let bytes = query_message(name, RecordType::A, None)
        .to_vec()
        .expect("encode");
    let len = u16::try_from(bytes.len()).expect("short").to_be_bytes();
    let questions = 4000;
    let mut all = Vec::new();
    for _ in 0..questions {
        all.extend_from_slice(&len);
        all.extend_from_slice(&bytes);
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(&all)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Now read: what was sent before skydns gave up, then the end.
    let (mut got, mut buf) = (0usize, vec![0u8; 64 * 1024]);
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
            Err(_) => break false,
            Ok(Ok(0) | Err(_)) => break true,
            Ok(Ok(n)) => got += n,
        }
    };
    assert!(
        closed,
        "skydns kept a client that takes no answer (read {got} bytes, then silence)"
    );
    assert!(
        got < questions * answer_len,
        "it gave up before answering everything: {got} of {} bytes",
        questions * answer_len
    );
    // And it answers others as before.
    let msg = tcp_query(sky.dns, &query_message(name, RecordType::A, None))
        .await
        .expect("answered");
    assert_eq!(msg.answers.len(), 200);
}
