//! Command line, environment and config file, merged once into a validated `Config`.
//!
//! Every flag has an environment twin (`REDIS_AUTH_PROXY_<FLAG>`) and a key of the same name in
//! the TOML file; a flag beats its variable, which beats the file, which beats the default.
//! Every problem is collected and reported together, each naming its flag. A token is never a
//! value here: the config names where it comes from.

use crate::listener::ListenAddr;
use crate::token::{EnvSource, FileSource, SecretsManagerSource, TokenSource};
use crate::upstream::{TlsSettings, TlsVersion, UpstreamAddr};
use clap::{Args, Parser, Subcommand};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Shown at the end of `--help`.
const EXIT_CODES_HELP: &str = "Exit codes:\n  0   stopped by SIGTERM or SIGINT; `check` passed\n  \
1   could not start (token source, listener, TLS files), or a `check` route failed\n  \
2   command-line syntax error\n  78  invalid configuration (every problem is listed)\n\n\
See README.md for the config file, the token formats and the errors clients can see.";

const DEFAULT_LISTEN: &str = "127.0.0.1:6379";
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_AUTH_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(300);
/// The admin port: Redis's plus 100, clear of the 9100-9999 range exporters crowd.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:6479";
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
/// Redis's own default `maxclients`.
const DEFAULT_MAX_CONNECTIONS: u32 = 10_000;
const DEFAULT_POOL_MAX_AGE: Duration = Duration::from_secs(30);
/// Only the proxy's own user may connect to its Unix socket unless told otherwise.
const DEFAULT_UNIX_SOCKET_MODE: u32 = 0o600;

/// redis-auth-proxy: plain RESP on localhost in, TLS and AUTH to Redis or Valkey out.
///
/// Applications connect to the local listener with no password and no TLS. The proxy opens
/// TLS to the real server, authenticates with the current token (falling back to the
/// previous one during an ElastiCache ROTATE window) and then forwards the traffic untouched.
///
/// Every flag can also be set through its environment variable (shown below) or as a key of
/// the same name in the --config TOML file. Precedence: flag, then environment, then file,
/// then default.
#[derive(Debug, Parser)]
#[command(
    name = "redis-auth-proxy",
    version,
    args_conflicts_with_subcommands = true,
    after_long_help = EXIT_CODES_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<CliCommand>,
    #[command(flatten)]
    pub flags: Flags,
}

#[derive(Debug, Subcommand)]
pub enum CliCommand {
    /// Run the proxy (the default when no subcommand is given).
    Run(Flags),
    /// Validate the config, load the token, then connect, handshake, AUTH and PING every
    /// route's upstream once. Prints one line per route; exits 1 if any fails.
    Check(Flags),
    /// Ask the local admin endpoint (--admin-listen) whether the proxy is ready: exit 0 if it
    /// is, 1 if not. For container health checks in images without curl.
    Health(Flags),
}

/// The flags shared by `run` and `check`.
#[derive(Debug, Clone, Default, Args)]
pub struct Flags {
    /// Address to accept plain RESP clients on: IP:PORT, or unix:/path for a Unix socket
    /// [default: 127.0.0.1:6379].
    #[arg(long, env = "REDIS_AUTH_PROXY_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Permissions of a unix:/path listener's socket file, in octal [default: 0600, only the
    /// proxy's user]. Use 0660 to let a group connect.
    #[arg(long, env = "REDIS_AUTH_PROXY_UNIX_SOCKET_MODE", value_name = "OCTAL")]
    pub unix_socket_mode: Option<String>,
    /// File holding the password clients must send (AUTH <password>, AUTH default <password>
    /// or HELLO 3 AUTH default <password>) before anything else; a second line is an older
    /// password still accepted. Re-read when it changes. Without it clients need no password.
    #[arg(
        long,
        env = "REDIS_AUTH_PROXY_CLIENT_PASSWORD_FILE",
        value_name = "PATH"
    )]
    pub client_password_file: Option<PathBuf>,
    /// The Redis or Valkey server, HOST:PORT (port 6379 if omitted). Resolved at every new
    /// connection.
    #[arg(long, env = "REDIS_AUTH_PROXY_UPSTREAM", value_name = "HOST:PORT")]
    pub upstream: Option<String>,
    /// Connect to the upstream in plaintext. TLS is on by default.
    #[arg(long, env = "REDIS_AUTH_PROXY_NO_TLS", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_tls: Option<bool>,
    /// PEM file of CA certificates to verify the upstream with [default: the Mozilla roots,
    /// which cover ElastiCache and MemoryDB].
    #[arg(long, env = "REDIS_AUTH_PROXY_TLS_CA_FILE", value_name = "PEM")]
    pub tls_ca_file: Option<PathBuf>,
    /// Name sent as SNI and checked against the upstream certificate [default: the upstream
    /// host].
    #[arg(long, env = "REDIS_AUTH_PROXY_TLS_SERVER_NAME", value_name = "NAME")]
    pub tls_server_name: Option<String>,
    /// Oldest TLS version to accept from the upstream: 1.2 or 1.3 [default: 1.2].
    #[arg(long, env = "REDIS_AUTH_PROXY_TLS_MIN_VERSION", value_name = "VERSION")]
    pub tls_min_version: Option<String>,
    /// Newest TLS version to offer: 1.2 or 1.3 [default: 1.3]. With 1.2, a resumed session
    /// skips the key exchange, which makes new connections much cheaper for the server (see
    /// BENCHMARKS.md) at the cost of forward secrecy for resumed sessions.
    #[arg(long, env = "REDIS_AUTH_PROXY_TLS_MAX_VERSION", value_name = "VERSION")]
    pub tls_max_version: Option<String>,
    /// PEM client certificate chain for mutual TLS (needs --tls-client-key).
    #[arg(long, env = "REDIS_AUTH_PROXY_TLS_CLIENT_CERT", value_name = "PEM")]
    pub tls_client_cert: Option<PathBuf>,
    /// PEM private key for --tls-client-cert.
    #[arg(long, env = "REDIS_AUTH_PROXY_TLS_CLIENT_KEY", value_name = "PEM")]
    pub tls_client_key: Option<PathBuf>,
    /// ACL user to authenticate as (`AUTH <user> <token>`). Without it the proxy sends
    /// `AUTH <token>`, or uses the `username` field of a JSON token.
    #[arg(long, env = "REDIS_AUTH_PROXY_USERNAME", value_name = "NAME")]
    pub username: Option<String>,
    /// File holding the token: the first non-empty line is the current token, an optional
    /// second line the previous one.
    #[arg(long, env = "REDIS_AUTH_PROXY_TOKEN_FILE", value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Name of an environment variable holding the token (same format as the file).
    #[arg(long, env = "REDIS_AUTH_PROXY_TOKEN_ENV", value_name = "VAR")]
    pub token_env: Option<String>,
    /// AWS Secrets Manager secret (name or ARN) holding the token: AWSCURRENT is the current
    /// token, AWSPREVIOUS the previous one. AWS credentials and region come from the standard
    /// chain; AWS_ENDPOINT_URL is honoured.
    #[arg(long, env = "REDIS_AUTH_PROXY_TOKEN_SECRET_ID", value_name = "ID")]
    pub token_secret_id: Option<String>,
    /// How often to re-read the Secrets Manager secret, jittered by ±10% [default: 5m]. The
    /// secret is also re-read at once when the server rejects both tokens, and on SIGHUP.
    #[arg(
        long,
        env = "REDIS_AUTH_PROXY_TOKEN_REFRESH_INTERVAL",
        value_name = "DURATION"
    )]
    pub token_refresh_interval: Option<String>,
    /// The token source holds a JSON object; the token is this field, and its `username`
    /// field is the ACL user when --username is not given.
    #[arg(long, env = "REDIS_AUTH_PROXY_TOKEN_JSON_KEY", value_name = "KEY")]
    pub token_json_key: Option<String>,
    /// Time allowed for DNS, TCP connect and TLS handshake to the upstream [default: 5s].
    #[arg(
        long,
        env = "REDIS_AUTH_PROXY_CONNECT_TIMEOUT",
        value_name = "DURATION"
    )]
    pub connect_timeout: Option<String>,
    /// Time allowed for the upstream to answer AUTH [default: 5s].
    #[arg(long, env = "REDIS_AUTH_PROXY_AUTH_TIMEOUT", value_name = "DURATION")]
    pub auth_timeout: Option<String>,
    /// Close a client connection after this long with no traffic in either direction, unless
    /// it awaits a reply (a blocking command) or is subscribed, as Redis's `timeout` does
    /// [default: 0s, never].
    #[arg(long, env = "REDIS_AUTH_PROXY_IDLE_TIMEOUT", value_name = "DURATION")]
    pub idle_timeout: Option<String>,
    /// Most client connections served at once, over all routes; more are answered
    /// `-ERR max number of clients reached` and closed [default: 10000].
    #[arg(long, env = "REDIS_AUTH_PROXY_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<u32>,
    /// Threads that run connections [default: one per CPU the process may use].
    #[arg(long, env = "REDIS_AUTH_PROXY_WORKER_THREADS", value_name = "N")]
    pub worker_threads: Option<u32>,
    /// Keep this many ready, authenticated upstream connections per route for new clients, so
    /// that an application opening a connection per request does not wait for TCP, TLS and
    /// AUTH [default: 0, off].
    #[arg(long, env = "REDIS_AUTH_PROXY_UPSTREAM_POOL_SIZE", value_name = "N")]
    pub upstream_pool_size: Option<u32>,
    /// Pooled connections older than this are replaced, as are those made with replaced
    /// tokens [default: 30s].
    #[arg(
        long,
        env = "REDIS_AUTH_PROXY_UPSTREAM_POOL_MAX_AGE",
        value_name = "DURATION"
    )]
    pub upstream_pool_max_age: Option<String>,
    /// Allow a listener on a non-loopback address without --client-password-file. Anyone who
    /// can reach it uses the proxy's token, so this is refused unless spelled out.
    #[arg(long, env = "REDIS_AUTH_PROXY_ALLOW_REMOTE_CLIENTS", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_remote_clients: Option<bool>,
    /// Do not verify the upstream's certificate. For tests only: anyone on the path can then
    /// read the token. A warning is logged at every start.
    #[arg(long, env = "REDIS_AUTH_PROXY_TLS_INSECURE_SKIP_VERIFY", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub tls_insecure_skip_verify: Option<bool>,
    /// Address of the admin HTTP endpoints (/metrics, /livez, /readyz, /startupz,
    /// /quitquitquit), IP:PORT, or `off` [default: 127.0.0.1:6479]. Kubernetes probes need a
    /// pod-reachable address such as 0.0.0.0:6479.
    #[arg(long, env = "REDIS_AUTH_PROXY_ADMIN_LISTEN", value_name = "ADDR")]
    pub admin_listen: Option<String>,
    /// /readyz also requires a successful upstream AUTH on every route within the last 30s,
    /// making one itself when none is that recent.
    #[arg(long, env = "REDIS_AUTH_PROXY_READY_REQUIRES_UPSTREAM", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub ready_requires_upstream: Option<bool>,
    /// After SIGTERM, SIGINT or /quitquitquit, keep accepting new connections this long while
    /// /readyz reports draining [default: 0s].
    #[arg(long, env = "REDIS_AUTH_PROXY_SHUTDOWN_DELAY", value_name = "DURATION")]
    pub shutdown_delay: Option<String>,
    /// Then stop accepting and give open connections this long to finish before closing them
    /// [default: 20s].
    #[arg(long, env = "REDIS_AUTH_PROXY_SHUTDOWN_GRACE", value_name = "DURATION")]
    pub shutdown_grace: Option<String>,
    /// TOML config file; its keys are the flag names. It may declare several [[route]]s.
    #[arg(long, env = "REDIS_AUTH_PROXY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log filter: error, warn, info, debug, trace, or a tracing directive list. RUST_LOG is
    /// used when neither this nor its variable is set [default: info].
    #[arg(long, env = "REDIS_AUTH_PROXY_LOG_LEVEL", value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Log format: `text` or `json` (one JSON object per line) [default: text].
    #[arg(long, env = "REDIS_AUTH_PROXY_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,
}

/// The config file. Keys are the flag names; `[token]` and `[[route]]` are tables.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    unix_socket_mode: Option<String>,
    client_password_file: Option<PathBuf>,
    idle_timeout: Option<String>,
    upstream: Option<String>,
    no_tls: Option<bool>,
    tls_ca_file: Option<PathBuf>,
    tls_server_name: Option<String>,
    tls_client_cert: Option<PathBuf>,
    tls_client_key: Option<PathBuf>,
    tls_min_version: Option<String>,
    tls_max_version: Option<String>,
    username: Option<String>,
    token_file: Option<PathBuf>,
    token_env: Option<String>,
    token_json_key: Option<String>,
    token_secret_id: Option<String>,
    token_refresh_interval: Option<String>,
    connect_timeout: Option<String>,
    auth_timeout: Option<String>,
    max_connections: Option<u32>,
    worker_threads: Option<u32>,
    upstream_pool_size: Option<u32>,
    upstream_pool_max_age: Option<String>,
    allow_remote_clients: Option<bool>,
    tls_insecure_skip_verify: Option<bool>,
    admin_listen: Option<String>,
    ready_requires_upstream: Option<bool>,
    shutdown_delay: Option<String>,
    shutdown_grace: Option<String>,
    log_level: Option<String>,
    log_format: Option<String>,
    token: Option<FileToken>,
    #[serde(default)]
    route: Vec<FileRoute>,
}

/// `[token]`: the same as the `token-*` keys.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileToken {
    file: Option<PathBuf>,
    env: Option<String>,
    json_key: Option<String>,
    secret_id: Option<String>,
    refresh_interval: Option<String>,
}

/// `[[route]]`: one listener and its upstream; TLS keys default to the top-level ones.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileRoute {
    name: Option<String>,
    listen: Option<String>,
    upstream: Option<String>,
    no_tls: Option<bool>,
    tls_ca_file: Option<PathBuf>,
    tls_server_name: Option<String>,
}

/// One local listener and the server it leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub name: String,
    pub listen: ListenAddr,
    pub upstream: UpstreamAddr,
    /// `None` for `--no-tls`.
    pub tls: Option<TlsSettings>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub routes: Vec<Route>,
    pub token: TokenSource,
    /// How often a Secrets Manager source is re-read.
    pub token_refresh_interval: Duration,
    pub username: Option<String>,
    pub connect_timeout: Duration,
    pub auth_timeout: Duration,
    /// `None` for never.
    pub idle_timeout: Option<Duration>,
    pub unix_socket_mode: u32,
    pub client_password_file: Option<PathBuf>,
    pub max_connections: u32,
    /// `None`: one per CPU.
    pub worker_threads: Option<u32>,
    pub upstream_pool_size: u32,
    pub upstream_pool_max_age: Duration,
    /// `None` for `--admin-listen off`.
    pub admin_listen: Option<SocketAddr>,
    pub ready_requires_upstream: bool,
    pub shutdown_delay: Duration,
    pub shutdown_grace: Duration,
    pub log_level: Option<String>,
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Everything wrong with a configuration, one line per problem.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  {}", .0.join("\n  "))]
pub struct ConfigError(pub Vec<String>);

impl Config {
    /// Merges flags (already merged with their environment twins by clap) with the file.
    pub fn from_flags(flags: &Flags) -> Result<Config, ConfigError> {
        let mut errors = Vec::new();
        let file = match &flags.config {
            Some(path) => read_file(path).unwrap_or_else(|e| {
                errors.push(e);
                FileConfig::default()
            }),
            None => FileConfig::default(),
        };
        let config = Merger {
            flags,
            file: &file,
            errors: &mut errors,
        }
        .merge();
        match config {
            Some(config) if errors.is_empty() => Ok(config),
            _ => Err(ConfigError(errors)),
        }
    }
}

fn read_file(path: &Path) -> Result<FileConfig, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("--config {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("--config {}: {}", path.display(), e.message()))
}

struct Merger<'a> {
    flags: &'a Flags,
    file: &'a FileConfig,
    errors: &'a mut Vec<String>,
}

impl Merger<'_> {
    fn merge(&mut self) -> Option<Config> {
        let token = self.token_source();
        let connect_timeout = self.duration(
            "--connect-timeout",
            self.flags
                .connect_timeout
                .as_ref()
                .or(self.file.connect_timeout.as_ref()),
            DEFAULT_CONNECT_TIMEOUT,
        );
        let auth_timeout = self.duration(
            "--auth-timeout",
            self.flags
                .auth_timeout
                .as_ref()
                .or(self.file.auth_timeout.as_ref()),
            DEFAULT_AUTH_TIMEOUT,
        );
        let idle_timeout = self.duration(
            "--idle-timeout",
            self.flags
                .idle_timeout
                .as_ref()
                .or(self.file.idle_timeout.as_ref()),
            Duration::ZERO,
        );
        let unix_socket_mode = self.unix_socket_mode();
        let client_password_file = self
            .flags
            .client_password_file
            .clone()
            .or_else(|| self.file.client_password_file.clone());
        let table = self.file.token.as_ref();
        let refresh = self
            .flags
            .token_refresh_interval
            .clone()
            .or_else(|| self.file.token_refresh_interval.clone())
            .or_else(|| table.and_then(|t| t.refresh_interval.clone()));
        let token_refresh_interval = self.duration(
            "--token-refresh-interval",
            refresh.as_ref(),
            DEFAULT_REFRESH_INTERVAL,
        );
        if token_refresh_interval < Duration::from_secs(1) {
            self.errors
                .push("--token-refresh-interval: must be at least 1s".into());
        }
        let versions = self.tls_versions();
        let routes = self.routes(versions);
        let admin_listen = self.admin_listen();
        let shutdown_delay = self.duration(
            "--shutdown-delay",
            self.flags
                .shutdown_delay
                .as_ref()
                .or(self.file.shutdown_delay.as_ref()),
            Duration::ZERO,
        );
        let shutdown_grace = self.duration(
            "--shutdown-grace",
            self.flags
                .shutdown_grace
                .as_ref()
                .or(self.file.shutdown_grace.as_ref()),
            DEFAULT_SHUTDOWN_GRACE,
        );
        let log_format = self.log_format();
        let max_connections = self
            .flags
            .max_connections
            .or(self.file.max_connections)
            .unwrap_or(DEFAULT_MAX_CONNECTIONS);
        if max_connections == 0 {
            self.errors
                .push("--max-connections: must be at least 1".into());
        }
        self.refuse_remote_listeners(&routes, client_password_file.is_some());
        let upstream_pool_size = self
            .flags
            .upstream_pool_size
            .or(self.file.upstream_pool_size)
            .unwrap_or(0);
        if upstream_pool_size > 1000 {
            self.errors
                .push("--upstream-pool-size: at most 1000".into());
        }
        let upstream_pool_max_age = self.duration(
            "--upstream-pool-max-age",
            self.flags
                .upstream_pool_max_age
                .as_ref()
                .or(self.file.upstream_pool_max_age.as_ref()),
            DEFAULT_POOL_MAX_AGE,
        );
        if upstream_pool_max_age < Duration::from_secs(1) {
            self.errors
                .push("--upstream-pool-max-age: must be at least 1s".into());
        }
        let worker_threads = self.flags.worker_threads.or(self.file.worker_threads);
        if worker_threads == Some(0) || worker_threads.is_some_and(|n| n > 1024) {
            self.errors
                .push("--worker-threads: between 1 and 1024".into());
        }
        Some(Config {
            max_connections,
            worker_threads,
            upstream_pool_size,
            upstream_pool_max_age,
            routes,
            token: token?,
            token_refresh_interval,
            username: self
                .flags
                .username
                .clone()
                .or_else(|| self.file.username.clone()),
            connect_timeout,
            auth_timeout,
            idle_timeout: (!idle_timeout.is_zero()).then_some(idle_timeout),
            unix_socket_mode,
            client_password_file,
            admin_listen,
            ready_requires_upstream: self
                .flags
                .ready_requires_upstream
                .or(self.file.ready_requires_upstream)
                .unwrap_or(false),
            shutdown_delay,
            shutdown_grace,
            log_level: self
                .flags
                .log_level
                .clone()
                .or_else(|| self.file.log_level.clone()),
            log_format,
        })
    }

    fn admin_listen(&mut self) -> Option<SocketAddr> {
        let value = self
            .flags
            .admin_listen
            .clone()
            .or_else(|| self.file.admin_listen.clone())
            .unwrap_or_else(|| DEFAULT_ADMIN_LISTEN.into());
        match parse_admin_listen(&value) {
            Ok(addr) => addr,
            Err(e) => {
                self.errors.push(format!("--admin-listen: {e}"));
                None
            }
        }
    }

    /// A listener off loopback hands the token to whoever reaches it: only behind a client
    /// password, or when spelled out.
    fn refuse_remote_listeners(&mut self, routes: &[Route], client_password: bool) {
        let allowed = client_password
            || self
                .flags
                .allow_remote_clients
                .or(self.file.allow_remote_clients)
                .unwrap_or(false);
        for route in routes.iter().filter(|r| !r.listen.is_local()) {
            if !allowed {
                self.errors.push(format!(
                    "--listen {} (route {}): not a loopback address; anyone who reaches it uses the proxy's token. \
                     Listen on 127.0.0.1 or a unix:/path, set --client-password-file, or pass --allow-remote-clients",
                    route.listen, route.name
                ));
            }
        }
    }

    fn unix_socket_mode(&mut self) -> u32 {
        let Some(text) = self
            .flags
            .unix_socket_mode
            .as_deref()
            .or(self.file.unix_socket_mode.as_deref())
        else {
            return DEFAULT_UNIX_SOCKET_MODE;
        };
        match u32::from_str_radix(text, 8) {
            Ok(mode) if mode <= 0o777 => mode,
            _ => {
                self.errors.push(format!(
                    "--unix-socket-mode: expected octal permissions such as 0600 or 0660, got {text:?}"
                ));
                DEFAULT_UNIX_SOCKET_MODE
            }
        }
    }

    fn log_format(&mut self) -> LogFormat {
        match self
            .flags
            .log_format
            .as_deref()
            .or(self.file.log_format.as_deref())
        {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                self.errors.push(format!(
                    "--log-format: expected text or json, got {other:?}"
                ));
                LogFormat::Text
            }
        }
    }

    fn token_source(&mut self) -> Option<TokenSource> {
        let table = self.file.token.as_ref();
        let file_path = self
            .flags
            .token_file
            .clone()
            .or_else(|| self.file.token_file.clone())
            .or_else(|| table.and_then(|t| t.file.clone()));
        let env_var = self
            .flags
            .token_env
            .clone()
            .or_else(|| self.file.token_env.clone())
            .or_else(|| table.and_then(|t| t.env.clone()));
        let json_key = self
            .flags
            .token_json_key
            .clone()
            .or_else(|| self.file.token_json_key.clone())
            .or_else(|| table.and_then(|t| t.json_key.clone()));
        let secret_id = self
            .flags
            .token_secret_id
            .clone()
            .or_else(|| self.file.token_secret_id.clone())
            .or_else(|| table.and_then(|t| t.secret_id.clone()));
        let mut chosen: Vec<(&str, TokenSource)> = Vec::new();
        if let Some(path) = file_path {
            chosen.push((
                "--token-file",
                TokenSource::File(FileSource {
                    path,
                    json_key: json_key.clone(),
                }),
            ));
        }
        if let Some(var) = env_var {
            if var.is_empty() {
                self.errors.push("--token-env: empty variable name".into());
            }
            chosen.push((
                "--token-env",
                TokenSource::Env(EnvSource {
                    var,
                    json_key: json_key.clone(),
                }),
            ));
        }
        if let Some(id) = secret_id {
            if id.is_empty() {
                self.errors
                    .push("--token-secret-id: empty secret id".into());
            }
            chosen.push((
                "--token-secret-id",
                TokenSource::SecretsManager(SecretsManagerSource::new(id, json_key)),
            ));
        }
        match chosen.len() {
            1 => chosen.pop().map(|(_, source)| source),
            0 => {
                self.errors.push(
                    "no token source: set --token-file, --token-env or --token-secret-id (or their REDIS_AUTH_PROXY_* variables, or [token] in --config)".into(),
                );
                None
            }
            _ => {
                let names: Vec<&str> = chosen.iter().map(|(name, _)| *name).collect();
                let verb = if names.len() == 2 {
                    "are both set"
                } else {
                    "are all set"
                };
                self.errors.push(format!(
                    "{} {verb}; choose one token source",
                    names.join(" and ")
                ));
                None
            }
        }
    }

    /// `--tls-min-version` and `--tls-max-version`, checked against each other.
    fn tls_versions(&mut self) -> (TlsVersion, TlsVersion) {
        let mut version =
            |flag: &str, value: Option<String>, default: TlsVersion| match value.as_deref() {
                None => default,
                Some("1.2") => TlsVersion::V1_2,
                Some("1.3") => TlsVersion::V1_3,
                Some(other) => {
                    self.errors
                        .push(format!("{flag}: expected 1.2 or 1.3, got {other:?}"));
                    default
                }
            };
        let min = version(
            "--tls-min-version",
            self.flags
                .tls_min_version
                .clone()
                .or_else(|| self.file.tls_min_version.clone()),
            TlsVersion::V1_2,
        );
        let max = version(
            "--tls-max-version",
            self.flags
                .tls_max_version
                .clone()
                .or_else(|| self.file.tls_max_version.clone()),
            TlsVersion::V1_3,
        );
        if min > max {
            self.errors
                .push("--tls-min-version is newer than --tls-max-version".into());
        }
        (min, max)
    }

    fn routes(&mut self, versions: (TlsVersion, TlsVersion)) -> Vec<Route> {
        let flag_listen = self.flags.listen.clone();
        let flag_upstream = self.flags.upstream.clone();
        if self.file.route.is_empty() {
            let listen = flag_listen
                .or_else(|| self.file.listen.clone())
                .unwrap_or_else(|| DEFAULT_LISTEN.into());
            let route = FileRoute {
                name: Some("default".into()),
                listen: Some(listen),
                upstream: flag_upstream.or_else(|| self.file.upstream.clone()),
                no_tls: None,
                tls_ca_file: None,
                tls_server_name: None,
            };
            return self
                .route(&route, "", "default", versions)
                .into_iter()
                .collect();
        }
        if flag_listen.is_some()
            || flag_upstream.is_some()
            || self.file.listen.is_some()
            || self.file.upstream.is_some()
        {
            self.errors.push(
                "--listen / --upstream cannot be combined with [[route]] tables in --config; put them in the routes".into(),
            );
        }
        let mut routes: Vec<Route> = Vec::new();
        for (i, table) in self.file.route.iter().enumerate() {
            let prefix = format!("[[route]] #{}", i + 1);
            if let Some(route) = self.route(table, &prefix, &format!("route{}", i + 1), versions) {
                if routes.iter().any(|r| r.name == route.name) {
                    self.errors
                        .push(format!("{prefix}: duplicate route name {:?}", route.name));
                }
                if routes.iter().any(|r| r.listen == route.listen) {
                    self.errors.push(format!(
                        "{prefix}: listen address {} is used twice",
                        route.listen
                    ));
                }
                routes.push(route);
            }
        }
        routes
    }

    /// Builds one route; `prefix` is empty for the flag-defined one.
    fn route(
        &mut self,
        table: &FileRoute,
        prefix: &str,
        default_name: &str,
        (min_version, max_version): (TlsVersion, TlsVersion),
    ) -> Option<Route> {
        let at = |key: &str| {
            if prefix.is_empty() {
                format!("--{key}")
            } else {
                format!("{prefix} {key}")
            }
        };
        let name = table
            .name
            .clone()
            .unwrap_or_else(|| default_name.to_owned());
        let listen = match table.listen.as_deref().map(ListenAddr::parse) {
            Some(Ok(addr)) => Some(addr),
            Some(Err(e)) => {
                self.errors.push(format!("{}: {e}", at("listen")));
                None
            }
            None => {
                self.errors.push(format!("{}: required", at("listen")));
                None
            }
        };
        let upstream = match table.upstream.as_deref().map(parse_upstream) {
            Some(Ok(addr)) => Some(addr),
            Some(Err(e)) => {
                self.errors.push(format!("{}: {e}", at("upstream")));
                None
            }
            None => {
                self.errors.push(format!(
                    "{}: required (HOST:PORT of the Redis or Valkey server)",
                    at("upstream")
                ));
                None
            }
        };
        let upstream = upstream?;
        let no_tls = self
            .flags
            .no_tls
            .or(table.no_tls)
            .or(self.file.no_tls)
            .unwrap_or(false);
        let tls = (!no_tls).then(|| TlsSettings {
            min_version,
            max_version,
            server_name: table
                .tls_server_name
                .clone()
                .or_else(|| self.flags.tls_server_name.clone())
                .or_else(|| self.file.tls_server_name.clone())
                .unwrap_or_else(|| upstream.host.clone()),
            ca_file: table
                .tls_ca_file
                .clone()
                .or_else(|| self.flags.tls_ca_file.clone())
                .or_else(|| self.file.tls_ca_file.clone()),
            client_cert: self
                .flags
                .tls_client_cert
                .clone()
                .or_else(|| self.file.tls_client_cert.clone()),
            client_key: self
                .flags
                .tls_client_key
                .clone()
                .or_else(|| self.file.tls_client_key.clone()),
            insecure_skip_verify: self
                .flags
                .tls_insecure_skip_verify
                .or(self.file.tls_insecure_skip_verify)
                .unwrap_or(false),
        });
        if let Some(tls) = &tls
            && tls.client_cert.is_some() != tls.client_key.is_some()
        {
            self.errors
                .push("--tls-client-cert and --tls-client-key must be given together".into());
        }
        Some(Route {
            name,
            listen: listen?,
            upstream,
            tls,
        })
    }

    fn duration(&mut self, flag: &str, value: Option<&String>, default: Duration) -> Duration {
        match value.map(|v| parse_duration(v)) {
            None => default,
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                self.errors.push(format!("{flag}: {e}"));
                default
            }
        }
    }
}

/// `IP:PORT`, or `off` for no admin listener.
pub fn parse_admin_listen(text: &str) -> Result<Option<SocketAddr>, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| format!("expected IP:PORT or off, got {text:?}"))
}

/// The admin address for `health`: flags and environment, then the config file, then the
/// default; the rest of the configuration is not needed.
pub fn admin_address(flags: &Flags) -> Result<Option<SocketAddr>, ConfigError> {
    let file = match &flags.config {
        Some(path) => read_file(path).map_err(|e| ConfigError(vec![e]))?,
        None => FileConfig::default(),
    };
    let value = flags
        .admin_listen
        .clone()
        .or(file.admin_listen)
        .unwrap_or_else(|| DEFAULT_ADMIN_LISTEN.into());
    parse_admin_listen(&value).map_err(|e| ConfigError(vec![format!("--admin-listen: {e}")]))
}

/// `HOST:PORT`, `HOST` (port 6379) or `[IPv6]:PORT`.
pub fn parse_upstream(text: &str) -> Result<UpstreamAddr, String> {
    let bad = || format!("expected HOST:PORT, got {text:?}");
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        (host, after.strip_prefix(':'))
    } else if text.matches(':').count() > 1 {
        (text, None)
    } else {
        match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(bad());
    }
    let port = match port {
        None => 6379,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad)?,
    };
    Ok(UpstreamAddr {
        host: host.to_owned(),
        port,
    })
}

/// `500ms`, `30s`, `5m`, `1h`, or combinations such as `1m30s`. A bare number is refused.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("expected a duration with a unit such as 500ms, 30s or 5m, got {text:?}");
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let value: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(value),
            "s" => Duration::from_secs(value),
            "m" => Duration::from_secs(value * 60),
            "h" => Duration::from_secs(value * 3600),
            _ => return Err(bad()),
        };
        total += unit;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> Flags {
        Flags {
            upstream: Some("cache.example.com:6380".into()),
            token_file: Some("/run/secrets/token".into()),
            ..Flags::default()
        }
    }

    #[test]
    fn durations_need_units() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn upstream_addresses_accept_hosts_ipv6_and_a_default_port() {
        assert_eq!(
            parse_upstream("h:1").unwrap(),
            UpstreamAddr {
                host: "h".into(),
                port: 1
            }
        );
        assert_eq!(parse_upstream("h").unwrap().port, 6379);
        assert_eq!(parse_upstream("[::1]:7000").unwrap().host, "::1");
        assert!(parse_upstream("h:0").is_err());
        assert!(parse_upstream("h:port").is_err());
    }

    #[test]
    fn defaults_give_one_tls_route_on_localhost_6379() {
        let config = Config::from_flags(&flags()).unwrap();
        let route = &config.routes[0];
        assert_eq!(route.listen.to_string(), "127.0.0.1:6379");
        assert_eq!(route.tls.as_ref().unwrap().server_name, "cache.example.com");
        assert_eq!(config.connect_timeout, Duration::from_secs(5));
    }

    #[test]
    fn every_error_is_reported_together_naming_its_flag() {
        let bad = Flags {
            listen: Some("nonsense".into()),
            connect_timeout: Some("5".into()),
            ..Flags::default()
        };
        let message = Config::from_flags(&bad).unwrap_err().to_string();
        assert!(message.contains("--listen"), "{message}");
        assert!(message.contains("--upstream"), "{message}");
        assert!(message.contains("--connect-timeout"), "{message}");
        assert!(message.contains("no token source"), "{message}");
    }

    #[test]
    fn a_remote_listener_needs_a_client_password_or_the_explicit_flag() {
        let remote = Flags {
            listen: Some("0.0.0.0:6379".into()),
            ..flags()
        };
        let message = Config::from_flags(&remote).unwrap_err().to_string();
        assert!(message.contains("--client-password-file"), "{message}");
        let guarded = Flags {
            client_password_file: Some("/run/secrets/client".into()),
            ..remote.clone()
        };
        assert!(Config::from_flags(&guarded).is_ok());
        let unix = Flags {
            listen: Some("unix:/run/redis-auth-proxy.sock".into()),
            ..flags()
        };
        assert!(Config::from_flags(&unix).is_ok(), "a Unix socket is local");
    }

    #[test]
    fn unix_socket_mode_is_octal() {
        let with_mode = |mode: &str| {
            Config::from_flags(&Flags {
                unix_socket_mode: Some(mode.into()),
                ..flags()
            })
        };
        assert_eq!(with_mode("0660").unwrap().unix_socket_mode, 0o660);
        assert_eq!(
            Config::from_flags(&flags()).unwrap().unix_socket_mode,
            0o600
        );
        assert!(with_mode("0999").is_err());
        assert!(with_mode("1777").is_err());
    }

    #[test]
    fn two_token_sources_are_refused() {
        let both = Flags {
            token_env: Some("T".into()),
            ..flags()
        };
        let message = Config::from_flags(&both).unwrap_err().to_string();
        assert!(
            message.contains("--token-file and --token-env"),
            "{message}"
        );
    }
}
