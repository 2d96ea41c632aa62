//! Asking the configured endpoint for the topology when a redirect names a node that no
//! topology reply announced: a redirect is believed only once the server itself lists the
//! node. One refresh at a time per route and none within `MIN_INTERVAL` of the last, so that
//! errors a client provokes (a script can return any error text) cost the server at most one
//! `CLUSTER SHARDS` a second.

use super::nodes::NodeTable;
use crate::cluster::Topology;
use crate::cluster::rewrite::Rewriter;
use crate::handshake::read_frame;
use crate::resp::encode_request;
use bytes::BytesMut;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;
use tracing::{debug, warn};

const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// The largest topology reply read (as for the ones clients ask for).
const MAX_TOPOLOGY: usize = 16 << 20;

#[derive(Default)]
pub(crate) struct Refreshes {
    state: Mutex<State>,
    done: Notify,
}

#[derive(Default)]
struct State {
    running: bool,
    last: Option<Instant>,
}

/// Marks the refresh finished even if its task is dropped midway.
struct Running<'a>(&'a Refreshes);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut state = self.0.state.lock().expect("refresh state");
        state.running = false;
        state.last = Some(Instant::now());
        drop(state);
        self.0.done.notify_waiters();
    }
}

impl NodeTable {
    /// Reads the topology from the configured endpoint into the table, unless that was done
    /// within the last second; waits for one in flight instead of starting another. Bounded by
    /// the connect timeout and twice the auth timeout.
    pub(crate) async fn refresh_topology(&self) {
        let settings = &self.template.shared.settings;
        let limit = settings.connect_timeout + 2 * settings.auth_timeout;
        let finished = self.refreshes.done.notified();
        let running = {
            let mut state = self.refreshes.state.lock().expect("refresh state");
            if state.last.is_some_and(|at| at.elapsed() < MIN_INTERVAL) {
                return;
            }
            (!state.running).then(|| {
                state.running = true;
                Running(&self.refreshes)
            })
        };
        let Some(running) = running else {
            // One is in flight: its result serves this redirect too.
            let _ = tokio::time::timeout(limit, finished).await;
            return;
        };
        match tokio::time::timeout(limit, self.fetch_topology()).await {
            Ok(Ok(())) => debug!(route = %self.template.route, "Refreshed the cluster topology"),
            Ok(Err(error)) => {
                warn!(route = %self.template.route, %error, "Could not refresh the cluster topology")
            }
            Err(_) => {
                warn!(route = %self.template.route, after = ?limit, "Refreshing the cluster topology timed out")
            }
        }
        drop(running);
    }

    /// `CLUSTER SHARDS` (every node, by its preferred endpoint, as redirects name it), or
    /// `CLUSTER SLOTS` where SHARDS is refused, rewritten as a client's would be.
    async fn fetch_topology(&self) -> Result<(), String> {
        let route = self.endpoint_route().ok_or("shutting down")?;
        let mut stream = route.open_upstream().await.map_err(|e| e.to_string())?;
        let upstream = route.connector.addr.to_string();
        let mut buf = BytesMut::new();
        for (kind, sub) in [(Topology::Shards, "SHARDS"), (Topology::Slots, "SLOTS")] {
            let command = encode_request(&[b"CLUSTER", sub.as_bytes()]);
            stream
                .write_all(&command)
                .await
                .map_err(|e| e.to_string())?;
            let frame = read_frame(&mut stream, &mut buf, &upstream, MAX_TOPOLOGY)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("a topology reply over {MAX_TOPOLOGY} bytes"))?;
            if frame.first() == Some(&b'-') {
                continue;
            }
            let rewriter = Rewriter {
                nodes: self,
                this_node: &route.connector.addr,
            };
            rewriter.topology(kind, &frame).map_err(|e| e.to_string())?;
            return Ok(());
        }
        Err("the server refused CLUSTER SHARDS and CLUSTER SLOTS".into())
    }
}
