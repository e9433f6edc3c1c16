//! Two skydock agents on one engine see the same containers, so every uuid
//! overlaps. The first to register a uuid owns it; the other must never
//! heartbeat or delete it (not even when its container stops), and takes it
//! only once it is free.

use super::*;
use skydns_tests::skydock::HttpTap;

/// The request lines of `reqs` that write to `uuid` with `method`.
fn writes<'a>(reqs: &'a [String], method: &str, uuid: &str) -> Vec<&'a String> {
    let path = format!("{method} /skydns/services/{uuid}");
    reqs.iter()
        .filter(|r| r.starts_with(&path) && r[path.len()..].starts_with([' ', '?']))
        .collect()
}

#[tokio::test]
async fn the_agent_that_lost_the_race_never_touches_the_winners_registrations() {
    docker::ensure_test_images();
    let sky = SkyDns::spawn(&[]).await;
    let env = unique_env();
    let (w_owner, l_owner) = (
        format!("skydock-test-{env}-winner"),
        format!("skydock-test-{env}-loser"),
    );
    let c = Container::run(PREFIX, BUSYBOX, &[], &[]).await;
    let d = Container::run(PREFIX, BUSYBOX, &[], &[]).await;
    let (c10, d10) = (c.short_id().to_string(), d.short_id().to_string());
    // The winner registers both at its start (TTL 6, a beat every second:
    // at any moment at least 5 s are left on its registrations).
    let winner = start_dock(&sky, &env, &w_owner, &["-ttl", "6", "-beat", "1"]).await;
    for uuid in [&c10, &d10] {
        let s = sky.client.get_service(uuid).await.expect("registered");
        assert_eq!(s.owner.as_deref(), Some(w_owner.as_str()), "{uuid}");
    }

    // The loser, through a tap that records every request it makes:
    // heartbeats every 2 s, reconciles every second.
    let tap = HttpTap::start(sky.http).await;
    let loser = start_dock_at(&tap.url(), &env, &l_owner, &["-ttl", "3", "-resync", "1"]).await;
    let left_alone = loser
        .wait_for_log("uuid registered by another agent", Duration::from_secs(5))
        .await;
    assert!(left_alone, "{}", tail(&loser.log(), 30));
    // Two of its beats and several reconciles go by.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let reqs = tap.requests();
    for uuid in [&c10, &d10] {
        for method in ["PATCH", "DELETE"] {
            let w = writes(&reqs, method, uuid);
            assert!(w.is_empty(), "the loser sent {w:?} for the winner's {uuid}");
        }
    }

    assert!(
        loser
            .log()
            .lines()
            .any(|l| l.contains("registered by another agent")
                && l.contains(&c10)
                && l.contains(&w_owner)),
        "the log names the uuid and its owner:\n{}",
        tail(&loser.log(), 30)
    );
    let foreign = loser.metric("skydock_foreign_registrations").await;
    assert!(
        foreign.is_some_and(|n| n >= 2.0),
        "skydock_foreign_registrations: {foreign:?}"
    );

    // The winner dies; c stops. The loser sees c go and must leave the
    // winner's registration to its TTL.
    winner.kill9().await;
    let killed = Instant::now();
    c.kill().await;
    let name_c = fqdn(&c.name, "busybox", &env);
    let mut still = true;
    while killed.elapsed() < Duration::from_secs(3) && still {
        still = sky
            .client
            .get_service(&c10)
            .await
            .is_ok_and(|s| s.owner.as_deref() == Some(w_owner.as_str()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        still,
        "{c10} went {:?} after the winner died: removed by the loser\n{}",
        killed.elapsed(),
        tail(&loser.log(), 30)
    );
    let reqs = tap.requests();
    let deletes = writes(&reqs, "DELETE", &c10);
    assert!(
        deletes.is_empty(),
        "the loser deleted the winner's {c10}: {deletes:?}"
    );
    // It expires by its TTL...
    expect_gone(&sky, &loser, &name_c, Duration::from_secs(8)).await;
    // ...and d, still running, is taken over by the loser once it is free.
    let taken = eventually(Duration::from_secs(10), || async {
        sky.client
            .get_service(&d10)
            .await
            .is_ok_and(|s| s.owner.as_deref() == Some(l_owner.as_str()))
    })
    .await;
    assert!(
        taken,
        "the loser did not take {d10} once the winner's expired: {:?}\n{}",
        sky.client.get_service(&d10).await,
        tail(&loser.log(), 30)
    );
    expect_resolves(
        &sky,
        &loser,
        &fqdn(&d.name, "busybox", &env),
        &d.ip().await,
        APPEAR,
    )
    .await;
    // c stays stopped: nobody registers it again.
    assert!(matches!(
        sky.client.get_service(&c10).await,
        Err(ClientError::NotFound(_))
    ));
}
