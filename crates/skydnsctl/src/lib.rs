//! `skydnsctl`: the command-line client of the skydns registry API, as SkyDNS v1
//! shipped one, built on the shared [`skydns_api::Client`].
//!
//! The binary (`src/main.rs`) only wires process concerns together: it calls
//! [`parse`], runs [`execute`] on a small runtime, prints the text it returns
//! and exits with [`Failure::code`] on error. Everything else lives here so it
//! can be tested without a process:
//!
//! - [`Cli`] / [`Command`]: the flags and subcommands (clap derive). [`parse`]
//!   first accepts Go-style single-dash flags (`-url`, `-secret=s3`) through
//!   [`skydns_api::go_flags::normalize`], and `add --json '{...}'` as a body.
//! - [`execute`]: one API call per command; the text to print on success.
//! - [`format_table`], [`format_service`], [`format_counts`], [`format_ttl`]:
//!   human output. With `--json` the output is the server's JSON instead (or
//!   `{"ok":true}` for writes).
//! - [`Failure`]: one line of error text and an [`exit`] code that tells
//!   "not found", "conflict" and "rejected" apart.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod cli;
mod execute;
mod failure;
mod format;

pub use cli::{AddArgs, CallbackArgs, CallbackCommand, Cli, Command, parse};
pub use execute::execute;
pub use failure::{Failure, exit};
pub use format::{format_counts, format_service, format_table, format_ttl};
// The modules' crate-internal helpers, for one another and the tests.
#[allow(unused_imports)]
pub(crate) use {cli::*, execute::*, failure::*, format::*};

#[cfg(test)]
mod tests;
