//! Forwarding of outside names, against stub upstreams on loopback.
//! Nothing here reaches a public resolver: every skydns gets `-nameserver`
//! pointing at a stub the test runs.

use std::time::{Duration, Instant};

use hickory_proto::{
    op::{Message, ResponseCode},
    rr::RecordType,
};
use skydns_tests::{
    SkyDns, a_records, query_message, service,
    stub::{self, ANSWER, Behavior, Stub},
    tcp_query, udp_raw_from,
};

async fn skydns_with(upstreams: &[&Stub], extra: &[&str]) -> SkyDns {
    let list = upstreams
        .iter()
        .map(|s| s.addr.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let mut args = vec!["-nameserver", list.as_str()];
    args.extend_from_slice(extra);
    SkyDns::start(&args).await
}

async fn ask_from(bind: &str, sky: &SkyDns, name: &str, timeout: Duration) -> Option<Message> {
    let bytes = query_message(name, RecordType::A, None).to_vec().ok()?;
    let raw = udp_raw_from(bind, sky.dns, &bytes, timeout).await?;
    Message::from_vec(&raw).ok()
}

#[tokio::test]
async fn forwards_over_udp_and_tcp() {
    let up = Stub::start("127.0.0.1:0", Behavior::Answer).await;
    let sky = skydns_with(&[&up], &["-cache-size", "0"]).await;
    let msg = sky.query("www.example.", RecordType::A).await;
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_records(&msg), [ANSWER.to_string()]);
    assert!(msg.metadata.recursion_available);
    assert!(!msg.metadata.authoritative);
    let msg = sky.query_tcp("www2.example.", RecordType::A).await;
    assert_eq!(a_records(&msg), [ANSWER.to_string()]);
    assert_eq!(up.tcp_queries(), 1, "a TCP client is forwarded over TCP");
}

#[tokio::test]
async fn truncated_reply_is_retried_over_tcp() {
    let up = Stub::start("127.0.0.1:0", Behavior::TruncateUdp).await;
    let sky = skydns_with(&[&up], &[]).await;
    let msg = sky.query("big.example.", RecordType::A).await;
    assert_eq!(a_records(&msg), [ANSWER.to_string()]);
    assert!(!msg.metadata.truncation);
    assert_eq!((up.udp_queries(), up.tcp_queries()), (1, 1));
}

#[tokio::test]
async fn fails_over_from_a_dead_first_upstream() {
    let dead = Stub::start("127.0.0.1:0", Behavior::Drop).await;
    let up = Stub::start("127.0.0.1:0", Behavior::Answer).await;
    let sky = skydns_with(&[&dead, &up], &["-forward-timeout", "1s"]).await;
    let msg = ask_from("127.0.0.1:0", &sky, "a.example.", Duration::from_secs(4))
        .await
        .expect("answer");
    assert_eq!(a_records(&msg), [ANSWER.to_string()]);
    // A closed port (ICMP unreachable) fails at once, not after the timeout.
    let closed = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let closed_addr = closed.local_addr().expect("addr").to_string();
    drop(closed);
    let sky = SkyDns::start(&[
        "-nameserver",
        &format!("{closed_addr},{}", up.addr),
        "-forward-timeout",
        "2s",
    ])
    .await;
    let start = Instant::now();
    let msg = sky.query("b.example.", RecordType::A).await;
    assert_eq!(a_records(&msg), [ANSWER.to_string()]);
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "closed port cost {:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn all_upstreams_dead_gives_servfail_within_the_bound() {
    let a = Stub::start("127.0.0.1:0", Behavior::Drop).await;
    let b = Stub::start("127.0.0.1:0", Behavior::Drop).await;
    let sky = skydns_with(&[&a, &b], &[]).await;
    let start = Instant::now();
    let msg = ask_from("127.0.0.1:0", &sky, "gone.example.", Duration::from_secs(8))
        .await
        .expect("an answer, never silence");
    assert_eq!(msg.metadata.response_code, ResponseCode::ServFail);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn a_reply_with_the_wrong_id_is_ignored() {
    let up = Stub::start("127.0.0.1:0", Behavior::WrongIdFirst).await;
    let sky = skydns_with(&[&up], &[]).await;
    let msg = sky.query("spoof.example.", RecordType::A).await;
    assert_eq!(
        a_records(&msg),
        [ANSWER.to_string()],
        "the spoofed address must not be answered"
    );
}

#[tokio::test]
async fn cache_answers_repeats_with_counted_down_ttls() {
    let up = Stub::start("127.0.0.1:0", Behavior::Answer).await;
    let sky = skydns_with(&[&up], &[]).await;
    let first = sky.query("cached.example.", RecordType::A).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = sky.query("CACHED.example.", RecordType::A).await;
    assert_eq!(
        up.udp_queries(),
        1,
        "the second query is answered from the cache"
    );
    assert!(
        second.answers[0].ttl < first.answers[0].ttl,
        "{} !< {}",
        second.answers[0].ttl,
        first.answers[0].ttl
    );
    // A capped cache lifetime caps what clients see, too.
    let sky = skydns_with(&[&up], &["-cache-max-ttl", "10"]).await;
    let msg = sky.query("capped.example.", RecordType::A).await;
    assert!(msg.answers[0].ttl <= 10);
}

#[tokio::test]
async fn negative_answers_are_cached() {
    let up = Stub::start("127.0.0.1:0", Behavior::NxDomain).await;
    let sky = skydns_with(&[&up], &[]).await;
    for _ in 0..3 {
        let msg = sky.query("missing.example.", RecordType::A).await;
        assert_eq!(msg.metadata.response_code, ResponseCode::NXDomain);
    }
    assert_eq!(up.udp_queries(), 1);
}

#[tokio::test]
async fn identical_concurrent_queries_are_sent_upstream_once() {
    let up = Stub::start("127.0.0.1:0", Behavior::Delay(Duration::from_millis(400))).await;
    let sky = skydns_with(&[&up], &[]).await;
    let mut all = Vec::new();
    for _ in 0..10 {
        let dns = sky.dns;
        all.push(tokio::spawn(async move {
            skydns_tests::udp_query(dns, "slow.example.", RecordType::A).await
        }));
    }
    for t in all {
        let msg = t.await.expect("task").expect("answer");
        assert_eq!(a_records(&msg), [ANSWER.to_string()]);
    }
    assert_eq!(up.udp_queries(), 1);
}

#[tokio::test]
async fn clients_outside_allow_recursion_are_refused_but_get_our_names() {
    let up = Stub::start("127.0.0.1:0", Behavior::Answer).await;
    let sky = skydns_with(&[&up], &["-allow-recursion", "127.0.0.2/32"]).await;
    sky.client
        .add_service("1", &service("web", "prod", "", "127.0.0.9", 80, 60))
        .await
        .expect("add");
    let t = Duration::from_secs(3);
    let refused = ask_from("127.0.0.1:0", &sky, "outside.example.", t)
        .await
        .expect("answer");
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
    let ours = ask_from("127.0.0.1:0", &sky, "web.prod.skydns.local.", t)
        .await
        .expect("answer");
    assert_eq!(a_records(&ours), ["127.0.0.9"]);
    let allowed = ask_from("127.0.0.2:0", &sky, "outside.example.", t)
        .await
        .expect("answer");
    assert_eq!(a_records(&allowed), [ANSWER.to_string()]);
    assert_eq!(up.udp_queries(), 1);
}

#[tokio::test]
async fn no_forward_refuses_outside_names() {
    let up = Stub::start("127.0.0.1:0", Behavior::Answer).await;
    let sky = skydns_with(&[&up], &["-no-forward"]).await;
    let msg = sky.query("outside.example.", RecordType::A).await;
    assert_eq!(msg.metadata.response_code, ResponseCode::Refused);
    let msg = tcp_query(
        sky.dns,
        &query_message("outside.example.", RecordType::A, None),
    )
    .await
    .expect("tcp");
    assert_eq!(msg.metadata.response_code, ResponseCode::Refused);
    assert_eq!(up.udp_queries() + up.tcp_queries(), 0);
}

#[tokio::test]
async fn nameserver_can_be_a_resolv_conf_file() {
    // A resolv.conf names IPs only (port 53): the stub takes port 53 on a loopback address of its own.
    let _up = Stub::start("127.0.0.77:53", Behavior::Answer).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("resolv.conf");
    std::fs::write(
        &file,
        "# test\nsearch example\nnameserver 127.0.0.77\noptions ndots:1\n",
    )
    .expect("write");
    let sky = SkyDns::start(&["-nameserver", file.to_str().expect("utf8")]).await;
    let msg = sky.query("viafile.example.", RecordType::A).await;
    assert_eq!(a_records(&msg), [ANSWER.to_string()]);
}

#[tokio::test]
async fn an_upstream_that_keeps_failing_is_skipped() {
    let dead = Stub::start("127.0.0.1:0", Behavior::Drop).await;
    let up = Stub::start("127.0.0.1:0", Behavior::Answer).await;
    let sky = skydns_with(&[&dead, &up], &["-forward-timeout", "1s"]).await;
    let t = Duration::from_secs(4);
    for name in ["s1.example.", "s2.example."] {
        ask_from("127.0.0.1:0", &sky, name, t)
            .await
            .expect("answer");
    }
    let start = Instant::now();
    let msg = ask_from("127.0.0.1:0", &sky, "s3.example.", t)
        .await
        .expect("answer");
    assert_eq!(a_records(&msg), [ANSWER.to_string()]);
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "dead upstream still tried first: {:?}",
        start.elapsed()
    );
}

/// Serve-stale (RFC 8767): once every upstream fails, an answer that
/// expired less than `-cache-serve-stale` ago is served with TTL 30 (here
/// capped by `-cache-max-ttl`) and counted; without the flag, or past the
/// window, the client gets SERVFAIL as before.
#[tokio::test]
async fn an_expired_answer_is_served_while_every_upstream_fails_within_the_stale_window() {
    let up = Stub::start("127.0.0.1:0", Behavior::Answer).await;
    let common = ["-cache-max-ttl", "1", "-forward-timeout", "300ms"];
    let stale = skydns_with(
        &[&up],
        &[&common[..], &["-cache-serve-stale", "2s"]].concat(),
    )
    .await;
    let plain = skydns_with(&[&up], &common).await;
    for sky in [&stale, &plain] {
        let msg = sky.query("stale.example.", RecordType::A).await;
        assert_eq!(a_records(&msg), [ANSWER.to_string()]);
    }
    drop(up); // every upstream fails from now on (the port is closed)
    tokio::time::sleep(Duration::from_millis(1200)).await; // past the 1 s TTL

    let msg = stale.query("stale.example.", RecordType::A).await;
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_records(&msg), [ANSWER.to_string()], "the stale answer");
    assert!(msg.answers.iter().all(|r| r.ttl == 1), "{:?}", msg.answers);
    let metrics = stale.metrics().await;
    assert!(
        metrics.contains("skydns_forward_stale_answers_total 1"),
        "{metrics}"
    );
    let msg = plain.query("stale.example.", RecordType::A).await;
    assert_eq!(
        msg.metadata.response_code,
        ResponseCode::ServFail,
        "no serve-stale without the flag"
    );

    // Past the window (expired 1.2 s + 2 s ago, more than 2 s): SERVFAIL again.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let msg = stale.query("stale.example.", RecordType::A).await;
    assert_eq!(
        msg.metadata.response_code,
        ResponseCode::ServFail,
        "past the stale window"
    );
}

/// `-cache-size 0` turns the cache off cleanly: every question goes
/// upstream (none is answered from the forwarding or the wire cache) and
/// nothing is held.
#[tokio::test]
async fn cache_size_zero_sends_every_question_upstream_and_holds_nothing() {
    let up = Stub::start("127.0.0.1:0", Behavior::Answer).await;
    let sky = skydns_with(&[&up], &["-cache-size", "0"]).await;
    for _ in 0..3 {
        let msg = sky.query("uncached.example.", RecordType::A).await;
        assert_eq!(a_records(&msg), [ANSWER.to_string()]);
    }
    assert_eq!(up.udp_queries(), 3, "each question went upstream");
    let metrics = sky.metrics().await;
    assert!(
        metrics.contains("skydns_forward_cache_entries 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("skydns_forward_cache_hits_total 0"),
        "{metrics}"
    );
}

/// Prefetch: a name asked at least `-cache-prefetch` times is refreshed
/// upstream once the last tenth of its life begins, so asking it after its
/// first answer expired is still a hit; without the flag that question is a
/// miss, and a name asked once is left to expire.
#[tokio::test]
async fn a_popular_answer_is_refreshed_before_it_expires_and_never_becomes_a_miss() {
    let common = ["-cache-max-ttl", "4"];
    let (hot_up, plain_up) = (
        Stub::start("127.0.0.1:0", Behavior::Answer).await,
        Stub::start("127.0.0.1:0", Behavior::Answer).await,
    );
    let hot = skydns_with(
        &[&hot_up],
        &[&common[..], &["-cache-prefetch", "2"]].concat(),
    )
    .await;
    let plain = skydns_with(&[&plain_up], &common).await;
    let start = Instant::now();
    for sky in [&hot, &plain] {
        for name in [
            "hot.example.",
            "hot.example.",
            "hot.example.",
            "once.example.",
        ] {
            let msg = sky.query(name, RecordType::A).await;
            assert_eq!(a_records(&msg), [ANSWER.to_string()]);
        }
    }
    assert_eq!((hot_up.udp_queries(), plain_up.udp_queries()), (2, 2));

    // In the last tenth of the 4 s life (3.6 s to 4 s): answered from the
    // cache, and the popular name is refreshed upstream behind it.
    tokio::time::sleep(Duration::from_millis(3700).saturating_sub(start.elapsed())).await;
    for sky in [&hot, &plain] {
        let msg = sky.query("hot.example.", RecordType::A).await;
        assert_eq!(a_records(&msg), [ANSWER.to_string()]);
        assert!(msg.answers.iter().all(|r| r.ttl <= 1), "{:?}", msg.answers);
    }
    let refreshed = Instant::now();
    while hot_up.udp_queries() < 3 && refreshed.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(hot_up.udp_queries(), 3, "the popular name was prefetched");
    assert_eq!(plain_up.udp_queries(), 2, "no prefetch without the flag");

    // Past the first answer's expiry.
    tokio::time::sleep(Duration::from_millis(4300).saturating_sub(start.elapsed())).await;
    for sky in [&hot, &plain] {
        let msg = sky.query("hot.example.", RecordType::A).await;
        assert_eq!(a_records(&msg), [ANSWER.to_string()]);
        assert!(msg.answers.iter().all(|r| r.ttl <= 4), "{:?}", msg.answers);
    }
    assert_eq!(
        hot_up.udp_queries(),
        3,
        "still a hit: the prefetched answer"
    );
    assert_eq!(plain_up.udp_queries(), 3, "a miss: it had expired");
    let metrics = hot.metrics().await;
    assert!(
        metrics.contains("skydns_forward_prefetches_total 1"),
        "once, and not for the name asked once: {metrics}"
    );
}

/// What a client sees of a forwarded answer is its own: its ID, its
/// question in its letter case, RD as it asked, RA, not AA — whether the
/// upstream's records are sent on as they came (no EDNS, nothing capped),
/// re-encoded (EDNS, or a TTL capped by `-cache-max-ttl`), or coalesced with
/// another client's question.
#[tokio::test]
async fn a_forwarded_answer_carries_the_clients_id_case_and_flags_on_every_path() {
    let up = Stub::start("127.0.0.1:0", Behavior::Answer).await;
    let relayed = skydns_with(&[&up], &["-cache-size", "0"]).await;
    let capped = skydns_with(&[&up], &["-cache-size", "0", "-cache-max-ttl", "60"]).await;
    for (sky, payload, ttl) in [
        (&relayed, None, stub::TTL),
        (&relayed, Some(1232), stub::TTL),
        (&capped, None, 60),
    ] {
        let mut query = query_message("MiXeD.CaSe.Example.", RecordType::A, payload);
        query.metadata.id = 0x5a5a;
        let reply = skydns_tests::udp_exchange(sky.dns, &query)
            .await
            .expect("answer");
        let what = format!("EDNS {payload:?}, TTL {ttl}");
        assert_eq!(reply.metadata.id, 0x5a5a, "{what}");
        assert_eq!(reply.queries, query.queries, "{what}");
        assert_eq!(
            reply.queries[0].name().to_ascii(),
            "MiXeD.CaSe.Example.",
            "{what}"
        );
        assert!(reply.metadata.recursion_desired && reply.metadata.recursion_available);
        assert!(!reply.metadata.authoritative && !reply.metadata.truncation);
        assert_eq!(a_records(&reply), [ANSWER.to_string()], "{what}");
        assert!(
            reply.answers.iter().all(|r| r.ttl == ttl),
            "{what}: {:?}",
            reply.answers
        );
        assert_eq!(reply.edns.is_some(), payload.is_some(), "{what}");
    }

    // Coalesced: two clients ask the same name in different case at once;
    // each gets its own ID and case.
    let slow = Stub::start("127.0.0.1:0", Behavior::Delay(Duration::from_millis(200))).await;
    let sky = skydns_with(&[&slow], &[]).await;
    let ask = |name: &'static str, id: u16| {
        let mut query = query_message(name, RecordType::A, None);
        query.metadata.id = id;
        let dns = sky.dns;
        async move {
            skydns_tests::udp_exchange(dns, &query)
                .await
                .expect("answer")
        }
    };
    let (a, b) = tokio::join!(ask("same.EXAMPLE.", 1), ask("SAME.example.", 2));
    assert_eq!(slow.udp_queries(), 1, "coalesced into one upstream query");
    for (reply, id, name) in [(a, 1, "same.EXAMPLE."), (b, 2, "SAME.example.")] {
        assert_eq!(reply.metadata.id, id);
        assert_eq!(reply.queries[0].name().to_ascii(), name);
        assert_eq!(a_records(&reply), [ANSWER.to_string()]);
    }
}

/// RFC 5452: every query sent upstream comes from its own random source port
/// with its own random ID, so an off-path attacker has to guess both.
#[tokio::test]
async fn each_upstream_query_has_its_own_random_source_port_and_id() {
    let up = Stub::start("127.0.0.1:0", Behavior::Answer).await;
    let sky = skydns_with(&[&up], &["-cache-size", "0"]).await;
    for i in 0..40 {
        let msg = sky.query(&format!("n{i}.example."), RecordType::A).await;
        assert_eq!(a_records(&msg), [ANSWER.to_string()]);
    }
    let seen = up.udp_sources();
    assert_eq!(seen.len(), 40);
    let ports: std::collections::HashSet<u16> = seen.iter().map(|s| s.0).collect();
    let ids: std::collections::HashSet<u16> = seen.iter().map(|s| s.1).collect();
    // 40 draws from ~28,000 ports or 65,536 IDs repeat with probability < 3 %
    // (two repeats: < 0.1 %); a port or ID reused, or counted up, fails.
    assert!(ports.len() >= 38, "source ports: {seen:?}");
    assert!(ids.len() >= 38, "IDs: {seen:?}");
    let ascending = seen
        .windows(2)
        .filter(|w| w[1].0 == w[0].0.wrapping_add(1))
        .count();
    assert!(
        ascending < 10,
        "source ports counted up, not random: {seen:?}"
    );
}
