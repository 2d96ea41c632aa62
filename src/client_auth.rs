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
use crate::token::refresh::{FILE_POLL, Refresher, Target};
use crate::token::{Credentials, FileSource, TokenError, TokenSource};
use arc_swap::ArcSwap;
use secrecy::ExposeSecret;
use std::path::Path;
use std::sync::Arc;
use tracing::info;

/// What a client sees before it has authenticated, as Redis words it.
pub const NOAUTH: &[u8] = b"-NOAUTH Authentication required.\r\n";
/// A wrong password or user, as Redis words it.
pub const WRONGPASS: &[u8] = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n";
/// HELLO without AUTH before authenticating, as Redis 7.2 and Valkey word it.
pub const NOAUTH_HELLO: &[u8] = b"-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time\r\n";

/// The passwords clients may use, kept current from their file by a `Refresher`.
pub struct ClientPasswords {
    accepted: ArcSwap<Credentials>,
}

impl std::fmt::Debug for ClientPasswords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientPasswords").finish_non_exhaustive()
    }
}

impl ClientPasswords {
    /// Reads the file once (a missing, empty or malformed file is an error) and returns the
    /// refresher that keeps the passwords current.
    pub async fn load(path: &Path) -> Result<(Arc<Self>, Refresher), TokenError> {
        let source = TokenSource::File(FileSource {
            path: path.to_owned(),
            json_key: None,
            what: "client password file",
        });
        let accepted = source.load().await?;
        let passwords = Arc::new(ClientPasswords {
            accepted: ArcSwap::from_pointee(accepted.clone()),
        });
        let polling = source.polling(FILE_POLL);
        let refresher = Refresher::new(Arc::clone(&passwords) as _, source, polling, accepted);
        Ok((passwords, refresher))
    }

    /// Passwords that never change, for in-memory tests.
    #[cfg(test)]
    pub(crate) fn fixed(password: &str) -> Self {
        ClientPasswords {
            accepted: ArcSwap::from_pointee(Credentials {
                username: None,
                current: crate::secret::Token::new(password.to_owned()),
                previous: None,
                expires: None,
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
}

/// Unlike the token store, which keeps a replaced token as the previous one, the file's
/// passwords replace the accepted ones whole: a password removed stops working at once.
impl Target for ClientPasswords {
    fn apply(&self, fresh: Credentials, _source: &'static str, _trigger: &'static str) {
        self.accepted.store(Arc::new(fresh));
        info!("Client passwords updated");
    }

    fn record(&self, _source: &'static str, _result: &'static str) {}

    fn noun(&self) -> &'static str {
        "client password"
    }
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
