//! The admin listener's connection budget. At most `MAX_ADMIN_CONNECTIONS` are open at once, so
//! a flood cannot take the file descriptors clients and the token source need; when all places
//! are taken, the oldest connection that has not yet sent a whole request head gives its place
//! to the newcomer. Connections that send nothing can then never keep a probe from being
//! answered, which would make the kubelet restart the sidecar.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// How long a newcomer waits for the place it freed (its holder only has to notice).
const EVICTION_WAIT: Duration = Duration::from_secs(1);

pub(super) struct Budget {
    places: Arc<Semaphore>,
    open: Mutex<VecDeque<Open>>,
    next_id: AtomicU64,
}

struct Open {
    id: u64,
    evict: CancellationToken,
    head: Arc<AtomicBool>,
}

/// One connection's place; given back when dropped.
pub(super) struct Place {
    budget: Arc<Budget>,
    id: u64,
    _permit: OwnedSemaphorePermit,
    /// Cancelled when a newer connection takes this place.
    pub(super) evicted: CancellationToken,
    /// Set once the connection has sent a whole request head: it is then not evicted.
    pub(super) head: Arc<AtomicBool>,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut open = self.budget.open.lock().expect("admin budget");
        open.retain(|o| o.id != self.id);
    }
}

impl Budget {
    pub(super) fn new(places: usize) -> Arc<Budget> {
        Arc::new(Budget {
            places: Arc::new(Semaphore::new(places)),
            open: Mutex::new(VecDeque::with_capacity(places)),
            next_id: AtomicU64::new(0),
        })
    }

    /// A place for a new connection: a free one, else the oldest one whose connection has
    /// sent no request yet, once given up. `None` when every place serves a request.
    pub(super) async fn place(self: &Arc<Self>) -> Option<Place> {
        let permit = match Arc::clone(&self.places).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if !self.evict_oldest_idle() {
                    return None;
                }
                let freed = Arc::clone(&self.places).acquire_owned();
                tokio::time::timeout(EVICTION_WAIT, freed)
                    .await
                    .ok()?
                    .ok()?
            }
        };
        let (evict, head) = (CancellationToken::new(), Arc::new(AtomicBool::new(false)));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.open.lock().expect("admin budget").push_back(Open {
            id,
            evict: evict.clone(),
            head: Arc::clone(&head),
        });
        Some(Place {
            budget: Arc::clone(self),
            id,
            _permit: permit,
            evicted: evict,
            head,
        })
    }

    fn evict_oldest_idle(&self) -> bool {
        let open = self.open.lock().expect("admin budget");
        let idle = open
            .iter()
            .find(|o| !o.head.load(Ordering::Acquire) && !o.evict.is_cancelled());
        idle.inspect(|o| o.evict.cancel()).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_newcomer_takes_the_place_of_the_oldest_connection_that_sent_nothing() {
        let budget = Budget::new(2);
        let first = budget.place().await.unwrap();
        let second = budget.place().await.unwrap();
        second.head.store(true, Ordering::Release);
        let waiter = tokio::spawn({
            let budget = Arc::clone(&budget);
            async move { budget.place().await.is_some() }
        });
        first.evicted.cancelled().await;
        assert!(!second.evicted.is_cancelled(), "it sent a request");
        drop(first);
        assert!(waiter.await.unwrap(), "the newcomer got the freed place");
    }

    #[tokio::test]
    async fn when_every_place_serves_a_request_the_newcomer_gets_none() {
        let budget = Budget::new(1);
        let busy = budget.place().await.unwrap();
        busy.head.store(true, Ordering::Release);
        assert!(budget.place().await.is_none());
    }
}
