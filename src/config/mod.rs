//! Command line, environment and config file, merged once into a validated `Config`:
//! `flags` declares every setting once, `file` reads the TOML file, `validate` checks values.
//!
//! Every flag has an environment twin (`REDIS_AUTH_PROXY_<FLAG>`) and a key of the same name in
//! the TOML file; a flag beats its variable, which beats the file, which beats the default.
//! Every problem is collected and reported together, each naming its flag. A token is never a
//! value here: the config names where it comes from.

mod cloud;
mod cluster;
mod file;
mod flags;
mod iam;
mod multiplex;
mod sentinel;
#[cfg(test)]
mod tests;
mod token;
mod validate;

pub use flags::{Cli, CliCommand, EXIT_CODES_HELP, Flags};
pub use iam::token_source;

use crate::listener::ListenAddr;
use crate::sentinel::SentinelSettings;
use crate::token::TokenSource;
use crate::upstream::{TlsSettings, UpstreamAddr};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
const DEFAULT_FAILOVER_TIMEOUT: Duration = Duration::from_secs(30);
/// Only the proxy's own user may connect to its Unix socket unless told otherwise.
const DEFAULT_UNIX_SOCKET_MODE: u32 = 0o600;

/// One local listener and the server it leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub name: String,
    pub listen: ListenAddr,
    pub upstream: UpstreamAddr,
    /// `None` for `--no-tls`.
    pub tls: Option<TlsSettings>,
    /// `--cluster`: every node of the cluster gets a local listener.
    pub cluster: bool,
    /// `--sentinel`: the primary's address comes from these Sentinels, and `upstream` holds
    /// the master's name (port 0).
    pub sentinel: Option<SentinelSettings>,
    /// `--multiplex`: clients share a few upstream connections.
    pub multiplex: bool,
}

impl Route {
    /// How logs and `check` name the route's server.
    pub fn describe_upstream(&self) -> String {
        match &self.sentinel {
            Some(sentinel) => sentinel.describe(),
            None => self.upstream.to_string(),
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub routes: Vec<Route>,
    pub token: TokenSource,
    /// `--cluster-ports`: where cluster nodes' listeners go.
    pub cluster_ports: std::ops::RangeInclusive<u16>,
    /// What every upstream connection is opened, authenticated and kept with.
    pub connections: ConnectionSettings,
    /// How often a Secrets Manager source is re-read.
    pub token_refresh_interval: Duration,
    pub unix_socket_mode: u32,
    pub client_password_file: Option<PathBuf>,
    pub max_connections: u32,
    /// `None`: one per CPU.
    pub worker_threads: Option<u32>,
    /// `None` for `--admin-listen off`.
    pub admin_listen: Option<SocketAddr>,
    pub ready_requires_upstream: bool,
    pub shutdown_delay: Duration,
    pub shutdown_grace: Duration,
    pub log_level: Option<String>,
    pub log_format: LogFormat,
}

/// What every upstream connection of every route (a cluster node's too) is opened,
/// authenticated and kept with: one value from the configuration to the forwarding loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionSettings {
    /// `--username`: the ACL user the proxy authenticates as (`None`: the token's, else
    /// `default`).
    pub username: Option<String>,
    pub connect_timeout: Duration,
    pub auth_timeout: Duration,
    /// `--idle-timeout`; `None` for never.
    pub idle_timeout: Option<Duration>,
    /// `--upstream-pool-size`: ready connections kept per route (0: none).
    pub pool_size: u32,
    pub pool_max_age: Duration,
    /// `--upstream-reuse`.
    pub reuse: bool,
    /// With IAM or Entra ID: re-authenticating live connections before the server cuts them.
    pub renewal: Option<Renewal>,
    /// `--follow-primary`: a session refused by a demoted primary moves to the new one.
    pub follow_primary: bool,
    /// `--failover-timeout`: how long a session waits for the primary to answer again.
    pub failover_timeout: Duration,
    /// `--multiplex-connections`: shared upstream connections per multiplexed route.
    pub multiplex_connections: u32,
}

/// How a live connection stays authenticated: which clock says when the server would drop it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// AWS IAM (`--iam-reauth-interval`, `--iam-connection-lifetime`) and Google IAM's maximum
    /// age: authenticate again this often (less jitter), when quiet; the server drops a
    /// connection `lifetime` after its last AUTH.
    Interval { every: Duration, lifetime: Duration },
    /// Entra ID: the server drops a connection when the token that last authenticated it
    /// expires, so it is renewed before that with the next token.
    TokenExpiry,
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
        let (merged, file, mut errors) = read(flags);
        let config = validate::Merger {
            s: &merged,
            flags,
            file: &file.settings,
            routes: &file.routes,
            errors: &mut errors,
        }
        .merge();
        match config {
            Some(config) if errors.is_empty() => Ok(config),
            _ => Err(ConfigError(errors)),
        }
    }
}

/// Flags (already merged with their environment twins) over the config file's settings;
/// a file that cannot be read is the first error.
fn read(flags: &Flags) -> (Flags, file::FileConfig, Vec<String>) {
    let mut errors = Vec::new();
    let file = match &flags.config {
        Some(path) => file::read_file(path).unwrap_or_else(|e| {
            errors.push(e);
            file::FileConfig::default()
        }),
        None => file::FileConfig::default(),
    };
    let merged = flags.clone().or(file.settings.clone());
    (merged, file, errors)
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
        Some(path) => file::read_file(path).map_err(|e| ConfigError(vec![e]))?,
        None => file::FileConfig::default(),
    };
    let value = flags
        .admin_listen
        .clone()
        .or(file.settings.admin_listen)
        .unwrap_or_else(|| DEFAULT_ADMIN_LISTEN.into());
    parse_admin_listen(&value).map_err(|e| ConfigError(vec![format!("--admin-listen: {e}")]))
}

/// `HOST:PORT`, `HOST` (port 6379) or `[IPv6]:PORT`.
pub fn parse_upstream(text: &str) -> Result<UpstreamAddr, String> {
    parse_host_port(text, 6379)
}

/// `HOST:PORT`, `HOST` (`default_port`) or `[IPv6]:PORT`.
fn parse_host_port(text: &str, default_port: u16) -> Result<UpstreamAddr, String> {
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
        None => default_port,
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
