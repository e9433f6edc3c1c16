//! The registrations the DNS benchmarks answer from, made over the API as
//! users' programs make them.

use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{StreamExt, stream};
use skydns_tests::{Client, Service, service};

/// Registers `web-1`…`web-10` as `web.prod` on `<net>.1`…`<net>.10` port
/// 8080 (TTL one day): 10 A answers, 10 SRV with 10 glue records.
pub(crate) async fn register_web(client: &Client, net: &str) -> anyhow::Result<()> {
    for i in 1..=10 {
        let host = format!("{net}.{i}");
        client
            .add_service(
                &format!("web-{i}"),
                &service("web", "prod", "east", &host, 8080, 86_400),
            )
            .await
            .with_context(|| format!("cannot register web-{i} on {}", client.base_url()))?;
    }
    Ok(())
}

/// The `i`-th of the many services: `app<i % 10000>` in four environments,
/// eight regions and three versions, a distinct address each.
fn many(i: u32) -> Service {
    let envs = ["prod", "staging", "dev", "test"];
    Service {
        version: format!("{}.0", i % 3),
        ..service(
            &format!("app{}", i % 10_000),
            envs.get(i as usize % 4).copied().unwrap_or("prod"),
            &format!("r{}", i % 8),
            &format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255),
            u16::try_from(1024 + i % 50_000).unwrap_or(8080),
            86_400,
        )
    }
}

/// Registers `count` services `bench-<i>` over `connections` concurrent
/// requests at a time (bounded by 15 minutes); returns the time taken.
pub(crate) async fn register_many(
    client: &Client,
    count: u32,
    connections: usize,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let work = stream::iter(0..count)
        .map(|i| async move { client.add_service(&format!("bench-{i}"), &many(i)).await })
        .buffer_unordered(connections)
        .fold(
            Ok(()),
            |acc: Result<(), skydns_tests::ClientError>, r| async move { acc.and(r) },
        );
    tokio::time::timeout(Duration::from_secs(900), work)
        .await
        .context("registering the services took more than 15 minutes")?
        .context("a registration failed")?;
    Ok(started.elapsed())
}
