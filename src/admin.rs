//! The admin HTTP listener (`--admin-listen`), for probes, scrapes and in-pod shutdown:
//!
//! - `GET /metrics`: Prometheus text format.
//! - `GET /livez`: 200 while the process answers.
//! - `GET /startupz`: 200 once the token is loaded and every listener serves; 503 before.
//! - `GET /readyz`: like `/startupz`, but 503 again while draining; with
//!   `--ready-requires-upstream`, also 503 unless every route authenticated upstream recently.
//! - `POST /quitquitquit`: starts a graceful shutdown; loopback clients only.
//!
//! HTTP/1 on hyper, one request per connection. In Kubernetes this port listens on the pod
//! network for probes, so anyone in the cluster can reach it: connections are capped and
//! timed (`budget`), and a connection that sent nothing gives its place to a newer one.
//! `/quitquitquit` also refuses what a web page in a browser on the same host could send.

mod budget;

use crate::health::Health;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderMap, ORIGIN};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Admin connections served at once; more are closed on accept.
pub const MAX_ADMIN_CONNECTIONS: usize = 64;
/// Time a client gets to send its request head, and to finish the whole exchange.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

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
    let budget = budget::Budget::new(MAX_ADMIN_CONNECTIONS);
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
        let Some(place) = budget.place().await else {
            debug!(%peer, "Every admin connection serves a request; closed");
            continue;
        };
        let (health, quit) = (Arc::clone(&health), quit.clone());
        tokio::spawn(async move {
            let exchange = serve_connection(stream, peer, health, quit, Arc::clone(&place.head));
            tokio::select! {
                () = place.evicted.cancelled() => {
                    debug!(%peer, "Closed an admin connection that sent no request, for a newer one");
                }
                served = tokio::time::timeout(EXCHANGE_TIMEOUT, exchange) => {
                    if let Ok(Err(error)) = served {
                        debug!(%error, "Admin request failed");
                    }
                }
            }
            drop(place);
        });
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    health: Arc<Health>,
    quit: CancellationToken,
    head: Arc<AtomicBool>,
) -> Result<(), hyper::Error> {
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        head.store(true, Ordering::Release);
        let (health, quit) = (Arc::clone(&health), quit.clone());
        async move { Ok::<_, std::convert::Infallible>(respond(&request, peer, &health, &quit).await) }
    });
    hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .await
}

async fn respond(
    request: &Request<Incoming>,
    peer: SocketAddr,
    health: &Health,
    quit: &CancellationToken,
) -> Response<Full<Bytes>> {
    let method = request.method();
    let (status, content_type, body) = route(request, peer, health, quit).await;
    let body = if method == Method::HEAD {
        String::new()
    } else {
        body
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, content_type.parse().expect("a valid header"));
    headers.insert(CACHE_CONTROL, "no-store".parse().expect("a valid header"));
    response
}

async fn route(
    request: &Request<Incoming>,
    peer: SocketAddr,
    health: &Health,
    quit: &CancellationToken,
) -> (StatusCode, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    let (method, path) = (request.method(), request.uri().path());
    let get = method == Method::GET || method == Method::HEAD;
    let probe = |result: Result<(), String>, ok: &str| match result {
        Ok(()) => (StatusCode::OK, TEXT, format!("{ok}\n")),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, TEXT, format!("{reason}\n")),
    };
    match path {
        "/metrics" if get => {
            crate::metrics::PROCESS.ready(health.ready_here().is_ok());
            (
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                crate::metrics::install().render(),
            )
        }
        "/livez" if get => (StatusCode::OK, TEXT, "ok\n".into()),
        "/startupz" if get => probe(health.started(), "started"),
        "/readyz" if get => probe(health.ready_now().await, "ready"),
        "/quitquitquit" if method == Method::POST => {
            if could_come_from_a_web_page(request.headers()) {
                (
                    StatusCode::FORBIDDEN,
                    TEXT,
                    "refused: a web page could have sent this (Origin, Sec-Fetch-Site or a form content type); POST with none of them\n".into(),
                )
            } else if peer.ip().is_loopback() {
                info!("Shutdown requested through /quitquitquit");
                quit.cancel();
                (StatusCode::OK, TEXT, "shutting down\n".into())
            } else {
                (
                    StatusCode::FORBIDDEN,
                    TEXT,
                    "only loopback clients may quit the proxy\n".into(),
                )
            }
        }
        "/metrics" | "/livez" | "/startupz" | "/readyz" | "/quitquitquit" => (
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "method not allowed\n".into(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            TEXT,
            "endpoints: /metrics /livez /readyz /startupz /quitquitquit\n".into(),
        ),
    }
}

/// Whether a browser could have sent the request for a page of any site: it names an origin, a
/// fetch context, or a body type that forms send without asking the server first (CORS
/// "simple" requests). Scripts and `curl -X POST` send none of them.
fn could_come_from_a_web_page(headers: &HeaderMap) -> bool {
    const FORM_TYPES: [&str; 3] = [
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "text/plain",
    ];
    let form = headers
        .get_all(CONTENT_TYPE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| {
            let media = value.split(';').next().unwrap_or("").trim();
            FORM_TYPES.iter().any(|t| media.eq_ignore_ascii_case(t))
        });
    form || headers.contains_key(ORIGIN) || headers.contains_key("sec-fetch-site")
}

/// Why a probe of the local admin endpoint did not get a 200.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// It answered otherwise; the body says why (`loading the token from ...`).
    #[error("{0}")]
    Answered(String),
    /// It could not be reached, or did not answer in time.
    #[error("{0}")]
    Unanswered(String),
}

/// `redis-auth-proxy health` and `wait`: asks the local admin endpoint's `path` (`/readyz`,
/// `/startupz`); the body when it answers 200.
pub async fn probe(addr: SocketAddr, path: &str, timeout: Duration) -> Result<String, ProbeError> {
    let unanswered = ProbeError::Unanswered;
    let ask = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| unanswered(format!("cannot reach {addr}: {e}")))?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| unanswered(e.to_string()))?;
        let mut reply = Vec::new();
        stream
            .read_to_end(&mut reply)
            .await
            .map_err(|e| unanswered(e.to_string()))?;
        let reply = String::from_utf8_lossy(&reply).into_owned();
        let body = reply
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.trim().to_owned())
            .unwrap_or_default();
        if reply.starts_with("HTTP/1.1 200") {
            Ok(body)
        } else {
            Err(ProbeError::Answered(body))
        }
    };
    tokio::time::timeout(timeout, ask)
        .await
        .map_err(|_| unanswered(format!("no answer from {addr} within {timeout:?}")))?
}
