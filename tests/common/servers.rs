//! A real `redis-server` (or `valkey-server`) with a TLS port and a plaintext port on
//! ephemeral loopback ports, killed on drop.

use super::*;

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
    /// The loopback address both ports are bound to (another, such as 127.0.0.2, lets two
    /// servers share a TLS port behind one name that a test points at either).
    pub bind: &'static str,
    /// The TLS port; `None` for a free one.
    pub tls_port: Option<u16>,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            password: Some(TOKEN_A),
            wrong_name_cert: false,
            tls_protocols: None,
            bind: "127.0.0.1",
            tls_port: None,
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
        .args(["--bind", options.bind, "--port", &plain_port.to_string()])
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
        let (tls_port, plain_port) = (options.tls_port.unwrap_or_else(free_port), free_port());
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
            "redis://admin:{ADMIN_PASSWORD}@{}:{}/",
            self.options.bind, self.plain_port
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
