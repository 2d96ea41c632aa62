//! A route's side of following the primary (`--follow-primary`, `crate::primary`): asking a
//! new connection what it is when the route needs to know, and opening connections until a
//! primary answers during a failover, for new clients and for sessions that move
//! (`forward::Reopen`).

use super::RouteRuntime;
use crate::error::ConnError;
use crate::forward;
use crate::primary::{self, Role};
use crate::upstream::UpstreamStream;
use std::time::{Duration, Instant};
use tracing::debug;

impl RouteRuntime {
    /// Asks an authenticated connection `ROLE` when the route needs to know (its first
    /// connection, during a failover); a replica or a loading node during a failover is
    /// refused so that the caller tries again.
    pub(super) async fn check_primary(
        &self,
        upstream: &mut UpstreamStream,
    ) -> Result<(), ConnError> {
        let ctx = &self.forward;
        let primary = &ctx.primary;
        if !primary.wants_check() {
            return Ok(());
        }
        let role = primary::check(upstream, &ctx.upstream, ctx.settings.auth_timeout).await?;
        debug!(role = role.as_str(), "Asked the upstream what it is");
        primary.checked(role);
        if primary.in_failover() && matches!(role, Role::Replica | Role::Loading) {
            return Err(ConnError::NoPrimary {
                upstream: ctx.upstream.clone(),
                after: primary.timeout,
                role: role.as_str(),
            });
        }
        Ok(())
    }

    /// An upstream connection to the primary, during a failover: tried again (DNS again) with
    /// backoff until a primary answers or `--failover-timeout` passes.
    pub(crate) async fn open_primary(&self) -> Result<UpstreamStream, ConnError> {
        let deadline = Instant::now() + self.forward.primary.timeout;
        let mut backoff = Duration::from_millis(50);
        loop {
            let error = match self.open_upstream().await {
                Ok(upstream) => return Ok(upstream),
                Err(error) => error,
            };
            let retryable = error.stage().is_some_and(|stage| stage != "no_token");
            if !retryable || Instant::now() + backoff >= deadline {
                return Err(error);
            }
            debug!(%error, "No primary yet");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }
}

impl forward::Reopen<UpstreamStream> for RouteRuntime {
    fn reopen(&self) -> forward::Reopened<'_, UpstreamStream> {
        Box::pin(async move {
            let upstream = self.open_primary().await?;
            Ok((upstream, Instant::now()))
        })
    }
}
