//! Where the loop stops moving bytes for an exchange of the proxy's own, and then goes on:
//! authenticating again after a client's RESET, reading the cluster topology again for a
//! redirect to a node no topology reply announced.

use super::Io;
use crate::connection::Connection;
use crate::error::{ConnError, Stage};
use crate::handshake::authenticate_buffered;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{debug, warn};

impl<R, W, U> Io<'_, R, W, U>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    /// The server just accepted the proxy's AUTH on this connection: the renewal's clock
    /// starts again.
    pub(super) fn authenticated_now(&mut self) {
        if let Some(renewer) = &mut self.renewer {
            let expires = self.ctx.store.credentials().and_then(|c| c.expires);
            renewer.authenticated(tokio::time::Instant::now(), expires);
        }
    }

    /// Authenticates again after RESET; the connection owes the client nothing meanwhile.
    pub(super) async fn reauthenticate(&mut self, conn: &mut Connection<'_>) {
        let ctx = self.ctx;
        let target = ctx.auth_target();
        let result =
            match authenticate_buffered(&mut self.upstream, &mut self.from_server, &target).await {
                Ok(slot) => {
                    debug!(
                        token.slot = slot.as_str(),
                        "Authenticated again after RESET"
                    );
                    self.authenticated_now();
                    Ok(())
                }
                Err(error) => {
                    if let Some(reason) = error.auth_failure_reason() {
                        warn!(error = %error, "Authentication after RESET failed");
                        ctx.metrics.auth_failure(reason);
                    }
                    Err(match error {
                        ConnError::Timeout { after, .. } => ConnError::Timeout {
                            stage: Stage::Auth,
                            after,
                            upstream: ctx.upstream.clone(),
                        },
                        other => other,
                    })
                }
            };
        self.actions.clear();
        conn.reauthenticated(result, &mut self.actions);
        self.replies_waiting = !self.from_server.is_empty();
        let _ = self.queue(&Bytes::new());
    }

    /// Reads the topology again (bounded by its own timeout), then lets the held redirect go.
    pub(super) async fn refresh_topology(&mut self, conn: &mut Connection<'_>) {
        if let Some(link) = &self.ctx.cluster {
            link.table.refresh().await;
        }
        self.actions.clear();
        conn.topology_refreshed(&mut self.actions);
        self.replies_waiting = !self.from_server.is_empty();
        let _ = self.queue(&Bytes::new());
    }
}
