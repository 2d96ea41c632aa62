//! Where the proxy's token comes from in tests: a file, a Kubernetes secret volume, moto's
//! Secrets Manager.

use super::*;

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
