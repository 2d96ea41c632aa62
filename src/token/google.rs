//! Google Cloud IAM access tokens for Memorystore for Redis Cluster and Memorystore for Valkey
//! (`--google-iam`): `AUTH <token>` (or `AUTH <--username> <token>`; Memorystore accepts only
//! `default`), an OAuth2 access token with the `cloud-platform` scope.
//!
//! The credential is a service-account key file when `GOOGLE_APPLICATION_CREDENTIALS` names
//! one (an RS256 assertion posted to the key's `token_uri`), else the metadata server
//! (`GCE_METADATA_HOST` overrides its address, as Google's libraries allow). Memorystore keeps
//! a connection after its token expires, so only new connections need a fresh token; each
//! token is replaced with a third of its own life left (a metadata server may hand one out
//! with five minutes to go).

use super::oauth::{Held, Issued, env};
use super::{Credentials, TokenError, http};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls_pki_types::{PrivatePkcs8KeyDer, pem::PemObject};
use secrecy::zeroize::Zeroizing;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const METADATA_HOST: &str = "metadata.google.internal";
/// How long the assertion asks for; Google's maximum for this grant.
const ASSERTION_LIFETIME: Duration = Duration::from_secs(3600);

/// `--google-scope`, `--username`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoogleSettings {
    pub scope: String,
    pub username: Option<String>,
}

/// Fetches Google access tokens, holding the last one while it is fresh.
#[derive(Debug, Clone)]
pub struct GoogleSource {
    settings: GoogleSettings,
    held: Held,
}

/// The fields of a service-account key file the grant needs; the key is zeroised.
#[derive(serde::Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: String,
    client_email: String,
    private_key: String,
    private_key_id: Option<String>,
    token_uri: Option<String>,
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        secrecy::zeroize::Zeroize::zeroize(&mut self.private_key);
    }
}

impl GoogleSource {
    pub fn new(settings: GoogleSettings) -> Self {
        GoogleSource {
            settings,
            held: Held::default(),
        }
    }

    pub fn describe(&self) -> String {
        match env("GOOGLE_APPLICATION_CREDENTIALS") {
            Some(path) => format!("Google IAM (service-account key {path})"),
            None => "Google IAM (metadata server)".into(),
        }
    }

    /// The token held while it is fresh, else a new one (`fresh`: the server refused it).
    pub async fn load(&self, fresh: bool) -> Result<Credentials, TokenError> {
        let issued = self.held.get(fresh, self.fetch(SystemTime::now())).await?;
        Ok(Credentials {
            username: self.settings.username.clone(),
            current: issued.token,
            previous: None,
            expires: Some(issued.expires),
        })
    }

    pub fn due_in(&self) -> Option<Duration> {
        self.held.due_in()
    }

    async fn fetch(&self, now: SystemTime) -> Result<Issued, TokenError> {
        let answer = match env("GOOGLE_APPLICATION_CREDENTIALS") {
            Some(path) => self.key_grant(&path, now).await?,
            None => self.metadata().await?,
        };
        Issued::parse(&answer, now, "the Google token answer")
    }

    async fn metadata(&self) -> Result<Zeroizing<Vec<u8>>, TokenError> {
        let host = env("GCE_METADATA_HOST").unwrap_or_else(|| METADATA_HOST.into());
        let url = format!(
            "http://{host}/computeMetadata/v1/instance/service-accounts/default/token?scopes={}",
            http::form_encode(&self.settings.scope)
        );
        self.send(http::Request {
            url: &url,
            headers: &[("Metadata-Flavor", "Google")],
            form: None,
        })
        .await
    }

    /// The JWT-bearer grant with a service-account key (RFC 7523).
    async fn key_grant(
        &self,
        path: &str,
        now: SystemTime,
    ) -> Result<Zeroizing<Vec<u8>>, TokenError> {
        let text =
            Zeroizing::new(
                tokio::fs::read(path)
                    .await
                    .map_err(|error| TokenError::Read {
                        source_name: format!("GOOGLE_APPLICATION_CREDENTIALS {path}"),
                        error,
                    })?,
            );
        let key: KeyFile = serde_json::from_slice(&text).map_err(|e| TokenError::Json {
            source_name: format!("GOOGLE_APPLICATION_CREDENTIALS {path}"),
            reason: format!("not a service-account key file ({:?} error)", e.classify()),
        })?;
        if key.kind != "service_account" {
            return Err(self.error(format!(
                "GOOGLE_APPLICATION_CREDENTIALS {path} is a {:?} file; only service_account keys are supported",
                key.kind
            )));
        }
        let token_uri = key
            .token_uri
            .clone()
            .unwrap_or_else(|| "https://oauth2.googleapis.com/token".into());
        let assertion = self.assertion(&key, &token_uri, now)?;
        let form = Zeroizing::new(format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={}",
            assertion.as_str()
        ));
        self.send(http::Request {
            url: &token_uri,
            headers: &[],
            form: Some(form),
        })
        .await
    }

    /// The signed assertion: `header.claims.signature`, RS256 with the key's private half.
    fn assertion(
        &self,
        key: &KeyFile,
        audience: &str,
        now: SystemTime,
    ) -> Result<Zeroizing<String>, TokenError> {
        let iat = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": key.private_key_id});
        let claims = serde_json::json!({
            "iss": key.client_email,
            "scope": self.settings.scope,
            "aud": audience,
            "iat": iat,
            "exp": iat + ASSERTION_LIFETIME.as_secs(),
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = sign_rs256(key.private_key.as_bytes(), signing_input.as_bytes())
            .map_err(|reason| self.error(format!("the key file's private_key: {reason}")))?;
        Ok(Zeroizing::new(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        )))
    }

    async fn send(&self, request: http::Request<'_>) -> Result<Zeroizing<Vec<u8>>, TokenError> {
        http::fetch(request)
            .await
            .map_err(|reason| self.error(reason))
    }

    fn error(&self, reason: String) -> TokenError {
        TokenError::Cloud {
            source_name: "Google IAM".into(),
            reason,
        }
    }
}

/// RSASSA-PKCS1-v1_5 with SHA-256 over `message`, with a PKCS#8 PEM private key.
fn sign_rs256(pem: &[u8], message: &[u8]) -> Result<Vec<u8>, &'static str> {
    let der = PrivatePkcs8KeyDer::from_pem_slice(pem).map_err(|_| "not a PKCS#8 PEM key")?;
    let key = ring::signature::RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
        .map_err(|_| "not an RSA key ring accepts")?;
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        message,
        &mut signature,
    )
    .map_err(|_| "signing failed")?;
    Ok(signature)
}
