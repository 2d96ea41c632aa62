//! Which local port serves which node: the bookkeeping of the node table, with no I/O, so that
//! what is given and given back can be tested on its own.

use super::NodeAddr;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How long a node may be absent from the topology replies that come before its port is given
/// back. Failovers and reshards keep their nodes; only a node removed or replaced stays away.
pub(crate) const RELEASE_AFTER: Duration = Duration::from_secs(600);

struct Served {
    /// When a topology reply last named the node.
    seen: Instant,
    /// Stops its listener; `None` for the route's own listener, never given back.
    stop: Option<CancellationToken>,
}

pub(crate) struct Ports {
    by_addr: HashMap<NodeAddr, u16>,
    by_id: HashMap<Vec<u8>, u16>,
    served: HashMap<u16, Served>,
    /// Ports given back, to be bound again before new ones.
    free: Vec<u16>,
    /// The next port never used; 0 once past the range's end.
    next: u16,
}

impl Ports {
    pub(crate) fn new(first: u16) -> Ports {
        Ports {
            by_addr: HashMap::new(),
            by_id: HashMap::new(),
            served: HashMap::new(),
            free: Vec::new(),
            next: first,
        }
    }

    /// The route's own listener serves `endpoint`.
    pub(crate) fn keep_forever(&mut self, endpoint: NodeAddr, port: u16) {
        self.by_addr.entry(endpoint).or_insert(port);
        let seen = Instant::now();
        self.served.insert(port, Served { seen, stop: None });
    }

    /// A topology reply names `node`: its port if it has one, now known by this address and id
    /// too.
    pub(crate) fn seen(&mut self, node: &NodeAddr, id: Option<&[u8]>, now: Instant) -> Option<u16> {
        let port = id
            .and_then(|id| self.by_id.get(id))
            .or_else(|| self.by_addr.get(node))
            .copied()?;
        self.by_addr.entry(node.clone()).or_insert(port);
        if let Some(id) = id {
            self.by_id.entry(id.to_vec()).or_insert(port);
        }
        if let Some(served) = self.served.get_mut(&port) {
            served.seen = now;
        }
        Some(port)
    }

    /// The port of a node some topology reply named.
    pub(crate) fn known(&self, node: &NodeAddr) -> Option<u16> {
        self.by_addr.get(node).copied()
    }

    pub(crate) fn insert(
        &mut self,
        node: NodeAddr,
        id: Option<&[u8]>,
        port: u16,
        stop: CancellationToken,
        now: Instant,
    ) {
        self.by_addr.insert(node, port);
        if let Some(id) = id {
            self.by_id.insert(id.to_vec(), port);
        }
        let stop = Some(stop);
        self.served.insert(port, Served { seen: now, stop });
    }

    /// The first given-back port that `bind` takes.
    pub(crate) fn take_free<L>(
        &mut self,
        mut bind: impl FnMut(u16) -> Option<L>,
    ) -> Option<(u16, L)> {
        let (at, listener) = self
            .free
            .iter()
            .enumerate()
            .find_map(|(at, &port)| bind(port).map(|l| (at, l)))?;
        Some((self.free.swap_remove(at), listener))
    }

    /// The next port never used, up to `end`.
    pub(crate) fn next_unused(&mut self, end: u16) -> Option<u16> {
        let port = self.next;
        if port == 0 || port > end {
            return None;
        }
        self.next = port.checked_add(1).unwrap_or(0);
        Some(port)
    }

    /// Stops the listeners of nodes no topology reply named for `RELEASE_AFTER` up to `now`
    /// (when one just came) and gives their ports back; returns them with the nodes they served.
    pub(crate) fn release_stale(&mut self, now: Instant) -> Vec<(u16, Vec<String>)> {
        let stale: Vec<u16> = self
            .served
            .iter()
            .filter(|(_, s)| {
                s.stop.is_some() && now.saturating_duration_since(s.seen) >= RELEASE_AFTER
            })
            .map(|(&port, _)| port)
            .collect();
        let mut released = Vec::with_capacity(stale.len());
        for port in stale {
            if let Some(Served {
                stop: Some(stop), ..
            }) = self.served.remove(&port)
            {
                stop.cancel();
            }
            let nodes = self
                .by_addr
                .iter()
                .filter(|(_, p)| **p == port)
                .map(|(node, _)| node.to_string())
                .collect();
            self.by_addr.retain(|_, p| *p != port);
            self.by_id.retain(|_, p| *p != port);
            self.free.push(port);
            released.push((port, nodes));
        }
        released
    }

    /// How many listeners serve nodes.
    pub(crate) fn served(&self) -> usize {
        self.served.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(port: u16) -> NodeAddr {
        NodeAddr {
            host: "10.0.0.1".into(),
            port,
        }
    }

    #[test]
    fn a_node_named_again_keeps_its_port_and_one_long_absent_gives_it_back() {
        let t0 = Instant::now();
        let mut ports = Ports::new(7001);
        ports.keep_forever(node(6379), 6000);
        for real in [6380, 6381] {
            let port = ports.next_unused(7002).unwrap();
            ports.insert(node(real), None, port, CancellationToken::new(), t0);
        }
        assert_eq!(ports.next_unused(7002), None, "the range is full");
        let later = t0 + RELEASE_AFTER;
        assert_eq!(ports.seen(&node(6380), None, later), Some(7001));
        let released = ports.release_stale(later);
        assert_eq!(released, vec![(7002, vec!["10.0.0.1:6381".to_owned()])]);
        assert_eq!(ports.known(&node(6381)), None);
        assert_eq!(ports.known(&node(6380)), Some(7001));
        assert_eq!(
            ports.known(&node(6379)),
            Some(6000),
            "the route's own never goes"
        );
        assert_eq!(ports.take_free(Some), Some((7002, 7002)));
    }

    #[test]
    fn nothing_is_given_back_while_no_topology_reply_comes_or_before_its_time() {
        let t0 = Instant::now();
        let mut ports = Ports::new(7001);
        let stop = CancellationToken::new();
        ports.insert(node(6380), Some(b"id1"), 7001, stop.clone(), t0);
        assert!(ports.release_stale(t0 + RELEASE_AFTER / 2).is_empty());
        assert!(!stop.is_cancelled());
        assert_eq!(ports.release_stale(t0 + RELEASE_AFTER).len(), 1);
        assert!(stop.is_cancelled(), "its listener stops accepting");
        assert_eq!(ports.seen(&node(6380), Some(b"id1"), t0), None);
    }
}
