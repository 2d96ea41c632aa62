//! The shared test harness: certificates made per run, a real `redis-server` with TLS on
//! ephemeral loopback ports, the proxy running in-process on its own runtime, and clients.
//!
//! A missing `redis-server` fails the test that needs it; nothing is skipped.

#![allow(dead_code)]

pub mod cluster;
pub mod iam;
pub mod rng;

use redis_auth_proxy::config::{Config, Flags};
use redis_auth_proxy::listener::ListenAddr;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The token redis-server starts with in most tests (a valid ElastiCache token).
pub const TOKEN_A: &str = "token-A-0123456789abcdef";
pub const TOKEN_B: &str = "token-B-0123456789abcdef";
pub const TOKEN_C: &str = "token-C-0123456789abcdef";
const ADMIN_PASSWORD: &str = "admin-password-for-tests";
pub const PATIENCE: Duration = Duration::from_secs(15);

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

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How a test's redis-server starts.
#[derive(Clone)]
pub struct RedisOptions {
    /// `requirepass`; `None` leaves the default user without a password.
    pub password: Option<&'static str>,
    /// Serve the certificate made for `other.example` instead of `localhost`.
    pub wrong_name_cert: bool,
    /// `tls-protocols`, e.g. `"TLSv1.2"`; `None` keeps Redis's default (1.2 and 1.3).
    pub tls_protocols: Option<&'static str>,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            password: Some(TOKEN_A),
            wrong_name_cert: false,
            tls_protocols: None,
        }
    }
}

/// A real redis-server with a TLS port and a plaintext port, killed on drop.
pub struct RedisServer {
    child: Child,
    pub tls_port: u16,
    pub plain_port: u16,
    dir: tempfile::TempDir,
    options: RedisOptions,
}

fn spawn_redis(options: &RedisOptions, dir: &Path, tls_port: u16, plain_port: u16) -> Child {
    let certs = certs();
    let (cert, key) = if options.wrong_name_cert {
        (&certs.other_cert, &certs.other_key)
    } else {
        (&certs.cert, &certs.key)
    };
    let mut command = Command::new(server_binary());
    command
        .args(["--bind", "127.0.0.1", "--port", &plain_port.to_string()])
        .args(["--tls-port", &tls_port.to_string()])
        .arg("--tls-cert-file")
        .arg(cert)
        .arg("--tls-key-file")
        .arg(key)
        .arg("--tls-ca-cert-file")
        .arg(&certs.ca)
        .args([
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args([
            "--user",
            "admin",
            "on",
            &format!(">{ADMIN_PASSWORD}"),
            "~*",
            "&*",
            "+@all",
        ])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(dir.join("redis.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(password) = options.password {
        command.args(["--requirepass", password]);
    }
    if let Some(protocols) = options.tls_protocols {
        command.args(["--tls-protocols", protocols]);
    }
    command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {} (is it installed?): {e}", server_binary()))
}

/// The server the tests run against: `redis-server` (Redis 7.0), or the binary named by
/// `REDIS_AUTH_PROXY_TEST_SERVER` (`valkey-server` for Valkey 8).
pub fn server_binary() -> String {
    std::env::var("REDIS_AUTH_PROXY_TEST_SERVER").unwrap_or_else(|_| "redis-server".into())
}

/// Whether the tests run against Valkey, whose texts differ in places.
pub fn is_valkey() -> bool {
    server_binary().contains("valkey")
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(RedisOptions::default())
    }

    pub fn start_with(options: RedisOptions) -> Self {
        let mut last_log = String::new();
        for _ in 0..5 {
            match Self::try_start(&options) {
                Ok(server) => return server,
                Err(log) => last_log = log,
            }
        }
        panic!("redis-server did not start; last log:\n{last_log}");
    }

    fn try_start(options: &RedisOptions) -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("rap-redis-")
            .tempdir()
            .unwrap();
        let (tls_port, plain_port) = (free_port(), free_port());
        let child = spawn_redis(options, dir.path(), tls_port, plain_port);
        let mut server = RedisServer {
            child,
            tls_port,
            plain_port,
            dir,
            options: options.clone(),
        };
        server.wait_ready()?;
        Ok(server)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Err(self.log());
            }
            if self.try_admin().is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("not ready after {PATIENCE:?}\n{}", self.log()))
    }

    /// Starts the server again on the same ports, after `kill`.
    pub fn restart(&mut self) {
        self.kill();
        self.child = spawn_redis(
            &self.options,
            self.dir.path(),
            self.tls_port,
            self.plain_port,
        );
        self.wait_ready()
            .unwrap_or_else(|log| panic!("redis-server did not restart:\n{log}"));
    }

    /// Freezes (`STOP`) or thaws (`CONT`) the server process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} redis-server failed");
    }

    fn try_admin(&self) -> redis::RedisResult<redis::Connection> {
        let url = format!(
            "redis://admin:{ADMIN_PASSWORD}@127.0.0.1:{}/",
            self.plain_port
        );
        let mut con =
            redis::Client::open(url)?.get_connection_with_timeout(Duration::from_secs(2))?;
        con.set_read_timeout(Some(Duration::from_secs(10)))?;
        redis::cmd("PING").query::<String>(&mut con)?;
        Ok(con)
    }

    /// Runs one command as the admin user over the plaintext port.
    pub fn admin(&self, args: &[&str]) -> redis::Value {
        let mut con = self.try_admin().expect("admin connection");
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query(&mut con)
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    pub fn tls_addr(&self) -> String {
        format!("localhost:{}", self.tls_port)
    }

    /// Stops the server as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- redis-server log (tls port {}) ---\n{}",
                self.tls_port,
                self.log()
            );
        }
    }
}

/// A token file in its own temp dir.
pub struct TokenFile {
    dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl TokenFile {
    pub fn new(contents: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("rap-token-")
            .tempdir()
            .unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, contents).unwrap();
        TokenFile { dir, path }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Rewrites the file in place (truncate, then write), as an editor or `echo >` does.
    pub fn rewrite(&self, contents: &str) {
        std::fs::write(&self.path, contents).unwrap();
    }

    /// Writes a new file beside it and renames it over the old one, as most tools do.
    pub fn rename_over(&self, contents: &str) {
        let temp = self.dir.path().join(".token.tmp");
        std::fs::write(&temp, contents).unwrap();
        std::fs::rename(&temp, &self.path).unwrap();
    }
}

/// A Kubernetes secret volume: `token -> ..data/token`, `..data -> ..<version>/`, updated by
/// writing a new version directory and renaming a new `..data` symlink over the old one, as
/// kubelet's AtomicWriter does.
pub struct KubeSecretDir {
    dir: tempfile::TempDir,
    version: u32,
}

impl KubeSecretDir {
    pub fn new(contents: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("rap-kube-")
            .tempdir()
            .unwrap();
        let mut secret = KubeSecretDir { dir, version: 0 };
        secret.update(contents);
        std::os::unix::fs::symlink("..data/token", secret.path()).unwrap();
        secret
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("token")
    }

    pub fn update(&mut self, contents: &str) {
        self.version += 1;
        let version_dir = format!("..2026_11_28_{:02}", self.version);
        std::fs::create_dir(self.dir.path().join(&version_dir)).unwrap();
        std::fs::write(self.dir.path().join(&version_dir).join("token"), contents).unwrap();
        let temp_link = self.dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(&version_dir, &temp_link).unwrap();
        std::fs::rename(&temp_link, self.dir.path().join("..data")).unwrap();
        if self.version > 1 {
            let old = format!("..2026_11_28_{:02}", self.version - 1);
            std::fs::remove_dir_all(self.dir.path().join(old)).unwrap();
        }
    }
}

/// moto's Secrets Manager on a loopback port (`python3 -m moto.server`), killed on drop.
pub struct MotoServer {
    child: Child,
    pub port: u16,
}

impl MotoServer {
    pub fn start() -> Self {
        let port = free_port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start moto_server (pip install 'moto[server]'): {e}")
            });
        let mut moto = MotoServer { child, port };
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto_server exited with {status}; is moto[server] installed?");
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return moto;
            }
            assert!(
                Instant::now() < deadline,
                "moto_server not ready after {PATIENCE:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A real AWS SDK client for seeding secrets, with static test credentials.
    pub fn client(&self) -> aws_sdk_secretsmanager::Client {
        use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
        use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let config = aws_sdk_secretsmanager::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(self.endpoint())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
            .http_client(http)
            .build();
        aws_sdk_secretsmanager::Client::from_conf(config)
    }

    /// Environment for a proxy process that must reach only this server, with test credentials.
    pub fn proxy_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("AWS_CONFIG_FILE", "/nonexistent".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent".into()),
        ]
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Flags for a proxy on an ephemeral port in front of `redis`'s TLS port.
pub fn flags(redis: &RedisServer, token: &TokenFile) -> Flags {
    Flags {
        listen: Some("127.0.0.1:0".into()),
        upstream: Some(redis.tls_addr()),
        tls_ca_file: Some(certs().ca.clone()),
        token_file: Some(token.path.clone()),
        connect_timeout: Some("5s".into()),
        auth_timeout: Some("5s".into()),
        admin_listen: Some("127.0.0.1:0".into()),
        ..Flags::default()
    }
}

/// The proxy, in-process on its own runtime, stopped on drop.
pub struct Proxy {
    pub addrs: Vec<ListenAddr>,
    /// The admin HTTP endpoint, when the config has one.
    pub admin: Option<SocketAddr>,
    pub store: std::sync::Arc<redis_auth_proxy::token::TokenStore>,
    runtime: Option<tokio::runtime::Runtime>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<Result<(), redis_auth_proxy::RunError>>>,
}

impl Proxy {
    pub fn start(mut flags: Flags) -> Self {
        // Tests run in parallel: never the default admin port.
        flags
            .admin_listen
            .get_or_insert_with(|| "127.0.0.1:0".into());
        Self::start_config(Config::from_flags(&flags).expect("valid test config"))
    }

    pub fn start_config(config: Config) -> Self {
        init_logging();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listeners = runtime
            .block_on(redis_auth_proxy::bind(&config))
            .expect("bind");
        let (store, initial) = runtime
            .block_on(redis_auth_proxy::load_tokens(&config))
            .expect("token loads");
        let addrs = listeners
            .routes
            .iter()
            .map(|l| l.local_addr().unwrap())
            .collect();
        let admin = listeners.admin.as_ref().map(|l| l.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let run =
            redis_auth_proxy::run_with_tokens(listeners, config, store.clone(), initial, async {
                let _ = stopped.await;
            });
        let done = runtime.spawn(run);
        if let Some(admin) = admin {
            eventually("the proxy has started", || {
                http(admin, "GET", "/startupz").0 == 200
            });
        }
        Proxy {
            addrs,
            admin,
            store,
            runtime: Some(runtime),
            stop: Some(stop),
            done: Some(done),
        }
    }

    /// The first route's TCP address.
    pub fn addr(&self) -> SocketAddr {
        match &self.addrs[0] {
            ListenAddr::Tcp(addr) => *addr,
            other => panic!("route 0 listens on {other}, not TCP"),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr().port()
    }

    /// A `redis` crate connection through the proxy, with no password.
    pub fn client(&self) -> redis::Connection {
        connect(&format!("redis://{}/", self.addr()))
    }

    pub fn raw(&self) -> Raw {
        Raw::connect(self.addr())
    }

    /// Waits until the proxy's current token is `token` (the refresher picked it up).
    pub fn wait_for_current_token(&self, token: &str) {
        eventually(&format!("the proxy uses token {}", &token[..7]), || {
            self.store
                .credentials()
                .is_some_and(|c| c.current.expose() == token)
        });
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let (Some(runtime), Some(done)) = (self.runtime.take(), self.done.take()) {
            let result = runtime.block_on(async { tokio::time::timeout(PATIENCE, done).await });
            if !std::thread::panicking() {
                let result = result
                    .expect("proxy stops within the patience")
                    .expect("proxy task");
                result.expect("proxy ran without error");
            }
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// A `redis` crate connection with generous timeouts.
pub fn connect(url: &str) -> redis::Connection {
    let client = redis::Client::open(url).unwrap();
    let con = client.get_connection_with_timeout(PATIENCE).unwrap();
    con.set_read_timeout(Some(PATIENCE)).unwrap();
    con.set_write_timeout(Some(PATIENCE)).unwrap();
    con
}

/// A plain socket speaking raw RESP, for byte-exact checks.
pub struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream.set_nodelay(true).unwrap();
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Sends a request built from words.
    pub fn command(&mut self, words: &[&str]) {
        let args: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
        self.send(&redis_auth_proxy::resp::encode_request(&args));
    }

    /// Reads one reply and renders it the way redis-cli would (RESP3 aware).
    pub fn reply(&mut self) -> String {
        use redis_protocol::resp3::decode::complete::decode;
        loop {
            if let Some((frame, used)) = decode(&self.buf).expect("valid RESP from the proxy") {
                self.buf.drain(..used);
                return render(&frame);
            }
            let mut chunk = [0u8; 65536];
            let n = self.stream.read(&mut chunk).expect("read reply");
            assert!(
                n > 0,
                "connection closed while waiting for a reply; had {:?}",
                String::from_utf8_lossy(&self.buf)
            );
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The socket, for tests that drive it themselves.
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }

    /// Reads until the proxy closes the connection; returns what arrived.
    pub fn read_to_close(&mut self) -> String {
        let mut rest = Vec::new();
        let _ = self.stream.read_to_end(&mut rest);
        self.buf.extend_from_slice(&rest);
        String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned()
    }
}

/// A compact text for a RESP3 frame: `OK`, `(error) ...`, `(integer) 1`, `"bulk"`, `[a, b]`.
pub fn render(frame: &redis_protocol::resp3::types::OwnedFrame) -> String {
    use redis_protocol::resp3::types::OwnedFrame as F;
    let list = |items: &mut dyn Iterator<Item = String>| items.collect::<Vec<_>>().join(", ");
    match frame {
        F::SimpleString { data, .. } => String::from_utf8_lossy(data).into_owned(),
        F::SimpleError { data, .. } => format!("(error) {data}"),
        F::BlobError { data, .. } => format!("(error) {}", String::from_utf8_lossy(data)),
        F::Number { data, .. } => format!("(integer) {data}"),
        F::BlobString { data, .. } => format!("{:?}", String::from_utf8_lossy(data)),
        F::VerbatimString { data, .. } => format!("{:?}", String::from_utf8_lossy(data)),
        F::Null => "(nil)".into(),
        F::Boolean { data, .. } => format!("(boolean) {data}"),
        F::Double { data, .. } => format!("(double) {data}"),
        F::Array { data, .. } => format!("[{}]", list(&mut data.iter().map(render))),
        F::Push { data, .. } => format!("push[{}]", list(&mut data.iter().map(render))),
        F::Set { data, .. } => format!("set[{}]", list(&mut data.iter().map(render))),
        F::Map { data, .. } => {
            let mut pairs: Vec<String> = data
                .iter()
                .map(|(k, v)| format!("{}: {}", render(k), render(v)))
                .collect();
            pairs.sort();
            format!("{{{}}}", pairs.join(", "))
        }
        other => format!("{other:?}"),
    }
}

/// Runs redis-cli with `args`; panics if it cannot start.
pub fn redis_cli(args: &[&str]) -> Output {
    Command::new("redis-cli")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run redis-cli (is redis-tools installed?): {e}"))
}

/// Polls `condition` until it holds or the patience runs out.
pub fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if condition() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out waiting until {what}");
}

/// The proxy binary as a process: its own listen and admin ports, stderr in a file, killed on
/// drop (its log is printed when the test failed).
pub struct ProxyProcess {
    pub child: Child,
    pub port: u16,
    pub admin: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl ProxyProcess {
    /// Starts the proxy toward `redis`'s TLS port with `args` added, and waits until it is ready.
    pub fn start(redis: &RedisServer, args: &[&str], env: &[(&str, String)]) -> Self {
        Self::start_to(&redis.tls_addr(), args, env)
    }

    /// Starts the proxy toward `upstream` (HOST:PORT, TLS) and waits until it is ready.
    pub fn start_to(upstream: &str, args: &[&str], env: &[(&str, String)]) -> Self {
        let proxy = Self::spawn_to(upstream, args, env);
        eventually("the proxy is ready", || proxy.log().contains("Ready"));
        proxy
    }

    /// Starts it without waiting.
    /// Starts it and waits only until its listeners are bound (the admin endpoint says so in
    /// the log). Ports come from `free_port`, so another test may take one first: then it
    /// tries again with new ports.
    pub fn spawn(redis: &RedisServer, args: &[&str], env: &[(&str, String)]) -> Self {
        Self::spawn_to(&redis.tls_addr(), args, env)
    }

    pub fn spawn_to(upstream: &str, args: &[&str], env: &[(&str, String)]) -> Self {
        for _ in 0..5 {
            let mut proxy = Self::spawn_once(upstream, args, env);
            let deadline = Instant::now() + PATIENCE;
            loop {
                if proxy.log().contains("Admin endpoints listening") {
                    return proxy;
                }
                if let Ok(Some(_)) = proxy.child.try_wait() {
                    assert!(
                        proxy.log().contains("cannot listen on"),
                        "the proxy exited:\n{}",
                        proxy.log()
                    );
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the proxy did not bind its listeners:\n{}",
                    proxy.log()
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        panic!("no free ports for the proxy after 5 tries");
    }

    fn spawn_once(upstream: &str, args: &[&str], env: &[(&str, String)]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("rap-proc-")
            .tempdir()
            .unwrap();
        let log = dir.path().join("proxy.log");
        let (port, admin) = (free_port(), free_port());
        let mut command = Command::new(env!("CARGO_BIN_EXE_redis-auth-proxy"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--admin-listen")
            .arg(format!("127.0.0.1:{admin}"))
            .arg("--upstream")
            .arg(upstream)
            .arg("--tls-ca-file")
            .arg(&certs().ca)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().expect("start the proxy binary");
        ProxyProcess {
            child,
            port,
            admin,
            log,
            _dir: dir,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn admin_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.admin))
    }

    /// The process's resident set size, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    pub fn client(&self) -> redis::Connection {
        connect(&format!("redis://{}/", self.addr()))
    }

    pub fn whoami(&self) -> String {
        redis::cmd("ACL")
            .arg("WHOAMI")
            .query(&mut self.client())
            .unwrap()
    }

    /// Sends a signal by name (`TERM`, `HUP`, ...).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- proxy log ---\n{}", self.log());
        }
    }
}

/// A minimal HTTP/1.1 request to the admin endpoint: returns the status code and body.
pub fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("admin endpoint reachable");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    let status = reply.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = reply
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of one sample in a Prometheus exposition: `name` with all of `labels`; 0 if absent.
pub fn sample(exposition: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} "))
        })
        .filter(|line| {
            labels
                .iter()
                .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
