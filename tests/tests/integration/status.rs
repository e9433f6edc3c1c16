//! Operator surfaces over the wire: the change stream (SSE), recent
//! expiries, the status page behind the secret, readiness, OpenAPI.

use std::time::Duration;

use skydns_tests::{SkyDns, http, service};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
};

/// Reads SSE lines until an `event: <kind>` whose data mentions `needle`.
async fn next_event(
    lines: &mut tokio::io::Lines<BufReader<TcpStream>>,
    kind: &str,
    needle: &str,
) -> String {
    let fut = async {
        let mut current = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(k) = line.strip_prefix("event: ") {
                current = k.to_string();
            } else if let Some(data) = line.strip_prefix("data: ")
                && current == kind
                && data.contains(needle)
            {
                return data.to_string();
            }
        }
        String::new()
    };
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .unwrap_or_else(|_| panic!("no {kind} event for {needle}"))
}

#[tokio::test]
async fn events_stream_registry_changes_and_expiries_are_kept() {
    let sky = SkyDns::start(&["-secret", "s3"]).await;
    let client = sky.client.clone().with_secret("s3");
    let mut stream = TcpStream::connect(sky.http).await.expect("connect");
    let req = format!(
        "GET /events HTTP/1.1\r\nHost: {}\r\nAuthorization: s3\r\nAccept: text/event-stream\r\n\r\n",
        sky.http
    );
    stream.write_all(req.as_bytes()).await.expect("send");
    let mut lines = BufReader::new(stream).lines();
    let status = lines.next_line().await.expect("read").expect("status line");
    assert!(status.contains("200"), "{status}");

    client
        .add_service("ev1", &service("web", "prod", "", "127.0.0.1", 80, 60))
        .await
        .expect("add");
    let data = next_event(&mut lines, "registered", "\"ev1\"").await;
    assert!(data.contains("\"Name\":\"web\""), "{data}");
    client.heartbeat("ev1", 60).await.expect("beat");
    next_event(&mut lines, "heartbeat", "\"ev1\"").await;
    client.delete_service("ev1").await.expect("delete");
    next_event(&mut lines, "removed", "\"ev1\"").await;
    client
        .add_service("ev2", &service("web", "prod", "", "127.0.0.2", 80, 1))
        .await
        .expect("add");
    next_event(&mut lines, "expired", "\"ev2\"").await;

    let reply = http(
        sky.http,
        "GET",
        "/skydns/expiries/",
        &[("Authorization", "s3")],
        None,
    )
    .await
    .expect("get");
    assert_eq!(reply.status, 200);
    let body = String::from_utf8_lossy(&reply.body);
    assert!(
        body.contains("\"ev2\"") && body.contains("expired"),
        "{body}"
    );
}

#[tokio::test]
async fn status_page_is_behind_the_secret_and_browsers_can_log_in() {
    let sky = SkyDns::start(&["-secret", "s3"]).await;
    let denied = http(sky.http, "GET", "/", &[], None).await.expect("get");
    assert_eq!(denied.status, 401);
    let headers = denied.headers.to_ascii_lowercase();
    assert!(
        headers.contains("www-authenticate: basic"),
        "{}",
        denied.headers
    );
    // Basic auth, any user, the secret as password: what a browser sends.
    let page = http(
        sky.http,
        "GET",
        "/",
        &[("Authorization", "Basic b3BzOnMz")],
        None,
    )
    .await
    .expect("get");
    assert_eq!(page.status, 200);
    let html = String::from_utf8_lossy(&page.body);
    assert!(
        html.contains("EventSource(\"/events\")"),
        "the page watches the change stream"
    );
    let events = http(sky.http, "GET", "/events", &[], None)
        .await
        .expect("get");
    assert_eq!(events.status, 401, "the stream is protected too");
}

#[tokio::test]
async fn openapi_json_is_served_and_is_docs_openapi_json() {
    let sky = SkyDns::start(&[]).await;
    let doc = http(sky.http, "GET", "/openapi.json", &[], None)
        .await
        .expect("get");
    assert_eq!(doc.status, 200);
    assert!(
        doc.headers
            .to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{}",
        doc.headers
    );
    let on_disk =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json"))
            .expect("docs/openapi.json");
    assert_eq!(
        String::from_utf8_lossy(&doc.body).trim(),
        on_disk.trim(),
        "the served document is docs/openapi.json"
    );
}

/// Fills a fresh `-data` directory with `n` live registrations, written
/// through the store itself (much faster than the API).
async fn store_with(dir: &std::path::Path, n: usize) {
    use skydns::{
        Store,
        store::{RedbStore, StoredService},
    };
    let store = RedbStore::open(dir).expect("open the store");
    let later = skydns::registry::now_ms() + 3_600_000;
    for chunk in (0..n).collect::<Vec<_>>().chunks(10_000) {
        let records = chunk
            .iter()
            .map(|i| {
                let host = format!("10.{}.{}.{}", i / 62_500, (i / 250) % 250, i % 250 + 1);
                let mut service = service(&format!("s{}", i % 1000), "prod", "", &host, 80, 3600);
                service.uuid = format!("u{i}");
                StoredService {
                    service,
                    expires_ms: later,
                    callbacks: Vec::new(),
                }
            })
            .collect();
        store.put(records).await.expect("put");
    }
}

#[tokio::test]
async fn ready_is_503_while_the_store_loads_then_200_with_its_services() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = 100_000;
    store_with(dir.path(), n).await;
    let data = dir.path().to_str().expect("utf8");
    let loading = SkyDns::spawn_loading(&["-data", data]).await;

    // The API answers at once: not ready, and writes are refused, while the
    // registrations are being filed.
    let first = http(loading.http, "GET", "/ready", &[], None)
        .await
        .expect("/ready answers while loading");
    assert_eq!(first.status, 503, "{}", first.text());
    assert_eq!(first.json()["status"], "starting", "{}", first.text());
    let health = http(loading.http, "GET", "/health", &[], None)
        .await
        .expect("health");
    assert_eq!(health.status, 200, "the process is alive meanwhile");
    let put = http(
        loading.http,
        "PUT",
        "/skydns/services/early",
        &[],
        Some(br#"{"Name":"web","Host":"10.200.0.1","Port":80,"TTL":60}"#),
    )
    .await
    .expect("put");
    if put.status == 503 {
        assert!(
            put.headers.to_ascii_lowercase().contains("retry-after"),
            "{}",
            put.headers
        );
    } else {
        // The load finished in between: then the write is a normal one.
        assert_eq!(put.status, 201, "{}", put.text());
    }

    // Then ready, with every stored registration.
    let sky = loading.listening().await;
    let ready = http(sky.http, "GET", "/ready", &[], None)
        .await
        .expect("get");
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(ready.json()["status"], "ready");
    let expected = n + usize::from(put.status == 201);
    assert_eq!(ready.json()["services"], expected, "{}", ready.text());
    let msg = sky
        .query_tcp("s7.prod.skydns.local.", hickory_proto::rr::RecordType::A)
        .await;
    assert_eq!(
        msg.answers.len(),
        n / 1000,
        "DNS answers the restored names"
    );
}

#[tokio::test]
async fn status_page_shows_services_live_in_a_real_browser() {
    let sky = SkyDns::start(&[]).await;
    sky.client
        .add_service("chr0", &service("early", "prod", "", "127.0.0.1", 80, 60))
        .await
        .expect("add");
    let mut browser = skydns_tests::browser::Browser::open(&sky.url())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let live = "document.getElementById('live').textContent === 'live'";
    assert!(
        browser.wait_for(live, Duration::from_secs(10)).await,
        "the page connects to /events"
    );
    let row = |uuid: &str| format!("!!document.querySelector('tr[data-uuid=\"{uuid}\"]')");
    assert!(
        browser.wait_for(&row("chr0"), Duration::from_secs(5)).await,
        "services listed at load"
    );
    sky.client
        .add_service("chr1", &service("late", "prod", "", "127.0.0.2", 80, 60))
        .await
        .expect("add");
    assert!(
        browser.wait_for(&row("chr1"), Duration::from_secs(5)).await,
        "a new service appears without reload"
    );
    sky.client.delete_service("chr1").await.expect("delete");
    let gone = format!("!{}", row("chr1"));
    assert!(
        browser.wait_for(&gone, Duration::from_secs(5)).await,
        "a deleted service disappears without reload"
    );
    let count = browser
        .eval("document.getElementById('c-services').textContent")
        .await
        .expect("eval");
    assert_eq!(count, serde_json::json!("1"));
}
