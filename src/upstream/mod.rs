//! Opening connections to the real server: DNS at every connect, TCP, then TLS.
//!
//! The DNS name is resolved again for each new connection because an ElastiCache failover moves
//! the primary endpoint's record. The rustls `ClientConfig` is built once per route and shared,
//! so its session cache resumes TLS sessions across connections.

mod sessions;

use crate::error::{ConnError, Stage};
use crate::metrics::HandshakeCounters;
use rustls::ClientConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// An upstream connection, TLS or not.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {
    /// The TCP socket under it.
    fn tcp(&self) -> &TcpStream;

    /// True when this idle connection can no longer be handed to a client: the server closed it,
    /// or sent something while nothing was asked (with TLS 1.3 a closing alert looks like any
    /// other record). Asks the socket itself with a non-blocking peek, not the runtime's
    /// readiness, which may lag.
    fn unusable_while_idle(&self) -> bool {
        !matches!(peek(self.tcp()), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}

impl Io for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Io for tokio_rustls::client::TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

/// The first byte waiting on the socket, without taking it: `Ok(None)` at end of stream, `Err`
/// (would block) when nothing waits.
fn peek(tcp: &TcpStream) -> std::io::Result<Option<u8>> {
    use rustix::net::{RecvFlags, recv};
    let mut byte = [0u8; 1];
    let (_, n) = recv(tcp, &mut byte[..], RecvFlags::PEEK | RecvFlags::DONTWAIT)?;
    Ok((n > 0).then_some(byte[0]))
}

/// An open connection to the server, TLS or not.
pub type UpstreamStream = Box<dyn Io>;

pub use crate::address::UpstreamAddr;

/// How one route reaches its server.
#[derive(Clone)]
pub struct Connector {
    /// The configured address; with Sentinel, the master's name (port 0).
    pub addr: UpstreamAddr,
    /// The name checked against the certificate; `None`: the host connected to.
    tls: Option<(TlsConnector, Option<ServerName<'static>>)>,
    connect_timeout: Duration,
    handshakes: Option<HandshakeCounters>,
    /// With `--sentinel`: where the server is comes from the Sentinels, at every connection.
    locator: Option<Arc<dyn Locate>>,
}

/// Where a route's server is when it is not a fixed address (Sentinel's primary): asked at
/// every new connection, in place of `addr`.
pub trait Locate: Send + Sync {
    fn locate(&self) -> Pin<Box<dyn Future<Output = Result<UpstreamAddr, ConnError>> + Send + '_>>;
    /// How errors and logs name the route's server.
    fn describe(&self) -> String;
}

/// A TLS protocol version the proxy can speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    V1_2,
    V1_3,
}

/// TLS settings of one route, as validated by `config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub min_version: TlsVersion,
    pub max_version: TlsVersion,
    /// `None`: the host connected to (a Sentinel, or the primary a Sentinel named).
    pub server_name: Option<String>,
    pub ca_file: Option<std::path::PathBuf>,
    pub client_cert: Option<std::path::PathBuf>,
    pub client_key: Option<std::path::PathBuf>,
    /// `--tls-insecure-skip-verify`: accept any certificate (tests only).
    pub insecure_skip_verify: bool,
}

/// A TLS setting that cannot be used; the message names the file or value, never key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("--tls-ca-file {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("--tls-client-cert / --tls-client-key: {0}")]
    ClientCert(String),
    #[error("--tls-server-name {0:?} is not a valid DNS name or IP address")]
    ServerName(String),
}

impl Connector {
    pub fn new(
        addr: UpstreamAddr,
        tls: Option<&TlsSettings>,
        connect_timeout: Duration,
    ) -> Result<Self, TlsConfigError> {
        let tls = match tls {
            None => None,
            Some(settings) => {
                let name = (settings.server_name.as_ref())
                    .map(|name| {
                        ServerName::try_from(name.clone())
                            .map_err(|_| TlsConfigError::ServerName(name.clone()))
                    })
                    .transpose()?;
                Some((TlsConnector::from(client_config(settings)?), name))
            }
        };
        Ok(Connector {
            addr,
            tls,
            connect_timeout,
            handshakes: None,
            locator: None,
        })
    }

    /// Connects where `locator` says at each connection, instead of `addr`.
    pub fn locating_with(mut self, locator: Arc<dyn Locate>) -> Self {
        self.locator = Some(locator);
        self
    }

    /// How errors and logs name the route's server.
    pub fn describe(&self) -> String {
        match &self.locator {
            Some(locator) => locator.describe(),
            None => self.addr.to_string(),
        }
    }

    /// Counts this route's TLS handshakes, full or resumed, in the metrics.
    pub fn counting_handshakes(mut self, route: &str) -> Self {
        self.handshakes = Some(HandshakeCounters::new(route));
        self
    }

    /// Resolves, connects and completes the TLS handshake, all within the connect timeout.
    pub async fn connect(&self) -> Result<UpstreamStream, ConnError> {
        tokio::time::timeout(self.connect_timeout, self.connect_inner())
            .await
            .map_err(|_| ConnError::Timeout {
                stage: Stage::Connect,
                after: self.connect_timeout,
                upstream: self.describe(),
            })?
    }

    async fn connect_inner(&self) -> Result<UpstreamStream, ConnError> {
        let target = match &self.locator {
            Some(locator) => locator.locate().await?,
            None => self.addr.clone(),
        };
        let upstream = target.to_string();
        let addrs: Vec<_> = tokio::net::lookup_host((target.host.as_str(), target.port))
            .await
            .map_err(|error| ConnError::Resolve {
                upstream: upstream.clone(),
                error,
            })?
            .collect();
        let mut last_error = None;
        let mut tcp = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    tcp = Some(stream);
                    break;
                }
                Err(error) => last_error = Some(error),
            }
        }
        let tcp = tcp.ok_or_else(|| ConnError::Connect {
            upstream: upstream.clone(),
            error: last_error
                .unwrap_or_else(|| std::io::Error::other("name resolved to no address")),
        })?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Box::new(tcp)),
            Some((connector, name)) => {
                let name = match name {
                    Some(name) => name.clone(),
                    None => {
                        ServerName::try_from(target.host.clone()).map_err(|_| ConnError::Tls {
                            upstream: upstream.clone(),
                            error: std::io::Error::other("the host is not a valid TLS name"),
                        })?
                    }
                };
                let stream = connector
                    .connect(name, tcp)
                    .await
                    .map_err(|error| ConnError::Tls { upstream, error })?;
                if let Some(handshakes) = &self.handshakes {
                    let kind = stream.get_ref().1.handshake_kind();
                    handshakes.record(kind == Some(rustls::HandshakeKind::Resumed));
                }
                Ok(Box::new(stream))
            }
        }
    }
}

/// Builds the shared rustls client config: the CA file's roots (or the Mozilla roots, which
/// cover ElastiCache's ACM certificates), TLS 1.2 and 1.3, an optional client certificate.
fn client_config(settings: &TlsSettings) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let mut roots = rustls::RootCertStore::empty();
    match &settings.ca_file {
        Some(path) => {
            for cert in load_certs(path).map_err(|reason| TlsConfigError::CaFile {
                path: path.display().to_string(),
                reason,
            })? {
                roots.add(cert).map_err(|e| TlsConfigError::CaFile {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(protocol_versions(settings))
            .map_err(|e| TlsConfigError::ClientCert(e.to_string()))?
            .with_root_certificates(roots);
    if settings.insecure_skip_verify {
        tracing::warn!(
            tls.server_name = settings
                .server_name
                .as_deref()
                .unwrap_or("the host connected to"),
            "TLS certificate verification is OFF (--tls-insecure-skip-verify): anyone on the path can read the token"
        );
    }
    let config = match (&settings.client_cert, &settings.client_key) {
        (Some(cert), Some(key)) => {
            let certs = load_certs(cert).map_err(TlsConfigError::ClientCert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                TlsConfigError::ClientCert(format!("cannot read key {}: {e}", key.display()))
            })?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| TlsConfigError::ClientCert(e.to_string()))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(TlsConfigError::ClientCert(
                "both must be given, or neither".into(),
            ));
        }
    };
    let mut config = config;
    config.resumption = rustls::client::Resumption::store(Arc::new(sessions::SessionStore::new()));
    if settings.insecure_skip_verify {
        config
            .dangerous()
            .set_certificate_verifier(Arc::new(danger::NoVerification::new()));
    }
    Ok(Arc::new(config))
}

/// The versions between `--tls-min-version` and `--tls-max-version`, newest first.
fn protocol_versions(
    settings: &TlsSettings,
) -> &'static [&'static rustls::SupportedProtocolVersion] {
    static BOTH: &[&rustls::SupportedProtocolVersion] =
        &[&rustls::version::TLS13, &rustls::version::TLS12];
    match (settings.min_version, settings.max_version) {
        (TlsVersion::V1_3, _) => &BOTH[..1],
        (_, TlsVersion::V1_2) => &BOTH[1..],
        _ => BOTH,
    }
}

/// `--tls-insecure-skip-verify` and nothing else lives here.
mod danger {
    use rustls::DigitallySignedStruct;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::{
        WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature,
    };
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

    /// Accepts any certificate; handshake signatures are still checked.
    #[derive(Debug)]
    pub(super) struct NoVerification(WebPkiSupportedAlgorithms);

    impl NoVerification {
        pub(super) fn new() -> Self {
            NoVerification(
                rustls::crypto::ring::default_provider().signature_verification_algorithms,
            )
        }
    }

    impl ServerCertVerifier for NoVerification {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(message, cert, dss, &self.0)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(message, cert, dss, &self.0)
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.supported_schemes()
        }
    }
}

/// The PEM certificates in `path`, at least one; the error names the file.
pub(crate) fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot parse {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}
