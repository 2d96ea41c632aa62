//! The two clocks of a forwarded connection: `--idle-timeout`, and with IAM the renewal
//! before the server's cut.

use crate::config::Renewal;
use std::pin::Pin;
use std::task::Context as TaskContext;
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// After a rejected renewal, try again after a tenth of the interval, at most this long.
const MAX_RETRY: Duration = Duration::from_secs(60);
/// Close at most this long before the cut.
const MAX_CUT_MARGIN: Duration = Duration::from_secs(300);

/// `--idle-timeout`: when bytes last moved.
pub(super) struct Idle {
    pub(super) timeout: Duration,
    last: Instant,
    sleep: Pin<Box<Sleep>>,
}

impl Idle {
    pub(super) fn new(timeout: Duration) -> Self {
        Idle {
            timeout,
            last: Instant::now(),
            sleep: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    pub(super) fn touch(&mut self) {
        self.last = Instant::now();
    }

    /// True once idle for the timeout with nothing owed; Redis never times out a client that
    /// awaits a reply (BLPOP) or is subscribed.
    pub(super) fn poll_expired(&mut self, cx: &mut TaskContext<'_>, owes_nothing: bool) -> bool {
        while self.sleep.as_mut().poll(cx).is_ready() {
            let idle_for = self.last.elapsed();
            if idle_for >= self.timeout && owes_nothing {
                return true;
            }
            let wait = self.timeout.checked_sub(idle_for).unwrap_or(self.timeout);
            self.sleep.as_mut().reset(Instant::now() + wait);
        }
        false
    }
}

/// What the renewal clock says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Alarm {
    /// Time to authenticate again, at the next quiet moment.
    Due,
    /// The server's cut is near and the connection never was quiet: close it.
    Cut,
}

/// With IAM: when the connection must authenticate again, and when the server would cut it.
pub(super) struct Renewer {
    policy: Renewal,
    /// When the server last accepted an AUTH on this connection.
    last_auth: Instant,
    due: bool,
    /// This connection's share of the jitter: the interval times 0.9 to 1.0, so that
    /// connections opened together do not all renew together.
    every: Duration,
    sleep: Pin<Box<Sleep>>,
}

impl Renewer {
    pub(super) fn new(policy: Renewal, last_auth: Instant) -> Self {
        use std::hash::{BuildHasher, RandomState};
        let spread = RandomState::new().hash_one(0u8) % 1001;
        let every = policy.every.mul_f64(0.9 + spread as f64 / 10_000.0);
        Renewer {
            policy,
            last_auth,
            due: false,
            every,
            sleep: Box::pin(tokio::time::sleep_until(last_auth + every)),
        }
    }

    /// The renewal's answer came. Accepted: the next is one interval away. Rejected (the
    /// token was refused; the store is asked for a fresh one): try again soon, before the cut.
    pub(super) fn answered(&mut self, accepted: bool) {
        let now = Instant::now();
        self.due = false;
        let next = if accepted {
            self.last_auth = now;
            now + self.every
        } else {
            (now + (self.policy.every / 10).min(MAX_RETRY)).min(self.cut_at())
        };
        self.sleep.as_mut().reset(next);
    }

    /// Shortly before the server's cut: half the slack between interval and lifetime, at most
    /// five minutes.
    fn cut_at(&self) -> Instant {
        let slack = self.policy.lifetime.saturating_sub(self.policy.every) / 2;
        self.last_auth + self.policy.lifetime - slack.min(MAX_CUT_MARGIN)
    }

    /// `Some` when the clock rang since the last call.
    pub(super) fn poll(&mut self, cx: &mut TaskContext<'_>) -> Option<Alarm> {
        self.sleep.as_mut().poll(cx).is_ready().then_some(())?;
        let cut_at = self.cut_at();
        if Instant::now() >= cut_at {
            return Some(Alarm::Cut);
        }
        self.due = true;
        self.sleep.as_mut().reset(cut_at);
        Some(Alarm::Due)
    }
}

impl<R, W, U> super::Io<'_, R, W, U>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
    U: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    /// With IAM: settles a renewal answered, and starts one when due and the connection is
    /// quiet with nothing left to write upstream (a renewal in flight is not quiet). True if
    /// one was started.
    pub(super) fn renew_if_due(
        &mut self,
        conn: &mut crate::connection::Connection<'_>,
        wants: &crate::connection::Wants,
    ) -> bool {
        let Some(renewer) = &mut self.renewer else {
            return false;
        };
        if let Some(accepted) = conn.take_renewal() {
            renewer.answered(accepted);
            self.ctx.metrics.reauthenticated(accepted);
            if !accepted {
                tracing::warn!(
                    "The server refused the token renewing the connection; fetching a new one"
                );
                self.ctx.store.request_reload();
            }
        }
        if !renewer.due || !wants.renewable || !self.to_server.is_empty() {
            return false;
        }
        self.actions.clear();
        if !conn.renew(&mut self.actions) {
            return false;
        }
        // Only `ToServer::Auth`, which cannot fail while the store holds a token.
        self.queue(&bytes::Bytes::new()).is_ok()
    }
}
