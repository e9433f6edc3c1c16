//! Mapping: what name, port and TTL a container gets (variables, labels,
//! images, ports, health), and the original Skydock's plugins.

use std::time::Duration;

use hickory_proto::{op::ResponseCode, rr::RecordType};
use skydns_tests::{
    ClientError, SkyDns,
    docker::{self, BUSYBOX, COOL_API_V2, Container, HEALTHY},
    eventually, srv_records,
};

use super::*;

#[tokio::test]
async fn env_overrides_rename_and_retime_the_registration() {
    let rig = Rig::start(&["-ttl", "60"]).await;
    let tag = format!("{:08x}", rand::random::<u32>());
    let (service, instance, env2) = (
        format!("svc-{tag}"),
        format!("inst-{tag}"),
        format!("e{tag}"),
    );
    let e_service = format!("DNS_SERVICE={service}");
    let e_instance = format!("DNS_INSTANCE={instance}");
    let e_env = format!("DNS_ENVIRONMENT={env2}");
    let c = Container::run(
        PREFIX,
        BUSYBOX,
        &[
            "-e",
            &e_service,
            "-e",
            &e_instance,
            "-e",
            &e_env,
            "-e",
            "DNS_TTL=7",
        ],
        &[],
    )
    .await;
    let name = fqdn(&instance, &service, &env2);
    rig.resolves(&name, &c.ip().await, APPEAR).await;
    let msg = rig.sky.query(&name, RecordType::A).await;
    let ttl = msg.answers.first().map(|r| r.ttl).unwrap_or_default();
    assert!((1..=7).contains(&ttl), "DNS_TTL=7 answered with TTL {ttl}");
    let reg = rig
        .sky
        .client
        .get_service(c.short_id())
        .await
        .expect("registered under the short id");
    assert_eq!(
        (
            reg.name.as_str(),
            reg.version.as_str(),
            reg.environment.as_str()
        ),
        (service.as_str(), instance.as_str(), env2.as_str())
    );
    assert!(reg.ttl <= 7, "{reg:?}");
    assert_eq!(
        lookup(&rig.sky, &rig.name(&c)).await.0,
        ResponseCode::NXDomain,
        "the default name is not registered as well"
    );
}

#[tokio::test]
async fn labels_win_over_env_and_service_name_names_the_service() {
    let rig = Rig::start(&[]).await;
    let tag = format!("{:08x}", rand::random::<u32>());
    let (lab, envv) = (format!("lab-{tag}"), format!("env-{tag}"));
    let (label_svc, env_svc) = (
        format!("SERVICE_NAME={lab}"),
        format!("SERVICE_NAME={envv}"),
    );
    // SERVICE_NAME as a label alone.
    let only_label = Container::run(PREFIX, BUSYBOX, &["--label", &label_svc], &[]).await;
    // DNS_SERVICE and DNS_INSTANCE in both: the label wins.
    let (l_dns, e_dns) = (format!("DNS_SERVICE={lab}"), format!("DNS_SERVICE={envv}"));
    let (l_inst, e_inst) = (
        format!("DNS_INSTANCE=li-{tag}"),
        format!("DNS_INSTANCE=ei-{tag}"),
    );
    let both = Container::run(
        PREFIX,
        BUSYBOX,
        &[
            "--label", &l_dns, "-e", &e_dns, "--label", &l_inst, "-e", &e_inst,
        ],
        &[],
    )
    .await;
    // SERVICE_NAME in env, overridden by a label.
    let svc_both = Container::run(
        PREFIX,
        BUSYBOX,
        &["-e", &env_svc, "--label", &label_svc],
        &[],
    )
    .await;
    // SERVICE_NAME in env only.
    let only_env = Container::run(PREFIX, BUSYBOX, &["-e", &env_svc], &[]).await;

    rig.resolves(
        &fqdn(&only_label.name, &lab, &rig.env),
        &only_label.ip().await,
        APPEAR,
    )
    .await;
    rig.resolves(
        &fqdn(&format!("li-{tag}"), &lab, &rig.env),
        &both.ip().await,
        APPEAR,
    )
    .await;
    rig.resolves(
        &fqdn(&svc_both.name, &lab, &rig.env),
        &svc_both.ip().await,
        APPEAR,
    )
    .await;
    rig.resolves(
        &fqdn(&only_env.name, &envv, &rig.env),
        &only_env.ip().await,
        APPEAR,
    )
    .await;
    for loser in [
        fqdn(&format!("ei-{tag}"), &envv, &rig.env),
        fqdn(&format!("li-{tag}"), &envv, &rig.env),
        fqdn(&format!("ei-{tag}"), &lab, &rig.env),
        fqdn(&svc_both.name, &envv, &rig.env),
        rig.name(&only_label),
    ] {
        assert_eq!(
            lookup(&rig.sky, &loser).await.0,
            ResponseCode::NXDomain,
            "{loser}"
        );
    }
}

#[tokio::test]
async fn service_ignore_keeps_a_container_out_of_dns() {
    let rig = Rig::start(&[]).await;
    let by_env = Container::run(PREFIX, BUSYBOX, &["-e", "SERVICE_IGNORE=1"], &[]).await;
    let by_label = Container::run(PREFIX, BUSYBOX, &["--label", "SERVICE_IGNORE=true"], &[]).await;
    // Started after them: once it resolves, skydock has seen the other two.
    let control = Container::run(PREFIX, BUSYBOX, &[], &[]).await;
    rig.resolves(&rig.name(&control), &control.ip().await, APPEAR)
        .await;
    for c in [&by_env, &by_label] {
        assert_eq!(
            lookup(&rig.sky, &rig.name(c)).await.0,
            ResponseCode::NXDomain,
            "{} ignored",
            c.name
        );
        assert!(
            matches!(
                rig.sky.client.get_service(c.short_id()).await,
                Err(ClientError::NotFound(_))
            ),
            "{} has no registration",
            c.name
        );
    }
    assert!(rig.dock.log().contains("SERVICE_IGNORE"));
}

#[tokio::test]
async fn registry_repository_and_tag_are_cleaned_from_the_image_name() {
    let rig = Rig::start(&[]).await;
    let c = Container::run(PREFIX, COOL_API_V2, &[], &[]).await; // localhost:5000/team/cool-api:v2
    rig.resolves(&fqdn(&c.name, "cool-api", &rig.env), &c.ip().await, APPEAR)
        .await;
    let reg = rig
        .sky
        .client
        .get_service(c.short_id())
        .await
        .expect("registered");
    assert_eq!(reg.name, "cool-api");
    assert_eq!(reg.version, c.name);
}

#[tokio::test]
async fn unhealthy_containers_are_registered_only_while_healthy() {
    let rig = Rig::start(&[]).await;
    let c = Container::run(PREFIX, HEALTHY, &[], &[]).await;
    let name = fqdn(&c.name, "healthy", &rig.env);
    let ip = c.ip().await;
    let unhealthy = eventually(Duration::from_secs(8), || async {
        c.health().await == "unhealthy"
    })
    .await;
    assert!(unhealthy, "health: {}", c.health().await);
    expect_stays_gone(&rig.sky, &name, Duration::from_secs(1)).await;

    c.set_healthy().await;
    rig.resolves(&name, &ip, Duration::from_secs(8)).await;
    assert_eq!(c.health().await, "healthy");

    c.set_unhealthy().await;
    rig.gone(&name, Duration::from_secs(8)).await;
    assert!(c.is_running().await, "unhealthy, not stopped");
}

#[tokio::test]
async fn several_exposed_ports_give_one_srv_each_and_one_address() {
    let rig = Rig::start(&[]).await;
    // The image exposes 8080 too.
    let c = Container::run(
        PREFIX,
        BUSYBOX,
        &["--expose", "7001", "--expose", "7002"],
        &[],
    )
    .await;
    let name = rig.name(&c);
    let ip = c.ip().await;
    rig.resolves(&name, &ip, APPEAR).await;
    let msg = srv(&rig.sky, &name).await;
    let got: Vec<(u16, String)> = srv_records(&msg)
        .into_iter()
        .map(|(_, _, port, target)| (port, target))
        .collect();
    // The lowest port keeps the original Skydock's uuid (the id's first 10
    // characters); each other port is `<id10>-<port>`.
    let id10 = c.short_id();
    let want: Vec<(u16, String)> = vec![
        (7001, format!("{id10}.skydns.local.")),
        (7002, format!("{id10}-7002.skydns.local.")),
        (8080, format!("{id10}-8080.skydns.local.")),
    ];
    let mut got_sorted = got.clone();
    got_sorted.sort();
    assert_eq!(got_sorted, want, "{msg:?}");
    // One address, not one per port.
    assert_eq!(lookup(&rig.sky, &name).await.1, std::slice::from_ref(&ip));
    // What scripts written for Skydock do: GET the container's short id.
    let reg = rig
        .sky
        .client
        .get_service(id10)
        .await
        .unwrap_or_else(|e| panic!("GET /skydns/services/{id10}: {e}"));
    assert_eq!((reg.port, reg.host.as_str()), (7001, ip.as_str()));
    assert_eq!(reg.version, c.name);
}

#[tokio::test]
async fn several_published_ports_keep_the_short_id_on_the_lowest_host_port() {
    let rig = Rig::start(&[]).await;
    let c = Container::run(
        PREFIX,
        BUSYBOX,
        &[
            "--expose",
            "7001",
            "-p",
            "127.0.0.1::7001",
            "-p",
            "127.0.0.1::8080",
        ],
        &[],
    )
    .await;
    let mut host_ports = vec![
        c.host_port("7001/tcp").await.expect("7001 published"),
        c.host_port("8080/tcp").await.expect("8080 published"),
    ];
    host_ports.sort_unstable();
    let name = rig.name(&c);
    rig.resolves(&name, &c.ip().await, APPEAR).await;
    expect_srv_ports(&rig.sky, &rig.dock, &name, &host_ports, APPEAR).await;
    let id10 = c.short_id();
    let plain = rig
        .sky
        .client
        .get_service(id10)
        .await
        .expect("the short id");
    assert_eq!(plain.port, host_ports[0], "the lowest published host port");
    let other = format!("{id10}-{}", host_ports[1]);
    let second = rig
        .sky
        .client
        .get_service(&other)
        .await
        .expect("the other port");
    assert_eq!(second.port, host_ports[1]);
}

#[tokio::test]
async fn a_published_port_is_the_srv_port() {
    let rig = Rig::start(&[]).await;
    let c = Container::run(PREFIX, BUSYBOX, &["-p", "127.0.0.1::8080"], &[]).await;
    let host_port = c.host_port("8080/tcp").await.expect("published port");
    assert_ne!(host_port, 8080);
    let name = rig.name(&c);
    rig.resolves(&name, &c.ip().await, APPEAR).await;
    assert_eq!(srv_ports(&rig.sky, &name).await, [host_port]);
}

#[tokio::test]
async fn the_original_plugins_give_the_built_in_names() {
    docker::ensure_test_images();
    let tag = format!("{:08x}", rand::random::<u32>());
    let svc = format!("svc-{tag}");
    let env_var = format!("DNS_SERVICE={svc}");
    let with_env = Container::run(PREFIX, BUSYBOX, &["-e", &env_var], &[]).await;
    let plain = Container::run(PREFIX, BUSYBOX, &[], &[]).await;
    let (ip_env, ip_plain) = (with_env.ip().await, plain.ip().await);

    let env = unique_env();
    let env_js = plugin("containerEnv.js");
    let default_js = plugin("default.js");
    let mut rigs = Vec::new();
    for (what, extra) in [
        ("built-in", Vec::new()),
        ("containerEnv.js", vec!["-plugins", env_js.as_str()]),
        ("default.js", vec!["-plugins", default_js.as_str()]),
    ] {
        let sky = SkyDns::spawn(&[]).await;
        let dock = start_dock(&sky, &env, &format!("skydock-test-{env}-{what}"), &extra).await;
        rigs.push((what, sky, dock));
    }
    let env_name = fqdn(&with_env.name, &svc, &env);
    let plain_name = fqdn(&plain.name, "busybox", &env);
    for (what, sky, dock) in &rigs {
        let log: &dyn Logs = dock;
        match *what {
            "built-in" | "containerEnv.js" => {
                expect_resolves(sky, log, &env_name, &ip_env, APPEAR).await;
            }
            _ => {
                // default.js has no overrides: the image name.
                let img = fqdn(&with_env.name, "busybox", &env);
                expect_resolves(sky, log, &img, &ip_env, APPEAR).await;
            }
        }
        expect_resolves(sky, log, &plain_name, &ip_plain, APPEAR).await;
    }
    // default.js also picks the built-in port (lowest exposed: 8080).
    let (_, builtin_sky, _) = &rigs[0];
    let (_, default_sky, _) = &rigs[2];
    assert_eq!(srv_ports(builtin_sky, &plain_name).await, [8080]);
    assert_eq!(srv_ports(default_sky, &plain_name).await, [8080]);
}

#[tokio::test]
async fn a_throwing_plugin_skips_that_container_and_names_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("picky.js");
    let source = "// a plugin that refuses containers named *boom*\n\
        function createService(container) {\n\
        \x20   var name = removeSlash(container.Name);\n\
        \x20   if (name.indexOf(\"boom\") >= 0) {\n\
        \x20       throw new Error(\"no service for \" + name);\n\
        \x20   }\n\
        \x20   return {Port: 80, Environment: defaultEnvironment, TTL: defaultTTL,\n\
        \x20           Service: cleanImageName(container.Image), Instance: name,\n\
        \x20           Host: container.NetworkSettings.IpAddress};\n\
        }\n";
    std::fs::write(&file, source).expect("write plugin");
    let path = file.to_string_lossy().into_owned();
    let rig = Rig::start(&["-plugins", &path]).await;
    let mark = rig.dock.log_len();
    let boom = Container::run(&format!("{PREFIX}-boom"), BUSYBOX, &[], &[]).await;
    let fine = Container::run(PREFIX, BUSYBOX, &[], &[]).await;
    rig.resolves(&rig.name(&fine), &fine.ip().await, APPEAR)
        .await;
    assert_eq!(srv_ports(&rig.sky, &rig.name(&fine)).await, [80]);
    assert_eq!(
        lookup(&rig.sky, &rig.name(&boom)).await.0,
        ResponseCode::NXDomain
    );
    let where_ = format!("{path}:5");
    let logged = rig
        .dock
        .wait_for_log_since(mark, &where_, Duration::from_secs(3))
        .await;
    let log = rig.dock.log();
    assert!(logged, "no {where_} in the log:\n{}", tail(&log, 30));
    let line = log
        .lines()
        .find(|l| l.contains(&where_))
        .unwrap_or_default();
    assert!(
        line.contains(&boom.name) && line.contains("no service for"),
        "the error line names the container and the message: {line}"
    );
    // The agent lives on and keeps registering.
    let later = Container::run(PREFIX, BUSYBOX, &[], &[]).await;
    rig.resolves(&rig.name(&later), &later.ip().await, APPEAR)
        .await;
}

// ------------------------------------------------- connections
