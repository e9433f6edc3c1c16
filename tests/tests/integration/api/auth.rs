//! Who may talk to the API: the secret on every route, and TLS.

use std::net::SocketAddr;

use hickory_proto::{op::ResponseCode, rr::RecordType};
use skydns_tests::{ClientError, SkyDns, a_records, http, service};

use super::*;

#[tokio::test]
async fn with_a_secret_every_route_needs_the_authorization_header() {
    let sky = SkyDns::start(&["-secret", "s3cret"]).await;
    let good = rails("127.0.0.10");
    let r = req(&sky, "PUT", "/skydns/services/1001", Some(&good)).await;
    assert_eq!(r.status, 401, "no header: {}", r.text());
    let bytes = body(&good);
    let r = http(
        sky.http,
        "PUT",
        "/skydns/services/1001",
        &[("Authorization", "wrong")],
        Some(&bytes),
    )
    .await
    .expect("answer");
    assert_eq!(r.status, 401, "wrong secret: {}", r.text());
    let r = http(
        sky.http,
        "PUT",
        "/skydns/services/1001",
        &[("Authorization", "s3cret-and-more")],
        Some(&bytes),
    )
    .await
    .expect("answer");
    assert_eq!(r.status, 401, "secret with a suffix");
    for (m, p) in [
        ("GET", "/skydns/services/"),
        ("GET", "/skydns/regions/"),
        ("GET", "/skydns/environments/"),
        ("GET", "/skydns/services/1001"),
        ("DELETE", "/skydns/services/1001"),
    ] {
        assert_eq!(req(&sky, m, p, None).await.status, 401, "{m} {p}");
    }
    assert!(matches!(
        sky.client.list_services(None).await,
        Err(ClientError::Unauthorized(_))
    ));
    assert!(matches!(
        sky.client
            .clone()
            .with_secret("nope")
            .get_service("1001")
            .await,
        Err(ClientError::Unauthorized(_))
    ));
    // Nothing was registered by the refused PUTs.
    assert_eq!(
        sky.query(RAILS, RecordType::A).await.metadata.response_code,
        ResponseCode::NXDomain
    );

    let r = http(
        sky.http,
        "PUT",
        "/skydns/services/1001",
        &[("Authorization", "s3cret")],
        Some(&bytes),
    )
    .await
    .expect("answer");
    assert_eq!(r.status, 201, "right secret: {}", r.text());
    let client = sky.client.clone().with_secret("s3cret");
    client
        .add_service(
            "1002",
            &service("rails", "production", "east", "127.0.0.11", 80, 60),
        )
        .await
        .expect("add");
    assert_eq!(
        client.get_service("1001").await.expect("get").host,
        "127.0.0.10"
    );
    assert_eq!(client.list_services(None).await.expect("list").len(), 2);
    client.heartbeat("1001", 60).await.expect("heartbeat");
    client.delete_service("1002").await.expect("delete");
    assert_eq!(
        a_records(&sky.query(RAILS, RecordType::A).await),
        ["127.0.0.10"]
    );
}

fn run(cmd: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run `{cmd}` (is it installed? apt-get install {cmd}): {e}")
        })
}

#[tokio::test]
async fn tls_serves_the_api_over_https_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("k.pem");
    let cert = dir.path().join("c.pem");
    let (key_s, cert_s) = (key.to_str().expect("utf8"), cert.to_str().expect("utf8"));
    let out = run(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            key_s,
            "-out",
            cert_s,
            "-days",
            "1",
        ],
    );
    assert!(
        out.status.success(),
        "openssl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let sky = SkyDns::start(&["-tls-key", key_s, "-tls-pem", cert_s]).await;
    let addr: SocketAddr = sky.http;
    let https = format!("https://{addr}/skydns/services/");
    let curl = |args: Vec<String>| async move {
        tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            run("curl", &refs)
        })
        .await
        .expect("curl task")
    };

    let out = curl(vec![
        "-sk".into(),
        "-m".into(),
        "5".into(),
        "-w".into(),
        "\n%{http_code}".into(),
        https.clone(),
    ])
    .await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl over TLS failed: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.trim(), "[]\n200", "answer over TLS");

    let put = format!("https://{addr}/skydns/services/tls1");
    let out = curl(vec![
        "-sk".into(),
        "-m".into(),
        "5".into(),
        "-o".into(),
        "/dev/null".into(),
        "-w".into(),
        "%{http_code}".into(),
        "-X".into(),
        "PUT".into(),
        "-d".into(),
        r#"{"Name":"rails","Environment":"production","Host":"127.0.0.10","Port":80,"TTL":60}"#
            .into(),
        put,
    ])
    .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "201", "PUT over TLS");
    assert_eq!(
        a_records(
            &sky.query("rails.production.skydns.local.", RecordType::A)
                .await
        ),
        ["127.0.0.10"]
    );

    let plain = format!("http://{addr}/skydns/services/");
    let out = curl(vec![
        "-s".into(),
        "-m".into(),
        "5".into(),
        "-o".into(),
        "/dev/null".into(),
        "-w".into(),
        "%{http_code}".into(),
        plain,
    ])
    .await;
    let code = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        !out.status.success() || code != "200",
        "plain HTTP must not be served: exit {:?} code {code}",
        out.status
    );
    assert_ne!(code, "200");
}
