//! The ledger's rules, without a registry.
use super::*;

fn reg(uuid: &str, host: &str) -> Registration {
    Registration {
        uuid: uuid.into(),
        service: Service {
            name: "web".into(),
            version: "web-1".into(),
            environment: "dev".into(),
            host: host.into(),
            port: 80,
            ttl: 30,
            owner: Some("me".into()),
            ..Service::default()
        },
    }
}

#[test]
fn a_want_queues_once_and_one_job_per_uuid_is_in_flight() {
    let l = Ledger::default();
    l.want("a", Some(reg("a", "10.0.0.1")));
    l.want("a", Some(reg("a", "10.0.0.2")));
    let job = l.next_job().expect("queued");
    assert_eq!(job.want.expect("want").service.host, "10.0.0.2");
    assert!(l.next_job().is_none(), "queued once");
    // Changed while in flight: not handed out twice, queued again after.
    l.want("a", Some(reg("a", "10.0.0.3")));
    assert!(l.next_job().is_none());
    l.finish(
        "a",
        Outcome::Settled(Held::Ours(reg("a", "10.0.0.2").service)),
    );
    let again = l.next_job().expect("requeued");
    assert_eq!(again.want.expect("want").service.host, "10.0.0.3");
    assert_eq!(again.held, Held::Ours(reg("a", "10.0.0.2").service));
    l.finish(
        "a",
        Outcome::Settled(Held::Ours(reg("a", "10.0.0.3").service)),
    );
    assert!(l.is_idle());
    assert_eq!(l.counts().ours, 1);
}

#[test]
fn a_foreign_uuid_is_never_heartbeaten_nor_deleted() {
    let l = Ledger::default();
    l.want("a", Some(reg("a", "10.0.0.1")));
    let _ = l.next_job();
    l.finish("a", Outcome::Settled(Held::Foreign(Some("other".into()))));
    assert!(l.beats().is_empty());
    assert_eq!(l.counts().foreign, 1);
    // The container stops: nothing to delete, the slot goes.
    l.want("a", None);
    assert!(l.next_job().is_none());
    assert!(l.is_idle());
    assert_eq!(l.counts(), Counts::default());
}

#[test]
fn reconcile_retries_foreign_uuids_and_finds_stale_and_lost_ones() {
    let l = Ledger::default();
    l.want("mine", Some(reg("mine", "10.0.0.1")));
    l.want("theirs", Some(reg("theirs", "10.0.0.2")));
    while let Some(j) = l.next_job() {
        let held = if j.uuid == "mine" {
            Held::Ours(j.want.expect("want").service)
        } else {
            Held::Foreign(None)
        };
        l.finish(&j.uuid, Outcome::Settled(held));
    }
    let later = Instant::now() + Duration::from_millis(1);
    let stale = reg("old", "10.0.0.9").service;
    let stale = Service {
        uuid: "old".into(),
        ..stale
    };
    let fixes = l.apply_listing(&[stale], later);
    assert_eq!(fixes.stale, ["old"]);
    assert_eq!(fixes.lost, ["mine"], "wanted, ours, not listed");
    assert_eq!(fixes.foreign, 1);
    let mut jobs: Vec<(String, bool)> = std::iter::from_fn(|| l.next_job())
        .map(|j| (j.uuid, j.want.is_some()))
        .collect();
    jobs.sort();
    assert_eq!(
        jobs,
        [
            ("mine".to_string(), true),
            ("old".to_string(), false),
            ("theirs".to_string(), true)
        ]
    );
}

#[test]
fn a_listing_older_than_the_registration_proves_nothing() {
    let l = Ledger::default();
    let before = Instant::now();
    l.want("a", Some(reg("a", "10.0.0.1")));
    let j = l.next_job().expect("job");
    l.finish(
        "a",
        Outcome::Settled(Held::Ours(j.want.expect("want").service)),
    );
    let fixes = l.apply_listing(&[], before);
    assert!(fixes.lost.is_empty());
    assert!(l.is_idle());
}

#[test]
fn failures_back_off_and_are_retried() {
    let l = Ledger::default();
    l.want("a", Some(reg("a", "10.0.0.1")));
    let _ = l.next_job();
    l.finish("a", Outcome::Retry(Held::Absent));
    assert!(!l.is_idle(), "a retry is pending");
    assert!(l.next_job().is_none(), "not before its backoff");
    l.queue_due_retries(Instant::now() + Duration::from_secs(10));
    let j = l.next_job().expect("retried");
    assert_eq!(j.failures, 1);
    assert_eq!(retry_backoff(0), Duration::from_millis(250));
    assert_eq!(retry_backoff(20), Duration::from_secs(3));
}

#[test]
fn a_heartbeat_404_re_registers_unless_the_slot_changed() {
    let l = Ledger::default();
    l.want("a", Some(reg("a", "10.0.0.1")));
    let j = l.next_job().expect("job");
    l.finish(
        "a",
        Outcome::Settled(Held::Ours(j.want.expect("want").service)),
    );
    let (uuid, ttl, generation) = l.beats().pop().expect("one beat");
    assert_eq!((uuid.as_str(), ttl), ("a", 30));
    assert!(!l.heartbeat_lost("a", generation + 1), "stale generation");
    assert!(l.heartbeat_lost("a", generation));
    assert!(l.next_job().is_some(), "queued to register again");
}

#[test]
fn same_service_ignores_ttl_and_case() {
    let a = reg("a", "10.0.0.1").service;
    let mut b = a.clone();
    b.ttl = 3;
    b.name = "WEB".into();
    assert!(same_service(&a, &b));
    b.port = 81;
    assert!(!same_service(&a, &b));
}
