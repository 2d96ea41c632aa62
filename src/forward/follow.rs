//! Moving a session to the new primary (`SideTrip::FollowPrimary`): the I/O half of
//! `connection/follow.rs`. The client's bytes that may have to go again are kept (`Sent`, as
//! slices of the buffers they were read into, never copied) until their replies have come.

use super::Io;
use crate::connection::Connection;
use crate::error::ConnError;
use crate::handshake::exchange;
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{info, warn};

/// A new authenticated connection to the primary, and when it was made.
pub(crate) type Reopened<'a, U> =
    Pin<Box<dyn Future<Output = Result<(U, Instant), ConnError>> + Send + 'a>>;

/// A new authenticated connection to the route's primary: tried until a primary answers or
/// `--failover-timeout` passes. What `forward` asks of the route that made the connection.
pub(crate) trait Reopen<U>: Sync {
    fn reopen(&self) -> Reopened<'_, U>;
}

/// The most of a client's bytes kept to be sent again: requests in flight beyond it cannot
/// move (the client gets the refusal), so that a client streaming a large value to a slow
/// server costs no more memory than without following.
const MAX_KEPT: usize = 64 * 1024;

/// The client's bytes from the oldest request still unanswered on, in order.
#[derive(Default)]
pub(super) struct Sent {
    chunks: VecDeque<Bytes>,
    /// Where the first chunk starts in the client's byte stream.
    start: u64,
    /// Bytes kept.
    len: usize,
    /// Past `MAX_KEPT`, bytes up to this offset were not kept.
    dropped_until: u64,
}

impl Sent {
    pub(super) fn push(&mut self, bytes: Bytes) {
        let end = self.start + (self.len + bytes.len()) as u64;
        if self.len + bytes.len() > MAX_KEPT {
            self.chunks.clear();
            self.len = 0;
            self.dropped_until = end;
            self.start = end;
        } else if !bytes.is_empty() {
            self.len += bytes.len();
            self.chunks.push_back(bytes);
        }
    }

    /// Whether every byte from client offset `from` on is kept.
    pub(super) fn holds_from(&self, from: u64) -> bool {
        from >= self.dropped_until
    }

    /// Drops what lies before client offset `from`.
    pub(super) fn keep_from(&mut self, from: u64) {
        while let Some(front) = self.chunks.front_mut() {
            let skip = from.saturating_sub(self.start);
            if skip == 0 {
                return;
            }
            if skip >= front.len() as u64 {
                self.start += front.len() as u64;
                self.len -= front.len();
                self.chunks.pop_front();
            } else {
                let _ = front.split_to(skip as usize);
                self.start += skip;
                self.len -= skip as usize;
            }
        }
        self.start = self.start.max(from);
    }
}

impl<R, W, U> Io<'_, R, W, U>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    /// Moves the session to a connection to the primary, or gives the client the refusal.
    pub(super) async fn follow_primary(&mut self, conn: &mut Connection<'_>) {
        let ctx = self.ctx;
        ctx.primary.refused();
        let started = Instant::now();
        let result = self.move_to_primary(conn).await;
        match &result {
            Ok(()) => {
                let resent = conn.requests_to_resend();
                info!(
                    resent,
                    after_ms = started.elapsed().as_millis() as u64,
                    "Followed the primary"
                );
                ctx.metrics
                    .failover_followed(resent, started.elapsed().as_secs_f64());
            }
            Err(error) => {
                warn!(%error, "Could not follow the primary; the connection closes");
                ctx.metrics.failover_not_moved(match error {
                    ConnError::NoPrimary { .. } | ConnError::Timeout { .. } => "timeout",
                    ConnError::LeftReplica { .. } => "state",
                    _ => "auth",
                });
            }
        }
        self.actions.clear();
        conn.followed(result, &mut self.actions);
        let _ = self.queue(&Bytes::new());
    }

    async fn move_to_primary(&mut self, conn: &Connection<'_>) -> Result<(), ConnError> {
        let ctx = self.ctx;
        let window = conn.resend_window().unwrap_or(u64::MAX);
        let sent = self.sent.as_ref().expect("following keeps the bytes sent");
        if !sent.holds_from(window) {
            return Err(ConnError::LeftReplica {
                reason: "over 64 KiB of requests in flight",
            });
        }
        let (mut upstream, born) = self.reopen.reopen().await?;
        let mut buf = BytesMut::new();
        for setting in conn.settings_to_replay() {
            let told = exchange(&mut upstream, &setting, &mut buf, &ctx.upstream);
            tokio::time::timeout(ctx.settings.auth_timeout, told)
                .await
                .map_err(|_| ConnError::auth_timeout(ctx.settings.auth_timeout, &ctx.upstream))??;
        }
        self.upstream = upstream;
        self.upstream_shut = false;
        self.from_server.clear();
        self.replies_waiting = false;
        self.to_server.clear();
        let sent = self.sent.as_mut().expect("following keeps the bytes sent");
        sent.keep_from(window);
        for chunk in &sent.chunks {
            self.to_server.push(chunk.clone());
        }
        self.born = born;
        self.authenticated_now();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collected(sent: &Sent) -> Vec<u8> {
        sent.chunks.iter().flat_map(|c| c.iter().copied()).collect()
    }

    #[test]
    fn bytes_before_the_window_are_dropped_within_and_across_chunks() {
        let mut sent = Sent::default();
        sent.push(Bytes::from_static(b"*1\r\n$4\r\nPING\r\n"));
        sent.push(Bytes::from_static(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"));
        sent.keep_from(4);
        assert_eq!(
            collected(&sent),
            b"$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
        );
        sent.keep_from(14);
        assert_eq!(collected(&sent), b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
        sent.keep_from(14);
        assert_eq!(collected(&sent).len(), 20);
        sent.keep_from(34);
        assert!(sent.chunks.is_empty());
        sent.push(Bytes::from_static(b"x"));
        sent.keep_from(34);
        assert_eq!(collected(&sent), b"x");
        assert!(sent.holds_from(34));
    }

    #[test]
    fn past_the_limit_nothing_is_kept_until_the_window_moves_beyond_it() {
        let mut sent = Sent::default();
        sent.push(Bytes::from(vec![b'a'; MAX_KEPT - 10]));
        assert!(sent.holds_from(0));
        sent.push(Bytes::from(vec![b'b'; 20]));
        assert!(sent.chunks.is_empty() && !sent.holds_from(0));
        assert!(!sent.holds_from(MAX_KEPT as u64 + 9) && sent.holds_from(MAX_KEPT as u64 + 10));
        sent.push(Bytes::from_static(b"c"));
        sent.keep_from(MAX_KEPT as u64 + 5);
        assert_eq!(collected(&sent), b"c", "the bytes after the gap are kept");
        sent.keep_from(MAX_KEPT as u64 + 11);
        assert!(sent.chunks.is_empty() && sent.holds_from(MAX_KEPT as u64 + 11));
    }
}
