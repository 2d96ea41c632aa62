//! The accept loop and the life of one client connection.
//!
//! A connection is a straight line: connect upstream (DNS, TCP, TLS), authenticate, forward.
//! If reaching or authenticating to the server fails, the client gets one `-ERR` naming the
//! cause and the connection closes; other connections are not affected.

use crate::error::ConnError;
use crate::forward;
use crate::handshake;
use crate::token::TokenStore;
use crate::upstream::Connector;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, error, event, info_span, warn};

/// How long a client that is being refused may keep sending before the socket is closed.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// Everything one route's connections share.
pub struct RouteRuntime {
    pub name: String,
    pub connector: Connector,
    pub forward: forward::Context,
}

impl RouteRuntime {
    pub fn new(
        name: String,
        connector: Connector,
        store: Arc<TokenStore>,
        username: Option<String>,
        auth_timeout: Duration,
    ) -> Self {
        let upstream = connector.addr.to_string();
        RouteRuntime {
            name,
            connector,
            forward: forward::Context {
                store,
                username,
                upstream,
                auth_timeout,
            },
        }
    }
}

/// Accepts clients until `stop` is cancelled, one task per connection on `tracker`.
pub async fn serve(
    listener: TcpListener,
    route: Arc<RouteRuntime>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((client, peer)) => {
                backoff = Duration::from_millis(5);
                let route = Arc::clone(&route);
                let stop = stop.clone();
                let span = info_span!("conn", route = %route.name, client.addr = %peer);
                tracker.spawn(
                    async move {
                        tokio::select! {
                            () = stop.cancelled() => debug!("Closed by shutdown"),
                            () = handle(client, peer, &route) => {}
                        }
                    }
                    .instrument(span),
                );
            }
            Err(error) => {
                // EMFILE and friends: back off rather than spin on a listener that stays ready.
                warn!(route = %route.name, %error, "Accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Runs one client connection to its end and logs how it ended.
async fn handle(client: TcpStream, peer: SocketAddr, route: &RouteRuntime) {
    let _ = client.set_nodelay(true);
    debug!(%peer, "Accepted");
    match proxy(client, route).await {
        Ok(()) => debug!("Closed"),
        Err(error) => {
            let outcome = error.outcome();
            match outcome.level {
                tracing::Level::ERROR => {
                    error!(error = %error, reason = outcome.label, "Connection failed")
                }
                tracing::Level::WARN => {
                    warn!(error = %error, reason = outcome.label, "Connection failed")
                }
                _ => {
                    event!(tracing::Level::DEBUG, error = %error, reason = outcome.label, "Connection ended")
                }
            }
        }
    }
}

async fn proxy(mut client: TcpStream, route: &RouteRuntime) -> Result<(), ConnError> {
    let ctx = &route.forward;
    let reached = async {
        let mut upstream = route.connector.connect().await?;
        let auth = handshake::authenticate(
            &mut upstream,
            &ctx.store,
            ctx.username.as_deref(),
            &ctx.upstream,
            ctx.auth_timeout,
        )
        .await?;
        debug!(token.slot = auth.slot.as_str(), "Authenticated upstream");
        Ok::<_, ConnError>(upstream)
    }
    .await;
    match reached {
        Ok(upstream) => forward::run(client, upstream, ctx).await,
        Err(error) => {
            if let Some(reply) = error.outcome().reply {
                refuse(&mut client, &reply).await;
            }
            Err(error)
        }
    }
}

/// Sends one error and closes without a reset: the client's unread requests are drained first,
/// since closing a socket with unread input makes the kernel discard the error we sent.
async fn refuse(client: &mut TcpStream, reply: &str) {
    let _ = client.write_all(&crate::resp::error_reply(reply)).await;
    let _ = client.shutdown().await;
    let drain = async {
        let mut sink = [0u8; 4096];
        while matches!(client.read(&mut sink).await, Ok(n) if n > 0) {}
    };
    let _ = tokio::time::timeout(REFUSAL_LINGER, drain).await;
}
