use std::{collections::BTreeMap, time::Duration};

use clap::CommandFactory;
use skydns_api::{ClientError, Service};

use super::*;

fn svc(uuid: &str, name: &str, host: &str, port: u16, ttl: u32) -> Service {
    Service {
        uuid: uuid.into(),
        name: name.into(),
        version: "1.0.0".into(),
        environment: "production".into(),
        region: "east".into(),
        host: host.into(),
        port,
        ttl,
        ..Service::default()
    }
}

fn cli(args: &[&str]) -> Cli {
    let mut v = vec!["skydnsctl"];
    v.extend_from_slice(args);
    parse(v).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

#[test]
fn clap_definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn ttl_is_humanised() {
    assert_eq!(format_ttl(0), "0s");
    assert_eq!(format_ttl(42), "42s");
    assert_eq!(format_ttl(60), "1m");
    assert_eq!(format_ttl(3987), "1h6m27s");
    assert_eq!(format_ttl(90_061), "1d1h1m1s");
}

#[test]
fn ipv6_hosts_are_bracketed() {
    assert_eq!(host_port("10.0.0.1", 80), "10.0.0.1:80");
    assert_eq!(host_port("web1.site.com", 443), "web1.site.com:443");
    assert_eq!(host_port("::1", 53), "[::1]:53");
}

#[test]
fn table_has_aligned_columns_and_no_trailing_blanks() {
    let mut a = svc("1001", "TestService", "web1.site.com", 80, 3987);
    a.owner = Some("skydock@host1".into());
    let mut b = svc("b", "redis", "::1", 6379, 0);
    b.no_expire = true;
    b.region = String::new();
    let out = format_table(&[a, b]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(
        lines[0],
        "UUID  NAME         VERSION  ENVIRONMENT  REGION  HOST:PORT         TTL      OWNER"
    );
    assert_eq!(
        lines[1],
        "1001  TestService  1.0.0    production   east    web1.site.com:80  1h6m27s  skydock@host1"
    );
    assert_eq!(
        lines[2],
        "b     redis        1.0.0    production   -       [::1]:6379        never    -"
    );
    assert!(out.ends_with('\n'));
    assert!(out.lines().all(|l| l == l.trim_end()));
}

#[test]
fn service_is_shown_field_per_line() {
    let mut s = svc("1001", "TestService", "10.0.0.1", 80, 59);
    s.expires = Some("2026-11-26T18:19:54.790Z".into());
    let out = format_service(&s);
    assert!(out.starts_with("UUID:         1001\n"), "{out}");
    assert!(out.contains("\nHost:         10.0.0.1\n"), "{out}");
    assert!(out.contains("\nPort:         80\n"), "{out}");
    assert!(out.contains("\nTTL left:     59s\n"), "{out}");
    assert!(
        out.contains("\nExpires:      2026-11-26T18:19:54.790Z\n"),
        "{out}"
    );
    assert!(out.ends_with("\nOwner:        -\n"), "{out}");

    s.no_expire = true;
    s.ttl = 0;
    s.expires = None;
    let out = format_service(&s);
    assert!(out.contains("\nTTL left:     never\n"), "{out}");
    assert!(out.contains("\nExpires:      never (NoExpire)\n"), "{out}");
}

#[test]
fn counts_are_a_two_column_table() {
    let counts: BTreeMap<String, u64> = [("east".to_string(), 2), (String::new(), 1)]
        .into_iter()
        .collect();
    assert_eq!(
        format_counts("REGION", &counts),
        "REGION  SERVICES\n(none)  1\neast    2\n"
    );
    assert_eq!(
        format_counts("REGION", &BTreeMap::new()),
        "no services registered\n"
    );
}

#[test]
fn single_dash_flags_work() {
    let c = cli(&[
        "-url",
        "http://127.0.0.1:9",
        "-secret=s3",
        "-json",
        "-timeout",
        "1.5",
        "heartbeat",
        "x",
        "-ttl",
        "60",
    ]);
    assert_eq!(c.url, "http://127.0.0.1:9");
    assert_eq!(
        c.secret.as_ref().map(skydns_api::Secret::expose),
        Some("s3")
    );
    assert!(c.json);
    assert_eq!(c.timeout, Duration::from_millis(1500));
    assert!(matches!(c.command, Command::Heartbeat { ref uuid, ttl: 60 } if uuid == "x"));
}

#[test]
fn global_flags_go_anywhere() {
    let c = cli(&[
        "list",
        "east.*.web.production",
        "--json",
        "--url",
        "http://h:1",
    ]);
    assert!(c.json);
    assert_eq!(c.url, "http://h:1");
    assert!(
        matches!(c.command, Command::List { query: Some(ref q) } if q == "east.*.web.production")
    );
    let c = cli(&["heartbeat", "x"]);
    assert!(matches!(c.command, Command::Heartbeat { ttl: 30, .. }));
}

#[test]
fn add_json_with_a_body_is_the_body_and_without_is_output() {
    let c = cli(&[
        "add",
        "1001",
        "--json",
        r#"{"Name":"web","Host":"10.0.0.1","Port":80,"TTL":60}"#,
        "--port",
        "8080",
    ]);
    assert!(!c.json, "--json with a body is not the output switch");
    let Command::Add(args) = &c.command else {
        panic!("add expected")
    };
    let s = service_from_args(args).expect("body parses");
    assert_eq!(
        (s.name.as_str(), s.host.as_str(), s.port, s.ttl),
        ("web", "10.0.0.1", 8080, 60),
        "flags override the body"
    );

    let c = cli(&["add", "1", "-json={\"Host\":\"h\"}", "-json"]);
    assert!(c.json);
    let Command::Add(args) = &c.command else {
        panic!("add expected")
    };
    assert_eq!(args.body.as_deref(), Some("{\"Host\":\"h\"}"));

    let c = cli(&[
        "--json",
        "add",
        "1",
        "--host",
        "h",
        "--port",
        "1",
        "--no-expire",
    ]);
    assert!(c.json);
    let Command::Add(args) = &c.command else {
        panic!("add expected")
    };
    let s = service_from_args(args).expect("no body");
    assert!(s.no_expire);
    assert_eq!(s.ttl, 0);
}

#[test]
fn prepare_args_leaves_passthrough_alone() {
    let v = prepare_args(["skydnsctl", "add", "--", "--json", "{}"]);
    assert_eq!(v, ["skydnsctl", "add", "--", "--json", "{}"]);
}

#[test]
fn bad_body_is_a_usage_error() {
    let c = cli(&["add", "1", "--json", "{not json"]);
    let Command::Add(args) = &c.command else {
        panic!("add expected")
    };
    let err = service_from_args(args).expect_err("bad JSON");
    assert_eq!(err.code, exit::USAGE);
    assert!(err.message.starts_with("--json body:"), "{}", err.message);
}

#[test]
fn callback_flags_fill_the_callback() {
    let c = cli(&[
        "callback",
        "add",
        "cb1",
        "-name",
        "web",
        "-reply",
        "127.0.0.1",
        "-port",
        "5441",
    ]);
    let Command::Callback(CallbackCommand::Add(args)) = &c.command else {
        panic!("callback add expected")
    };
    let cb = callback_from_args(args).expect("no body");
    assert_eq!(
        (cb.name.as_str(), cb.reply.as_str(), cb.port),
        ("web", "127.0.0.1", 5441)
    );
}

#[test]
fn usage_errors_are_clap_errors_with_code_2() {
    for args in [
        vec!["skydnsctl"],
        vec!["skydnsctl", "frobnicate"],
        vec!["skydnsctl", "add", "1", "--port", "70000"],
        vec!["skydnsctl", "get"],
        vec!["skydnsctl", "--timeout", "0", "regions"],
        vec!["skydnsctl", "--timeout", "-1", "regions"],
        vec!["skydnsctl", "--timeout", "NaN", "regions"],
    ] {
        let e = parse(args.clone()).expect_err("usage error");
        assert_eq!(e.exit_code(), 2, "{args:?}");
    }
}

#[test]
fn help_documents_the_exit_codes() {
    let help = Cli::command().render_long_help().to_string();
    for needle in [
        "Exit codes:",
        "3  not found",
        "4  conflict",
        "5  rejected",
        "SKYDNS_URL",
        "SKYDNS_SECRET",
    ] {
        assert!(help.contains(needle), "{needle} missing from:\n{help}");
    }
}

#[test]
fn client_errors_map_to_distinct_exit_codes() {
    let t = Duration::from_secs(5);
    let base = "http://127.0.0.1:8080";
    let f = Failure::from_client(
        &ClientError::NotFound("service \"x\" not found".into()),
        base,
        t,
    );
    assert_eq!(f.code, exit::NOT_FOUND);
    assert_eq!(f.message, "not found: service \"x\" not found");
    let f = Failure::from_client(
        &ClientError::Conflict("service \"x\" is already registered".into()),
        base,
        t,
    );
    assert_eq!(f.code, exit::CONFLICT);
    let f = Failure::from_client(
        &ClientError::Rejected {
            status: 400,
            message: "must be a DNS label".into(),
            field: Some("Region".into()),
        },
        base,
        t,
    );
    assert_eq!(f.code, exit::REJECTED);
    assert_eq!(
        f.message,
        "rejected (400): must be a DNS label (field Region)"
    );
    let f = Failure::from_client(
        &ClientError::Rejected {
            status: 400,
            message: "Port is required and must be 1-65535".into(),
            field: Some("Port".into()),
        },
        base,
        t,
    );
    assert_eq!(
        f.message,
        "rejected (400): Port is required and must be 1-65535"
    );
    let f = Failure::from_client(&ClientError::Unauthorized("wrong".into()), base, t);
    assert_eq!(f.code, exit::REJECTED);
    assert!(f.message.starts_with("unauthorized: wrong"));
    let f = Failure::from_client(
        &ClientError::Server {
            status: 503,
            message: "store unavailable".into(),
        },
        base,
        t,
    );
    assert_eq!(f.code, exit::GENERAL);
    let f = Failure::from_client(&ClientError::InvalidUrl("localhost:8080".into()), base, t);
    assert_eq!(f.code, exit::USAGE);
}

#[test]
fn failures_are_one_line() {
    let f = Failure::new(exit::GENERAL, "first\n  second\r\n\nthird");
    assert_eq!(f.message, "first second third");
    assert_eq!(f.to_string(), "first second third");
}
