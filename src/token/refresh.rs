//! Keeping the store current while the proxy runs.
//!
//! One refresher per source reloads it on a schedule (a token file is polled every 250 ms;
//! Secrets Manager every `--token-refresh-interval`, jittered), on SIGHUP, and when a server has
//! rejected both tokens (rate limited, so a burst of failing connections costs one reload).
//! A failed or empty read never replaces a good token. A polled file must read the same twice
//! in a row before it is believed, so a file caught half-written is not taken for a new token.

use super::{Credentials, TokenError, TokenSource, TokenStore};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// How often a token file is read.
pub const FILE_POLL: Duration = Duration::from_millis(250);
/// The shortest gap between two reloads asked for by rejected connections.
const MIN_REQUESTED_GAP: Duration = Duration::from_secs(1);
/// The longest a single load may take.
const LOAD_TIMEOUT: Duration = Duration::from_secs(20);
/// The first retry delay after a failed scheduled load; it doubles up to the schedule.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// Why a reload ran; logged with its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Schedule,
    Request,
}

/// Reloads one source into the store until stopped.
pub struct Refresher {
    store: Arc<TokenStore>,
    source: TokenSource,
    /// `None`: only on request (an environment variable cannot change).
    every: Option<Duration>,
    applied: Option<Credentials>,
    pending: Option<Credentials>,
    failures: u32,
    last_error: Option<String>,
    last_requested: Option<Instant>,
    jitter: Jitter,
}

impl Refresher {
    /// `initial` is what the source gave at start, already in the store.
    pub fn new(
        store: Arc<TokenStore>,
        source: TokenSource,
        initial: Credentials,
        refresh_interval: Duration,
    ) -> Self {
        let every = match &source {
            TokenSource::File(_) => Some(FILE_POLL),
            TokenSource::Env(_) => None,
            TokenSource::SecretsManager(_) => Some(refresh_interval),
        };
        Refresher {
            store,
            source,
            every,
            applied: Some(initial),
            pending: None,
            failures: 0,
            last_error: None,
            last_requested: None,
            jitter: Jitter::seeded(),
        }
    }

    pub async fn run(mut self, stop: CancellationToken) {
        let mut next = self
            .every
            .map(|every| Instant::now() + self.jitter.spread(every));
        loop {
            let wake = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            let trigger = tokio::select! {
                () = stop.cancelled() => return,
                () = wake => Trigger::Schedule,
                () = self.store.reload_request.notified() => Trigger::Request,
            };
            if trigger == Trigger::Request {
                self.pace_requests().await;
            }
            self.reload(trigger).await;
            self.store.reload_finished();
            next = self.every.map(|every| Instant::now() + self.delay(every));
        }
    }

    /// Keeps requested reloads at least `MIN_REQUESTED_GAP` apart.
    async fn pace_requests(&mut self) {
        if let Some(last) = self.last_requested {
            let since = last.elapsed();
            if since < MIN_REQUESTED_GAP {
                tokio::time::sleep(MIN_REQUESTED_GAP - since).await;
            }
        }
        self.last_requested = Some(Instant::now());
    }

    /// The wait before the next scheduled load: the schedule, or a backoff after failures.
    fn delay(&mut self, every: Duration) -> Duration {
        match (&self.source, self.failures) {
            (TokenSource::SecretsManager(_), failures) if failures > 0 => {
                let backoff = FIRST_BACKOFF.saturating_mul(1 << (failures - 1).min(16));
                self.jitter.spread(backoff.min(every))
            }
            (TokenSource::SecretsManager(_), _) => self.jitter.spread(every),
            _ => every,
        }
    }

    async fn reload(&mut self, trigger: Trigger) {
        let result = match tokio::time::timeout(LOAD_TIMEOUT, self.source.load()).await {
            Ok(result) => result,
            Err(_) => Err(TokenError::Timeout {
                source_name: self.source.describe(),
                after: LOAD_TIMEOUT,
            }),
        };
        match result {
            Ok(fresh) => {
                self.failures = 0;
                if self.last_error.take().is_some() {
                    info!(
                        token.source = self.source.kind(),
                        "Token source readable again"
                    );
                }
                self.accept(fresh, trigger);
            }
            Err(error) => self.failed(&error),
        }
    }

    fn accept(&mut self, fresh: Credentials, trigger: Trigger) {
        let kind = self.source.kind();
        if self.applied.as_ref() == Some(&fresh) {
            self.pending = None;
            crate::metrics::token_reload(kind, "unchanged");
            return;
        }
        let polled_file =
            trigger == Trigger::Schedule && matches!(self.source, TokenSource::File(_));
        if polled_file && self.pending.as_ref() != Some(&fresh) {
            debug!(
                token.source = "file",
                "Token file changed; confirming on the next read"
            );
            self.pending = Some(fresh);
            crate::metrics::token_reload(kind, "unchanged");
            return;
        }
        self.pending = None;
        let changed = self.store.update(fresh.clone());
        crate::metrics::token_reload(kind, "changed");
        if let Some(stored) = self.store.credentials() {
            report_change(&stored, changed, self.source.kind(), trigger);
        }
        self.applied = Some(fresh);
    }

    fn failed(&mut self, error: &TokenError) {
        self.failures = self.failures.saturating_add(1);
        crate::metrics::token_reload(self.source.kind(), "failed");
        let text = error.to_string();
        // A file that stays missing is polled four times a second: warn when the error changes.
        if self.last_error.as_deref() != Some(text.as_str()) {
            warn!(
                token.source = self.source.kind(),
                reason = error.reason(),
                error = %error,
                "Token reload failed; keeping the last good token"
            );
            self.last_error = Some(text);
        } else {
            debug!(
                token.source = self.source.kind(),
                reason = error.reason(),
                "Token reload failed again"
            );
        }
    }
}

fn report_change(stored: &Credentials, changed: bool, source: &'static str, trigger: Trigger) {
    let trigger = match trigger {
        Trigger::Schedule => "schedule",
        Trigger::Request => "request",
    };
    info!(
        token.source = source,
        trigger,
        token.current = %stored.current.fingerprint(),
        token.previous = stored.previous.as_ref().map(|p| p.fingerprint()).unwrap_or_default(),
        current_changed = changed,
        "Token updated"
    );
    warn_on_elasticache_rules(stored);
}

/// Warns, without refusing, about tokens ElastiCache would not accept.
pub fn warn_on_elasticache_rules(credentials: &Credentials) {
    let slots = [
        ("current", Some(&credentials.current)),
        ("previous", credentials.previous.as_ref()),
    ];
    for (slot, token) in slots {
        if let Some(problem) = token.and_then(|t| t.elasticache_violation()) {
            warn!(
                token.slot = slot,
                problem, "Token does not follow ElastiCache AUTH token rules"
            );
        }
    }
}

/// Spreads schedules by ±10% so that many sidecars do not call AWS in step.
struct Jitter(u64);

impl Jitter {
    fn seeded() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        Jitter(u64::from(nanos) ^ (u64::from(std::process::id()) << 32) | 1)
    }

    fn spread(&mut self, base: Duration) -> Duration {
        // xorshift64
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let factor = 0.9 + (self.0 % 2001) as f64 / 10_000.0;
        base.mul_f64(factor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent() {
        let mut jitter = Jitter::seeded();
        for _ in 0..1000 {
            let d = jitter.spread(Duration::from_secs(100));
            assert!(
                d >= Duration::from_secs(90) && d <= Duration::from_secs(110),
                "{d:?}"
            );
        }
    }
}
