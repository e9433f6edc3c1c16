//! The registry half of reconcile: list only this agent's registrations
//! (`GET /skydns/services/?owner=`) and let the ledger queue what the
//! listing shows to be due — stale ones to remove, lost ones to register
//! again, foreign ones to try taking again. Runs on its own task, when the
//! event loop has finished the Docker half, so a slow skydns never holds up
//! Docker events.

use std::{sync::Arc, time::Instant};

use skydns_api::{Client, ClientError, Service};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::ledger::Ledger;
use crate::control::AgentMetrics;

/// Reconciles each time `trigger` is notified, until `token` is cancelled.
pub(crate) async fn run(
    ledger: Arc<Ledger>,
    client: Client,
    trigger: Arc<Notify>,
    metrics: Arc<AgentMetrics>,
    token: CancellationToken,
) {
    loop {
        tokio::select! {
            () = token.cancelled() => break,
            () = trigger.notified() => {}
        }
        tokio::select! {
            () = token.cancelled() => break,
            () = once(&ledger, &client, &metrics) => {}
        }
    }
}

/// Lists this agent's registrations and applies the listing.
pub(crate) async fn once(ledger: &Ledger, client: &Client, metrics: &AgentMetrics) {
    let since = Instant::now();
    match list_owned(client).await {
        Ok(listed) => apply(ledger, &listed, since, metrics),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list skydns registrations; retrying at the next resync");
        }
    }
}

/// Applies a listing taken at `since`, with a log line per fix.
pub(crate) fn apply(ledger: &Ledger, listed: &[Service], since: Instant, metrics: &AgentMetrics) {
    let fixes = ledger.apply_listing(listed, since);
    for uuid in &fixes.stale {
        tracing::info!(%uuid, "removing stale registration");
    }
    for uuid in &fixes.lost {
        tracing::info!(%uuid, "skydns lost this registration; registering again");
    }
    if fixes.foreign > 0 {
        tracing::debug!(
            n = fixes.foreign,
            "trying again to take uuids another owner held"
        );
    }
    let n = fixes.stale.len() + fixes.lost.len();
    metrics
        .reconcile_fixes
        .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
}

/// This agent's registrations in skydns. Filtered here too: a skydns that
/// does not know `?owner=` (SkyDNS v1) answers with everything, and nothing
/// of another owner may ever look stale to this agent.
///
/// # Errors
/// Transport and server errors.
pub(crate) async fn list_owned(client: &Client) -> Result<Vec<Service>, ClientError> {
    let owner = client.owner().unwrap_or_default();
    let listed = match client.list_owned_by(owner).await {
        Ok(l) => l,
        Err(ClientError::NotFound(_)) => Vec::new(),
        Err(e) => return Err(e),
    };
    Ok(listed
        .into_iter()
        .filter(|s| s.owner.as_deref() == Some(owner))
        .collect())
}
