//! Every metric the proxy exports, with its help text and label set, in one place.
//!
//! Labels only take values from closed sets: route names (from the config), token slots,
//! results, stages, reasons and source kinds. Never an error text, never a token.
//!
//! One style: a metric is recorded through a handle's method. A metric labelled by route goes
//! through that route's `RouteMetrics` (`route.rs`, with the cluster, pool and IAM ones beside
//! their names in `cluster.rs`, `iam.rs` and here); the few process-wide ones through
//! `PROCESS`.

use metrics::{Counter, counter, describe_counter, describe_gauge, describe_histogram, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const AUTH_ATTEMPTS: &str = "redis_auth_proxy_upstream_auth_attempts_total";
pub const AUTH_FAILURES: &str = "redis_auth_proxy_auth_failures_total";
pub const TOKEN_FALLBACKS: &str = "redis_auth_proxy_token_fallbacks_total";
pub const CONNECTIONS_ACTIVE: &str = "redis_auth_proxy_client_connections_active";
pub const CONNECTIONS: &str = "redis_auth_proxy_client_connections_total";
pub const CONNECTIONS_REJECTED: &str = "redis_auth_proxy_client_connections_rejected_total";
pub const CONNECT_DURATION: &str = "redis_auth_proxy_upstream_connect_duration_seconds";
pub const CONNECT_FAILURES: &str = "redis_auth_proxy_upstream_connect_failures_total";
pub const CONNECTION_ERRORS: &str = "redis_auth_proxy_connection_errors_total";
pub const BYTES: &str = "redis_auth_proxy_bytes_total";
pub const INTERCEPTED: &str = "redis_auth_proxy_intercepted_commands_total";
pub const CLIENT_AUTH: &str = "redis_auth_proxy_client_auth_total";
pub const TLS_HANDSHAKES: &str = "redis_auth_proxy_upstream_tls_handshakes_total";
pub const TOKEN_RELOADS: &str = "redis_auth_proxy_token_reloads_total";
pub const TOKEN_LAST_CHANGE: &str = "redis_auth_proxy_token_last_change_timestamp_seconds";
pub const TOKEN_EXPIRY: &str = "redis_auth_proxy_token_expiry_timestamp_seconds";
pub const TOKEN_LAST_RELOAD: &str =
    "redis_auth_proxy_token_last_successful_reload_timestamp_seconds";
pub const BUILD_INFO: &str = "redis_auth_proxy_build_info";
pub const READY: &str = "redis_auth_proxy_ready";
pub const POOL_READY: &str = "redis_auth_proxy_upstream_pool_ready";
pub const POOL_TAKES: &str = "redis_auth_proxy_upstream_pool_takes_total";
pub const POOL_EVICTIONS: &str = "redis_auth_proxy_upstream_pool_evictions_total";
pub const REUSES: &str = "redis_auth_proxy_upstream_reuses_total";
pub const NOT_REUSED: &str = "redis_auth_proxy_upstream_not_reused_total";

/// Installs the process-wide Prometheus recorder once and returns its handle.
pub fn install() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(CONNECT_DURATION.into()),
                &[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ],
            )
            .expect("bucket list is not empty")
            .set_buckets_for_metric(
                Matcher::Full(multiplex::PER_WRITE.into()),
                &multiplex::PER_WRITE_BUCKETS,
            )
            .expect("bucket list is not empty")
            .set_buckets_for_metric(
                Matcher::Full(failover::DURATION.into()),
                &[
                    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0,
                ],
            )
            .expect("bucket list is not empty")
            .install_recorder()
            .expect("the metrics recorder is installed once");
        describe();
        iam::describe();
        cluster::describe();
        failover::describe();
        multiplex::describe();
        gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        handle
    })
}

fn describe() {
    describe_counter!(
        AUTH_ATTEMPTS,
        "AUTH commands sent upstream, by route, token slot (current, previous) and result (accepted, rejected, no_password, throttled, error)."
    );
    describe_counter!(
        AUTH_FAILURES,
        "Connections that could not authenticate upstream, by route and reason (rejected: every token got WRONGPASS; error: another error reply; timeout; closed)."
    );
    describe_counter!(
        TOKEN_FALLBACKS,
        "Connections authenticated with the previous token after the current one was rejected, by route."
    );
    describe_gauge!(CONNECTIONS_ACTIVE, "Client connections open now, by route.");
    describe_counter!(CONNECTIONS, "Client connections accepted, by route.");
    describe_counter!(
        CONNECTIONS_REJECTED,
        "Client connections refused, by route and stage (dns, tcp, tls, auth, timeout, no_token: no upstream connection; max_connections: over --max-connections)."
    );
    describe_histogram!(
        CONNECT_DURATION,
        metrics::Unit::Seconds,
        "Time to a usable upstream connection (DNS, TCP, TLS and AUTH), by route."
    );
    describe_counter!(
        CONNECT_FAILURES,
        "Upstream connection attempts that failed, by route and stage (dns, tcp, tls, auth, timeout)."
    );
    describe_counter!(
        CONNECTION_ERRORS,
        "Proxied connections that ended in an error, by route and reason."
    );
    describe_counter!(
        BYTES,
        metrics::Unit::Bytes,
        "Bytes forwarded, by route and direction (upstream: client to server; downstream: server to client)."
    );
    describe_counter!(
        INTERCEPTED,
        "Client commands the proxy handled itself, by route and command (auth, hello, reset)."
    );
    describe_counter!(
        CLIENT_AUTH,
        "With --client-password-file: client AUTH and HELLO AUTH by route and result (accepted, wrongpass), and commands refused before authenticating (noauth)."
    );
    describe_counter!(
        TLS_HANDSHAKES,
        "TLS handshakes with the upstream, by route and kind (full, resumed: a session ticket from an earlier connection was accepted)."
    );
    describe_counter!(
        TOKEN_RELOADS,
        "Token source reads, by source (file, env, secretsmanager, iam, entra, google) and result (changed, unchanged, failed)."
    );
    describe_gauge!(
        READY,
        "1 while /readyz answers ready as far as the process can tell (started, not draining, the token alive), else 0; read at each scrape, without the upstream check of --ready-requires-upstream."
    );
    describe_gauge!(
        TOKEN_LAST_CHANGE,
        "Unix time the current token last changed."
    );
    describe_gauge!(
        TOKEN_EXPIRY,
        "Unix time the current token expires (IAM, Entra ID, Google IAM; 0: it does not)."
    );
    describe_gauge!(
        TOKEN_LAST_RELOAD,
        "Unix time of the last successful token source read."
    );
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the version label says which build is running."
    );
    describe_gauge!(
        POOL_READY,
        "Ready, authenticated upstream connections waiting in the pool, by route."
    );
    describe_counter!(
        POOL_TAKES,
        "New clients served from the upstream pool (hit) or not (miss), by route."
    );
    describe_counter!(
        REUSES,
        "With --upstream-reuse: connections a client left that were reset for the next one, by route and result (reused; failed: RESET or AUTH did not succeed; pool_full: closed instead)."
    );
    describe_counter!(
        NOT_REUSED,
        "With --upstream-reuse: connections closed when their client left instead of being reset, by route and reason (owed: a reply was owed or replies were not counted; error: the connection ended in an error; too_old: older than --upstream-pool-max-age)."
    );
    describe_counter!(
        POOL_EVICTIONS,
        "Pooled connections thrown away, by route and reason (stale: too old or made with replaced tokens; closed: the server closed it)."
    );
}

/// Counts a route's upstream TLS handshakes by kind.
#[derive(Clone)]
pub struct HandshakeCounters {
    full: Counter,
    resumed: Counter,
}

impl HandshakeCounters {
    pub fn new(route: &str) -> Self {
        let kind = |kind: &'static str| {
            let counter = counter!(TLS_HANDSHAKES, "route" => route.to_owned(), "kind" => kind);
            counter.absolute(0);
            counter
        };
        HandshakeCounters {
            full: kind("full"),
            resumed: kind("resumed"),
        }
    }

    pub fn record(&self, resumed: bool) {
        if resumed {
            self.resumed.increment(1);
        } else {
            self.full.increment(1);
        }
    }
}

/// The process-wide metrics (no route label), recorded through `metrics::PROCESS`.
pub struct ProcessMetrics;

pub static PROCESS: ProcessMetrics = ProcessMetrics;

impl ProcessMetrics {
    /// Whether the proxy is ready, as of this scrape.
    pub fn ready(&self, ready: bool) {
        gauge!(READY).set(if ready { 1.0 } else { 0.0 });
    }

    /// When the token now stored stops working.
    pub fn token_expires(&self, at: Option<SystemTime>) {
        let unix = at
            .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
            .map_or(0.0, |d| d.as_secs_f64());
        gauge!(TOKEN_EXPIRY).set(unix);
    }

    /// Records one token source read.
    pub fn token_reload(&self, source: &'static str, result: &'static str) {
        counter!(TOKEN_RELOADS, "source" => source, "result" => result).increment(1);
        if result != "failed" {
            gauge!(TOKEN_LAST_RELOAD).set(unix_now());
        }
        if result == "changed" {
            gauge!(TOKEN_LAST_CHANGE).set(unix_now());
        }
    }
}

pub mod cluster;
pub mod failover;
pub mod iam;
pub mod multiplex;
mod route;

pub use route::RouteMetrics;

pub(crate) fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}
