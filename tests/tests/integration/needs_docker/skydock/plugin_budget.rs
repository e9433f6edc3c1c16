//! A plugin that never returns for one container costs that container its
//! registration, not the agent: the script is interrupted at
//! `-plugin-timeout`, the container skipped with a log line, and every other
//! container keeps registering and heartbeating.

use super::*;

#[tokio::test]
async fn a_looping_plugin_skips_its_container_and_the_agent_keeps_going() {
    let tag = format!("{:08x}", rand::random::<u32>());
    let marker = format!("loop{tag}");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("looping.js");
    let source = format!(
        "// never returns for containers named *{marker}*\n\
         function createService(container) {{\n\
         \x20   var name = removeSlash(container.Name);\n\
         \x20   if (name.indexOf(\"{marker}\") >= 0) {{ while (true) {{}} }}\n\
         \x20   return {{Port: 80, Environment: defaultEnvironment, TTL: defaultTTL,\n\
         \x20           Service: cleanImageName(container.Image), Instance: name,\n\
         \x20           Host: container.NetworkSettings.IpAddress}};\n\
         }}\n"
    );
    std::fs::write(&file, source).expect("write plugin");
    let path = file.to_string_lossy().into_owned();
    // TTL 3 s (beat 2 s): a frozen agent loses every name within 3 s.
    // The default -plugin-timeout (1 s).
    let rig = Rig::start(&["-plugins", &path, "-ttl", "3"]).await;
    let before = Container::run(PREFIX, BUSYBOX, &[], &[]).await;
    let before_ip = before.ip().await;
    rig.resolves(&rig.name(&before), &before_ip, APPEAR).await;

    let mark = rig.dock.log_len();
    let looping = Container::run(&format!("{PREFIX}-{marker}"), BUSYBOX, &[], &[]).await;
    // Started after the looping one: its event comes after, on the same loop.
    let after = Container::run(PREFIX, BUSYBOX, &[], &[]).await;
    rig.resolves(&rig.name(&after), &after.ip().await, APPEAR)
        .await;
    let logged = rig
        .dock
        .wait_for_log_since(mark, "plugin timed out", Duration::from_secs(5))
        .await;
    let log = rig.dock.log();
    assert!(logged, "no timeout line:\n{}", tail(&log, 30));
    let line = log
        .lines()
        .find(|l| l.contains("plugin timed out"))
        .unwrap_or_default();
    assert!(
        line.contains(&looping.name) && line.contains("budget"),
        "the line names the container and the budget: {line}"
    );
    assert_eq!(
        lookup(&rig.sky, &rig.name(&looping)).await.0,
        ResponseCode::NXDomain,
        "the looping container is skipped"
    );
    // Heartbeats go on: three TTLs later the first name still answers.
    expect_stays(
        &rig.sky,
        &rig.name(&before),
        &before_ip,
        Duration::from_secs(9),
    )
    .await;
    let timeouts = rig.dock.metric("skydock_plugin_timeouts_total").await;
    assert!(
        timeouts.is_some_and(|n| n >= 1.0),
        "skydock_plugin_timeouts_total: {timeouts:?}"
    );
}
