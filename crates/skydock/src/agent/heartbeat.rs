//! Heartbeats: every `-beat`, PATCH each registration this agent holds, on
//! their own task, so that neither Docker events, a slow plugin nor a
//! backlog of registrations can delay them.
//!
//! A 404 means skydns lost the registration (restarted without `-data`, or
//! it expired while skydns could not be reached): the ledger queues it to be
//! registered again at once. A 409 means another owner holds the uuid now:
//! it is left alone from then on. Other errors are counted and retried at
//! the next beat; a heartbeat never gives up.

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;
use skydns_api::{Client, ClientError};
use tokio_util::sync::CancellationToken;

use super::ledger::Ledger;
use crate::control::AgentMetrics;

/// Beats every `every` until `token` is cancelled, `workers` PATCHes at a time.
pub(crate) async fn run(
    ledger: Arc<Ledger>,
    client: Client,
    every: Duration,
    workers: usize,
    metrics: Arc<AgentMetrics>,
    token: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.reset();
    loop {
        tokio::select! {
            () = token.cancelled() => break,
            _ = tick.tick() => {}
        }
        tokio::select! {
            () = token.cancelled() => break,
            () = beat_all(&ledger, &client, workers, &metrics) => {}
        }
    }
}

/// One round: PATCHes every registration this agent holds.
async fn beat_all(ledger: &Ledger, client: &Client, workers: usize, metrics: &AgentMetrics) {
    futures_util::stream::iter(ledger.beats())
        .for_each_concurrent(workers.max(1), |(uuid, ttl, generation)| async move {
            match client.heartbeat(&uuid, ttl).await {
                Ok(()) => {}
                Err(ClientError::NotFound(_)) => {
                    if ledger.heartbeat_lost(&uuid, generation) {
                        tracing::info!(%uuid, "skydns lost this registration; registering again");
                    }
                }
                Err(ClientError::Conflict(m)) => {
                    if ledger.heartbeat_taken(&uuid, generation) {
                        tracing::warn!(%uuid, reason = %m, "heartbeat refused: another owner holds this uuid now; left alone");
                    }
                }
                Err(e) => {
                    metrics.heartbeat_failures.inc();
                    tracing::warn!(%uuid, error = %e, "heartbeat failed; retrying at the next beat");
                }
            }
        })
        .await;
}
