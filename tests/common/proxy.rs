//! The proxy under test: in-process on its own runtime (`Proxy`), or the binary as a process
//! (`ProxyProcess`); each stopped on drop, both asked the same things through `ProxyHandle`.
//! Either is ready once `/startupz` says so; a process has bound its ports once its own
//! sockets listen on them. Log text is never read for readiness.

use super::*;

/// What a test asks of the proxy, in-process or a process alike.
pub trait ProxyHandle {
    /// The first route's TCP address.
    fn addr(&self) -> SocketAddr;

    /// The admin endpoint.
    fn admin_addr(&self) -> SocketAddr;

    fn port(&self) -> u16 {
        self.addr().port()
    }

    /// A `redis` crate connection through the proxy, with no password.
    fn client(&self) -> redis::Connection {
        connect(&format!("redis://{}/", self.addr()))
    }

    fn raw(&self) -> Raw {
        Raw::connect(self.addr())
    }

    /// The sum of a metric's samples with `labels`, read from `/metrics`.
    fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let (_, metrics) = http(self.admin_addr(), "GET", "/metrics");
        sample(&metrics, name, labels)
    }

    /// The ACL user the proxy's connections run as.
    fn whoami(&self) -> String {
        redis::cmd("ACL")
            .arg("WHOAMI")
            .query(&mut self.client())
            .unwrap()
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

/// `flags` with `--multiplex` over two shared connections.
pub fn multiplex_flags(redis: &RedisServer, token: &TokenFile) -> Flags {
    Flags {
        multiplex: Some(true),
        multiplex_connections: Some(2),
        ..flags(redis, token)
    }
}

/// A proxy with `flags` (`--multiplex`), once its shared connections to `redis` are open, so
/// that a test counting the server's connections counts them all.
pub fn start_multiplexed(redis: &RedisServer, flags: Flags) -> Proxy {
    let lanes = flags.multiplex_connections.unwrap_or(2) as usize;
    let proxy = Proxy::start(flags);
    eventually("the shared connections are open", || {
        server_connections(redis) >= lanes
    });
    proxy
}

/// The proxy's connections on `redis` (the admin's own excluded).
pub fn server_connections(redis: &RedisServer) -> usize {
    let list: String = redis::from_redis_value(redis.admin(&["CLIENT", "LIST"])).unwrap();
    list.lines().filter(|l| !l.contains("user=admin")).count()
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

    /// Waits until the proxy's current token is `token` (the refresher picked it up).
    pub fn wait_for_current_token(&self, token: &str) {
        eventually(&format!("the proxy uses token {}", &token[..7]), || {
            self.store
                .credentials()
                .is_some_and(|c| c.current.expose() == token)
        });
    }
}

impl ProxyHandle for Proxy {
    fn addr(&self) -> SocketAddr {
        match &self.addrs[0] {
            ListenAddr::Tcp(addr) => *addr,
            other => panic!("route 0 listens on {other}, not TCP"),
        }
    }

    fn admin_addr(&self) -> SocketAddr {
        self.admin.expect("the proxy has an admin endpoint")
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
        Self::spawn_to(upstream, args, env).started()
    }

    /// Waits until the proxy says it has started (`/startupz`).
    fn started(self) -> Self {
        eventually("the proxy has started (/startupz)", || {
            http(self.admin_addr(), "GET", "/startupz").0 == 200
        });
        self
    }

    /// Starts it and waits only until its listeners are bound: its own sockets listen on both
    /// ports (a probe could be answered by another test's process that took a port first).
    /// Ports come from `free_port`, so another test may take one first: then it tries again
    /// with new ports.
    pub fn spawn(redis: &RedisServer, args: &[&str], env: &[(&str, String)]) -> Self {
        Self::spawn_to(&redis.tls_addr(), args, env)
    }

    pub fn spawn_to(upstream: &str, args: &[&str], env: &[(&str, String)]) -> Self {
        Self::spawn_in(None, Some(upstream), args, env)
    }

    /// Starts the proxy with no `--upstream` (`args` say where the server is: `--sentinel`).
    pub fn start_without_upstream(args: &[&str], env: &[(&str, String)]) -> Self {
        Self::spawn_in(None, None, args, env).started()
    }

    fn spawn_in(
        hosts: Option<&Path>,
        upstream: Option<&str>,
        args: &[&str],
        env: &[(&str, String)],
    ) -> Self {
        for _ in 0..5 {
            let mut proxy = Self::spawn_wrapped(hosts, upstream, args, env);
            let deadline = Instant::now() + PATIENCE;
            loop {
                let bound = listening_ports(proxy.child.id());
                if bound.contains(&proxy.port) && bound.contains(&proxy.admin) {
                    return proxy;
                }
                if let Ok(Some(status)) = proxy.child.try_wait() {
                    // Exit code 1 is a start error, here a port another test took first.
                    assert_eq!(status.code(), Some(1), "the proxy exited:\n{}", proxy.log());
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
        panic!("the proxy could not start after 5 tries (its ports were taken?)");
    }

    /// Starts the proxy in a mount namespace of its own where `hosts` is `/etc/hosts`, so that
    /// a test decides what its upstream's name resolves to, and changes it by rewriting the
    /// file in place (`unshare` as root; the process keeps its pid through the `exec`s).
    pub fn start_with_hosts(
        hosts: &Path,
        upstream: &str,
        args: &[&str],
        env: &[(&str, String)],
    ) -> Self {
        Self::spawn_in(Some(hosts), Some(upstream), args, env).started()
    }

    fn spawn_wrapped(
        hosts: Option<&Path>,
        upstream: Option<&str>,
        args: &[&str],
        env: &[(&str, String)],
    ) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("rap-proc-")
            .tempdir()
            .unwrap();
        let log = dir.path().join("proxy.log");
        let (port, admin) = (free_port(), free_port());
        let binary = env!("CARGO_BIN_EXE_redis-auth-proxy");
        let mut command = match hosts {
            None => Command::new(binary),
            Some(hosts) => {
                let mut command = Command::new("unshare");
                command
                    .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
                    .arg("mount --bind \"$0\" /etc/hosts && exec \"$@\"")
                    .arg(hosts)
                    .arg(binary);
                command
            }
        };
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--admin-listen")
            .arg(format!("127.0.0.1:{admin}"))
            .args(upstream.map(|upstream| format!("--upstream={upstream}")))
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

    /// The process's resident set size, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
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

impl ProxyHandle for ProxyProcess {
    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn admin_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.admin))
    }
}

/// The TCP ports process `pid`'s own sockets listen on, from /proc.
fn listening_ports(pid: u32) -> Vec<u16> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let inodes: Vec<String> = fds
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|link| {
            let link = link.to_string_lossy();
            Some(link.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let listening = fields.get(3) == Some(&"0A");
            let owned = fields
                .get(9)
                .is_some_and(|inode| inodes.iter().any(|i| i == inode));
            let port = fields.get(1)?.rsplit(':').next()?;
            (listening && owned).then(|| u16::from_str_radix(port, 16).ok())?
        })
        .collect()
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
