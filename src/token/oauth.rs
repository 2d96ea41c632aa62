//! What the cloud token sources share: an OAuth2 access token as an endpoint hands it out, the
//! claims the proxy reads from a JWT (Entra ID's `oid`), and when to fetch the next one.

use super::TokenError;
use crate::secret::Token;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use std::time::{Duration, SystemTime};

/// The shortest wait between two fetches, and before a retry.
const MIN_WAIT: Duration = Duration::from_secs(1);

/// An access token and its life, as one answer gave them.
#[derive(Debug, Clone)]
pub(super) struct Issued {
    pub(super) token: Token,
    pub(super) fetched_at: SystemTime,
    pub(super) expires: SystemTime,
}

impl Issued {
    /// Reads `{"access_token": ..., "expires_in": N}` (or `expires_on`, epoch seconds, as
    /// Azure's managed identity endpoints answer; either may be a string).
    pub(super) fn parse(
        body: &[u8],
        now: SystemTime,
        source_name: &str,
    ) -> Result<Issued, TokenError> {
        let format = |reason: &str| TokenError::Json {
            source_name: source_name.to_owned(),
            reason: reason.to_owned(),
        };
        let mut value: Value =
            serde_json::from_slice(body).map_err(|_| format("the answer is not JSON"))?;
        let token = match value.get_mut("access_token").map(Value::take) {
            Some(Value::String(token)) if !token.is_empty() => Token::new(token),
            _ => return Err(format("the answer has no access_token")),
        };
        let seconds = |name: &str| match value.get(name)? {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        let expires = match (seconds("expires_in"), seconds("expires_on")) {
            (Some(after), _) => now + Duration::from_secs(after),
            (None, Some(epoch)) => SystemTime::UNIX_EPOCH + Duration::from_secs(epoch),
            (None, None) => return Err(format("the answer has no expires_in or expires_on")),
        };
        if expires <= now {
            return Err(format("the answer's token has already expired"));
        }
        Ok(Issued {
            token,
            fetched_at: now,
            expires,
        })
    }

    /// When to fetch the next token: with a third of this one's life left, so that every
    /// connection it authenticated has time to renew with the next (Entra ID closes it at
    /// expiry), and a metadata server's token handed out with minutes left is replaced in time.
    pub(super) fn due_in(&self, now: SystemTime) -> Duration {
        let life = self
            .expires
            .duration_since(self.fetched_at)
            .unwrap_or_default();
        let at = self.fetched_at + life * 2 / 3;
        at.duration_since(now).unwrap_or_default().max(MIN_WAIT)
    }

    /// Whether the token held is still the one to hand out at `now`.
    pub(super) fn fresh(&self, now: SystemTime) -> bool {
        self.due_in(now) > MIN_WAIT
    }
}

/// The token a cloud source holds between loads, shared by its clones.
#[derive(Debug, Default, Clone)]
pub(super) struct Held(std::sync::Arc<std::sync::Mutex<Option<Issued>>>);

impl Held {
    /// The token held while it is fresh, else the one `fetch` gets (`fresh`: the server
    /// refused the one held). The lock is not held across the fetch.
    pub(super) async fn get<F>(&self, fresh: bool, fetch: F) -> Result<Issued, TokenError>
    where
        F: std::future::Future<Output = Result<Issued, TokenError>>,
    {
        let now = SystemTime::now();
        let held = self.0.lock().expect("held token").clone();
        match held {
            Some(issued) if !fresh && issued.fresh(now) => Ok(issued),
            _ => {
                let issued = fetch.await?;
                *self.0.lock().expect("held token") = Some(issued.clone());
                Ok(issued)
            }
        }
    }

    /// When the refresher should load next; `None` before the first load.
    pub(super) fn due_in(&self) -> Option<Duration> {
        let held = self.0.lock().expect("held token");
        held.as_ref().map(|issued| issued.due_in(SystemTime::now()))
    }
}

/// An environment variable the clouds' SDKs read, unset when empty.
pub(super) fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The string claim `name` of a JWT's payload, read without checking the signature: the
/// proxy only learns from it who it is (the server checks the token).
pub(super) fn jwt_claim(token: &Token, name: &str) -> Option<String> {
    let payload = token.expose().split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims.get(name)?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: SystemTime = SystemTime::UNIX_EPOCH;

    #[test]
    fn an_answer_gives_its_token_and_expiry_from_expires_in_or_expires_on() {
        let now = T0 + Duration::from_secs(1000);
        let a = Issued::parse(br#"{"access_token":"abc","expires_in":3599}"#, now, "x").unwrap();
        assert_eq!(a.expires, now + Duration::from_secs(3599));
        let b = Issued::parse(
            br#"{"access_token":"abc","expires_on":"4600","resource":"r"}"#,
            now,
            "x",
        )
        .unwrap();
        assert_eq!(b.expires, T0 + Duration::from_secs(4600));
    }

    #[test]
    fn an_answer_without_a_live_token_is_an_error_that_quotes_nothing() {
        let now = T0 + Duration::from_secs(1000);
        for body in [
            &br#"{"access_token":"secret-1","expires_on":"10"}"#[..],
            br#"{"expires_in":10}"#,
            br#"{"access_token":"secret-2"}"#,
            b"secret-3",
        ] {
            let error = Issued::parse(body, now, "Entra ID")
                .err()
                .unwrap()
                .to_string();
            assert!(!error.contains("secret"), "{error}");
        }
    }

    #[test]
    fn the_next_token_is_fetched_with_a_third_of_the_life_left() {
        let issued = Issued {
            token: Token::new("t".into()),
            fetched_at: T0,
            expires: T0 + Duration::from_secs(3600),
        };
        assert_eq!(issued.due_in(T0), Duration::from_secs(2400));
        assert!(issued.fresh(T0 + Duration::from_secs(2000)));
        assert!(!issued.fresh(T0 + Duration::from_secs(2400)));
        assert_eq!(issued.due_in(T0 + Duration::from_secs(3000)), MIN_WAIT);
    }

    #[test]
    fn the_object_id_is_read_from_the_token_payload() {
        let payload =
            URL_SAFE_NO_PAD.encode(br#"{"oid":"0f1e-22","aud":"https://redis.azure.com"}"#);
        let token = Token::new(format!("eyJhbGciOiJSUzI1NiJ9.{payload}.c2ln"));
        assert_eq!(jwt_claim(&token, "oid").as_deref(), Some("0f1e-22"));
        assert_eq!(jwt_claim(&Token::new("opaque".into()), "oid"), None);
    }
}
