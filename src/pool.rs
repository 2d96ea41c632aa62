//! A few ready, authenticated upstream connections per route (`--upstream-pool-size`), so that
//! a client that opens a connection per request does not wait for TCP, TLS and AUTH each time.
//!
//! A pooled connection is handed out only while it is younger than `--upstream-pool-max-age`,
//! was authenticated with the tokens now in the store, and has not been closed by the server
//! (a non-blocking peek at the socket just before it is handed out). A background task keeps the pool
//! full and replaces what ages out.

use crate::metrics::pool as metrics;
use crate::upstream::UpstreamStream;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

struct Ready {
    stream: UpstreamStream,
    born: Instant,
    token_version: u64,
}

/// The idle, authenticated connections of one route.
pub struct Pool {
    pub size: usize,
    pub max_age: Duration,
    route: String,
    idle: Mutex<VecDeque<Ready>>,
    /// Wakes the filler when a connection was taken or thrown away.
    pub(crate) wanted: Notify,
}

impl Pool {
    pub fn new(route: &str, size: usize, max_age: Duration) -> Self {
        Pool {
            size,
            max_age,
            route: route.to_owned(),
            idle: Mutex::new(VecDeque::with_capacity(size)),
            wanted: Notify::new(),
        }
    }

    /// A usable connection, if one is ready. Stale or closed ones are dropped on the way.
    pub fn take(&self, token_version: u64) -> Option<UpstreamStream> {
        let found = loop {
            let Some(mut ready) = self.idle.lock().expect("pool lock").pop_front() else {
                break None;
            };
            match self.problem(&mut ready, token_version) {
                None => break Some(ready.stream),
                Some(reason) => metrics::evicted(&self.route, reason),
            }
        };
        metrics::taken(&self.route, if found.is_some() { "hit" } else { "miss" });
        self.publish();
        self.wanted.notify_one();
        found
    }

    /// Adds a freshly authenticated connection.
    pub fn put(&self, stream: UpstreamStream, token_version: u64) {
        let ready = Ready {
            stream,
            born: Instant::now(),
            token_version,
        };
        self.idle.lock().expect("pool lock").push_back(ready);
        self.publish();
    }

    /// How many more connections the pool wants, after dropping the stale ones.
    pub fn missing(&self, token_version: u64) -> usize {
        let missing = {
            let mut idle = self.idle.lock().expect("pool lock");
            idle.retain(|ready| {
                let stale =
                    ready.born.elapsed() > self.max_age || ready.token_version != token_version;
                if stale {
                    metrics::evicted(&self.route, "stale");
                }
                !stale
            });
            self.size.saturating_sub(idle.len())
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
        metrics::ready(&self.route, len);
    }
}
