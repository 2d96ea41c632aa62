//! The metrics of one route: the handles of the hot path resolved once, the rest by name.

use super::*;
use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};

/// The metrics of one route, with its hot-path handles resolved once.
#[derive(Clone)]
pub struct RouteMetrics {
    route: String,
    pub connections_active: Gauge,
    pub connections: Counter,
    pub connect_duration: Histogram,
    pub bytes_upstream: Counter,
    pub bytes_downstream: Counter,
}

impl RouteMetrics {
    pub fn new(route: &str) -> Self {
        let r = route.to_owned();
        let metrics = RouteMetrics {
            connections_active: gauge!(CONNECTIONS_ACTIVE, "route" => r.clone()),
            connections: counter!(CONNECTIONS, "route" => r.clone()),
            connect_duration: histogram!(CONNECT_DURATION, "route" => r.clone()),
            bytes_upstream: counter!(BYTES, "route" => r.clone(), "direction" => "upstream"),
            bytes_downstream: counter!(BYTES, "route" => r.clone(), "direction" => "downstream"),
            route: r,
        };
        metrics.register_zeros();
        metrics
    }

    /// Creates every failure series at zero, so that alerts and `rate()` see a counter before
    /// the first failure rather than an absent series.
    fn register_zeros(&self) {
        for slot in ["current", "previous"] {
            for result in ["accepted", "rejected", "no_password", "error"] {
                counter!(AUTH_ATTEMPTS, "route" => self.route.clone(), "slot" => slot, "result" => result).absolute(0);
            }
        }
        for reason in ["rejected", "error", "timeout", "closed"] {
            counter!(AUTH_FAILURES, "route" => self.route.clone(), "reason" => reason).absolute(0);
        }
        for stage in ["dns", "tcp", "tls", "auth", "timeout"] {
            counter!(CONNECT_FAILURES, "route" => self.route.clone(), "stage" => stage).absolute(0);
            counter!(CONNECTIONS_REJECTED, "route" => self.route.clone(), "stage" => stage)
                .absolute(0);
        }
        for stage in ["no_token", "max_connections"] {
            counter!(CONNECTIONS_REJECTED, "route" => self.route.clone(), "stage" => stage)
                .absolute(0);
        }
        counter!(TOKEN_FALLBACKS, "route" => self.route.clone()).absolute(0);
        for command in ["auth", "hello", "reset"] {
            counter!(INTERCEPTED, "route" => self.route.clone(), "command" => command).absolute(0);
        }
        for result in ["accepted", "wrongpass", "noauth"] {
            counter!(CLIENT_AUTH, "route" => self.route.clone(), "result" => result).absolute(0);
        }
    }

    pub fn auth_attempt(&self, slot: &'static str, result: &'static str) {
        counter!(AUTH_ATTEMPTS, "route" => self.route.clone(), "slot" => slot, "result" => result)
            .increment(1);
    }

    pub fn auth_failure(&self, reason: &'static str) {
        counter!(AUTH_FAILURES, "route" => self.route.clone(), "reason" => reason).increment(1);
    }

    pub fn fallback(&self) {
        counter!(TOKEN_FALLBACKS, "route" => self.route.clone()).increment(1);
    }

    pub fn connect_failure(&self, stage: &'static str) {
        counter!(CONNECT_FAILURES, "route" => self.route.clone(), "stage" => stage).increment(1);
    }

    pub fn rejected(&self, stage: &'static str) {
        counter!(CONNECTIONS_REJECTED, "route" => self.route.clone(), "stage" => stage)
            .increment(1);
    }

    pub fn connection_error(&self, reason: &'static str) {
        counter!(CONNECTION_ERRORS, "route" => self.route.clone(), "reason" => reason).increment(1);
    }

    pub fn client_auth(&self, result: &'static str) {
        counter!(CLIENT_AUTH, "route" => self.route.clone(), "result" => result).increment(1);
    }

    /// With `--upstream-reuse`: a connection a client left, reset for the next one or not.
    pub fn reused(&self, result: &'static str) {
        counter!(REUSES, "route" => self.route.clone(), "result" => result).increment(1);
    }

    /// With `--upstream-reuse`: a connection closed when its client left, and why.
    pub fn not_reused(&self, reason: &'static str) {
        counter!(NOT_REUSED, "route" => self.route.clone(), "reason" => reason).increment(1);
    }

    /// The name this route's metrics carry.
    pub fn route(&self) -> &str {
        &self.route
    }

    pub fn intercepted(&self, command: &'static str) {
        counter!(INTERCEPTED, "route" => self.route.clone(), "command" => command).increment(1);
    }
}

/// The upstream connection pool (`--upstream-pool-size`).
impl RouteMetrics {
    pub fn pool_ready(&self, connections: usize) {
        gauge!(POOL_READY, "route" => self.route.clone()).set(connections as f64);
    }

    pub fn pool_taken(&self, result: &'static str) {
        counter!(POOL_TAKES, "route" => self.route.clone(), "result" => result).increment(1);
    }

    pub fn pool_evicted(&self, reason: &'static str) {
        counter!(POOL_EVICTIONS, "route" => self.route.clone(), "reason" => reason).increment(1);
    }
}
