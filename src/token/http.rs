//! The one HTTP exchange the cloud token sources need: a GET, or a form POST, to a token
//! endpoint, one request per connection, on the hyper and rustls (ring) already in the binary.
//! The clouds' own crates would bring reqwest with aws-lc-rs (`docs/dependencies.md`), for
//! what is a single request each.
//!
//! HTTPS endpoints are verified against the Mozilla roots plus the certificates in
//! `SSL_CERT_FILE`, when set (a private authority host, a test CA).

use bytes::Buf;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use secrecy::zeroize::Zeroizing;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Token answers are a few kilobytes; anything longer is refused.
const MAX_BODY: usize = 64 * 1024;

/// One request: a GET, or a POST when `form` is given (its fields already encoded).
pub(crate) struct Request<'a> {
    pub url: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub form: Option<Zeroizing<String>>,
}

/// The status and body of the answer; the body holds a token, so it is zeroised.
pub(crate) struct Response {
    pub status: u16,
    pub body: Zeroizing<Vec<u8>>,
}

/// Why no answer came. Texts name the host, never a header or a body.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    #[error("{0}")]
    Url(String),
    #[error("cannot connect to {host}: {error}")]
    Connect { host: String, error: std::io::Error },
    #[error("TLS to {host}: {error}")]
    Tls { host: String, error: String },
    #[error("HTTP exchange with {host} failed: {error}")]
    Http { host: String, error: String },
    #[error("the answer from {host} is longer than {MAX_BODY} bytes")]
    TooLong { host: String },
    #[error("no answer from {host} within {after:?}")]
    Timeout { host: String, after: Duration },
}

/// The longest one token request may take.
pub(crate) const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends `request` within `FETCH_TIMEOUT` and returns the body of a 200 answer; otherwise why
/// not, with the endpoint's OAuth2 error fields and nothing else of its body.
pub(crate) async fn fetch(request: Request<'_>) -> Result<Zeroizing<Vec<u8>>, String> {
    let answer = send(request, FETCH_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    if answer.status != 200 {
        return Err(format!(
            "HTTP {}: {}",
            answer.status,
            error_text(&answer.body)
        ));
    }
    Ok(answer.body)
}

/// Sends `request` and reads the whole answer, all within `timeout`.
async fn send(request: Request<'_>, timeout: Duration) -> Result<Response, HttpError> {
    let target = Target::parse(request.url)?;
    let host = target.host.clone();
    tokio::time::timeout(timeout, exchange(target, request))
        .await
        .map_err(|_| HttpError::Timeout {
            host,
            after: timeout,
        })?
}

/// Where a URL points.
struct Target {
    https: bool,
    host: String,
    port: u16,
    authority: String,
    path: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, HttpError> {
        let bad = |why: &str| HttpError::Url(format!("{url:?} is not a usable URL: {why}"));
        let uri: http::Uri = url.parse().map_err(|_| bad("cannot parse it"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad("the scheme must be http or https")),
        };
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        let host = authority.host().trim_matches(['[', ']']).to_owned();
        Ok(Target {
            https,
            port: authority.port_u16().unwrap_or(if https { 443 } else { 80 }),
            authority: authority.as_str().to_owned(),
            path: uri.path_and_query().map_or("/", |p| p.as_str()).to_owned(),
            host,
        })
    }
}

async fn exchange(target: Target, request: Request<'_>) -> Result<Response, HttpError> {
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|error| HttpError::Connect {
            host: target.host.clone(),
            error,
        })?;
    let _ = tcp.set_nodelay(true);
    if !target.https {
        return round_trip(tcp, &target, request).await;
    }
    let tls_error = |error: String| HttpError::Tls {
        host: target.host.clone(),
        error,
    };
    let name = ServerName::try_from(target.host.clone()).map_err(|e| tls_error(e.to_string()))?;
    let connector = tokio_rustls::TlsConnector::from(tls_config().map_err(tls_error)?);
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| tls_error(e.to_string()))?;
    round_trip(tls, &target, request).await
}

async fn round_trip<S>(
    stream: S,
    target: &Target,
    request: Request<'_>,
) -> Result<Response, HttpError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let failed = |error: hyper::Error| HttpError::Http {
        host: target.host.clone(),
        error: error.to_string(),
    };
    let mut builder = http::Request::builder()
        .uri(target.path.as_str())
        .header(http::header::HOST, target.authority.as_str())
        .header(http::header::ACCEPT, "application/json");
    for (name, value) in request.headers {
        builder = builder.header(*name, *value);
    }
    let body = match request.form {
        Some(form) => {
            builder = builder.method(http::Method::POST).header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            );
            SecretBody(Zeroizing::new(form.as_bytes().to_vec()), 0)
        }
        None => SecretBody(Zeroizing::new(Vec::new()), 0),
    };
    let http_request = builder
        .body(Full::new(body))
        .map_err(|e| HttpError::Url(e.to_string()))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(failed)?;
    let driver = tokio::spawn(connection);
    let answer = async {
        let response = sender.send_request(http_request).await.map_err(failed)?;
        let status = response.status().as_u16();
        let collected = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|_| HttpError::TooLong {
                host: target.host.clone(),
            })?;
        Ok(Response {
            status,
            body: Zeroizing::new(collected.to_bytes().to_vec()),
        })
    }
    .await;
    driver.abort();
    answer
}

/// A request body that is zeroised when dropped: it holds a client secret or an assertion.
struct SecretBody(Zeroizing<Vec<u8>>, usize);

impl Buf for SecretBody {
    fn remaining(&self) -> usize {
        self.0.len() - self.1
    }
    fn chunk(&self) -> &[u8] {
        &self.0[self.1..]
    }
    fn advance(&mut self, count: usize) {
        self.1 = (self.1 + count).min(self.0.len());
    }
}

/// The Mozilla roots plus `SSL_CERT_FILE`'s, built once.
fn tls_config() -> Result<Arc<ClientConfig>, String> {
    static CONFIG: std::sync::OnceLock<Result<Arc<ClientConfig>, String>> =
        std::sync::OnceLock::new();
    CONFIG.get_or_init(build_tls_config).clone()
}

fn build_tls_config() -> Result<Arc<ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = std::env::var_os("SSL_CERT_FILE") {
        let path = std::path::Path::new(&path);
        for cert in crate::upstream::load_certs(path).map_err(|e| format!("SSL_CERT_FILE: {e}"))? {
            roots
                .add(cert)
                .map_err(|e| format!("SSL_CERT_FILE {}: {e}", path.display()))?;
        }
    }
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(Arc::new(config))
}

/// `application/x-www-form-urlencoded` (and query string) encoding of one value.
pub(crate) fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// The body of an answer as text for an error message: its `error` and `error_description`
/// fields (OAuth2's), never the rest, which may hold a token.
pub(crate) fn error_text(body: &[u8]) -> String {
    let parsed: Result<serde_json::Value, _> = serde_json::from_slice(body);
    let Ok(value) = parsed else {
        return "a body that is not JSON".into();
    };
    let field = |name: &str| value.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    match (field("error"), field("error_description")) {
        (Some(error), Some(description)) => format!("{error}: {description}"),
        (Some(error), None) => error,
        _ => match value.get("error").and_then(|e| e.get("message")) {
            Some(message) => message.as_str().unwrap_or_default().to_owned(),
            None => "no error description".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_their_host_port_and_path() {
        let t = Target::parse("https://login.example:8443/tenant/oauth2/v2.0/token?x=1").unwrap();
        assert!(t.https);
        assert_eq!((t.host.as_str(), t.port), ("login.example", 8443));
        assert_eq!(t.path, "/tenant/oauth2/v2.0/token?x=1");
        let t = Target::parse("http://[::1]/token").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.https), ("::1", 80, false));
        assert!(Target::parse("ftp://x/").is_err());
    }

    #[test]
    fn form_values_are_percent_encoded() {
        assert_eq!(
            form_encode("https://redis.azure.com/.default"),
            "https%3A%2F%2Fredis.azure.com%2F.default"
        );
        assert_eq!(form_encode("a b+c"), "a%20b%2Bc");
    }

    #[test]
    fn error_texts_keep_only_the_oauth_error_fields() {
        let body = br#"{"error":"invalid_client","error_description":"AADSTS7000215","access_token":"secret-xyz"}"#;
        let text = error_text(body);
        assert_eq!(text, "invalid_client: AADSTS7000215");
        assert!(!text.contains("secret-xyz"));
    }
}
