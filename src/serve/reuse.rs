//! `--upstream-reuse`: a connection whose client left owing nothing is reset for the next
//! client instead of closed, as pgbouncer resets a server connection between clients.
//!
//! RESET clears the database, RESP version, name, MULTI/WATCH, subscriptions, tracking and
//! CLIENT REPLY state, and logs the connection out; then the proxy's own AUTH goes alone, as at
//! connect. RESET leaves `CLIENT NO-EVICT` (Redis 7.0 and later), `CLIENT NO-TOUCH` and the
//! `CLIENT SETINFO` library name and version (7.2, Valkey) as they were: when the client set any
//! of them, all are undone in one round trip (a server without a command answers an error,
//! which is fine: nothing to undo). Anything unexpected closes the connection instead.

use super::RouteRuntime;
use crate::error::ConnError;
use crate::handshake::{authenticate_buffered, read_reply};
use crate::resp::encode_request;
use crate::upstream::UpstreamStream;
use bytes::BytesMut;
use std::time::Instant;
use tokio::io::AsyncWriteExt;
use tracing::debug;

/// Resets `upstream` and puts it back in the route's pool, or closes it.
pub(crate) async fn recycle(
    route: &RouteRuntime,
    mut upstream: UpstreamStream,
    mut unread: BytesMut,
    born: Instant,
    sticky_state: bool,
) {
    let metrics = route.metrics();
    let Some(pool) = &route.pool else { return };
    if born.elapsed() > pool.max_age {
        metrics.not_reused("too_old");
        return;
    }
    let version = route.forward.store.version();
    match reset(route, &mut upstream, &mut unread, sticky_state).await {
        Ok(()) if unread.is_empty() => match pool.put_back(upstream, version, born) {
            Ok(()) => {
                debug!("Reset the upstream connection for the next client");
                metrics.reused("reused");
            }
            Err(_closed) => {
                debug!("The pool is full; closing the upstream connection");
                metrics.reused("pool_full");
            }
        },
        Ok(()) => {
            debug!("Unexpected bytes after resetting; closing the upstream connection");
            metrics.reused("failed");
        }
        Err(error) => {
            debug!(%error, "Could not reset the upstream connection; closing it");
            metrics.reused("failed");
        }
    }
}

async fn reset(
    route: &RouteRuntime,
    upstream: &mut UpstreamStream,
    unread: &mut BytesMut,
    sticky_state: bool,
) -> Result<(), ConnError> {
    let ctx = &route.forward;
    let reply = exchange(ctx, upstream, &[&[b"RESET"]], unread).await?;
    if reply[0] != b"+RESET\r\n" {
        return Err(unexpected(ctx, "RESET"));
    }
    authenticate_buffered(upstream, unread, &ctx.auth_target()).await?;
    if !sticky_state {
        return Ok(());
    }
    // What RESET leaves as it was, undone in one round trip. Servers older than a command
    // answer an error for it, which leaves nothing to undo; NO-EVICT exists since 7.0.
    let undo: [&[&[u8]]; 4] = [
        &[b"CLIENT", b"NO-EVICT", b"off"],
        &[b"CLIENT", b"NO-TOUCH", b"off"],
        &[b"CLIENT", b"SETINFO", b"LIB-NAME", b""],
        &[b"CLIENT", b"SETINFO", b"LIB-VER", b""],
    ];
    let replies = exchange(ctx, upstream, &undo, unread).await?;
    let ok = |reply: &[u8]| reply == b"+OK\r\n";
    if !ok(&replies[0]) || !replies[1..].iter().all(|r| ok(r) || r.starts_with(b"-ERR")) {
        return Err(unexpected(ctx, "CLIENT NO-EVICT, NO-TOUCH or SETINFO"));
    }
    Ok(())
}

fn unexpected(ctx: &crate::forward::Context, what: &str) -> ConnError {
    ConnError::AuthFailed {
        upstream: ctx.upstream.clone(),
        reply: format!("resetting for reuse: unexpected reply to {what}"),
    }
}

/// `commands`, within `--auth-timeout`.
async fn exchange(
    ctx: &crate::forward::Context,
    upstream: &mut UpstreamStream,
    commands: &[&[&[u8]]],
    unread: &mut BytesMut,
) -> Result<Vec<Vec<u8>>, ConnError> {
    tokio::time::timeout(
        ctx.settings.auth_timeout,
        pipeline(upstream, &ctx.upstream, commands, unread),
    )
    .await
    .map_err(|_| ConnError::Timeout {
        stage: crate::error::Stage::Auth,
        after: ctx.settings.auth_timeout,
        upstream: ctx.upstream.clone(),
    })?
}

/// Sends commands in one write and returns their replies, skipping RESP3 pushes the server
/// sent before them (a tracking invalidation the client left behind).
async fn pipeline(
    upstream: &mut UpstreamStream,
    upstream_name: &str,
    commands: &[&[&[u8]]],
    unread: &mut BytesMut,
) -> Result<Vec<Vec<u8>>, ConnError> {
    let bytes: Vec<u8> = commands
        .iter()
        .flat_map(|args| encode_request(args))
        .collect();
    upstream
        .write_all(&bytes)
        .await
        .map_err(ConnError::UpstreamIo)?;
    upstream.flush().await.map_err(ConnError::UpstreamIo)?;
    let mut replies = Vec::with_capacity(commands.len());
    while replies.len() < commands.len() {
        replies.push(read_reply(upstream, unread, upstream_name).await?);
    }
    Ok(replies)
}
