//! The node table of a cluster route: which local port serves which node, and the listeners
//! behind them. A node gets a port from `--cluster-ports` the first time a reply names it, its
//! listener is bound before the rewritten reply is passed on, and the port is never given to
//! another node while the process lives.

use super::{ClusterError, NodeAddr, NodeMap};
use crate::client_auth::ClientPasswords;
use crate::config::Config;
use crate::health::Health;
use crate::listener::Listener;
use crate::server::{RouteRuntime, Serving};
use crate::token::TokenStore;
use crate::upstream::{Connector, TlsSettings};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use tracing::{info, warn};

/// What a node's route is made from: the cluster route's settings with another upstream.
pub(crate) struct NodeTemplate {
    pub(crate) route: String,
    pub(crate) config: Config,
    pub(crate) tls: Option<TlsSettings>,
    pub(crate) store: Arc<TokenStore>,
    pub(crate) client_passwords: Option<Arc<ClientPasswords>>,
    pub(crate) health: Arc<Health>,
}

#[derive(Default)]
struct Ports {
    by_addr: HashMap<NodeAddr, u16>,
    by_id: HashMap<Vec<u8>, u16>,
    next: u16,
}

pub(crate) struct NodeTable {
    template: NodeTemplate,
    range: RangeInclusive<u16>,
    ports: Mutex<Ports>,
    /// How node listeners serve, once the proxy serves.
    serving: OnceLock<Serving>,
    myself: Weak<NodeTable>,
}

impl NodeTable {
    /// A table for one cluster route.
    pub(crate) fn new(template: NodeTemplate, range: RangeInclusive<u16>) -> Arc<NodeTable> {
        let ports = Ports {
            next: *range.start(),
            ..Ports::default()
        };
        crate::metrics::cluster::register(&template.route);
        Arc::new_cyclic(|myself| NodeTable {
            template,
            range,
            ports: Mutex::new(ports),
            serving: OnceLock::new(),
            myself: myself.clone(),
        })
    }

    /// Node listeners serve from now on, sharing the routes' limits and shutdown. `own`: the
    /// route's listener port, which serves the configured endpoint itself.
    pub(crate) fn start(&self, serving: Serving, endpoint: &NodeAddr, own: Option<u16>) {
        let _ = self.serving.set(serving);
        if let Some(port) = own {
            let mut ports = self.ports.lock().expect("node table");
            ports.by_addr.entry(endpoint.clone()).or_insert(port);
        }
    }

    fn range_text(&self) -> String {
        format!("{}-{}", self.range.start(), self.range.end())
    }

    /// Binds the first free port from `next` on; `None` when the range is used up.
    fn bind_free(&self, ports: &mut Ports) -> Option<(u16, std::net::TcpListener)> {
        let end = *self.range.end();
        while ports.next != 0 && ports.next <= end {
            let port = ports.next;
            ports.next = port.checked_add(1).unwrap_or(0);
            // A port in use by something else is skipped, never shared.
            if let Ok(listener) = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
                return Some((port, listener));
            }
        }
        None
    }

    /// Starts serving `node` on `listener`.
    fn serve(&self, node: &NodeAddr, listener: std::net::TcpListener) -> Result<(), String> {
        let serving = self.serving.get().ok_or("not serving yet")?;
        let table = self.myself.upgrade().ok_or("shutting down")?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
        let t = &self.template;
        let name = format!("{}@{node}", t.route);
        // SNI and the certificate name: the announced hostname, or for an IP the route's own.
        let tls = t.tls.clone().map(|mut tls| {
            if node.host.parse::<std::net::IpAddr>().is_err() {
                tls.server_name = node.host.clone();
            }
            tls
        });
        let connector = Connector::new(node.clone(), tls.as_ref(), t.config.connect_timeout)
            .map_err(|e| e.to_string())?
            .counting_handshakes(&name);
        let mut route = RouteRuntime::new(
            usize::MAX,
            name,
            connector,
            Arc::clone(&t.store),
            t.client_passwords.clone(),
            &t.config,
            Arc::clone(&t.health),
        );
        route.forward.cluster = Some(super::ClusterLink {
            table,
            this_node: node.clone(),
        });
        tokio::spawn(crate::server::serve(
            Listener::Tcp(listener),
            Arc::new(route),
            serving.clone(),
        ));
        Ok(())
    }
}

impl NodeMap for NodeTable {
    fn local_port(&self, node: &NodeAddr, id: Option<&[u8]>) -> Result<u16, ClusterError> {
        let mut ports = self.ports.lock().expect("node table");
        let known = id
            .and_then(|id| ports.by_id.get(id))
            .or_else(|| ports.by_addr.get(node))
            .copied();
        if let Some(port) = known {
            ports.by_addr.entry(node.clone()).or_insert(port);
            if let Some(id) = id {
                ports.by_id.entry(id.to_vec()).or_insert(port);
            }
            return Ok(port);
        }
        let route = &self.template.route;
        let Some((port, listener)) = self.bind_free(&mut ports) else {
            crate::metrics::cluster::exhausted(route);
            warn!(route = %route, node = %node, range = %self.range_text(), "No local port left for a cluster node (--cluster-ports)");
            return Err(ClusterError::Exhausted {
                node: node.to_string(),
                range: self.range_text(),
            });
        };
        self.serve(node, listener)
            .map_err(|reason| ClusterError::Listen {
                node: node.to_string(),
                port,
                reason,
            })?;
        ports.by_addr.insert(node.clone(), port);
        if let Some(id) = id {
            ports.by_id.insert(id.to_vec(), port);
        }
        let distinct: std::collections::HashSet<u16> = ports.by_addr.values().copied().collect();
        crate::metrics::cluster::nodes(route, distinct.len());
        info!(route = %route, node = %node, listen = %SocketAddr::from((Ipv4Addr::LOCALHOST, port)), "Listening for a cluster node");
        Ok(port)
    }
}
