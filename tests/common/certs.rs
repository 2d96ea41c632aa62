//! Certificates made once per test process: a CA, a server certificate for `localhost` and
//! 127.0.0.1, one for another name, and a TLS acceptor for servers written in the tests.

use super::*;

/// A CA, a server certificate for `localhost`/127.0.0.1 and one for another name.
pub struct Certs {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub other_cert: PathBuf,
    pub other_key: PathBuf,
}

/// Certificates for this test process, generated once into a fresh temp dir.
pub fn certs() -> &'static Certs {
    static CERTS: OnceLock<Certs> = OnceLock::new();
    CERTS.get_or_init(|| {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let dir = tempfile::Builder::new()
            .prefix("rap-certs-")
            .tempdir()
            .unwrap()
            .keep();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "redis-auth-proxy test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf = |names: Vec<String>, stem: &str| {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(names)
                .unwrap()
                .signed_by(&key, &issuer)
                .unwrap();
            let cert_path = dir.join(format!("{stem}.crt"));
            let key_path = dir.join(format!("{stem}.key"));
            std::fs::write(&cert_path, cert.pem()).unwrap();
            std::fs::write(&key_path, key.serialize_pem()).unwrap();
            (cert_path, key_path)
        };
        let (cert, key) = leaf(vec!["localhost".into(), "127.0.0.1".into()], "server");
        let (other_cert, other_key) = leaf(vec!["other.example".into()], "other");
        let ca = dir.join("ca.crt");
        std::fs::write(&ca, ca_cert.pem()).unwrap();
        Certs {
            ca,
            cert,
            key,
            other_cert,
            other_key,
        }
    })
}

/// A TLS acceptor with the test server certificate, for servers written in the tests.
pub fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    use rustls_pki_types::pem::PemObject;
    let certs = certs();
    let chain = rustls_pki_types::CertificateDer::pem_file_iter(&certs.cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(&certs.key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config))
}
