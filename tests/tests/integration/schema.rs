//! schemathesis (PyPI) against the running server, driven by our OpenAPI
//! document: no 5xx, every status code documented, every response body
//! matching its schema. scripts/test-all.sh installs schemathesis.

use std::process::Command;

use skydns_tests::SkyDns;

/// Tests that need schemathesis (`pip install schemathesis`; `cargo test --
/// --skip needs_schemathesis` runs the rest).
mod needs_schemathesis {
    use super::*;

    #[tokio::test]
    async fn schemathesis_finds_no_server_error_and_no_schema_violation() {
        let sky = SkyDns::start(&["-no-forward"]).await;
        let url = sky.url();
        let spec = format!("{url}/openapi.json");
        let out = tokio::task::spawn_blocking(move || {
            Command::new("schemathesis")
                .args(["run", &spec, "--url", &url])
                .args(["-c", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"])
                .args(["--exclude-path", "/events", "-n", "40", "--request-timeout", "5", "--seed", "1"])
                .env("NO_COLOR", "1")
                .current_dir(std::env::temp_dir())
                .output()
        })
        .await
        .expect("task")
        .unwrap_or_else(|e| panic!("schemathesis is not installed ({e}): scripts/test-all.sh installs it with pip"));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "schemathesis found problems:\n{text}");
        assert!(text.contains("passed"), "schemathesis ran no test:\n{text}");
    }
}
