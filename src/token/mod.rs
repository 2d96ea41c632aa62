//! The token store and the sources that fill it.
//!
//! The data path reads the store once per upstream connection and never sees a source. Sources
//! (`file`, `env`) only produce `Credentials`; the store keeps the current and previous token in
//! an `ArcSwap` and remembers which of the two the server last accepted, so that during an
//! ElastiCache ROTATE window new connections do not each pay for a rejected AUTH first.

mod aws;
mod azure;
mod env;
mod file;
mod google;
mod http;
pub mod iam;
mod oauth;
mod parse;
pub mod refresh;

pub use aws::SecretsManagerSource;
pub use azure::{EntraSettings, EntraSource};
pub use env::EnvSource;
pub use file::{FileSource, read_credentials};
pub use google::{GoogleSettings, GoogleSource};
pub use iam::{IamSettings, IamSource};
pub use parse::parse_credentials;
pub use refresh::Refresher;

use crate::secret::Token;
use arc_swap::ArcSwapOption;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// What a source yields: the token to try first, the one before it, and an optional ACL user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The ACL user from the source (a JSON `username` field); `--username` wins over it.
    pub username: Option<String>,
    /// The newest token.
    pub current: Token,
    /// The token before it, still valid during a ROTATE window.
    pub previous: Option<Token>,
    /// When the current token stops working (an IAM token); `None` for tokens that do not
    /// expire.
    pub expires: Option<std::time::SystemTime>,
}

/// Which of the two stored tokens a connection used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Current,
    Previous,
}

impl Slot {
    /// The bounded name used in logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Slot::Current => "current",
            Slot::Previous => "previous",
        }
    }
}

/// Why a source could not produce credentials. Messages name the source, never its contents.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read {source_name}: {error}")]
    Read {
        source_name: String,
        error: std::io::Error,
    },
    #[error("{source_name} is not set")]
    Unset { source_name: String },
    #[error("{source_name} holds no token (empty after trimming whitespace)")]
    Empty { source_name: String },
    #[error(
        "{source_name} holds more than two non-empty lines; expected the current token and optionally the previous one"
    )]
    TooManyLines { source_name: String },
    #[error("{source_name} is not a JSON object ({reason})")]
    Json { source_name: String, reason: String },
    #[error("{source_name} has no string field {key:?}")]
    MissingKey { source_name: String, key: String },
    #[error("{source_name}: {reason}")]
    Aws { source_name: String, reason: String },
    /// A cloud token endpoint (Entra ID, Google) gave no token.
    #[error("{source_name}: {reason}")]
    Cloud { source_name: String, reason: String },
    #[error("{source_name}: no answer within {after:?}")]
    Timeout {
        source_name: String,
        after: Duration,
    },
}

impl TokenError {
    /// A bounded label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Read { .. } => "read",
            TokenError::Unset { .. } => "unset",
            TokenError::Empty { .. } => "empty",
            TokenError::TooManyLines { .. }
            | TokenError::Json { .. }
            | TokenError::MissingKey { .. } => "format",
            TokenError::Aws { .. } => "aws",
            TokenError::Cloud { .. } => "cloud",
            TokenError::Timeout { .. } => "timeout",
        }
    }
}

/// Where tokens come from. The config names one; the store never knows which.
#[derive(Debug, Clone)]
pub enum TokenSource {
    File(FileSource),
    Env(EnvSource),
    SecretsManager(SecretsManagerSource),
    Iam(IamSource),
    Entra(EntraSource),
    Google(GoogleSource),
}

impl TokenSource {
    /// Reads the source once.
    pub async fn load(&self) -> Result<Credentials, TokenError> {
        match self {
            TokenSource::File(source) => source.load().await,
            TokenSource::Env(source) => source.load(),
            TokenSource::SecretsManager(source) => source.load().await,
            TokenSource::Iam(source) => source.load(false).await,
            TokenSource::Entra(source) => source.load(false).await,
            TokenSource::Google(source) => source.load(false).await,
        }
    }

    /// Reads the source after the server refused its tokens: an IAM source then fetches
    /// credentials anew instead of signing with those it holds.
    pub async fn load_fresh(&self) -> Result<Credentials, TokenError> {
        match self {
            TokenSource::Iam(source) => source.load(true).await,
            TokenSource::Entra(source) => source.load(true).await,
            TokenSource::Google(source) => source.load(true).await,
            other => other.load().await,
        }
    }

    /// When the source wants reading next, if it decides that itself (IAM: before the token
    /// or its credentials near their end); otherwise its `Polling` says.
    pub fn due_in(&self) -> Option<Duration> {
        match self {
            TokenSource::Iam(source) => source.due_in(),
            TokenSource::Entra(source) => source.due_in(),
            TokenSource::Google(source) => source.due_in(),
            _ => None,
        }
    }

    /// A bounded label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            TokenSource::File(_) => "file",
            TokenSource::Env(_) => "env",
            TokenSource::SecretsManager(_) => "secretsmanager",
            TokenSource::Iam(_) => "iam",
            TokenSource::Entra(_) => "entra",
            TokenSource::Google(_) => "google",
        }
    }

    /// How this kind of source is kept current.
    pub fn polling(&self, refresh_interval: std::time::Duration) -> refresh::Polling {
        match self {
            TokenSource::File(_) => refresh::Polling {
                every: Some(refresh::FILE_POLL),
                confirm_changes: true,
                remote: false,
            },
            TokenSource::Env(_) => refresh::Polling {
                every: None,
                confirm_changes: false,
                remote: false,
            },
            TokenSource::SecretsManager(_) => refresh::Polling {
                every: Some(refresh_interval),
                confirm_changes: false,
                remote: true,
            },
            // Scheduled by `due_in`; `every` bounds the backoff after failures.
            TokenSource::Iam(_) => refresh::Polling {
                every: Some(iam::RESIGN_EVERY / 5),
                confirm_changes: false,
                remote: true,
            },
            // Scheduled by each token's own expiry; `every` bounds the backoff.
            TokenSource::Entra(_) | TokenSource::Google(_) => refresh::Polling {
                every: Some(Duration::from_secs(30)),
                confirm_changes: false,
                remote: true,
            },
        }
    }

    /// Where the token comes from, for humans (a path or a variable name, never a value).
    pub fn describe(&self) -> String {
        match self {
            TokenSource::File(source) => source.describe(),
            TokenSource::Env(source) => source.describe(),
            TokenSource::SecretsManager(source) => source.describe(),
            TokenSource::Iam(source) => source.describe(),
            TokenSource::Entra(source) => source.describe(),
            TokenSource::Google(source) => source.describe(),
        }
    }
}

/// The current credentials, swapped atomically when a source changes.
#[derive(Debug)]
pub struct TokenStore {
    credentials: ArcSwapOption<Credentials>,
    /// The slot the server accepted last: 0 = current, 1 = previous.
    preferred: AtomicU8,
    /// Bumped whenever the current token changes.
    version: AtomicU64,
    /// Asks the refresher for an immediate reload.
    reload_request: Notify,
    /// Counts finished reload attempts, so a caller can wait for the next one.
    reloads: watch::Sender<u64>,
}

impl Default for TokenStore {
    fn default() -> Self {
        TokenStore {
            credentials: ArcSwapOption::empty(),
            preferred: AtomicU8::new(0),
            version: AtomicU64::new(0),
            reload_request: Notify::new(),
            reloads: watch::Sender::new(0),
        }
    }
}

impl TokenStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Increases whenever the current token changes.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Asks the refresher to reload now (SIGHUP), without waiting.
    pub fn request_reload(&self) {
        self.reload_request.notify_one();
    }

    /// Asks for a reload and waits for it (at most `wait`); true if the tokens changed. The
    /// refresher rate-limits these, so a burst of failing connections costs one reload.
    pub async fn reload_and_wait(&self, wait: Duration) -> bool {
        let before = self.version();
        let mut reloads = self.reloads.subscribe();
        reloads.borrow_and_update();
        self.request_reload();
        let _ = tokio::time::timeout(wait, reloads.changed()).await;
        self.version() != before
    }

    /// Called by the refresher after every reload attempt.
    pub(crate) fn reload_finished(&self) {
        self.reloads.send_modify(|n| *n += 1);
    }

    /// The credentials to use for one new connection, or `None` before the first load.
    pub fn credentials(&self) -> Option<Arc<Credentials>> {
        self.credentials.load_full()
    }

    /// Stores new credentials. When the current token changes and the source names no previous
    /// token, the old current one becomes the previous, so every source gets a ROTATE window.
    /// Returns whether the current token changed.
    pub fn update(&self, mut fresh: Credentials) -> bool {
        let old = self.credentials.load_full();
        let changed = old.as_ref().is_none_or(|old| old.current != fresh.current);
        if let Some(old) = old.as_ref().filter(|_| changed) {
            if fresh.previous.is_none() {
                fresh.previous = Some(old.current.clone());
            }
        } else if let Some(old) = old.as_ref()
            && fresh.previous.is_none()
        {
            fresh.previous = old.previous.clone();
        }
        let previous_changed = old
            .as_ref()
            .is_none_or(|old| old.previous != fresh.previous);
        if changed {
            self.preferred.store(0, Ordering::Relaxed);
        }
        self.credentials.store(Some(Arc::new(fresh)));
        if changed || previous_changed {
            self.version.fetch_add(1, Ordering::AcqRel);
        }
        changed
    }

    /// The slots to try, in order: the one that last worked first.
    pub fn attempt_order(&self, credentials: &Credentials) -> Vec<Slot> {
        let mut order = vec![Slot::Current];
        if credentials.previous.is_some() {
            if self.preferred.load(Ordering::Relaxed) == 1 {
                order.insert(0, Slot::Previous);
            } else {
                order.push(Slot::Previous);
            }
        }
        order
    }

    /// Remembers the slot the server accepted.
    pub fn record_success(&self, slot: Slot) {
        let value = match slot {
            Slot::Current => 0,
            Slot::Previous => 1,
        };
        self.preferred.store(value, Ordering::Relaxed);
    }
}

impl Credentials {
    /// The token in `slot`, if that slot is filled.
    pub fn token(&self, slot: Slot) -> Option<&Token> {
        match slot {
            Slot::Current => Some(&self.current),
            Slot::Previous => self.previous.as_ref(),
        }
    }

    /// Removes both tokens from a text the server produced.
    pub fn redact(&self, text: &str) -> String {
        let text = self.current.redact_from(text);
        match &self.previous {
            Some(previous) => previous.redact_from(&text),
            None => text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(current: &str, previous: Option<&str>) -> Credentials {
        Credentials {
            username: None,
            current: Token::new(current.into()),
            previous: previous.map(|p| Token::new(p.into())),
            expires: None,
        }
    }

    #[test]
    fn a_changed_current_token_keeps_the_old_one_as_previous() {
        let store = TokenStore::new();
        assert!(store.update(creds("token-one-aaaaaaaa", None)));
        assert!(store.update(creds("token-two-bbbbbbbb", None)));
        let now = store.credentials().unwrap();
        assert_eq!(now.current.expose(), "token-two-bbbbbbbb");
        assert_eq!(
            now.previous.as_ref().unwrap().expose(),
            "token-one-aaaaaaaa"
        );
    }

    #[test]
    fn a_source_that_names_a_previous_token_is_believed() {
        let store = TokenStore::new();
        store.update(creds("token-one-aaaaaaaa", None));
        store.update(creds("token-two-bbbbbbbb", Some("token-zero-cccccccc")));
        let now = store.credentials().unwrap();
        assert_eq!(
            now.previous.as_ref().unwrap().expose(),
            "token-zero-cccccccc"
        );
    }

    #[test]
    fn reloading_the_same_token_keeps_the_previous_one() {
        let store = TokenStore::new();
        store.update(creds("token-one-aaaaaaaa", None));
        store.update(creds("token-two-bbbbbbbb", None));
        assert!(!store.update(creds("token-two-bbbbbbbb", None)));
        let now = store.credentials().unwrap();
        assert_eq!(
            now.previous.as_ref().unwrap().expose(),
            "token-one-aaaaaaaa"
        );
    }

    #[test]
    fn the_slot_that_last_worked_is_tried_first_until_the_token_changes() {
        let store = TokenStore::new();
        store.update(creds("token-two-bbbbbbbb", Some("token-one-aaaaaaaa")));
        let now = store.credentials().unwrap();
        assert_eq!(
            store.attempt_order(&now),
            vec![Slot::Current, Slot::Previous]
        );
        store.record_success(Slot::Previous);
        assert_eq!(
            store.attempt_order(&now),
            vec![Slot::Previous, Slot::Current]
        );
        store.update(creds("token-three-cccccccc", None));
        let now = store.credentials().unwrap();
        assert_eq!(
            store.attempt_order(&now),
            vec![Slot::Current, Slot::Previous]
        );
    }
}
