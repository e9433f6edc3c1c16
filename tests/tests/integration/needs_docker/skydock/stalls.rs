//! A skydns that stops answering holds up registry calls, never Docker
//! events: the event loop only records what it wants, a bounded pool makes
//! the calls (at most one per uuid in flight), failed calls are retried with
//! a short backoff, so everything is applied as soon as skydns answers.
//! And reconcile reads only this agent's registrations.

use super::*;
use skydns_tests::skydock::HttpTap;

/// Polls `metric` until `ok` holds; its last value.
async fn wait_metric(
    dock: &SkyDock,
    metric: &str,
    within: Duration,
    ok: impl Fn(f64) -> bool,
) -> Option<f64> {
    let deadline = Instant::now() + within;
    loop {
        let last = dock.metric(metric).await;
        if last.is_some_and(&ok) || Instant::now() >= deadline {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_stalled_skydns_does_not_hold_up_docker_events() {
    // TTL 60: nothing expires and no heartbeat fixes anything during the test.
    let rig = Rig::start(&["-ttl", "60"]).await;
    let old = Container::run(PREFIX, BUSYBOX, &[], &[]).await;
    let old_name = rig.name(&old);
    rig.resolves(&old_name, &old.ip().await, APPEAR).await;

    // skydns stops answering: connections are queued by the kernel, and
    // every call waits, and times out after the client's 5 s.
    rig.sky.signal("STOP");
    let stalled = Instant::now();
    old.kill().await;
    let mut new = Vec::new();
    for _ in 0..4 {
        new.push(Container::run(PREFIX, BUSYBOX, &[], &[]).await);
    }
    // Taken in at once, while skydns still does not answer: four
    // registrations and a removal wait for it (with other tests' changes).
    let pending = wait_metric(
        &rig.dock,
        "skydock_sync_pending",
        Duration::from_secs(10),
        |n| n >= 5.0,
    )
    .await;
    // Stopped longer than a call may take: the first calls time out.
    let hold = Duration::from_secs(7);
    tokio::time::sleep(hold.saturating_sub(stalled.elapsed())).await;
    let held_for = stalled.elapsed();
    rig.sky.signal("CONT");

    // Applied as soon as skydns answers again (a loop that waited on each
    // call would only get to the later events now, and retry the timed-out
    // ones at the next heartbeat, 45 s away).
    for c in &new {
        rig.resolves(&rig.name(c), &c.ip().await, APPEAR).await;
    }
    rig.gone(&old_name, APPEAR).await;
    assert!(
        pending.is_some_and(|n| n >= 5.0),
        "skydock_sync_pending while skydns was stopped: {pending:?}"
    );
    let settled = wait_metric(&rig.dock, "skydock_sync_pending", APPEAR, |n| n == 0.0).await;
    eprintln!(
        "skydns stopped {held_for:?}; all applied {:?} after it was stopped; pending now {settled:?}",
        stalled.elapsed()
    );
}

#[tokio::test]
async fn reconcile_lists_only_this_agents_registrations() {
    docker::ensure_test_images();
    let sky = SkyDns::spawn(&[]).await;
    let tap = HttpTap::start(sky.http).await;
    let env = unique_env();
    let owner = format!("skydock-test-{env}");
    let dock = start_dock_at(&tap.url(), &env, &owner, &["-resync", "1"]).await;
    let c = Container::run(PREFIX, BUSYBOX, &[], &[]).await;
    expect_resolves(
        &sky,
        &dock,
        &fqdn(&c.name, "busybox", &env),
        &c.ip().await,
        APPEAR,
    )
    .await;
    let lists = |reqs: &[String]| -> Vec<String> {
        reqs.iter()
            .filter(|r| r.starts_with("GET /skydns/services/?"))
            .cloned()
            .collect()
    };
    // At start and at least two reconciles.
    let listed = eventually(Duration::from_secs(6), || async {
        lists(&tap.requests()).len() >= 3
    })
    .await;
    let reqs = tap.requests();
    let whole: Vec<&String> = reqs
        .iter()
        .filter(|r| {
            r.starts_with("GET /skydns/services/ ") || r.starts_with("GET /skydns/services HTTP")
        })
        .collect();
    assert!(
        whole.is_empty(),
        "skydock read the whole registry: {whole:?}"
    );
    assert!(listed, "no owner listing seen: {reqs:#?}");
    let want = format!("GET /skydns/services/?owner={} ", owner.replace('@', "%40"));
    for l in lists(&reqs) {
        assert!(l.starts_with(&want), "{l} (want {want}...)");
    }
}
