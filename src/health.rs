//! The proxy's lifecycle as probes see it: starting, ready, draining; and, with
//! `--ready-requires-upstream`, whether every route authenticated upstream recently. `serve`
//! reports into it, `admin` reads it.

use crate::token::TokenStore;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How recent an upstream AUTH must be for `--ready-requires-upstream`.
pub(crate) const UPSTREAM_FRESHNESS: Duration = Duration::from_secs(30);

const STARTING: u8 = 0;
const READY: u8 = 1;
const DRAINING: u8 = 2;

/// A route that can prove now that its upstream accepts the token: connect and authenticate
/// with the route's own connector and store.
pub trait UpstreamProbe: Send + Sync {
    fn probe(&self) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>>;
}

pub struct Health {
    phase: AtomicU8,
    starting_reason: Mutex<String>,
    /// One per route (config order), set once serving with `--ready-requires-upstream`.
    probes: OnceLock<Vec<Arc<dyn UpstreamProbe>>>,
    /// Unix millis of the last successful upstream AUTH, per route.
    last_auth: Vec<AtomicU64>,
    /// The tokens, whose expiry (IAM) readiness checks.
    store: OnceLock<Arc<TokenStore>>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

impl Health {
    pub fn new(routes: usize) -> Arc<Self> {
        Arc::new(Health {
            phase: AtomicU8::new(STARTING),
            starting_reason: Mutex::new("starting".into()),
            probes: OnceLock::new(),
            last_auth: (0..routes).map(|_| AtomicU64::new(0)).collect(),
            store: OnceLock::new(),
        })
    }

    pub fn starting(&self, reason: &str) {
        *self.starting_reason.lock().expect("health lock") = reason.to_owned();
    }

    /// Token loaded, listeners serving. `probes` (one per route) enable the upstream condition.
    pub fn ready(&self, store: Arc<TokenStore>, probes: Option<Vec<Arc<dyn UpstreamProbe>>>) {
        if let Some(probes) = probes {
            let _ = self.probes.set(probes);
        }
        let _ = self.store.set(store);
        self.phase.store(READY, Ordering::Release);
    }

    pub fn draining(&self) {
        self.phase.store(DRAINING, Ordering::Release);
    }

    /// Called when a connection of route `index` authenticated upstream.
    pub fn upstream_ok(&self, index: usize) {
        if let Some(slot) = self.last_auth.get(index) {
            slot.store(unix_millis(), Ordering::Relaxed);
        }
    }

    /// `/startupz`: the reason while starting.
    pub fn started(&self) -> Result<(), String> {
        match self.phase.load(Ordering::Acquire) {
            STARTING => Err(self.starting_reason.lock().expect("health lock").clone()),
            _ => Ok(()),
        }
    }

    /// `/readyz`.
    pub async fn ready_now(&self) -> Result<(), String> {
        self.ready_here()?;
        match self.probes.get() {
            Some(probes) => self.upstream_fresh(probes).await,
            None => Ok(()),
        }
    }

    /// `/readyz` but for the upstream check of `--ready-requires-upstream`: what the process
    /// knows without opening a connection (the `ready` metric, read at each scrape).
    pub fn ready_here(&self) -> Result<(), String> {
        self.started()?;
        if self.phase.load(Ordering::Acquire) == DRAINING {
            return Err("draining: shutting down".into());
        }
        self.token_alive()
    }

    /// A token that expires (IAM) must not have: it expires when no credentials could be had to
    /// sign the next one.
    fn token_alive(&self) -> Result<(), String> {
        let expires = self
            .store
            .get()
            .and_then(|store| store.credentials())
            .and_then(|credentials| credentials.expires);
        match expires {
            Some(expires) if expires <= SystemTime::now() => Err(
                "the IAM token expired and no new one could be signed (no AWS credentials: see the log)"
                    .into(),
            ),
            _ => Ok(()),
        }
    }

    /// Every route must have authenticated upstream within `UPSTREAM_FRESHNESS`; a route that
    /// has not is probed now with one real connection.
    async fn upstream_fresh(&self, probes: &[Arc<dyn UpstreamProbe>]) -> Result<(), String> {
        let now = unix_millis();
        for (index, probe) in probes.iter().enumerate() {
            let last = self.last_auth[index].load(Ordering::Relaxed);
            if now.saturating_sub(last) > UPSTREAM_FRESHNESS.as_millis() as u64 {
                probe.probe().await?;
                self.upstream_ok(index);
            }
        }
        Ok(())
    }
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
