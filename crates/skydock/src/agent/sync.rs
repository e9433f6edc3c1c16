//! The sync pool: takes dirty uuids from the [`Ledger`] and makes skydns
//! match what the agent wants there, `-workers` calls at a time.
//!
//! Each job reads the uuid's latest want when it starts, so a burst of
//! events for one container costs at most one call in flight plus one
//! more, and a stalled skydns holds up only the workers, never the Docker
//! event loop. The client names this agent as owner in every write, and a
//! uuid another owner holds is left alone: recorded as foreign, never
//! heartbeaten, never deleted.

use std::{collections::HashMap, sync::Arc, time::Duration};

use skydns_api::{Client, ClientError, Service};
use tokio::task::{Id, JoinSet};
use tokio_util::sync::CancellationToken;

use super::ledger::{Held, Job, Ledger, Outcome, same_service};
use crate::{control::AgentMetrics, naming::Registration};

/// How often due retries are queued and the gauges refreshed.
const TICK: Duration = Duration::from_millis(250);

/// Runs the pool until `token` is cancelled; calls in flight then are
/// abandoned (dropped with their tasks).
pub(crate) async fn run(
    ledger: Arc<Ledger>,
    client: Client,
    workers: usize,
    metrics: Arc<AgentMetrics>,
    token: CancellationToken,
) {
    let owner = client.owner().unwrap_or_default().to_string();
    let mut tasks: JoinSet<(String, Outcome)> = JoinSet::new();
    // Which uuid each task syncs, so a task that fails still frees its uuid.
    let mut running: HashMap<Id, String> = HashMap::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        while tasks.len() < workers.max(1) {
            let Some(job) = ledger.next_job() else { break };
            let uuid = job.uuid.clone();
            let (client, owner) = (client.clone(), owner.clone());
            let handle = tasks.spawn(async move {
                let uuid = job.uuid.clone();
                (uuid, sync_one(&client, &owner, job).await)
            });
            running.insert(handle.id(), uuid);
        }
        tokio::select! {
            () = token.cancelled() => break,
            () = ledger.wait_for_work() => {}
            Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => match done {
                Ok((id, (uuid, outcome))) => {
                    running.remove(&id);
                    ledger.finish(&uuid, outcome);
                }
                Err(e) => {
                    if let Some(uuid) = running.remove(&e.id()) {
                        tracing::warn!(%uuid, error = %e, "sync task failed; queued again");
                        ledger.abandon(&uuid);
                    }
                }
            },
            _ = tick.tick() => {
                ledger.queue_due_retries(std::time::Instant::now());
                ledger.publish(&metrics);
            }
        }
    }
    tasks.shutdown().await;
    ledger.publish(&metrics);
}

/// Makes skydns hold `job.want` at `job.uuid`, from what the ledger says
/// it holds now.
async fn sync_one(client: &Client, owner: &str, job: Job) -> Outcome {
    let uuid = job.uuid.as_str();
    match (&job.want, &job.held) {
        (Some(reg), Held::Ours(held)) if same_service(&reg.service, held) => {
            Outcome::Settled(job.held.clone())
        }
        // Ours but changed (a new address, say): replace it.
        (Some(reg), Held::Ours(_)) => match remove(client, uuid, job.failures).await {
            Removed::Yes => register(client, owner, reg, &Held::Absent, job.failures).await,
            Removed::Taken => Outcome::Settled(Held::Foreign(None)),
            Removed::Failed => Outcome::Retry(job.held.clone()),
        },
        (Some(reg), held) => register(client, owner, reg, held, job.failures).await,
        (None, Held::Ours(_)) => match remove(client, uuid, job.failures).await {
            Removed::Yes => {
                tracing::info!(uuid, "deregistered");
                Outcome::Settled(Held::Absent)
            }
            Removed::Taken => Outcome::Settled(Held::Foreign(None)),
            Removed::Failed => Outcome::Retry(job.held.clone()),
        },
        (None, held) => Outcome::Settled(held.clone()),
    }
}

/// True for the attempts worth a warning: the first failure, then one in ten.
fn loud(failures: u32) -> bool {
    failures.is_multiple_of(10)
}

/// PUTs `reg`. A 409 is looked into: this owner's registration (an earlier
/// life of the agent) is taken over, or replaced if it differs; another
/// owner's is left alone.
async fn register(
    client: &Client,
    owner: &str,
    reg: &Registration,
    held: &Held,
    failures: u32,
) -> Outcome {
    let uuid = reg.uuid.as_str();
    let s = &reg.service;
    match client.add_service(uuid, s).await {
        Ok(()) => {
            tracing::info!(uuid, name = %s.name, host = %s.host, port = s.port, "registered");
            Outcome::Settled(Held::Ours(s.clone()))
        }
        Err(ClientError::Conflict(_)) => match client.get_service(uuid).await {
            Ok(existing) if existing.owner.as_deref() == Some(owner) => {
                take_over(client, reg, &existing, failures).await
            }
            Ok(existing) => {
                if !matches!(held, Held::Foreign(_)) {
                    tracing::warn!(
                        uuid,
                        owner = existing.owner.as_deref().unwrap_or("(none)"),
                        "uuid registered by another agent; left alone (tried again at each reconcile)"
                    );
                }
                Outcome::Settled(Held::Foreign(existing.owner))
            }
            // Gone in between: try again at once.
            Err(ClientError::NotFound(_)) => Outcome::Retry(Held::Absent),
            Err(e) => {
                if loud(failures) {
                    tracing::warn!(uuid, error = %e, "cannot check who holds this uuid; retrying");
                }
                Outcome::Retry(held.clone())
            }
        },
        Err(e @ (ClientError::Rejected { .. } | ClientError::Unauthorized(_))) => {
            tracing::warn!(uuid, error = %e, "skydns refused the registration; tried again at the next reconcile");
            Outcome::Stuck(held.clone())
        }
        Err(e) => {
            if loud(failures) {
                tracing::warn!(uuid, error = %e, "cannot register; retrying");
            }
            Outcome::Retry(held.clone())
        }
    }
}

/// This owner's registration found at a 409: kept if it is the same
/// service (with a heartbeat, so its TTL is this one's), else replaced.
async fn take_over(
    client: &Client,
    reg: &Registration,
    existing: &Service,
    failures: u32,
) -> Outcome {
    let uuid = reg.uuid.as_str();
    if same_service(&reg.service, existing) {
        if let Err(e) = client.heartbeat(uuid, reg.service.ttl).await {
            tracing::debug!(uuid, error = %e, "heartbeat of a taken-over registration failed; the next beat retries");
        }
        tracing::info!(
            uuid,
            "registered (taken over from this owner's earlier registration)"
        );
        return Outcome::Settled(Held::Ours(reg.service.clone()));
    }
    match remove(client, uuid, failures).await {
        Removed::Yes => match client.add_service(uuid, &reg.service).await {
            Ok(()) => {
                tracing::info!(uuid, host = %reg.service.host, port = reg.service.port, "registered (replaced this owner's earlier registration)");
                Outcome::Settled(Held::Ours(reg.service.clone()))
            }
            Err(e) => {
                if loud(failures) {
                    tracing::warn!(uuid, error = %e, "cannot re-register; retrying");
                }
                Outcome::Retry(Held::Absent)
            }
        },
        Removed::Taken => Outcome::Settled(Held::Foreign(None)),
        Removed::Failed => Outcome::Retry(Held::Ours(existing.clone())),
    }
}

enum Removed {
    /// Gone (or was already).
    Yes,
    /// skydns says another owner holds it (409): left alone.
    Taken,
    /// Not known; retried.
    Failed,
}

/// DELETEs `uuid`, naming this agent as owner.
async fn remove(client: &Client, uuid: &str, failures: u32) -> Removed {
    match client.delete_service(uuid).await {
        Ok(()) | Err(ClientError::NotFound(_)) => Removed::Yes,
        Err(ClientError::Conflict(m)) => {
            tracing::warn!(uuid, reason = %m, "not deleted: another owner holds this uuid now; left alone");
            Removed::Taken
        }
        Err(e) => {
            if loud(failures) {
                tracing::warn!(uuid, error = %e, "cannot deregister; retrying");
            }
            Removed::Failed
        }
    }
}
