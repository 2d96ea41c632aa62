//! Downstream access control: the password a client must send when `--client-password-file` is set.
//!
//! The file has the token file's format: the first non-empty line is the password, an optional
//! second line a previous one that is still accepted, so the application's password can rotate
//! the way the server's does. It is polled like a token file and a change must read the same
//! twice; unlike the token store, a password removed from the file stops working at once.
//!
//! Clients authenticate as Redis clients do with `requirepass`: `AUTH <password>`,
//! `AUTH default <password>` or `HELLO <proto> AUTH default <password>`.

use crate::resp::request::ClientCredentials;
use crate::token::{Credentials, TokenError, read_credentials, refresh::FILE_POLL};
use arc_swap::ArcSwap;
use secrecy::ExposeSecret;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// What a client sees before it has authenticated, as Redis words it.
pub const NOAUTH: &[u8] = b"-NOAUTH Authentication required.\r\n";
/// A wrong password or user, as Redis words it.
pub const WRONGPASS: &[u8] = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n";
/// HELLO without AUTH before authenticating, as Redis 7.2 and Valkey word it.
pub const NOAUTH_HELLO: &[u8] = b"-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time\r\n";

/// The passwords clients may use, kept current from their file.
pub struct ClientPasswords {
    path: PathBuf,
    accepted: ArcSwap<Credentials>,
}

impl std::fmt::Debug for ClientPasswords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientPasswords")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl ClientPasswords {
    /// Reads the file once; a missing, empty or malformed file is an error.
    pub async fn load(path: &Path) -> Result<Self, TokenError> {
        let accepted = read(path).await?;
        Ok(ClientPasswords {
            path: path.to_owned(),
            accepted: ArcSwap::from_pointee(accepted),
        })
    }

    /// Passwords that never change, for in-memory tests.
    #[cfg(test)]
    pub(crate) fn fixed(password: &str) -> Self {
        ClientPasswords {
            path: PathBuf::from("(fixed)"),
            accepted: ArcSwap::from_pointee(Credentials {
                username: None,
                current: crate::secret::Token::new(password.to_owned()),
                previous: None,
            }),
        }
    }

    /// Whether `sent` names the default user (or no user) and an accepted password. Both
    /// passwords are always compared, each in constant time.
    pub fn check(&self, sent: &ClientCredentials) -> bool {
        let accepted = self.accepted.load();
        let password = sent.password.expose_secret();
        let current = same(password, accepted.current.expose().as_bytes());
        let previous = accepted
            .previous
            .as_ref()
            .is_some_and(|p| same(password, p.expose().as_bytes()));
        let user_ok = sent.username.as_deref().is_none_or(|u| u == b"default");
        user_ok & (current | previous)
    }

    /// Re-reads the file every `FILE_POLL` until `stop`; keeps the last good passwords when it
    /// cannot be read.
    pub async fn keep_current(self: Arc<Self>, stop: CancellationToken) {
        let mut pending: Option<Credentials> = None;
        let mut last_error: Option<String> = None;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(FILE_POLL) => {}
            }
            let fresh = match read(&self.path).await {
                Ok(fresh) => fresh,
                Err(error) => {
                    let text = error.to_string();
                    if last_error.as_ref() != Some(&text) {
                        warn!(error = %text, "Cannot re-read the client password file; keeping the last good passwords");
                        last_error = Some(text);
                    }
                    continue;
                }
            };
            last_error = None;
            if **self.accepted.load() == fresh {
                pending = None;
            } else if pending.as_ref() == Some(&fresh) {
                self.accepted.store(Arc::new(fresh));
                pending = None;
                info!(path = %self.path.display(), "Client passwords updated");
            } else {
                pending = Some(fresh);
            }
        }
    }
}

async fn read(path: &Path) -> Result<Credentials, TokenError> {
    let name = format!("client password file {}", path.display());
    read_credentials(path, None, &name).await
}

/// Compares in time that depends only on the lengths.
fn same(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparison_needs_equal_bytes_and_lengths() {
        assert!(same(b"secret", b"secret"));
        assert!(!same(b"secret", b"secreT"));
        assert!(!same(b"secret", b"secret\0"));
        assert!(!same(b"", b"x"));
    }
}
