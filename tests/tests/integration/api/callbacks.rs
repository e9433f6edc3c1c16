//! Callbacks delivered to a listener the test runs: on delete, on expiry,
//! their limits, and listeners that are slow or dead.

use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use serde_json::{Value, json};
use skydns_tests::{Callback, ClientError, SkyDns, a_records, service};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    sync::mpsc,
};

use super::*;

/// What a callback listener received.
#[derive(Debug)]
pub(crate) struct Received {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) body: Vec<u8>,
}

/// A tiny HTTP listener on 127.0.0.1: records each request and answers 200.
pub(crate) async fn callback_listener() -> (u16, mpsc::UnboundedReceiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break p;
                    }
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                while buf.len() < head_end + 4 + len {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let mut first = head.lines().next().unwrap_or_default().split_whitespace();
                let method = first.next().unwrap_or_default().to_string();
                let path = first.next().unwrap_or_default().to_string();
                let body = buf.get(head_end + 4..).unwrap_or_default().to_vec();
                let _ = sock
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .await;
                let _ = tx.send(Received { method, path, body });
            });
        }
    });
    (port, rx)
}

pub(crate) async fn next_callback(
    rx: &mut mpsc::UnboundedReceiver<Received>,
    within: Duration,
) -> Received {
    tokio::time::timeout(within, rx.recv())
        .await
        .expect("callback delivered in time")
        .expect("listener alive")
}

fn callback_for(name: &str, port: u16) -> Callback {
    Callback {
        name: name.into(),
        version: "1.0.0".into(),
        environment: "production".into(),
        region: "east".into(),
        reply: "127.0.0.1".into(),
        port,
        ..Callback::default()
    }
}

#[tokio::test]
async fn callback_is_delivered_when_its_service_is_deleted() {
    let sky = SkyDns::start(&[]).await;
    let (port, mut rx) = callback_listener().await;
    sky.client
        .add_service(
            "s1",
            &service("rails", "production", "east", "127.0.0.10", 8080, 60),
        )
        .await
        .expect("add");
    let cb = json!({"Name":"rails","Version":"1.0.0","Environment":"production","Region":"east",
        "Reply":"127.0.0.1","Port":port});
    let r = req(&sky, "PUT", "/skydns/callbacks/cb1", Some(&cb)).await;
    assert_eq!(r.status, 201, "{}", r.text());
    // Nothing is sent before the service goes.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), rx.recv())
            .await
            .is_err(),
        "no early callback"
    );

    assert_eq!(
        req(&sky, "DELETE", "/skydns/services/s1", None)
            .await
            .status,
        200
    );
    let got = next_callback(&mut rx, Duration::from_secs(5)).await;
    assert_eq!(got.method, "DELETE");
    assert_eq!(got.path, "/skydns/callbacks/cb1");
    let svc: Value = serde_json::from_slice(&got.body).expect("service JSON in the callback body");
    assert_eq!(svc["UUID"], "s1", "{svc}");
    assert_eq!(svc["Name"], "rails");
    assert_eq!(svc["Host"], "127.0.0.10");
    assert_eq!(svc["Port"], 8080);
    assert_eq!(svc["Region"], "east");
    // Exactly once.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), rx.recv())
            .await
            .is_err(),
        "one delivery only"
    );
}

#[tokio::test]
async fn callback_is_delivered_when_its_service_expires() {
    let sky = SkyDns::start(&[]).await;
    let (port, mut rx) = callback_listener().await;
    sky.client
        .add_service(
            "e1",
            &service("web", "production", "east", "127.0.0.20", 80, 2),
        )
        .await
        .expect("add");
    sky.client
        .add_service(
            "e2",
            &service("web", "production", "west", "127.0.0.21", 80, 60),
        )
        .await
        .expect("add");
    // Matches e1 only (region east).
    sky.client
        .add_callback("cb-exp", &callback_for("web", port))
        .await
        .expect("callback");
    let started = Instant::now();
    let got = next_callback(&mut rx, Duration::from_secs(5)).await;
    assert!(
        started.elapsed() < Duration::from_millis(3000),
        "fired at expiry, took {:?}",
        started.elapsed()
    );
    assert_eq!(got.method, "DELETE");
    assert_eq!(got.path, "/skydns/callbacks/cb-exp");
    let svc: Value = serde_json::from_slice(&got.body).expect("service JSON");
    assert_eq!(svc["UUID"], "e1", "{svc}");
    assert_eq!(svc["Host"], "127.0.0.20");
    assert!(matches!(
        sky.client.get_service("e1").await,
        Err(ClientError::NotFound(_))
    ));
    assert!(sky.client.get_service("e2").await.is_ok());
}

#[tokio::test]
async fn callback_matching_no_service_is_404() {
    let sky = SkyDns::start(&[]).await;
    let (port, _rx) = callback_listener().await;
    let r = req(
        &sky,
        "PUT",
        "/skydns/callbacks/cbx",
        Some(&serde_json::to_value(callback_for("nosuch", port)).expect("json")),
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.text());
    sky.client
        .add_service(
            "s1",
            &service("rails", "production", "west", "127.0.0.10", 80, 60),
        )
        .await
        .expect("add");
    // Same name, other region: still no match.
    let err = sky
        .client
        .add_callback("cbx", &callback_for("rails", port))
        .await
        .expect_err("no match");
    assert!(matches!(err, ClientError::NotFound(_)), "{err:?}");
    // A callback without Reply is rejected.
    let r = req(
        &sky,
        "PUT",
        "/skydns/callbacks/cby",
        Some(&json!({"Name":"rails","Port":port})),
    )
    .await;
    assert_bad_field(&r, "Reply", "callback without Reply");
}

#[tokio::test]
async fn callbacks_are_bounded_per_service_and_per_callback() {
    let sky = SkyDns::start(&[]).await;
    sky.client
        .add_service(
            "s1",
            &service("rails", "production", "east", "127.0.0.10", 80, 60),
        )
        .await
        .expect("add");
    let cb = callback_for("rails", 9);
    for i in 0..64 {
        sky.client
            .add_callback(&format!("cb{i}"), &cb)
            .await
            .unwrap_or_else(|e| panic!("callback {i} of 64: {e}"));
    }
    sky.client
        .add_callback("cb0", &cb)
        .await
        .expect("the same callback again replaces it");
    let r = req(
        &sky,
        "PUT",
        "/skydns/callbacks/cb64",
        Some(&serde_json::to_value(&cb).expect("json")),
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(
        r.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("s1") && e.contains("64")),
        "{}",
        r.text()
    );

    // One callback may not attach to more than 4,096 services.
    let mut set = tokio::task::JoinSet::new();
    for worker in 0..8u32 {
        let client = sky.client.clone();
        set.spawn(async move {
            for i in (worker..4097).step_by(8) {
                let host = format!("10.1.{}.{}", i / 250, i % 250 + 1);
                client
                    .add_service(
                        &format!("m{i}"),
                        &service("many", "production", "", &host, 80, 600),
                    )
                    .await
                    .expect("add");
            }
        });
    }
    while let Some(done) = set.join_next().await {
        done.expect("task");
    }
    let broad = Callback {
        name: "many".into(),
        reply: "127.0.0.1".into(),
        port: 9,
        ..Callback::default()
    };
    let r = req(
        &sky,
        "PUT",
        "/skydns/callbacks/broad",
        Some(&serde_json::to_value(&broad).expect("json")),
    )
    .await;
    assert_bad_field(&r, "Name", "a callback matching 4,097 services");
    sky.client.delete_service("m0").await.expect("delete");
    sky.client
        .add_callback("broad", &broad)
        .await
        .expect("4,096 services are within the limit");
}

#[tokio::test]
async fn a_slow_or_dead_callback_listener_does_not_stall_the_api() {
    let sky = SkyDns::start(&[]).await;
    // A listener that accepts and never answers, and a port where nobody listens.
    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let dead_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    for i in 0..20 {
        let host = format!("127.0.1.{}", i + 1);
        sky.client
            .add_service(
                &format!("s{i}"),
                &service("slow", "production", "east", &host, 80, 60),
            )
            .await
            .expect("add");
    }
    sky.client
        .add_callback("silent", &callback_for("slow", silent_port))
        .await
        .expect("callback");
    sky.client
        .add_callback("dead", &callback_for("slow", dead_port))
        .await
        .expect("callback");

    for i in 0..20 {
        timed("DELETE", sky.client.delete_service(&format!("s{i}")))
            .await
            .expect("delete");
    }
    // While 20 deliveries hang on the silent listener, the API and DNS answer at once.
    timed(
        "PUT",
        sky.client.add_service(
            "n1",
            &service("fast", "production", "", "127.0.0.30", 80, 60),
        ),
    )
    .await
    .expect("add");
    let got = timed("GET", sky.client.get_service("n1"))
        .await
        .expect("get");
    assert_eq!(got.host, "127.0.0.30");
    timed("list", sky.client.list_services(None))
        .await
        .expect("list");
    let msg = timed(
        "DNS",
        sky.query("fast.production.skydns.local.", RecordType::A),
    )
    .await;
    assert_eq!(a_records(&msg), ["127.0.0.30"]);
    timed("DELETE", sky.client.delete_service("n1"))
        .await
        .expect("delete");
    hold.abort();
}
