//! The two clocks of a forwarded connection: `--idle-timeout`, and with IAM or Entra ID the
//! renewal before the server's cut (12 hours after the last AUTH for AWS, a maximum age for
//! Google, the expiry of the token of the last AUTH for Entra ID).

use crate::config::Renewal;
use std::pin::Pin;
use std::task::Context as TaskContext;
use std::time::{Duration, SystemTime};
use tokio::time::{Instant, Sleep};

/// After a rejected renewal, try again after a tenth of the window, at most this long.
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

/// When a connection must authenticate again and when it must close rather than be cut,
/// counted from its last AUTH: a plain decision, tested without clocks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Window {
    pub(crate) renew_after: Duration,
    pub(super) cut_after: Duration,
    /// Entra ID: renewing needs a token newer than the one that authenticated it.
    pub(crate) needs_newer_token: bool,
}

impl Window {
    /// `token_life`: how long the token of the last AUTH had left then; `spread` in 0..1 is
    /// this connection's share of the jitter, so connections opened together renew apart.
    pub(crate) fn new(policy: Renewal, token_life: Option<Duration>, spread: f64) -> Option<Self> {
        match policy {
            Renewal::Interval { every, lifetime } => {
                let slack = lifetime.saturating_sub(every) / 2;
                Some(Window {
                    renew_after: every.mul_f64(0.9 + spread / 10.0),
                    cut_after: lifetime - slack.min(MAX_CUT_MARGIN),
                    needs_newer_token: false,
                })
            }
            Renewal::TokenExpiry => {
                let life = token_life?;
                // Microsoft asks for at least three minutes; a third of the life matches when
                // the source fetches the next token (`token::oauth`).
                let margin = TOKEN_RENEW_MARGIN
                    .max(life / 3)
                    .mul_f64(0.75 + spread / 4.0);
                Some(Window {
                    renew_after: life.saturating_sub(margin),
                    cut_after: life - TOKEN_CUT_MARGIN.min(life / 10),
                    needs_newer_token: true,
                })
            }
        }
    }

    /// After a refused renewal: the next try, a tenth of the way to the cut, at most a minute.
    fn retry_after(&self, since_auth: Duration) -> Duration {
        let wait = (self.cut_after.saturating_sub(self.renew_after) / 10).min(MAX_RETRY);
        (since_auth + wait.max(Duration::from_millis(100))).min(self.cut_after)
    }

    /// While due but without a newer token to renew with: look again this often.
    fn recheck(&self) -> Duration {
        (self.cut_after.saturating_sub(self.renew_after) / 20)
            .clamp(Duration::from_millis(50), Duration::from_secs(1))
    }
}

/// Entra ID: renew at the latest this long before the token expires (Microsoft's guidance).
const TOKEN_RENEW_MARGIN: Duration = Duration::from_secs(180);
/// Entra ID: close a connection that never became quiet this long before its token expires.
const TOKEN_CUT_MARGIN: Duration = Duration::from_secs(30);

/// With IAM or Entra ID: when the connection must authenticate again, and when the server
/// would cut it.
pub(super) struct Renewer {
    policy: Renewal,
    spread: f64,
    /// When the server last accepted an AUTH on this connection.
    last_auth: Instant,
    /// The expiry of the token of that AUTH (Entra ID), to tell a newer token.
    token_expires: Option<SystemTime>,
    /// `None`: nothing to renew (a token that does not expire).
    window: Option<Window>,
    pub(super) due: bool,
    /// The expiry of the token a renewal in flight carries.
    sent: Option<Option<SystemTime>>,
    sleep: Pin<Box<Sleep>>,
}

impl Renewer {
    pub(super) fn new(
        policy: Renewal,
        last_auth: Instant,
        token_expires: Option<SystemTime>,
    ) -> Self {
        use std::hash::{BuildHasher, RandomState};
        let spread = (RandomState::new().hash_one(0u8) % 1001) as f64 / 1000.0;
        let mut renewer = Renewer {
            policy,
            spread,
            last_auth,
            token_expires,
            window: None,
            due: false,
            sent: None,
            sleep: Box::pin(tokio::time::sleep_until(last_auth)),
        };
        renewer.authenticated(last_auth, token_expires);
        renewer
    }

    /// The server accepted an AUTH with a token expiring at `token_expires`: a new window.
    pub(super) fn authenticated(&mut self, at: Instant, token_expires: Option<SystemTime>) {
        self.last_auth = at;
        self.token_expires = token_expires;
        self.due = false;
        let life = token_expires.map(|e| e.duration_since(SystemTime::now()).unwrap_or_default());
        self.window = Window::new(self.policy, life, self.spread);
        let next = match self.window {
            Some(window) => at + window.renew_after,
            None => at + Duration::from_secs(365 * 86_400),
        };
        self.sleep.as_mut().reset(next);
    }

    /// Whether a renewal may start now: due, and (Entra ID) the store holds a newer token.
    pub(super) fn may_renew(&self, store_expires: Option<SystemTime>) -> bool {
        let Some(window) = self.window.filter(|_| self.due && self.sent.is_none()) else {
            return false;
        };
        !window.needs_newer_token || store_expires > self.token_expires
    }

    /// A renewal AUTH carrying a token that expires at `expires` was sent.
    pub(super) fn sent(&mut self, expires: Option<SystemTime>) {
        self.sent = Some(expires);
    }

    /// The renewal's answer came. Accepted: a new window from now. Rejected (the token was
    /// refused; the store is asked for a fresh one): try again soon, before the cut.
    pub(super) fn answered(&mut self, accepted: bool) {
        let sent = self.sent.take().flatten();
        if accepted {
            self.authenticated(Instant::now(), sent);
            return;
        }
        self.due = false;
        if let Some(window) = self.window {
            let next = window.retry_after(self.last_auth.elapsed());
            self.sleep.as_mut().reset(self.last_auth + next);
        }
    }

    /// `Some` when the clock rang since the last call.
    pub(super) fn poll(&mut self, cx: &mut TaskContext<'_>) -> Option<Alarm> {
        self.sleep.as_mut().poll(cx).is_ready().then_some(())?;
        let window = self.window?;
        let cut_at = self.last_auth + window.cut_after;
        let now = Instant::now();
        if now >= cut_at {
            return Some(Alarm::Cut);
        }
        self.due = true;
        let next = if window.needs_newer_token {
            (now + window.recheck()).min(cut_at)
        } else {
            cut_at
        };
        self.sleep.as_mut().reset(next);
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
        let store_expires = self.ctx.store.credentials().and_then(|c| c.expires);
        if !renewer.may_renew(store_expires) || !wants.renewable || !self.to_server.is_empty() {
            return false;
        }
        self.actions.clear();
        if !conn.renew(&mut self.actions) {
            return false;
        }
        renewer.sent(store_expires);
        // Only `ToServer::Auth`, which cannot fail while the store holds a token.
        self.queue(&bytes::Bytes::new()).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mins(n: u64) -> Duration {
        Duration::from_secs(60 * n)
    }

    #[test]
    fn an_iam_connection_renews_after_its_interval_and_closes_before_the_twelve_hour_cut() {
        let policy = Renewal::Interval {
            every: mins(660),
            lifetime: mins(720),
        };
        let early = Window::new(policy, None, 0.0).unwrap();
        let late = Window::new(policy, None, 1.0).unwrap();
        assert_eq!(early.renew_after, mins(594));
        assert_eq!(late.renew_after, mins(660));
        assert_eq!(early.cut_after, mins(715));
        assert!(!early.needs_newer_token);
    }

    #[test]
    fn an_entra_connection_renews_before_its_token_expires_and_only_with_a_newer_token() {
        let window = Window::new(Renewal::TokenExpiry, Some(mins(75)), 1.0).unwrap();
        assert_eq!(window.renew_after, mins(50), "a third of the life left");
        assert_eq!(window.cut_after, mins(75) - Duration::from_secs(30));
        assert!(window.needs_newer_token);
        let short = Window::new(Renewal::TokenExpiry, Some(mins(6)), 1.0).unwrap();
        assert_eq!(short.renew_after, mins(3), "at least three minutes ahead");
    }

    #[test]
    fn a_token_of_seconds_still_leaves_time_to_renew_before_the_cut() {
        let life = Duration::from_secs(20);
        for spread in [0.0, 0.5, 1.0] {
            let window = Window::new(Renewal::TokenExpiry, Some(life), spread).unwrap();
            assert!(window.renew_after < window.cut_after, "{window:?}");
            assert_eq!(window.cut_after, Duration::from_secs(18));
            assert!(window.retry_after(window.renew_after) <= window.cut_after);
        }
    }

    #[test]
    fn a_token_that_does_not_expire_is_never_renewed_by_expiry() {
        assert_eq!(Window::new(Renewal::TokenExpiry, None, 0.5), None);
    }
}
