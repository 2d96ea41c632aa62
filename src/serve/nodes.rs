//! The node table of a cluster route: the listeners behind the ports `cluster::ports` gives
//! out. Only a node that a topology reply from the server announced gets a port (from
//! `--cluster-ports`), its listener bound before the rewritten reply is passed on. A node
//! absent from every topology reply for `RELEASE_AFTER`, while later ones came, gives its port
//! back: the range holds the cluster as it is, not every node it ever had.

use super::{RouteRuntime, RouteShared, Serving};
use crate::cluster::ports::Ports;
use crate::cluster::{ClusterError, ClusterLink, NodeAddr, NodeMap, Nodes};
use crate::listener::Listener;
use crate::metrics::RouteMetrics;
use crate::upstream::TlsSettings;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;
use tracing::{info, warn};

/// Where a cluster route's node listeners serve: with the routes' shared limits and shutdown,
/// beside the route of the configured endpoint (which topology refreshes ask) and its listener
/// port, which serves that endpoint itself and is never given back.
pub(crate) struct Endpoint {
    pub(crate) serving: Serving,
    pub(crate) route: Weak<RouteRuntime>,
    pub(crate) own_port: Option<u16>,
    /// The endpoint route's metrics, where the node count is kept.
    pub(crate) metrics: RouteMetrics,
}

/// The node table of a `--cluster` route; its nodes' routes are made like the route's own,
/// from the same `shared`, with ports from `range` (`--cluster-ports`).
pub(crate) fn table(
    route: &crate::config::Route,
    range: &RangeInclusive<u16>,
    shared: &RouteShared,
    endpoint: Endpoint,
) -> Arc<NodeTable> {
    let template = NodeTemplate {
        route: route.name.clone(),
        tls: route.tls.clone(),
        shared: shared.clone(),
        metrics: endpoint.metrics,
        multiplex: route.multiplex,
    };
    let mut ports = Ports::new(*range.start());
    if let Some(port) = endpoint.own_port {
        ports.keep_forever(route.upstream.clone(), port);
    }
    template.metrics.register_cluster();
    Arc::new_cyclic(|myself| NodeTable {
        template,
        range: range.clone(),
        ports: Mutex::new(ports),
        serving: endpoint.serving,
        endpoint: endpoint.route,
        refreshes: super::refresh::Refreshes::default(),
        myself: myself.clone(),
    })
}

/// What a node's route is made from: the cluster route's name, TLS and shared state, with
/// the node as its upstream.
pub(crate) struct NodeTemplate {
    pub(crate) route: String,
    pub(crate) tls: Option<TlsSettings>,
    pub(crate) shared: RouteShared,
    pub(crate) metrics: RouteMetrics,
    /// `--multiplex`: each node's listener shares its own lanes to that node.
    pub(crate) multiplex: bool,
}

pub(crate) struct NodeTable {
    pub(super) template: NodeTemplate,
    range: RangeInclusive<u16>,
    ports: Mutex<Ports>,
    /// How node listeners serve.
    serving: Serving,
    /// The route of the configured endpoint, which topology refreshes ask.
    endpoint: Weak<RouteRuntime>,
    pub(super) refreshes: super::refresh::Refreshes,
    myself: Weak<NodeTable>,
}

impl NodeTable {
    /// The route that serves the configured endpoint, while the proxy serves.
    pub(super) fn endpoint_route(&self) -> Option<Arc<RouteRuntime>> {
        self.endpoint.upgrade()
    }

    fn range_text(&self) -> String {
        format!("{}-{}", self.range.start(), self.range.end())
    }

    /// Binds a free port: one given back first, then the next never used; `None` when the
    /// range is used up.
    fn bind_free(&self, ports: &mut Ports) -> Option<(u16, std::net::TcpListener)> {
        let end = *self.range.end();
        // A port in use by something else (or still closing) is skipped, never shared.
        let bind = |port: u16| std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).ok();
        if let Some(found) = ports.take_free(bind) {
            return Some(found);
        }
        while let Some(port) = ports.next_unused(end) {
            if let Some(listener) = bind(port) {
                return Some((port, listener));
            }
        }
        None
    }

    /// Starts serving `node` on `listener`; the token returned stops accepting.
    fn serve(
        &self,
        node: &NodeAddr,
        listener: std::net::TcpListener,
    ) -> Result<tokio_util::sync::CancellationToken, String> {
        let table = self.myself.upgrade().ok_or("shutting down")?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
        let t = &self.template;
        let name = format!("{}@{node}", t.route);
        // SNI and the certificate name: the announced hostname, or for an IP the route's own.
        let tls = t.tls.clone().map(|mut tls| {
            if node.host.parse::<std::net::IpAddr>().is_err() {
                tls.server_name = Some(node.host.clone());
            }
            tls
        });
        let route = RouteRuntime::new(
            usize::MAX,
            name,
            node.clone(),
            tls.as_ref(),
            None,
            &t.shared,
        )
        .map_err(|e| e.to_string())?
        .with_cluster(ClusterLink {
            table,
            this_node: node.clone(),
        });
        let route = Arc::new(if t.multiplex {
            route.multiplexed()
        } else {
            route
        });
        let mut serving = self.serving.clone();
        serving.accepting = serving.accepting.child_token();
        let stop = serving.accepting.clone();
        // A node given back closes its lanes with its listener.
        tokio::spawn(super::multiplex::keep_lanes(
            Arc::clone(&route),
            stop.clone(),
        ));
        tokio::spawn(super::serve(Listener::Tcp(listener), route, serving));
        Ok(stop)
    }
}

impl NodeMap for NodeTable {
    fn announced(&self, node: &NodeAddr, id: Option<&[u8]>) -> Result<u16, ClusterError> {
        let mut ports = self.ports.lock().expect("node table");
        if let Some(port) = ports.seen(node, id, Instant::now()) {
            return Ok(port);
        }
        let route = &self.template.route;
        let Some((port, listener)) = self.bind_free(&mut ports) else {
            self.template.metrics.cluster_ports_exhausted();
            warn!(route = %route, node = %node, range = %self.range_text(), "No local port left for a cluster node (--cluster-ports)");
            return Err(ClusterError::Exhausted {
                node: node.to_string(),
                range: self.range_text(),
            });
        };
        let stop = self
            .serve(node, listener)
            .map_err(|reason| ClusterError::Listen {
                node: node.to_string(),
                port,
                reason,
            })?;
        ports.insert(node.clone(), id, port, stop, Instant::now());
        self.template.metrics.cluster_nodes(ports.served());
        info!(route = %route, node = %node, listen = %SocketAddr::from((Ipv4Addr::LOCALHOST, port)), "Listening for a cluster node");
        Ok(port)
    }

    fn known(&self, node: &NodeAddr) -> Option<u16> {
        self.ports.lock().expect("node table").known(node)
    }

    /// Listeners of nodes the topology has long stopped naming are closed, their ports given
    /// back.
    fn topology_listed(&self) {
        let mut ports = self.ports.lock().expect("node table");
        for (port, nodes) in ports.release_stale(Instant::now()) {
            info!(route = %self.template.route, nodes = ?nodes, port, "Released the listener of a cluster node gone from the topology");
        }
        self.template.metrics.cluster_nodes(ports.served());
    }
}

impl Nodes for NodeTable {
    fn refresh(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(self.refresh_topology())
    }
}
