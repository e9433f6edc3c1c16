//! One uuid's two sides (what the agent wants, what skydns holds) and the
//! pure rules over them: when a registry call is due, when two services are
//! the same registration.

use std::time::Instant;

use skydns_api::Service;

use crate::naming::Registration;

/// What skydns holds at a uuid, as far as this agent knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Held {
    /// Nothing of this agent's.
    Absent,
    /// This agent's registration, as it registered (or found) it.
    Ours(Service),
    /// Another owner's (named when known): never heartbeaten nor deleted;
    /// taking it is retried at each reconcile, and succeeds once it is free.
    Foreign(Option<String>),
}

/// One uuid's sides.
#[derive(Debug)]
pub(super) struct Slot {
    pub(super) want: Option<Registration>,
    pub(super) held: Held,
    /// Bumped whenever `held` changes, so that a heartbeat's 404 or 409
    /// counts only if nothing changed the slot since the heartbeat read it.
    pub(super) generation: u64,
    /// When `held` last became `Ours`: a listing taken before that cannot
    /// prove the registration lost.
    pub(super) held_at: Instant,
    /// Transient failures in a row (for backoff and for quieter logs).
    pub(super) failures: u32,
    /// When a failed sync is tried again.
    pub(super) retry_at: Option<Instant>,
    /// Reconcile asks the next job to try taking a uuid another owner held
    /// (which `needs_work` alone never does).
    pub(super) retake: bool,
}

impl Slot {
    pub(super) fn new(held: Held) -> Self {
        Self {
            want: None,
            held,
            generation: 0,
            held_at: Instant::now(),
            failures: 0,
            retry_at: None,
            retake: false,
        }
    }

    pub(super) fn set_held(&mut self, held: Held) {
        if held != self.held {
            if matches!(held, Held::Ours(_)) {
                self.held_at = Instant::now();
            }
            self.generation += 1;
            self.held = held;
        }
    }

    pub(super) fn needs_work(&self) -> bool {
        needs_work(self.want.as_ref(), &self.held)
            || (self.retake && self.want.is_some() && matches!(self.held, Held::Foreign(_)))
    }

    /// Nothing wanted and nothing of ours there: the slot can go.
    pub(super) fn is_empty(&self) -> bool {
        self.want.is_none() && !matches!(self.held, Held::Ours(_))
    }
}

/// True when a registry call is due: a wanted registration that is not ours
/// in skydns (or differs), or one of ours that is no longer wanted. A uuid
/// held by another owner is left alone (reconcile retries it).
fn needs_work(want: Option<&Registration>, held: &Held) -> bool {
    match (want, held) {
        (Some(r), Held::Ours(s)) => !same_service(&r.service, s),
        (Some(_), Held::Absent) | (None, Held::Ours(_)) => true,
        (Some(_), Held::Foreign(_)) | (None, _) => false,
    }
}

/// The fields that make a registration's DNS records. The TTL is not one:
/// skydns answers with the time left, and heartbeats set it anyway.
pub(crate) fn same_service(a: &Service, b: &Service) -> bool {
    a.name.eq_ignore_ascii_case(&b.name)
        && a.version.eq_ignore_ascii_case(&b.version)
        && a.environment.eq_ignore_ascii_case(&b.environment)
        && a.region.eq_ignore_ascii_case(&b.region)
        && a.host.eq_ignore_ascii_case(&b.host)
        && a.port == b.port
}
