//! skydns: service discovery over DNS, a drop-in successor of SkyDNS v1.
//!
//! Services register over a REST API (SkyDNS v1's paths and JSON) and are
//! answered over DNS (UDP and TCP) as
//! `<uuid>.<host>.<region>.<version>.<service>.<environment>.<domain>`, any
//! suffix of it, with `*` wildcards.
//!
//! # Layout
//! - [`config`]: flags/env ([`Cli`]) → validated [`Config`].
//! - [`server`]: [`start`] binds and spawns everything, returning a [`Server`]
//!   handle with its addresses; [`run`] is the binary's entry.
//! - [`registry`]: the [`Registry`] (entries, indexes, expiry, callbacks).
//! - [`store`]: the [`Store`] trait; memory and embedded (redb) backends.
//! - [`readiness`]: loading or ready, for `GET /ready`.
//! - `dns/` (private): the DNS answer path — the byte pipeline
//!   (`dns/handler.rs`), answers under the domain (`authority.rs`), record
//!   builders (`answer.rs`), the response cache, forwarding, UDP and TCP.
//! - `api/` (private): the HTTP handlers, body validation, error mapping.
//! - `metrics` (private): Prometheus metrics, served at `/metrics`.
//!
//! # Embedding
//! ```no_run
//! # async fn demo() -> Result<(), skydns::Error> {
//! let server = skydns::start(skydns::Config::ephemeral()).await?;
//! println!("DNS on {}, API on {}", server.dns_addr(), server.http_url());
//! server.shutdown().await
//! # }
//! ```
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

mod api;
pub mod config;
mod dns;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod metrics;
pub mod readiness;
pub mod registry;
pub mod server;
pub mod store;

pub use config::{Cli, Config};
pub use dns::dnssec::KeyError;
pub use error::Error;
pub use registry::{Registry, RegistryError};
pub use server::{Server, run, start};
pub use store::{Store, StoreError};
