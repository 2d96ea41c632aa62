//! The Entra ID stand-in: a TLS token endpoint (`AZURE_AUTHORITY_HOST`) for the
//! workload-identity and client-secret grants, an App Service managed identity endpoint
//! (`IDENTITY_ENDPOINT`) and an IMDS one (`AZURE_POD_IDENTITY_AUTHORITY_HOST`), issuing HS256
//! JWTs with an `oid` that live `life`; and the check an Azure Redis front makes of each
//! `AUTH <oid> <token>`.

use super::http::{self, Request};
use super::{Check, word};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit, Mac};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const TENANT: &str = "72f988bf-0000-4000-8000-2d7cd011db47";
pub const CLIENT_ID: &str = "04b07795-0000-4000-8000-0f0e0d0c0b0a";
pub const SCOPE: &str = "https://redis.azure.com/.default";

#[derive(Default)]
pub struct EntraLedger {
    pub assertion_grants: AtomicU64,
    pub secret_grants: AtomicU64,
    pub app_service_grants: AtomicU64,
    pub imds_grants: AtomicU64,
    pub refused: AtomicU64,
    /// Every token handed out, to look for in logs and metrics.
    pub issued: Mutex<Vec<String>>,
}

pub struct EntraStandIn {
    pub oid: String,
    pub client_secret: String,
    pub identity_header: String,
    pub federated_token_file: tempfile::NamedTempFile,
    pub authority: String,
    pub managed_identity: String,
    pub ledger: Arc<EntraLedger>,
    key: Arc<Vec<u8>>,
    _runtime: tokio::runtime::Runtime,
}

impl EntraStandIn {
    pub fn start(life: Duration) -> Self {
        let runtime = super::runtime(1);
        let key = Arc::new(word(32).into_bytes());
        let oid = format!("{}-oid", word(12));
        let mut federated_token_file = tempfile::NamedTempFile::new().unwrap();
        write!(federated_token_file, "federated-{}", word(40)).unwrap();
        let state = Arc::new(State {
            oid: oid.clone(),
            client_secret: format!("secret~{}", word(30)),
            identity_header: word(24),
            federated: federated_token_file.path().to_owned(),
            key: Arc::clone(&key),
            life,
            ledger: Arc::default(),
        });
        let (tls, plain) = (super::bind(&runtime), super::bind(&runtime));
        let authority = format!("https://localhost:{}", tls.local_addr().unwrap().port());
        let managed_identity = format!("http://127.0.0.1:{}", plain.local_addr().unwrap().port());
        let handler = {
            let state = Arc::clone(&state);
            Arc::new(move |request: &Request| state.answer(request))
        };
        runtime.spawn(http::serve(
            tls,
            Some(super::super::tls_acceptor()),
            handler.clone(),
        ));
        runtime.spawn(http::serve(plain, None, handler));
        EntraStandIn {
            oid,
            client_secret: state.client_secret.clone(),
            identity_header: state.identity_header.clone(),
            federated_token_file,
            authority,
            managed_identity,
            ledger: Arc::clone(&state.ledger),
            key,
            _runtime: runtime,
        }
    }

    /// What Azure's Redis checks of `AUTH <oid> <token>`: the signature, the expiry and the
    /// `oid` equal to the user name.
    pub fn check(&self) -> Arc<Check> {
        let (key, oid) = (Arc::clone(&self.key), self.oid.clone());
        Arc::new(move |words: &[String]| {
            let [user, token] = words else { return None };
            let (claims, expires) = verify(&key, token)?;
            (user == &oid && claims["oid"] == oid.as_str()).then_some(expires)
        })
    }

    /// Workload identity, as the AKS webhook sets it.
    pub fn workload_identity_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AZURE_AUTHORITY_HOST", self.authority.clone()),
            ("AZURE_TENANT_ID", TENANT.into()),
            ("AZURE_CLIENT_ID", CLIENT_ID.into()),
            (
                "AZURE_FEDERATED_TOKEN_FILE",
                self.federated_token_file.path().display().to_string(),
            ),
            (
                "SSL_CERT_FILE",
                super::super::certs().ca.display().to_string(),
            ),
        ]
    }

    pub fn client_secret_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AZURE_AUTHORITY_HOST", self.authority.clone()),
            ("AZURE_TENANT_ID", TENANT.into()),
            ("AZURE_CLIENT_ID", CLIENT_ID.into()),
            ("AZURE_CLIENT_SECRET", self.client_secret.clone()),
            (
                "SSL_CERT_FILE",
                super::super::certs().ca.display().to_string(),
            ),
        ]
    }

    pub fn app_service_env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "IDENTITY_ENDPOINT",
                format!("{}/msi/token", self.managed_identity),
            ),
            ("IDENTITY_HEADER", self.identity_header.clone()),
        ]
    }

    pub fn imds_env(&self) -> Vec<(&'static str, String)> {
        vec![(
            "AZURE_POD_IDENTITY_AUTHORITY_HOST",
            self.managed_identity.clone(),
        )]
    }

    /// Every secret the stand-in knows: the client secret, the federated token, the tokens.
    pub fn secrets(&self) -> Vec<String> {
        let mut secrets = self.ledger.issued.lock().unwrap().clone();
        secrets.push(self.client_secret.clone());
        secrets.push(std::fs::read_to_string(self.federated_token_file.path()).unwrap());
        secrets.push(self.identity_header.clone());
        secrets
    }
}

struct State {
    oid: String,
    client_secret: String,
    identity_header: String,
    federated: std::path::PathBuf,
    key: Arc<Vec<u8>>,
    life: Duration,
    ledger: Arc<EntraLedger>,
}

impl State {
    fn answer(&self, request: &Request) -> (u16, String) {
        let ledger = &self.ledger;
        let refuse = || {
            ledger.refused.fetch_add(1, Ordering::SeqCst);
            (
                401,
                r#"{"error":"invalid_client","error_description":"AADSTS7000215: the stand-in refused the credential"}"#.to_owned(),
            )
        };
        let resource = SCOPE.trim_end_matches("/.default");
        match (request.method.as_str(), request.path()) {
            ("POST", path) if path == format!("/{TENANT}/oauth2/v2.0/token") => {
                if request.param("grant_type").as_deref() != Some("client_credentials")
                    || request.param("client_id").as_deref() != Some(CLIENT_ID)
                    || request.param("scope").as_deref() != Some(SCOPE)
                {
                    return refuse();
                }
                let federated = std::fs::read_to_string(&self.federated).unwrap();
                let counter = if request.param("client_assertion_type").as_deref()
                    == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
                    && request.param("client_assertion").as_deref() == Some(federated.trim())
                {
                    &ledger.assertion_grants
                } else if request.param("client_secret").as_deref() == Some(&self.client_secret) {
                    &ledger.secret_grants
                } else {
                    return refuse();
                };
                counter.fetch_add(1, Ordering::SeqCst);
                let token = self.issue();
                let body = serde_json::json!({
                    "token_type": "Bearer",
                    "expires_in": self.life.as_secs(),
                    "ext_expires_in": self.life.as_secs(),
                    "access_token": token,
                });
                (200, body.to_string())
            }
            ("GET", "/msi/token") => {
                if request.headers.get("x-identity-header") != Some(&self.identity_header)
                    || request.param("resource").as_deref() != Some(resource)
                {
                    return refuse();
                }
                ledger.app_service_grants.fetch_add(1, Ordering::SeqCst);
                let expires_on = unix(SystemTime::now() + self.life);
                let body = serde_json::json!({
                    "access_token": self.issue(),
                    "expires_on": expires_on.to_string(),
                    "resource": resource,
                    "token_type": "Bearer",
                });
                (200, body.to_string())
            }
            ("GET", "/metadata/identity/oauth2/token") => {
                if request.headers.get("metadata").map(String::as_str) != Some("true")
                    || request.param("resource").as_deref() != Some(resource)
                {
                    return refuse();
                }
                ledger.imds_grants.fetch_add(1, Ordering::SeqCst);
                let body = serde_json::json!({
                    "access_token": self.issue(),
                    "expires_in": self.life.as_secs().to_string(),
                    "resource": resource,
                    "token_type": "Bearer",
                });
                (200, body.to_string())
            }
            _ => (404, "{}".into()),
        }
    }

    /// An HS256 JWT for the `oid`, living `life` (to the millisecond, in `exp_ms`).
    fn issue(&self) -> String {
        let expires = SystemTime::now() + self.life;
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = serde_json::json!({
            "aud": "https://redis.azure.com",
            "oid": self.oid,
            "exp": unix(expires),
            "exp_ms": expires.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64,
            "jti": word(16),
        });
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let input = format!("{header}.{payload}");
        let token = format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(sign(&self.key, &input))
        );
        self.ledger.issued.lock().unwrap().push(token.clone());
        token
    }
}

fn sign(key: &[u8], input: &str) -> Vec<u8> {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(input.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// The claims and expiry of a token this stand-in signed and that has not expired.
fn verify(key: &[u8], token: &str) -> Option<(serde_json::Value, SystemTime)> {
    let (input, signature) = token.rsplit_once('.')?;
    if URL_SAFE_NO_PAD.decode(signature).ok()? != sign(key, input) {
        return None;
    }
    let payload = URL_SAFE_NO_PAD.decode(input.split('.').nth(1)?).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&payload).ok()?;
    let expires = UNIX_EPOCH + Duration::from_millis(claims["exp_ms"].as_u64()?);
    (expires > SystemTime::now()).then_some((claims, expires))
}

fn unix(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).unwrap().as_secs()
}
