//! Shared pieces of the skydns stack: the SkyDNS v1 wire types, a typed async
//! client for the registry API, and the Go-style flag spelling both daemons accept.
//!
//! # Layout
//! - [`types`]: [`Service`], [`Callback`], [`Heartbeat`], [`ApiError`] with the
//!   exact JSON field names of SkyDNS v1 (`Name`, `Version`, `Host`, `TTL`, ...).
//! - [`client`] (feature `client`): [`Client`], one async method per endpoint,
//!   errors typed as [`ClientError`].
//! - [`go_flags`]: rewrites `-flag value` (Go's `flag` package) into `--flag value`
//!   so a command line copied from the SkyDNS or Skydock README runs unchanged.
#![warn(missing_docs)]
// Input reaches these crates from the network and the Docker API: no panics
// on those paths (tests may unwrap freely).
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

#[cfg(feature = "client")]
pub mod client;
pub mod go_flags;
pub mod secret;
pub mod types;

#[cfg(feature = "client")]
pub use client::{Client, ClientError};
pub use secret::Secret;
pub use types::{ApiError, Callback, Heartbeat, Service};
