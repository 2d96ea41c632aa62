//! The one type that ever holds a credential.
//!
//! A `Token` cannot be printed: `Debug` and `Display` are redacted, it is zeroised when dropped,
//! and the only way to the bytes is `expose`, which the AUTH encoder and the redactor call.

use secrecy::{ExposeSecret, SecretString};
use std::fmt;

/// A Redis password or AUTH token, redacted in every format and zeroised on drop.
#[derive(Clone)]
pub struct Token(SecretString);

impl Token {
    /// Wraps a token read from a source. The caller's `String` moves in and is zeroised with it.
    pub fn new(value: String) -> Self {
        Token(SecretString::from(value))
    }

    /// The raw token, for building an AUTH command and nothing else.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// A short, non-reversible tag that tells two tokens apart in logs (FNV-1a, 24 bits).
    pub fn fingerprint(&self) -> String {
        let mut hash: u32 = 0x811c_9dc5;
        for byte in self.expose().bytes() {
            hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
        }
        format!("{:06x}", hash & 0x00ff_ffff)
    }

    /// Why this token breaks ElastiCache's AUTH token rules (16–128 printable characters; the
    /// only non-alphanumerics allowed are `! & # $ ^ < > -`), without quoting it.
    pub fn elasticache_violation(&self) -> Option<String> {
        let token = self.expose();
        let length = token.chars().count();
        if !(16..=128).contains(&length) {
            return Some(format!("length {length} is outside 16-128"));
        }
        let odd = token
            .chars()
            .filter(|c| !c.is_ascii_alphanumeric() && !"!&#$^<>-".contains(*c))
            .count();
        (odd > 0)
            .then(|| format!("{odd} character(s) other than letters, digits and ! & # $ ^ < > -"))
    }

    /// Replaces every occurrence of this token in `text`, for server texts echoed to a client.
    pub fn redact_from(&self, text: &str) -> String {
        let secret = self.expose();
        if secret.is_empty() {
            return text.to_owned();
        }
        text.replace(secret, "<redacted>")
    }
}

impl PartialEq for Token {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for Token {}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token(<redacted {}>)", self.fingerprint())
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_token() {
        let token = Token::new("super-secret-token-123".into());
        assert!(!format!("{token:?}").contains("super-secret"));
        assert!(!format!("{token}").contains("super-secret"));
        assert!(!format!("{:#?}", Some(&token)).contains("super-secret"));
    }

    #[test]
    fn fingerprints_differ_between_tokens_and_are_stable() {
        let a = Token::new("token-a-0123456789".into());
        let b = Token::new("token-b-0123456789".into());
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint(), a.clone().fingerprint());
        assert_eq!(a.fingerprint().len(), 6);
    }

    #[test]
    fn elasticache_rules_are_checked_without_quoting_the_token() {
        assert_eq!(
            Token::new("Valid-Token-0123456789!&#$^<>".into()).elasticache_violation(),
            None
        );
        let short = Token::new("short".into()).elasticache_violation().unwrap();
        assert_eq!(short, "length 5 is outside 16-128");
        let odd = Token::new("has/slash@and%percent".into())
            .elasticache_violation()
            .unwrap();
        assert!(
            odd.starts_with("3 character(s)") && !odd.contains("slash"),
            "{odd}"
        );
    }

    #[test]
    fn redact_from_removes_every_occurrence() {
        let token = Token::new("hunter2hunter2hunter2".into());
        let text = "unknown command 'x' with args 'hunter2hunter2hunter2' 'hunter2hunter2hunter2'";
        assert!(!token.redact_from(text).contains("hunter2"));
    }
}
