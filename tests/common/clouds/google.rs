//! The Google Cloud stand-in: a metadata server (`GCE_METADATA_HOST`) and a service-account
//! token endpoint (the key file's `token_uri`) that verifies each assertion's RS256 signature
//! with the public half of a key made for the run, both handing out opaque tokens that live
//! `life`; and the check Memorystore makes of `AUTH [default] <token>`.

use super::http::{self, Request};
use super::{Check, word};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
const CLIENT_EMAIL: &str = "proxy@test-project.iam.gserviceaccount.com";

#[derive(Default)]
pub struct GoogleLedger {
    pub metadata_grants: AtomicU64,
    pub key_grants: AtomicU64,
    pub refused: AtomicU64,
    /// Tokens handed out, with when they expire.
    pub issued: Mutex<HashMap<String, SystemTime>>,
}

pub struct GoogleStandIn {
    /// `host:port` of the metadata server, for `GCE_METADATA_HOST`.
    pub metadata_host: String,
    pub key_file: tempfile::NamedTempFile,
    pub private_key: String,
    pub ledger: Arc<GoogleLedger>,
    _runtime: tokio::runtime::Runtime,
}

impl GoogleStandIn {
    pub fn start(life: Duration) -> Self {
        let runtime = super::runtime(1);
        let listener = super::bind(&runtime);
        let host = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
        let private_key = rsa_key();
        let der = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(private_key.as_bytes());
        let pair =
            ring::signature::RsaKeyPair::from_pkcs8(der.unwrap().secret_pkcs8_der()).unwrap();
        let public = pair.public().as_ref().to_vec();
        let token_uri = format!("http://{host}/token");
        let key_json = serde_json::json!({
            "type": "service_account",
            "project_id": "test-project",
            "private_key_id": word(20),
            "private_key": private_key,
            "client_email": CLIENT_EMAIL,
            "client_id": "1234567890",
            "token_uri": token_uri,
        });
        let mut key_file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut key_file, key_json.to_string().as_bytes()).unwrap();
        let state = Arc::new(State {
            public,
            token_uri,
            life,
            ledger: Arc::default(),
        });
        let ledger = Arc::clone(&state.ledger);
        let handler = Arc::new(move |request: &Request| state.answer(request));
        runtime.spawn(http::serve(listener, None, handler));
        GoogleStandIn {
            metadata_host: host,
            key_file,
            private_key,
            ledger,
            _runtime: runtime,
        }
    }

    /// Memorystore's check: a token this stand-in issued that has not expired, as
    /// `AUTH <token>` or `AUTH default <token>`.
    pub fn check(&self) -> Arc<Check> {
        let ledger = Arc::clone(&self.ledger);
        Arc::new(move |words: &[String]| {
            let token = match words {
                [token] => token,
                [user, token] if user == "default" => token,
                _ => return None,
            };
            let expires = *ledger.issued.lock().unwrap().get(token)?;
            (expires > SystemTime::now()).then_some(expires)
        })
    }

    pub fn metadata_env(&self) -> Vec<(&'static str, String)> {
        vec![("GCE_METADATA_HOST", self.metadata_host.clone())]
    }

    pub fn key_file_env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "GOOGLE_APPLICATION_CREDENTIALS",
                self.key_file.path().display().to_string(),
            ),
            // Nothing may reach a metadata server when a key file is given.
            ("GCE_METADATA_HOST", "127.0.0.1:9".into()),
        ]
    }

    pub fn secrets(&self) -> Vec<String> {
        let mut secrets: Vec<String> = self.ledger.issued.lock().unwrap().keys().cloned().collect();
        // A line from the middle of the private key.
        secrets.push(self.private_key.lines().nth(3).unwrap().to_owned());
        secrets
    }
}

use rustls_pki_types::pem::PemObject;

/// A 2048-bit RSA key in PKCS#8 PEM, made by openssl for this run.
fn rsa_key() -> String {
    let output = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("openssl (scripts/install-deps.sh installs it)");
    assert!(output.status.success(), "openssl genpkey failed");
    String::from_utf8(output.stdout).unwrap()
}

struct State {
    public: Vec<u8>,
    token_uri: String,
    life: Duration,
    ledger: Arc<GoogleLedger>,
}

impl State {
    fn answer(&self, request: &Request) -> (u16, String) {
        let granted = match (request.method.as_str(), request.path()) {
            ("GET", "/computeMetadata/v1/instance/service-accounts/default/token") => {
                let flavor = request.headers.get("metadata-flavor").map(String::as_str);
                let scopes = request.param("scopes");
                (flavor == Some("Google") && scopes.as_deref() == Some(SCOPE))
                    .then_some(&self.ledger.metadata_grants)
            }
            ("POST", "/token") => {
                let grant = request.param("grant_type");
                let assertion = request.param("assertion").unwrap_or_default();
                (grant.as_deref() == Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
                    && self.verify(&assertion))
                .then_some(&self.ledger.key_grants)
            }
            _ => return (404, "{}".into()),
        };
        let Some(counter) = granted else {
            self.ledger.refused.fetch_add(1, Ordering::SeqCst);
            return (
                401,
                r#"{"error":"invalid_grant","error_description":"the stand-in refused it"}"#.into(),
            );
        };
        counter.fetch_add(1, Ordering::SeqCst);
        let token = format!("ya29.{}", word(60));
        let expires = SystemTime::now() + self.life;
        self.ledger
            .issued
            .lock()
            .unwrap()
            .insert(token.clone(), expires);
        let body = serde_json::json!({
            "access_token": token,
            "expires_in": self.life.as_secs(),
            "token_type": "Bearer",
        });
        (200, body.to_string())
    }

    /// The assertion is signed by the key's private half and says what Google checks.
    fn verify(&self, assertion: &str) -> bool {
        let Some((input, signature)) = assertion.rsplit_once('.') else {
            return false;
        };
        let Ok(signature) = URL_SAFE_NO_PAD.decode(signature) else {
            return false;
        };
        let key = ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            &self.public,
        );
        if key.verify(input.as_bytes(), &signature).is_err() {
            return false;
        }
        let segment = |i: usize| -> serde_json::Value {
            let bytes = URL_SAFE_NO_PAD.decode(input.split('.').nth(i).unwrap_or_default());
            serde_json::from_slice(&bytes.unwrap_or_default()).unwrap_or_default()
        };
        let (header, claims) = (segment(0), segment(1));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        header["alg"] == "RS256"
            && claims["iss"] == CLIENT_EMAIL
            && claims["aud"] == self.token_uri.as_str()
            && claims["scope"] == SCOPE
            && claims["exp"].as_u64().is_some_and(|exp| exp > now)
            && claims["iat"].as_u64().is_some_and(|iat| iat <= now + 5)
    }
}
