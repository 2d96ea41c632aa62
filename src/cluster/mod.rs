//! Cluster mode (`--cluster`): every node the cluster announces gets a listener of its own on
//! 127.0.0.1, and the replies that name nodes are rewritten to name those listeners, so that a
//! cluster client never leaves the sidecar. Each client connection stays 1:1 with a connection
//! to one node, as on every other listener, or with `--multiplex` shares that node's lanes
//! (`multiplex/front/cluster.rs` rewrites their replies).
//!
//! Everything here is pure: `rewrite` turns topology replies and redirects into their local
//! form; `value` decodes and encodes the few replies rewritten; `ports` keeps which port serves
//! which node and when one is given back. `serve::nodes` owns the listeners behind the ports
//! and opens each before the reply naming it reaches the client.

pub(crate) mod ports;
pub mod rewrite;
pub(crate) mod value;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A cluster route's node table as a connection sees it: where nodes are served, and a way to
/// read the topology again when a redirect names a node it does not know (`serve::nodes`
/// implements it; this module does no I/O).
pub trait Nodes: NodeMap {
    /// Reads the topology from the route's endpoint into the table, bounded in time.
    fn refresh(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// A cluster route's connection: the node table, and the node this connection is to.
#[derive(Clone)]
pub(crate) struct ClusterLink {
    pub(crate) table: Arc<dyn Nodes>,
    pub(crate) this_node: NodeAddr,
}

/// A node as the cluster announces it: a hostname or an IP, and its client (TLS) port.
pub use crate::address::UpstreamAddr as NodeAddr;

/// The commands whose replies name nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    Slots,
    Shards,
    Nodes,
    /// `CLUSTER REPLICAS` and its old name `CLUSTER SLAVES`.
    Replicas,
}

/// Where nodes are served locally.
pub trait NodeMap: Send + Sync {
    /// The loopback port serving `node`, which a topology reply from the server announced
    /// (also known by `id` when the reply names it), its listener open before this returns.
    fn announced(&self, node: &NodeAddr, id: Option<&[u8]>) -> Result<u16, ClusterError>;
    /// The port serving `node` if a topology reply announced it; `None` for any other
    /// host:port, which is given no listener, no connection and no token.
    fn known(&self, node: &NodeAddr) -> Option<u16>;
    /// A topology reply that lists the cluster's nodes (SLOTS, SHARDS, NODES) was rewritten:
    /// nodes it has long stopped naming may give their ports back.
    fn topology_listed(&self) {}
}

/// Why a reply naming nodes could not be rewritten.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// The server's reply is not what Redis sends: the connection closes.
    #[error("malformed cluster topology reply from the server: {0}")]
    Malformed(String),
    /// Answered in the reply's place; the connection goes on.
    #[error("no local port left for cluster node {node}: --cluster-ports {range} is full")]
    Exhausted { node: String, range: String },
    /// Answered in the reply's place; the connection goes on.
    #[error("cannot listen for cluster node {node} on 127.0.0.1:{port}: {reason}")]
    Listen {
        node: String,
        port: u16,
        reason: String,
    },
}
