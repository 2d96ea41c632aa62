//! Multiplexing (`--multiplex`): many clients over a few shared upstream connections per route
//! (lanes), with a connection of its own for a client that needs one (pinning).
//!
//! - `lane.rs`: one shared connection: requests of many clients written together, each reply
//!   passed back to the client that owes it, in order.
//! - `front.rs`: one client on a lane: its whole requests judged (`rules.rs`) and sent, its
//!   replies and the proxy's own answers written in order (`ledger.rs`), until it leaves or a
//!   request pins it; `serve/multiplex.rs` then gives it a connection of its own and the usual
//!   1:1 path (`forward`) takes over, from that request on.
//! - `borrow.rs` and `front/loans.rs`: a transaction or a blocking command borrows a connection
//!   instead, run as a lane of the client's own (`lane/borrowed.rs`) until the transaction is
//!   over or the command answered; then the connection goes back (reset for the next client with
//!   `--upstream-reuse`, closed otherwise) and the client to its lane.
//! - `Lanes` (here): a route's lanes, one per slot; each client is bound to one slot for its
//!   life, so its requests and replies keep their order. `serve/multiplex.rs` keeps the slots
//!   filled, opening and authenticating lanes as for any connection.

mod borrow;
mod front;
mod lane;
mod ledger;
mod rules;
mod words;

pub(crate) use borrow::Loan;
pub(crate) use front::{BorrowFuture, Borrowed, Connections, Front, LaneFuture, Left, Pinned};
pub(crate) use lane::{Handback, Lane, Retirement, start, start_borrowed};
pub(crate) use rules::Rules;

use crate::error::ConnError;
use crate::lock;
use crate::metrics::multiplex::MultiplexMetrics;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// The most reply bytes a client may leave unread on a shared connection before it is cut
/// off, as Redis cuts a client past its `client-output-buffer-limit`.
pub(crate) const OUTPUT_LIMIT: usize = 64 * 1024 * 1024;

/// A route's lanes: `count` slots for RESP2 clients, then, once a client asks for RESP3
/// (HELLO 3), `count` for RESP3 clients.
pub(crate) struct Lanes {
    slots: Vec<Mutex<Option<Arc<Lane>>>>,
    count: usize,
    /// A client asked for RESP3: the keeper fills the RESP3 slots too.
    resp3: std::sync::atomic::AtomicBool,
    /// Lanes replaced while clients were still on them: closed once none is.
    retired: Mutex<Vec<Arc<Lane>>>,
    next: AtomicUsize,
    /// Told when a slot gets a lane.
    filled: Notify,
    /// Told when a lane closes or retires, or a client finds a slot empty: the keeper looks.
    pub changed: Arc<Notify>,
    /// Why the last lane could not be opened, for the clients that waited in vain.
    last_error: Mutex<Option<String>>,
    /// How long a client waits for its slot to get a lane.
    wait: Duration,
    pub metrics: MultiplexMetrics,
}

impl Lanes {
    pub(crate) fn new(count: usize, wait: Duration, route: &str) -> Self {
        let count = count.max(1);
        Lanes {
            slots: (0..2 * count).map(|_| Mutex::new(None)).collect(),
            count,
            resp3: std::sync::atomic::AtomicBool::new(false),
            retired: Mutex::new(Vec::new()),
            next: AtomicUsize::new(0),
            filled: Notify::new(),
            changed: Arc::new(Notify::new()),
            last_error: Mutex::new(None),
            wait,
            metrics: MultiplexMetrics::new(route),
        }
    }

    /// The slots of each protocol.
    pub(crate) fn slots(&self) -> usize {
        self.count
    }

    /// The protocols whose slots are kept filled: RESP2, and RESP3 once a client asked for it.
    pub(crate) fn protocols(&self) -> &'static [u8] {
        if self.resp3.load(Ordering::Relaxed) {
            &[2, 3]
        } else {
            &[2]
        }
    }

    fn index(&self, protocol: u8, slot: usize) -> usize {
        usize::from(protocol == 3) * self.count + slot
    }

    /// The slot a new client is bound to: each in turn.
    pub(crate) fn slot_for_new_client(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % self.count
    }

    /// The slot's lane for `protocol`, if it has a live one that is not retired.
    pub(crate) fn current(&self, protocol: u8, slot: usize) -> Option<Arc<Lane>> {
        lock(&self.slots[self.index(protocol, slot)])
            .clone()
            .filter(|lane| !lane.leaving())
    }

    /// Puts a new lane in `slot` for `protocol`; the lane it replaces is kept until no client
    /// is on it.
    pub(crate) fn put(&self, protocol: u8, slot: usize, lane: Arc<Lane>) {
        if let Some(old) = lock(&self.slots[self.index(protocol, slot)]).replace(lane) {
            if old.closed.is_cancelled() {
                drop(old);
            } else {
                old.retire();
                lock(&self.retired).push(old);
            }
        }
        *lock(&self.last_error) = None;
        self.filled.notify_waiters();
    }

    /// A lane could not be opened.
    pub(crate) fn failed(&self, error: &ConnError) {
        *lock(&self.last_error) = Some(error.to_string());
    }

    /// Closes replaced lanes no client is on any more; returns how many lanes are open.
    pub(crate) fn tidy(&self) -> usize {
        let mut retired = lock(&self.retired);
        // Held by `retired` and the lane's two halves alone, or owed nothing: a client still
        // bound to it moves to the slot's new lane with its next request (one sent to it
        // meanwhile comes back unsent and goes there too).
        retired.retain(|lane| {
            let idle = Arc::strong_count(lane) <= 3 || lane.owes_nothing();
            if idle || lane.closed.is_cancelled() {
                lane.close();
                return false;
            }
            true
        });
        let live = (self.slots.iter())
            .filter(|slot| {
                lock(slot)
                    .as_ref()
                    .is_some_and(|l| !l.closed.is_cancelled())
            })
            .count();
        live + retired.len()
    }

    /// Retires the slots' lanes whose time has come (`Retirement`); `store_expires`: the
    /// expiry of the token the store holds now.
    pub(crate) fn retire_old(&self, store_expires: Option<std::time::SystemTime>) {
        let now = std::time::Instant::now();
        for slot in &self.slots {
            let lane = lock(slot).clone();
            let Some(lane) = lane else { continue };
            let due = lane.retirement.is_some_and(|r| {
                now >= r.at
                    && r.after_token
                        .is_none_or(|old| store_expires.is_some_and(|new| new > old))
            });
            if due {
                lane.retire();
            }
        }
    }

    /// Closes every lane (at shutdown).
    pub(crate) fn close_all(&self) {
        for slot in &self.slots {
            if let Some(lane) = lock(slot).take() {
                lane.close();
            }
        }
        for lane in lock(&self.retired).drain(..) {
            lane.close();
        }
    }
}

impl Lanes {
    /// The slot's lane for `protocol`, once it has one; waits up to `wait` while it has none.
    pub(crate) fn wait_for(&self, protocol: u8, slot: usize) -> LaneFuture<'_> {
        if protocol == 3 {
            self.resp3.store(true, Ordering::Relaxed);
        }
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + self.wait;
            loop {
                let filled = self.filled.notified();
                tokio::pin!(filled);
                filled.as_mut().enable();
                if let Some(lane) = self.current(protocol, slot) {
                    return Ok(lane);
                }
                self.changed.notify_one();
                if tokio::time::timeout_at(deadline, filled).await.is_err() {
                    let why = lock(&self.last_error).clone();
                    return Err(ConnError::NoSharedConnection(
                        why.unwrap_or_else(|| format!("none opened within {:?}", self.wait)),
                    ));
                }
            }
        })
    }
}
