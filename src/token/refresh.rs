//! Keeping credentials current while the proxy runs: the token store from the token source,
//! and the client passwords from their file, with one refresher.
//!
//! A refresher reloads its source on the source's own schedule (`Polling`: a file every
//! 250 ms, confirming a change by reading it twice; Secrets Manager every
//! `--token-refresh-interval`, jittered, backing off after failures; an environment variable
//! never; IAM when its `due_in` says, backing off after failures), and when its target asks (SIGHUP, or a server that rejected both tokens; rate
//! limited, so a burst of failing connections costs one reload). A failed or empty read never
//! replaces good credentials.

use super::{Credentials, TokenError, TokenSource, TokenStore};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// How often a file is read.
pub const FILE_POLL: Duration = Duration::from_millis(250);
/// The shortest gap between two reloads asked for by rejected connections.
const MIN_REQUESTED_GAP: Duration = Duration::from_secs(1);
/// The longest a single load may take.
const LOAD_TIMEOUT: Duration = Duration::from_secs(20);
/// The first retry delay after a failed scheduled load; it doubles up to the schedule.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// How a source is re-read; each kind of source states its own (`TokenSource::polling`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Polling {
    /// `None`: only when asked.
    pub every: Option<Duration>,
    /// A change must read the same twice in a row: a file may be caught half-written.
    pub confirm_changes: bool,
    /// Jittered ±10% and, after failures, retried sooner with doubling delays: a remote API
    /// shared by many proxies and sometimes briefly away.
    pub remote: bool,
}

/// What a refresher keeps current.
pub trait Target: Send + Sync + 'static {
    /// Installs credentials that differ from the last ones installed.
    fn apply(&self, fresh: Credentials, source: &'static str, trigger: &'static str);
    /// Counts one reload by result (`unchanged`, `changed`, `failed`).
    fn record(&self, source: &'static str, result: &'static str);
    /// Notified when a reload is wanted at once; `None` when nothing asks.
    fn requests(&self) -> Option<&Notify> {
        None
    }
    /// Called after every reload attempt.
    fn finished(&self) {}
    /// What the logs call the credentials: "token", "client password".
    fn noun(&self) -> &'static str;
}

/// Why a reload ran; logged with its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Schedule,
    Request,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Request => "request",
        }
    }
}

/// Reloads one source into one target until stopped.
pub struct Refresher {
    target: Arc<dyn Target>,
    source: TokenSource,
    polling: Polling,
    applied: Option<Credentials>,
    pending: Option<Credentials>,
    failures: u32,
    last_error: Option<String>,
    last_requested: Option<Instant>,
    jitter: Jitter,
}

impl Refresher {
    /// `initial` is what the source gave at start, already installed in `target`.
    pub fn new(
        target: Arc<dyn Target>,
        source: TokenSource,
        polling: Polling,
        initial: Credentials,
    ) -> Self {
        Refresher {
            target,
            source,
            polling,
            applied: Some(initial),
            pending: None,
            failures: 0,
            last_error: None,
            last_requested: None,
            jitter: Jitter::seeded(),
        }
    }

    pub async fn run(mut self, stop: CancellationToken) {
        let target = Arc::clone(&self.target);
        let mut next = self.next_load();
        loop {
            let wake = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            let asked = async {
                match target.requests() {
                    Some(requests) => requests.notified().await,
                    None => std::future::pending().await,
                }
            };
            let trigger = tokio::select! {
                () = stop.cancelled() => return,
                () = wake => Trigger::Schedule,
                () = asked => Trigger::Request,
            };
            if trigger == Trigger::Request {
                self.pace_requests().await;
            }
            self.reload(trigger).await;
            target.finished();
            next = self.next_load();
        }
    }

    /// When to load next: when the source says (IAM), unless failing; else on its schedule.
    fn next_load(&mut self) -> Option<Instant> {
        let wait = match self.source.due_in() {
            Some(due) if self.failures == 0 => Some(due),
            _ => self.polling.every.map(|every| self.delay(every)),
        };
        wait.map(|wait| Instant::now() + wait)
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
        if !self.polling.remote {
            return every;
        }
        let wait = match self.failures {
            0 => every,
            failures => FIRST_BACKOFF
                .saturating_mul(1 << (failures - 1).min(16))
                .min(every),
        };
        self.jitter.spread(wait)
    }

    async fn reload(&mut self, trigger: Trigger) {
        let source = &self.source;
        let load = async move {
            match trigger {
                Trigger::Schedule => source.load().await,
                Trigger::Request => source.load_fresh().await,
            }
        };
        let result = match tokio::time::timeout(LOAD_TIMEOUT, load).await {
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
                        "{} source readable again",
                        capitalised(self.target.noun())
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
            self.target.record(kind, "unchanged");
            return;
        }
        let confirm = trigger == Trigger::Schedule && self.polling.confirm_changes;
        if confirm && self.pending.as_ref() != Some(&fresh) {
            debug!(
                token.source = kind,
                "Source changed; confirming on the next read"
            );
            self.pending = Some(fresh);
            self.target.record(kind, "unchanged");
            return;
        }
        self.pending = None;
        self.target.apply(fresh.clone(), kind, trigger.as_str());
        self.target.record(kind, "changed");
        self.applied = Some(fresh);
    }

    fn failed(&mut self, error: &TokenError) {
        self.failures = self.failures.saturating_add(1);
        self.target.record(self.source.kind(), "failed");
        let text = error.to_string();
        let noun = self.target.noun();
        // A file that stays missing is polled four times a second: warn when the error changes.
        if self.last_error.as_deref() != Some(text.as_str()) {
            warn!(
                token.source = self.source.kind(),
                reason = error.reason(),
                error = %error,
                "{} reload failed; keeping the last good {noun}",
                capitalised(noun)
            );
            self.last_error = Some(text);
        } else {
            debug!(
                token.source = self.source.kind(),
                reason = error.reason(),
                "{} reload failed again",
                capitalised(noun)
            );
        }
    }
}

fn capitalised(noun: &str) -> String {
    let mut chars = noun.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

impl Target for TokenStore {
    fn apply(&self, fresh: Credentials, source: &'static str, trigger: &'static str) {
        let changed = self.update(fresh);
        if let Some(stored) = self.credentials() {
            crate::metrics::PROCESS.token_expires(stored.expires);
            info!(
                token.source = source,
                trigger,
                token.current = %stored.current.fingerprint(),
                token.previous = stored.previous.as_ref().map(|p| p.fingerprint()).unwrap_or_default(),
                current_changed = changed,
                "Token updated"
            );
            warn_on_elasticache_rules(&stored);
        }
    }

    fn record(&self, source: &'static str, result: &'static str) {
        crate::metrics::PROCESS.token_reload(source, result);
    }

    fn requests(&self) -> Option<&Notify> {
        Some(&self.reload_request)
    }

    fn finished(&self) {
        self.reload_finished();
    }

    fn noun(&self) -> &'static str {
        "token"
    }
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
