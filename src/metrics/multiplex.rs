//! Multiplexing (`--multiplex`): shared connections, the clients on them, the clients pinned
//! to connections of their own and why, how many requests each write to a shared connection
//! carries, and the clients cut off at the output limit.

use metrics::{
    Gauge, Histogram, counter, describe_counter, describe_gauge, describe_histogram, gauge,
    histogram,
};

pub const SHARED: &str = "redis_auth_proxy_multiplex_shared_connections";
pub const CLIENTS: &str = "redis_auth_proxy_multiplex_clients";
pub const PINNED: &str = "redis_auth_proxy_multiplex_pinned_total";
pub const PER_WRITE: &str = "redis_auth_proxy_multiplex_requests_per_write";
pub const OUTPUT_LIMIT: &str = "redis_auth_proxy_multiplex_output_limit_closed_total";
pub const LOST: &str = "redis_auth_proxy_multiplex_shared_connections_lost_total";
pub const RETURNED: &str = "redis_auth_proxy_multiplex_returned_total";

/// What became of a connection lent for a transaction or a blocking command, once given back.
pub const RETURN_OUTCOMES: [&str; 2] = ["reset", "closed"];

/// Every reason a client is pinned (`crate::multiplex` decides): a closed set, for the label.
pub const PIN_REASONS: [&str; 13] = [
    "blocking",
    "transaction",
    "pubsub",
    "monitor",
    "replication",
    "database",
    "protocol",
    "client_state",
    "auth",
    "busy_server",
    "large",
    "inline",
    "malformed",
];

/// The buckets of `PER_WRITE`.
pub const PER_WRITE_BUCKETS: [f64; 10] =
    [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0];

pub(super) fn describe() {
    describe_gauge!(
        SHARED,
        "With --multiplex: shared upstream connections open (RESP2, and RESP3 once a client asked for it), by route."
    );
    describe_gauge!(
        CLIENTS,
        "With --multiplex: client connections served over the shared connections now (not pinned), by route."
    );
    describe_counter!(
        PINNED,
        "With --multiplex: clients given an upstream connection of their own, by route and reason (blocking, transaction, pubsub, monitor, replication, database, protocol, client_state, auth, busy_server, large, inline, malformed)."
    );
    describe_histogram!(
        PER_WRITE,
        "With --multiplex: requests carried by each write to a shared connection, by route."
    );
    describe_counter!(
        OUTPUT_LIMIT,
        "With --multiplex: clients closed because they left their replies unread past the output limit, by route."
    );
    describe_counter!(
        LOST,
        "With --multiplex: shared upstream connections lost (closed by the server, reset, or a malformed reply), by route."
    );
    describe_counter!(
        RETURNED,
        "With --multiplex: connections lent to a client for a transaction or a blocking command and given back once it was over (its client back on its shared connection), by route and outcome (reset: reset for the next client through the warm pool; closed: no pool, or it could not be reset)."
    );
}

/// A route's multiplexing metrics, with the handles written often made once.
#[derive(Clone)]
pub struct MultiplexMetrics {
    route: String,
    per_write: Histogram,
    pub shared: Gauge,
    pub clients: Gauge,
}

impl MultiplexMetrics {
    /// Creates the route's series at zero.
    pub fn new(route: &str) -> Self {
        let r = route.to_owned();
        for reason in PIN_REASONS {
            counter!(PINNED, "route" => r.clone(), "reason" => reason).absolute(0);
        }
        counter!(OUTPUT_LIMIT, "route" => r.clone()).absolute(0);
        counter!(LOST, "route" => r.clone()).absolute(0);
        for outcome in RETURN_OUTCOMES {
            counter!(RETURNED, "route" => r.clone(), "outcome" => outcome).absolute(0);
        }
        MultiplexMetrics {
            per_write: histogram!(PER_WRITE, "route" => r.clone()),
            shared: gauge!(SHARED, "route" => r.clone()),
            clients: gauge!(CLIENTS, "route" => r.clone()),
            route: r,
        }
    }

    pub fn requests_in_write(&self, requests: u64) {
        self.per_write.record(requests as f64);
    }

    pub fn pinned(&self, reason: &'static str) {
        counter!(PINNED, "route" => self.route.clone(), "reason" => reason).increment(1);
    }

    pub fn output_limit_closed(&self) {
        counter!(OUTPUT_LIMIT, "route" => self.route.clone()).increment(1);
    }

    pub fn returned(&self, outcome: &'static str) {
        counter!(RETURNED, "route" => self.route.clone(), "outcome" => outcome).increment(1);
    }

    pub fn shared_connection_lost(&self) {
        counter!(LOST, "route" => self.route.clone()).increment(1);
    }
}
