//! The IAM token itself: a SigV4 query-presigned `GET http://{cache}/?Action=connect&User=…`
//! with the scheme removed, as ElastiCache and MemoryDB check it. Pure: the credentials and the
//! time are given, so the signature is testable against known vectors.

use crate::secret::Token;
use aws_credential_types::Credentials as AwsCredentials;
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use std::time::{Duration, SystemTime};

/// How long a token is good for: ElastiCache and MemoryDB refuse older ones.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(900);

/// The service that checks the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    ElastiCache,
    MemoryDb,
}

impl Service {
    /// The SigV4 signing name.
    pub fn signing_name(self) -> &'static str {
        match self {
            Service::ElastiCache => "elasticache",
            Service::MemoryDb => "memorydb",
        }
    }
}

/// What a token is for: a user of one cache, in one region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub service: Service,
    /// Replication group id, Serverless cache name or MemoryDB cluster name; lowercased, as
    /// the service stores it.
    pub cache_name: String,
    /// The IAM-enabled user's id (equal to its name); lowercased likewise.
    pub user_id: String,
    pub serverless: bool,
    pub region: String,
}

/// Why a token could not be signed (never with a secret in it).
#[derive(Debug, thiserror::Error)]
#[error("cannot sign an IAM token: {0}")]
pub struct SignError(String);

impl TokenRequest {
    pub fn new(
        service: Service,
        cache_name: &str,
        user_id: &str,
        serverless: bool,
        region: &str,
    ) -> Self {
        TokenRequest {
            service,
            cache_name: cache_name.to_ascii_lowercase(),
            user_id: user_id.to_ascii_lowercase(),
            serverless,
            region: region.to_owned(),
        }
    }

    /// The unsigned URL; the signature covers its host and query, not its scheme.
    fn url(&self) -> String {
        let mut url = format!(
            "http://{}/?Action=connect&User={}",
            self.cache_name,
            encode(&self.user_id)
        );
        if self.serverless {
            url.push_str("&ResourceType=ServerlessCache");
        }
        url
    }

    /// Signs the token at `time` with `credentials`; a session token is part of what is signed.
    pub fn sign(&self, credentials: &AwsCredentials, time: SystemTime) -> Result<Token, SignError> {
        let identity: Identity = credentials.clone().into();
        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(TOKEN_LIFETIME);
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(self.service.signing_name())
            .time(time)
            .settings(settings)
            .build()
            .map_err(|e| SignError(e.to_string()))?
            .into();
        let url = self.url();
        // The payload hash is that of the empty body, not UNSIGNED-PAYLOAD: the service checks
        // it so.
        let signable =
            SignableRequest::new("GET", &url, std::iter::empty(), SignableBody::Bytes(b""))
                .map_err(|e| SignError(e.to_string()))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| SignError(e.to_string()))?
            .into_parts();
        let mut request = http::Request::get(&url)
            .body(())
            .map_err(|e| SignError(e.to_string()))?;
        instructions.apply_to_request_http1x(&mut request);
        let signed = request.uri().to_string();
        let token = signed.strip_prefix("http://").unwrap_or(&signed);
        Ok(Token::new(token.to_owned()))
    }
}

/// Percent-encodes all but RFC 3986's unreserved characters, as SigV4 does.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339_seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(rfc3339_seconds)
    }

    /// 2024-08-02T12:11:50Z.
    const VECTOR_TIME: u64 = 1_722_600_710;

    fn param<'a>(token: &'a str, name: &str) -> Option<&'a str> {
        let query = token.split_once('?')?.1;
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
    }

    #[test]
    fn the_known_serverless_vector_gives_its_signature() {
        let credentials = AwsCredentials::new("accessKey", "secretKey", None, None, "test");
        let request = TokenRequest::new(
            Service::ElastiCache,
            "my-cache",
            "user123",
            true,
            "eu-west-1",
        );
        let token = request.sign(&credentials, at(VECTOR_TIME)).unwrap();
        let token = token.expose();
        assert!(
            token.starts_with("my-cache/?Action=connect&User=user123"),
            "{token}"
        );
        assert_eq!(param(token, "ResourceType"), Some("ServerlessCache"));
        assert_eq!(param(token, "X-Amz-Expires"), Some("900"));
        assert_eq!(param(token, "X-Amz-SignedHeaders"), Some("host"));
        assert_eq!(param(token, "X-Amz-Date"), Some("20240802T121150Z"));
        assert_eq!(
            param(token, "X-Amz-Credential"),
            Some("accessKey%2F20240802%2Feu-west-1%2Felasticache%2Faws4_request")
        );
        assert_eq!(
            param(token, "X-Amz-Signature"),
            Some("5dda5db919b1337db6596b2a608924bc10197fb39289b933b60bdb114d5a70dc")
        );
    }

    #[test]
    fn a_session_token_is_signed_into_the_query() {
        let plain = AwsCredentials::new("AKIDEXAMPLE", "secret", None, None, "test");
        let session = AwsCredentials::new(
            "AKIDEXAMPLE",
            "secret",
            Some("session/+=".into()),
            None,
            "test",
        );
        let request = TokenRequest::new(
            Service::MemoryDb,
            "My-Cluster",
            "App-User",
            false,
            "us-east-1",
        );
        let without = request.sign(&plain, at(VECTOR_TIME)).unwrap();
        let with = request.sign(&session, at(VECTOR_TIME)).unwrap();
        assert!(
            with.expose()
                .starts_with("my-cluster/?Action=connect&User=app-user&X-Amz")
        );
        assert_eq!(
            param(with.expose(), "X-Amz-Security-Token"),
            Some("session%2F%2B%3D")
        );
        assert_eq!(param(without.expose(), "X-Amz-Security-Token"), None);
        assert_ne!(
            param(with.expose(), "X-Amz-Signature"),
            param(without.expose(), "X-Amz-Signature")
        );
        assert!(
            param(with.expose(), "X-Amz-Credential")
                .unwrap()
                .contains("memorydb")
        );
    }

    #[test]
    fn a_user_id_outside_the_unreserved_characters_is_percent_encoded() {
        assert_eq!(encode("a b/c~d"), "a%20b%2Fc~d");
    }
}
