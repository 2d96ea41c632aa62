//! The command line: every setting is one field of `Flags`, which gives its flag, its
//! environment variable (`REDIS_AUTH_PROXY_<FLAG>`), its config-file key (the flag's name) and
//! its help text, with the default in brackets. Values are checked in `validate`.

use clap::{Args, Parser, Subcommand};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Shown at the end of `--help`.
pub const EXIT_CODES_HELP: &str = "Exit codes:\n  0   stopped by SIGTERM or SIGINT; `check` passed; `health` found it ready; `wait`\n      \
saw it start; `token` printed a token\n  \
1   could not start (token source, listener, TLS files), a `check` route failed,\n      \
`health` found it not ready, `wait` did not see it start, or `token` could not\n      \
get one (no credentials, no AWS region, the endpoint refused)\n  \
2   command-line syntax error\n  78  invalid configuration (every problem is listed)\n\n\
See docs/configuration.md for the config file and token formats, docs/clients.md for the\n\
errors clients can see, docs/operations.md for metrics and probes.";

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
    /// Print one token from the configured source (--iam-service, --entra-id, --google-iam
    /// or any other), for `redis-cli --user USER --pass "$(redis-auth-proxy token ...)"` or
    /// to check permissions. Exits 1 if no token can be had. (`iam-token` is the old name.)
    #[command(alias = "iam-token")]
    Token(Flags),
    /// Ask the local admin endpoint (--admin-listen) whether the proxy is ready: exit 0 if it
    /// is, 1 if not. For container health checks in images without curl.
    Health(Flags),
    /// Wait until the proxy on this host has started (the local admin endpoint's /startupz,
    /// --admin-listen): exit 0 once it has, 1 if it has not within --wait-timeout. For
    /// start-up ordering in init scripts and classic sidecars.
    Wait(Flags),
}

/// The flags shared by `run` and `check`.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
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
    /// Authenticate with IAM tokens signed for this service: elasticache or memorydb. The
    /// AWS credentials come from the SDK's default chain (environment, profile, IRSA web
    /// identity, ECS task role or EKS Pod Identity, instance profile); --username is the IAM
    /// user id. See docs/iam.md.
    #[arg(long, env = "REDIS_AUTH_PROXY_IAM_SERVICE", value_name = "SERVICE")]
    pub iam_service: Option<String>,
    /// With --iam-service: the replication group id, Serverless cache name or MemoryDB cluster
    /// name the token is for (lowercased).
    #[arg(long, env = "REDIS_AUTH_PROXY_IAM_CACHE_NAME", value_name = "NAME")]
    pub iam_cache_name: Option<String>,
    /// With --iam-service elasticache: the cache is an ElastiCache Serverless cache
    /// [default: false].
    #[arg(long, env = "REDIS_AUTH_PROXY_IAM_SERVERLESS", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub iam_serverless: Option<bool>,
    /// With --iam-service: the cache's AWS region [default: the AWS configuration's region,
    /// AWS_REGION or the profile's].
    #[arg(long, env = "REDIS_AUTH_PROXY_IAM_REGION", value_name = "REGION")]
    pub iam_region: Option<String>,
    /// With --iam-service or --google-iam: authenticate each live upstream connection again
    /// this often, in band, when it is quiet, so the server's cut of IAM connections does not
    /// come; jittered down by up to 10% [default: 11h]. Must be below
    /// --iam-connection-lifetime.
    #[arg(
        long,
        env = "REDIS_AUTH_PROXY_IAM_REAUTH_INTERVAL",
        value_name = "DURATION"
    )]
    pub iam_reauth_interval: Option<String>,
    /// With --iam-service or --google-iam: how long the server keeps an IAM connection after
    /// its last AUTH; a connection that found no quiet moment to authenticate again is closed
    /// shortly before [default: 12h, as ElastiCache and MemoryDB do, and Memorystore's stated
    /// maximum].
    #[arg(
        long,
        env = "REDIS_AUTH_PROXY_IAM_CONNECTION_LIFETIME",
        value_name = "DURATION"
    )]
    pub iam_connection_lifetime: Option<String>,
    /// Authenticate with Microsoft Entra ID access tokens (Azure Managed Redis, Azure Cache for
    /// Redis), found as the Azure SDKs find them: AZURE_CLIENT_SECRET, workload identity's
    /// AZURE_FEDERATED_TOKEN_FILE, App Service's IDENTITY_ENDPOINT, else the VM's managed
    /// identity. The user is the token's oid unless --username is given. Each live connection
    /// is renewed in band before its token expires. See docs/azure.md [default: false].
    #[arg(long, env = "REDIS_AUTH_PROXY_ENTRA_ID", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub entra_id: Option<bool>,
    /// With --entra-id: the scope tokens are asked for (another for a sovereign cloud)
    /// [default: https://redis.azure.com/.default].
    #[arg(long, env = "REDIS_AUTH_PROXY_ENTRA_SCOPE", value_name = "SCOPE")]
    pub entra_scope: Option<String>,
    /// With --entra-id: the client id of a user-assigned managed identity, or of the
    /// application [default: AZURE_CLIENT_ID].
    #[arg(long, env = "REDIS_AUTH_PROXY_ENTRA_CLIENT_ID", value_name = "ID")]
    pub entra_client_id: Option<String>,
    /// Authenticate with Google Cloud IAM access tokens (Memorystore for Redis Cluster,
    /// Memorystore for Valkey), from the service-account key file GOOGLE_APPLICATION_CREDENTIALS
    /// names, else the metadata server (GCE_METADATA_HOST). Sent as AUTH <token>, or with
    /// --username (Memorystore accepts only default). See docs/google-cloud.md
    /// [default: false].
    #[arg(long, env = "REDIS_AUTH_PROXY_GOOGLE_IAM", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub google_iam: Option<bool>,
    /// With --google-iam: the scope tokens are asked for
    /// [default: https://www.googleapis.com/auth/cloud-platform].
    #[arg(long, env = "REDIS_AUTH_PROXY_GOOGLE_SCOPE", value_name = "SCOPE")]
    pub google_scope: Option<String>,
    /// The upstream is a Redis Cluster, ElastiCache (cluster mode, or Serverless) or MemoryDB:
    /// every node gets a local listener, and CLUSTER SLOTS / SHARDS / NODES / REPLICAS replies
    /// and -MOVED / -ASK / -REDIRECT errors name those listeners (docs/cluster.md)
    /// [default: false].
    #[arg(long, env = "REDIS_AUTH_PROXY_CLUSTER", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub cluster: Option<bool>,
    /// Loopback ports for the cluster nodes' listeners, LOW-HIGH; a node keeps its port while
    /// the process lives [default: 7001-7100].
    #[arg(long, env = "REDIS_AUTH_PROXY_CLUSTER_PORTS", value_name = "LOW-HIGH")]
    pub cluster_ports: Option<String>,
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
    /// When a client leaves owing nothing, reset its upstream connection (RESET, then the
    /// proxy's AUTH) and put it back in the pool for the next client, instead of closing it:
    /// for applications that connect per request. Needs --upstream-pool-size; the next client
    /// sees the same CLIENT ID [default: false].
    #[arg(long, env = "REDIS_AUTH_PROXY_UPSTREAM_REUSE", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub upstream_reuse: Option<bool>,
    /// When a command is refused because the server is no longer the primary (READONLY, or
    /// LOADING while a replaced node loads), reconnect to the endpoint until a primary answers,
    /// replay the session's state and send the refused commands again there, so the client
    /// sees no error. Only on a route whose endpoint answered as a primary [default: true].
    #[arg(long, env = "REDIS_AUTH_PROXY_FOLLOW_PRIMARY", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub follow_primary: Option<bool>,
    /// How long a connection following the primary keeps trying to reach it before the client
    /// gets the server's refusal and the connection closes [default: 30s].
    #[arg(
        long,
        env = "REDIS_AUTH_PROXY_FAILOVER_TIMEOUT",
        value_name = "DURATION"
    )]
    pub failover_timeout: Option<String>,
    /// Find the primary through Redis Sentinel instead of --upstream: HOST:PORT of a Sentinel
    /// (port 26379 if omitted); repeat the flag, or separate with commas, for several. Each
    /// new upstream connection goes to the primary the Sentinels name, and when they switch it
    /// (+switch-master) live sessions move to the new one. See docs/failover.md.
    #[arg(
        long,
        env = "REDIS_AUTH_PROXY_SENTINEL",
        value_name = "HOST:PORT",
        value_delimiter = ','
    )]
    pub sentinel: Option<Vec<String>>,
    /// With --sentinel: the name the Sentinels monitor the primary under (`sentinel monitor
    /// <name> ...`).
    #[arg(long, env = "REDIS_AUTH_PROXY_SENTINEL_MASTER", value_name = "NAME")]
    pub sentinel_master: Option<String>,
    /// With --sentinel: the ACL user to authenticate to the Sentinels as [default: none, the
    /// default user when a password is given].
    #[arg(long, env = "REDIS_AUTH_PROXY_SENTINEL_USERNAME", value_name = "NAME")]
    pub sentinel_username: Option<String>,
    /// With --sentinel: file whose first line is the Sentinels' own password (their
    /// requirepass), read at every connection to a Sentinel [default: no password].
    #[arg(
        long,
        env = "REDIS_AUTH_PROXY_SENTINEL_PASSWORD_FILE",
        value_name = "PATH"
    )]
    pub sentinel_password_file: Option<PathBuf>,
    /// With --sentinel: reach the Sentinels over TLS, verified with --tls-ca-file against the
    /// Sentinel's host and with the same client certificate [default: as the upstream, TLS
    /// unless --no-tls].
    #[arg(long, env = "REDIS_AUTH_PROXY_SENTINEL_TLS", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub sentinel_tls: Option<bool>,
    /// Serve clients over a few shared upstream connections per route instead of one each
    /// (also a [[route]] key); a client that needs per-connection state (MULTI, WATCH,
    /// blocking commands, SUBSCRIBE, SELECT, HELLO 3 ...) gets a connection of its own. See
    /// docs/multiplexing.md [default: false].
    #[arg(long, env = "REDIS_AUTH_PROXY_MULTIPLEX", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub multiplex: Option<bool>,
    /// With --multiplex: shared upstream connections per route [default: 2].
    #[arg(long, env = "REDIS_AUTH_PROXY_MULTIPLEX_CONNECTIONS", value_name = "N")]
    pub multiplex_connections: Option<u32>,
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
    /// With `wait`: how long to wait for the proxy to start [default: 30s].
    #[arg(long, env = "REDIS_AUTH_PROXY_WAIT_TIMEOUT", value_name = "D")]
    pub wait_timeout: Option<String>,
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
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Log filter: error, warn, info, debug, trace, or a tracing directive list. RUST_LOG is
    /// used when neither this nor its variable is set [default: info].
    #[arg(long, env = "REDIS_AUTH_PROXY_LOG_LEVEL", value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Log format: `text` or `json` (one JSON object per line) [default: text].
    #[arg(long, env = "REDIS_AUTH_PROXY_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,
}

impl Flags {
    /// These settings, with `fallback`'s where these have none: how a flag (or its variable)
    /// beats the config file. Generic over the fields, so a new setting needs no code here.
    pub(crate) fn or(self, fallback: Flags) -> Flags {
        let config = self.config.clone();
        let (serde_json::Value::Object(mut mine), serde_json::Value::Object(theirs)) = (
            serde_json::to_value(self).expect("settings serialise"),
            serde_json::to_value(fallback).expect("settings serialise"),
        ) else {
            unreachable!("a struct serialises to an object")
        };
        for (key, value) in theirs {
            let slot = mine.entry(key).or_insert(serde_json::Value::Null);
            if slot.is_null() {
                *slot = value;
            }
        }
        let mut merged: Flags =
            serde_json::from_value(serde_json::Value::Object(mine)).expect("settings round-trip");
        merged.config = config;
        merged
    }
}
