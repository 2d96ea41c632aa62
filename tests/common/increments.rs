//! Clients incrementing their own keys through the proxy while a test moves the primary:
//! what each acknowledged, how many replies it had, and every error it saw.

use super::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What the clients saw: acknowledged increments per client, and every error.
#[derive(Default)]
struct Tally {
    acked: Vec<AtomicU64>,
    /// Replies that were not errors, per client.
    replies: Vec<AtomicU64>,
    errors: Mutex<Vec<String>>,
    stop: AtomicBool,
}

/// Clients incrementing their own keys through the proxy until stopped.
pub struct Load {
    tally: Arc<Tally>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    /// `clients` clients, the first `long_lived` on one connection each, the rest on a new
    /// one per increment; `exact` as for `client`.
    pub fn start(proxy: &ProxyProcess, clients: usize, long_lived: usize, exact: bool) -> Load {
        let tally = Arc::new(Tally {
            acked: (0..clients).map(|_| AtomicU64::new(0)).collect(),
            replies: (0..clients).map(|_| AtomicU64::new(0)).collect(),
            ..Tally::default()
        });
        let addr = proxy.addr();
        let threads = (0..clients)
            .map(|i| {
                let tally = Arc::clone(&tally);
                std::thread::spawn(move || client(&tally, addr, i, i < long_lived, exact))
            })
            .collect();
        Load { tally, threads }
    }

    pub fn acked(&self) -> Vec<u64> {
        let acked = self.tally.acked.iter();
        acked.map(|a| a.load(Ordering::Relaxed)).collect()
    }

    /// Waits until every client has an acknowledged count of at least `least`.
    pub fn reach(&self, what: &str, least: u64) {
        eventually(what, || self.acked().iter().all(|&a| a >= least));
    }

    /// Waits until every client has had `more` replies since this was called.
    pub fn answered_more(&self, what: &str, more: u64) {
        let replies = || -> Vec<u64> {
            let replies = self.tally.replies.iter();
            replies.map(|r| r.load(Ordering::Relaxed)).collect()
        };
        let before = replies();
        eventually(what, || {
            replies()
                .iter()
                .zip(&before)
                .all(|(now, then)| *now >= then + more)
        });
    }

    /// Stops the clients; what they saw.
    pub fn stop(mut self) -> (Vec<u64>, Vec<String>) {
        self.tally.stop.store(true, Ordering::Relaxed);
        for thread in std::mem::take(&mut self.threads) {
            thread.join().unwrap();
        }
        let errors = std::mem::take(&mut *self.tally.errors.lock().unwrap());
        (self.acked(), errors)
    }
}

/// Client `i` increments its own key, on one long-lived connection or a new one each time. A
/// reply must be exactly one more than the last (`exact`): an increment executed twice would
/// show. Otherwise the last value answered is kept (a killed primary may not have passed its
/// last writes to the replica).
fn client(tally: &Tally, addr: std::net::SocketAddr, i: usize, long_lived: bool, exact: bool) {
    let key = format!("counter-{i}");
    let url = format!("redis://{addr}/");
    let mut connection = None;
    while !tally.stop.load(Ordering::Relaxed) {
        if connection.is_none() || !long_lived {
            connection = Some(connect(&url));
        }
        let con = connection.as_mut().unwrap();
        let reply = redis::cmd("INCR").arg(&key).query::<u64>(con);
        if reply.is_ok() {
            tally.replies[i].fetch_add(1, Ordering::Relaxed);
        }
        match reply {
            Ok(value) if !exact => tally.acked[i].store(value, Ordering::Relaxed),
            Ok(value) => {
                let acked = tally.acked[i].fetch_add(1, Ordering::Relaxed) + 1;
                if value != acked {
                    let error = format!("{key}: INCR answered {value} after {acked} acknowledged");
                    tally.errors.lock().unwrap().push(error);
                }
            }
            Err(error) => {
                // An error reply leaves the connection usable; a broken one is opened again.
                if error.is_io_error() || error.is_connection_dropped() {
                    connection = None;
                }
                tally.errors.lock().unwrap().push(format!("{key}: {error}"));
            }
        }
    }
}
