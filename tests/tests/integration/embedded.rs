//! skydns embedded in-process, as users' own integration tests embed it.

use hickory_proto::rr::RecordType;
use skydns_tests::{Client, a_records, service, udp_query};

#[tokio::test]
async fn an_embedded_server_answers_and_shuts_down() {
    let server = skydns::start(skydns::Config::ephemeral())
        .await
        .expect("starts on free ports");
    let client = Client::new(&server.http_url()).expect("client");
    client
        .add_service("e1", &service("web", "prod", "", "127.0.0.42", 80, 60))
        .await
        .expect("add");
    let msg = udp_query(server.dns_addr(), "web.prod.skydns.local.", RecordType::A)
        .await
        .expect("answer");
    assert_eq!(a_records(&msg), ["127.0.0.42"]);
    let dns = server.dns_addr();
    server.shutdown().await.expect("clean shutdown");
    assert!(
        udp_query(dns, "web.prod.skydns.local.", RecordType::A)
            .await
            .is_err(),
        "stopped servers do not answer"
    );
}
