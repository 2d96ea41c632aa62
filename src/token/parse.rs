//! The token text formats: plain lines (current, then previous) or a JSON object.

use super::{Credentials, TokenError};
use crate::secret::Token;

/// Parses what a source holds. `json_key` selects the JSON form; otherwise the first non-empty
/// line is the current token and an optional second one the previous token.
pub fn parse_credentials(
    text: String,
    json_key: Option<&str>,
    source_name: &str,
) -> Result<Credentials, TokenError> {
    let text = secrecy::SecretString::from(text);
    let text = secrecy::ExposeSecret::expose_secret(&text);
    match json_key {
        Some(key) => parse_json(text, key, source_name),
        None => parse_lines(text, source_name),
    }
}

fn parse_lines(text: &str, source_name: &str) -> Result<Credentials, TokenError> {
    let mut lines = text.lines().map(str::trim).filter(|line| !line.is_empty());
    let current = lines.next().ok_or_else(|| TokenError::Empty {
        source_name: source_name.to_owned(),
    })?;
    let previous = lines.next();
    if lines.next().is_some() {
        return Err(TokenError::TooManyLines {
            source_name: source_name.to_owned(),
        });
    }
    Ok(Credentials {
        username: None,
        current: Token::new(current.to_owned()),
        previous: previous.map(|p| Token::new(p.to_owned())),
        expires: None,
    })
}

fn parse_json(text: &str, key: &str, source_name: &str) -> Result<Credentials, TokenError> {
    // serde_json's messages can quote the offending value, so only its category and position
    // are reported.
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| TokenError::Json {
        source_name: source_name.to_owned(),
        reason: format!(
            "{:?} error at line {} column {}",
            e.classify(),
            e.line(),
            e.column()
        ),
    })?;
    let object = value.as_object().ok_or_else(|| TokenError::Json {
        source_name: source_name.to_owned(),
        reason: "top-level value is not an object".into(),
    })?;
    let token = object
        .get(key)
        .and_then(|v| v.as_str())
        .map(str::trim)
        .ok_or_else(|| TokenError::MissingKey {
            source_name: source_name.to_owned(),
            key: key.to_owned(),
        })?;
    if token.is_empty() {
        return Err(TokenError::Empty {
            source_name: source_name.to_owned(),
        });
    }
    let username = object
        .get("username")
        .and_then(|v| v.as_str())
        .filter(|u| !u.is_empty())
        .map(str::to_owned);
    Ok(Credentials {
        username,
        current: Token::new(token.to_owned()),
        previous: None,
        expires: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_give_current_then_previous_with_whitespace_and_crlf_stripped() {
        let c = parse_credentials(
            "\r\n  new-token-1234567 \r\nold-token-1234567\r\n\n".into(),
            None,
            "t",
        )
        .unwrap();
        assert_eq!(c.current.expose(), "new-token-1234567");
        assert_eq!(c.previous.unwrap().expose(), "old-token-1234567");
    }

    #[test]
    fn an_empty_text_is_an_error_that_names_the_source() {
        let err = parse_credentials(" \n\t\n".into(), None, "file /x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "file /x holds no token (empty after trimming whitespace)"
        );
    }

    #[test]
    fn three_lines_are_refused() {
        assert!(matches!(
            parse_credentials("a\nb\nc".into(), None, "t"),
            Err(TokenError::TooManyLines { .. })
        ));
    }

    #[test]
    fn json_gives_the_keyed_field_and_the_username() {
        let c = parse_credentials(
            r#"{"username":"app","password":"pw-0123456789abcdef"}"#.into(),
            Some("password"),
            "t",
        )
        .unwrap();
        assert_eq!(c.current.expose(), "pw-0123456789abcdef");
        assert_eq!(c.username.as_deref(), Some("app"));
    }

    #[test]
    fn json_errors_never_quote_the_value() {
        let err = parse_credentials(
            r#"{"password": 12345678901234}"#.into(),
            Some("password"),
            "t",
        )
        .unwrap_err();
        assert!(!err.to_string().contains("12345678901234"));
        let err = parse_credentials(
            r#"{"password": "sekrit-value"#.into(),
            Some("password"),
            "t",
        )
        .unwrap_err();
        assert!(!err.to_string().contains("sekrit"), "{err}");
    }
}
