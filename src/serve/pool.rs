//! A few ready, authenticated upstream connections per route (`--upstream-pool-size`), so that
//! a client that opens a connection per request does not wait for TCP, TLS and AUTH each time.
//!
//! A pooled connection is handed out only while it is younger than `--upstream-pool-max-age`,
//! was authenticated with the tokens now in the store, and has not been closed by the server
//! (a non-blocking peek at the socket just before it is handed out). A background task keeps the pool
//! full and replaces what ages out. With `--upstream-reuse` the connections out with clients
//! count as the pool's (`Lease`): they come back when their clients leave (`reuse`).

use super::RouteRuntime;
use crate::metrics::RouteMetrics;
use crate::upstream::UpstreamStream;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::debug;

struct Ready {
    stream: UpstreamStream,
    born: Instant,
    token_version: u64,
}

/// The idle, authenticated connections of one route.
pub(crate) struct Pool {
    pub size: usize,
    pub max_age: Duration,
    metrics: RouteMetrics,
    idle: Mutex<VecDeque<Ready>>,
    /// With `--upstream-reuse`: connections serving a client now, expected back when it leaves;
    /// the filler does not replace them.
    out: AtomicUsize,
    /// Wakes the filler when a connection was taken or thrown away.
    pub(crate) wanted: Notify,
}

/// A connection serving a client of a route that reuses connections; counted as the pool's
/// until dropped.
pub(crate) struct Lease(Arc<Pool>);

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.out.fetch_sub(1, Ordering::AcqRel);
        self.0.wanted.notify_one();
    }
}

impl Pool {
    pub(crate) fn new(metrics: RouteMetrics, size: usize, max_age: Duration) -> Self {
        Pool {
            size,
            max_age,
            metrics,
            idle: Mutex::new(VecDeque::with_capacity(size)),
            out: AtomicUsize::new(0),
            wanted: Notify::new(),
        }
    }

    /// A usable connection and when it was made, if one is ready. Stale or closed ones are
    /// dropped on the way.
    pub(crate) fn take(&self, token_version: u64) -> Option<(UpstreamStream, Instant)> {
        let found = loop {
            let Some(mut ready) = self.idle.lock().expect("pool lock").pop_front() else {
                break None;
            };
            match self.problem(&mut ready, token_version) {
                None => break Some((ready.stream, ready.born)),
                Some(reason) => self.metrics.pool_evicted(reason),
            }
        };
        (self.metrics).pool_taken(if found.is_some() { "hit" } else { "miss" });
        self.publish();
        self.wanted.notify_one();
        found
    }

    /// Counts a connection serving a client as the pool's until the lease is dropped.
    pub(crate) fn lease(self: &Arc<Self>) -> Lease {
        self.out.fetch_add(1, Ordering::AcqRel);
        Lease(Arc::clone(self))
    }

    /// Adds a freshly authenticated connection, unless the pool is full.
    pub(crate) fn put(&self, stream: UpstreamStream, token_version: u64) {
        let _ = self.put_back(stream, token_version, Instant::now());
    }

    /// Adds an authenticated connection made at `born`, unless the pool is full: then it is
    /// given back, to be closed.
    pub(crate) fn put_back(
        &self,
        stream: UpstreamStream,
        token_version: u64,
        born: Instant,
    ) -> Result<(), UpstreamStream> {
        {
            let mut idle = self.idle.lock().expect("pool lock");
            if idle.len() >= self.size {
                return Err(stream);
            }
            idle.push_back(Ready {
                stream,
                born,
                token_version,
            });
        }
        self.publish();
        Ok(())
    }

    /// How many more connections the pool wants, after dropping the stale ones.
    pub(crate) fn missing(&self, token_version: u64) -> usize {
        let missing = {
            let mut idle = self.idle.lock().expect("pool lock");
            idle.retain(|ready| {
                let stale =
                    ready.born.elapsed() > self.max_age || ready.token_version != token_version;
                if stale {
                    self.metrics.pool_evicted("stale");
                }
                !stale
            });
            let out = self.out.load(Ordering::Acquire);
            self.size.saturating_sub(idle.len() + out)
        };
        self.publish();
        missing
    }

    fn problem(&self, ready: &mut Ready, token_version: u64) -> Option<&'static str> {
        if ready.born.elapsed() > self.max_age || ready.token_version != token_version {
            return Some("stale");
        }
        ready.stream.unusable_while_idle().then_some("closed")
    }

    fn publish(&self) {
        let len = self.idle.lock().expect("pool lock").len();
        self.metrics.pool_ready(len);
    }
}

/// Keeps a route's upstream pool full until `stop`: refills when a connection is taken or
/// ages out, and backs off while the server cannot be reached.
pub(crate) async fn keep_pool_filled(route: Arc<RouteRuntime>, stop: CancellationToken) {
    let Some(pool) = route.pool.as_ref() else {
        return;
    };
    let mut backoff = Duration::from_millis(100);
    loop {
        let version = route.forward.store.version();
        let mut failed = false;
        for _ in 0..pool.missing(version) {
            match route.open_upstream().await {
                Ok(stream) => pool.put(stream, version),
                Err(error) => {
                    debug!(route = %route.name, %error, "Could not fill the upstream pool");
                    failed = true;
                    break;
                }
            }
        }
        let wait = if failed {
            backoff = (backoff * 2).min(Duration::from_secs(5));
            backoff
        } else {
            backoff = Duration::from_millis(100);
            pool.max_age / 2
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = pool.wanted.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}
