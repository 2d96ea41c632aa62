//! Cluster mode: the node table and the replies rewritten. Per-node connections and
//! authentication failures are the ordinary route metrics of each node's listener, whose
//! `route` label is `<route>@<host>:<port>` (bounded by the cluster's size).

use metrics::{counter, describe_counter, describe_gauge, gauge};

pub const NODES: &str = "redis_auth_proxy_cluster_nodes";
pub const EXHAUSTED: &str = "redis_auth_proxy_cluster_ports_exhausted_total";
pub const REDIRECTS: &str = "redis_auth_proxy_cluster_redirects_rewritten_total";
pub const UNKNOWN: &str = "redis_auth_proxy_cluster_redirects_unknown_total";
pub const TOPOLOGY: &str = "redis_auth_proxy_cluster_topology_rewritten_total";

pub(super) fn describe() {
    describe_gauge!(
        NODES,
        "With --cluster: nodes with a local listener, by route."
    );
    describe_counter!(
        EXHAUSTED,
        "With --cluster: nodes that got no local listener because --cluster-ports was used up, by route."
    );
    describe_counter!(
        REDIRECTS,
        "With --cluster: -MOVED, -ASK and -REDIRECT replies rewritten to a local listener, by route (a node's listener is its own route)."
    );
    describe_counter!(
        UNKNOWN,
        "With --cluster: -MOVED, -ASK and -REDIRECT replies naming a node that no topology reply announced, even after reading the topology again; passed on unchanged, the node never served, by route."
    );
    describe_counter!(
        TOPOLOGY,
        "With --cluster: CLUSTER SLOTS, SHARDS, NODES and REPLICAS replies rewritten, by route."
    );
}

/// Creates a cluster route's series at zero.
/// With `--cluster`: on the cluster route's handle (nodes, ports) or a node route's (rewrites).
impl super::RouteMetrics {
    pub fn register_cluster(&self) {
        gauge!(NODES, "route" => self.route().to_owned()).set(0.0);
        counter!(EXHAUSTED, "route" => self.route().to_owned()).absolute(0);
    }

    pub fn cluster_nodes(&self, count: usize) {
        gauge!(NODES, "route" => self.route().to_owned()).set(count as f64);
    }

    pub fn cluster_ports_exhausted(&self) {
        counter!(EXHAUSTED, "route" => self.route().to_owned()).increment(1);
    }

    pub fn redirect_rewritten(&self) {
        counter!(REDIRECTS, "route" => self.route().to_owned()).increment(1);
    }

    pub fn redirect_unknown(&self) {
        counter!(UNKNOWN, "route" => self.route().to_owned()).increment(1);
    }

    pub fn topology_rewritten(&self) {
        counter!(TOPOLOGY, "route" => self.route().to_owned()).increment(1);
    }
}
