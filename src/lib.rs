//! redis-auth-proxy: plain RESP on localhost in, TLS and AUTH to Redis or Valkey out.
//!
//! Where a byte goes:
//! - `listener` is where applications connect (TCP or a Unix socket);
//! - `serve` accepts a client on a route's listener and runs its connection, with an upstream
//!   connection from its `pool` (ready ones) or a new one;
//! - `upstream` opens TCP and TLS to the route's server (DNS at every connect);
//! - `handshake` authenticates that connection with a token from the `token` store;
//! - `forward` then moves the bytes both ways, and `connection` decides what each byte becomes
//!   (with no I/O), keeping the client's session apart from the upstream stream and reporting
//!   what it wants of the I/O (`Wants`): `resp` finds request and reply boundaries; AUTH, HELLO
//!   AUTH and RESET are answered or rewritten there, the client's own password checked against
//!   `client_auth`;
//! - when the client leaves, `serve::reuse` resets the upstream connection for the next client
//!   (`--upstream-reuse`);
//! - with `--cluster`, `serve::nodes` gives every node the server announces a listener of its
//!   own, and `cluster` (pure) decides the ports and rewrites the replies that name nodes.
//!
//! `process` is the process's life (bind, load tokens, build routes, serve, drain); `config`
//! turns flags, environment and file into a `Config` (what every connection uses is one value,
//! `ConnectionSettings`); `address` names a server (`host:port`); `secret` holds the one type that may
//! carry a token; `error` maps every failure to a reply, a metric label and a log level;
//! `health` is what the probes read; `metrics` names every metric; `admin` serves probes,
//! metrics and `/quitquitquit`; `check` is the `check` subcommand.

#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

pub mod address;
pub mod admin;
pub mod check;
pub mod client_auth;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod error;
pub(crate) mod forward;
pub(crate) mod handshake;
pub(crate) mod health;
pub mod listener;
pub mod metrics;
pub(crate) mod multiplex;
pub(crate) mod primary;
mod process;
pub mod resp;
pub mod secret;
pub mod sentinel;
pub(crate) mod serve;
pub mod token;
pub mod upstream;

/// Locks `mutex`, taking its data even if a panic poisoned it: what the proxy keeps behind its
/// locks (lanes, the primary's address, the Sentinels' answer) is whole between statements, so
/// one connection's panic must not take the others down with it.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub use process::{
    Listeners, RunError, bind, load_client_passwords, load_tokens, run, run_with_tokens,
    spawn_refresher,
};
