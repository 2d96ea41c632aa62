//! The admin HTTP listener (`--admin-listen`), for probes, scrapes and in-pod shutdown:
//!
//! - `GET /metrics`: Prometheus text format.
//! - `GET /livez`: 200 while the process answers.
//! - `GET /startupz`: 200 once the token is loaded and every listener serves; 503 before.
//! - `GET /readyz`: like `/startupz`, but 503 again while draining; with
//!   `--ready-requires-upstream`, also 503 unless every route authenticated upstream recently.
//! - `POST /quitquitquit`: starts a graceful shutdown; loopback clients only.
//!
//! HTTP/1.x, one request per connection, small bodies: a hand-written server is enough and keeps
//! the dependency tree small.

use crate::check;
use crate::config::Config;
use crate::token::TokenStore;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Longest request head read; probes and scrapers send a few hundred bytes.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// Time a client gets to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How recent an upstream AUTH must be for `--ready-requires-upstream`.
pub const UPSTREAM_FRESHNESS: Duration = Duration::from_secs(30);

const STARTING: u8 = 0;
const READY: u8 = 1;
const DRAINING: u8 = 2;

/// The proxy's lifecycle as probes see it.
#[derive(Debug)]
pub struct Health {
    phase: AtomicU8,
    starting_reason: Mutex<String>,
    /// Set once serving, for `--ready-requires-upstream`.
    upstream: OnceLock<UpstreamCheck>,
    /// Unix millis of the last successful upstream AUTH, per route (config order).
    last_auth: Vec<AtomicU64>,
}

#[derive(Debug)]
struct UpstreamCheck {
    config: Config,
    store: Arc<TokenStore>,
}

impl Health {
    pub fn new(routes: usize) -> Arc<Self> {
        Arc::new(Health {
            phase: AtomicU8::new(STARTING),
            starting_reason: Mutex::new("starting".into()),
            upstream: OnceLock::new(),
            last_auth: (0..routes).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    pub fn starting(&self, reason: &str) {
        *self.starting_reason.lock().expect("health lock") = reason.to_owned();
    }

    /// Token loaded, listeners serving. `upstream` enables the upstream readiness condition.
    pub fn ready(&self, upstream: Option<(Config, Arc<TokenStore>)>) {
        if let Some((config, store)) = upstream {
            let _ = self.upstream.set(UpstreamCheck { config, store });
        }
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

    fn started(&self) -> Result<(), String> {
        match self.phase.load(Ordering::Acquire) {
            STARTING => Err(self.starting_reason.lock().expect("health lock").clone()),
            _ => Ok(()),
        }
    }

    async fn ready_now(&self) -> Result<(), String> {
        self.started()?;
        if self.phase.load(Ordering::Acquire) == DRAINING {
            return Err("draining: shutting down".into());
        }
        match self.upstream.get() {
            Some(check) => self.upstream_fresh(check).await,
            None => Ok(()),
        }
    }

    /// Every route must have authenticated upstream within `UPSTREAM_FRESHNESS`; a route that
    /// has not is checked now with one real connection.
    async fn upstream_fresh(&self, check: &UpstreamCheck) -> Result<(), String> {
        let now = unix_millis();
        for (index, route) in check.config.routes.iter().enumerate() {
            let last = self.last_auth[index].load(Ordering::Relaxed);
            if now.saturating_sub(last) <= UPSTREAM_FRESHNESS.as_millis() as u64 {
                continue;
            }
            match check::check_route(route, &check.config, &check.store).await {
                Ok(_) => self.upstream_ok(index),
                Err(error) => return Err(format!("route {}: {error}", route.name)),
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

/// Serves the admin endpoints until `stop`; `quit` is cancelled by `POST /quitquitquit`.
pub async fn serve(
    listener: TcpListener,
    health: Arc<Health>,
    quit: CancellationToken,
    stop: CancellationToken,
) {
    if let Ok(addr) = listener.local_addr() {
        info!(admin.addr = %addr, "Admin endpoints listening");
    }
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    warn!(%error, "Admin accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (health, quit) = (Arc::clone(&health), quit.clone());
        tokio::spawn(async move {
            if let Err(error) = respond(stream, peer, &health, &quit).await {
                debug!(%error, "Admin request failed");
            }
        });
    }
}

async fn respond(
    mut stream: TcpStream,
    peer: SocketAddr,
    health: &Health,
    quit: &CancellationToken,
) -> std::io::Result<()> {
    let head = tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "request head"))??;
    let mut words = head.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = route(method, path, peer, health, quit).await;
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n",
        body.len()
    );
    stream.write_all(reply.as_bytes()).await?;
    if method != "HEAD" {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.shutdown().await
}

async fn route(
    method: &str,
    path: &str,
    peer: SocketAddr,
    health: &Health,
    quit: &CancellationToken,
) -> (&'static str, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    let get = matches!(method, "GET" | "HEAD");
    let probe = |result: Result<(), String>, ok: &str| match result {
        Ok(()) => ("200 OK", TEXT, format!("{ok}\n")),
        Err(reason) => ("503 Service Unavailable", TEXT, format!("{reason}\n")),
    };
    match path {
        "/metrics" if get => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            crate::metrics::install().render(),
        ),
        "/livez" if get => ("200 OK", TEXT, "ok\n".into()),
        "/startupz" if get => probe(health.started(), "started"),
        "/readyz" if get => probe(health.ready_now().await, "ready"),
        "/quitquitquit" if method == "POST" => {
            if peer.ip().is_loopback() {
                info!("Shutdown requested through /quitquitquit");
                quit.cancel();
                ("200 OK", TEXT, "shutting down\n".into())
            } else {
                (
                    "403 Forbidden",
                    TEXT,
                    "only loopback clients may quit the proxy\n".into(),
                )
            }
        }
        "/metrics" | "/livez" | "/startupz" | "/readyz" | "/quitquitquit" => (
            "405 Method Not Allowed",
            TEXT,
            "method not allowed\n".into(),
        ),
        _ => (
            "404 Not Found",
            TEXT,
            "endpoints: /metrics /livez /readyz /startupz /quitquitquit\n".into(),
        ),
    }
}

async fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            break;
        }
        if head.len() > MAX_REQUEST_HEAD {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "request head too long",
            ));
        }
    }
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    Ok(String::from_utf8_lossy(&head[..line_end]).into_owned())
}

/// `redis-auth-proxy health`: asks the local admin endpoint for readiness.
pub async fn probe(addr: SocketAddr, timeout: Duration) -> Result<String, String> {
    let ask = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot reach {addr}: {e}"))?;
        stream
            .write_all(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .map_err(|e| e.to_string())?;
        let mut reply = Vec::new();
        stream
            .read_to_end(&mut reply)
            .await
            .map_err(|e| e.to_string())?;
        let reply = String::from_utf8_lossy(&reply).into_owned();
        let body = reply
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.trim().to_owned())
            .unwrap_or_default();
        if reply.starts_with("HTTP/1.1 200") {
            Ok(body)
        } else {
            Err(format!("not ready: {body}"))
        }
    };
    tokio::time::timeout(timeout, ask)
        .await
        .map_err(|_| format!("no answer from {addr} within {timeout:?}"))?
}
