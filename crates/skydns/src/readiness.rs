//! Whether this skydns can do its job yet: what `GET /ready` reports.
//!
//! The API answers as soon as its listener is bound, before the store is
//! loaded, so an orchestrator sees "starting" (503) instead of a refused
//! connection; it turns ready once the registry holds what the store had and
//! every listener serves. A remote store will turn it not-ready again while
//! it is unreachable.

use std::sync::{
    Arc,
    atomic::{AtomicU8, Ordering},
};

/// Where a server is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum State {
    /// The store is being loaded; DNS answers nothing yet, writes get 503.
    Loading,
    /// The registry is loaded and DNS and the API serve.
    Ready,
    /// The shared store (etcd) is unreachable: DNS answers from the last
    /// index, writes get 503.
    StoreUnreachable,
}

impl State {
    /// `ready`, or what it is doing instead.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Loading => "loading the store",
            Self::Ready => "ready",
            Self::StoreUnreachable => "etcd unreachable: answering from the last index",
        }
    }
}

/// A cheap-to-clone handle on a server's [`State`].
#[derive(Debug, Clone)]
pub struct Readiness(Arc<AtomicU8>);

impl Default for Readiness {
    fn default() -> Self {
        Self::new()
    }
}

impl Readiness {
    /// A server that is loading.
    pub fn new() -> Self {
        Self(Arc::new(AtomicU8::new(0)))
    }

    /// A server that is ready already (an embedder's router, a test's).
    pub fn ready() -> Self {
        let readiness = Self::new();
        readiness.set_ready();
        readiness
    }

    /// The state now.
    pub fn state(&self) -> State {
        match self.0.load(Ordering::Acquire) {
            0 => State::Loading,
            1 => State::Ready,
            _ => State::StoreUnreachable,
        }
    }

    /// True once [`Readiness::set_ready`] has been called.
    pub fn is_ready(&self) -> bool {
        self.state() == State::Ready
    }

    /// Everything is loaded and listening.
    pub fn set_ready(&self) {
        // Not over an unreachable store seen meanwhile.
        let _ = self
            .0
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire);
    }

    /// The shared store went away (`true`) or came back (`false`); a server
    /// still loading stays loading.
    pub fn set_store_unreachable(&self, unreachable: bool) {
        let (from, to) = if unreachable { (1, 2) } else { (2, 1) };
        let _ = self
            .0
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_loading_and_turns_ready_for_every_clone() {
        let r = Readiness::new();
        let seen = r.clone();
        assert_eq!(seen.state(), State::Loading);
        r.set_ready();
        assert!(seen.is_ready());
        assert_eq!(seen.state().as_str(), "ready");
    }
}
