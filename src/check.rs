//! `redis-auth-proxy check`: one real connection per route, to prove a config works.

use crate::config::{Config, Route};
use crate::error::ConnError;
use crate::handshake;
use crate::token::TokenStore;
use std::time::{Duration, Instant};

/// The result of checking one route, as printed.
pub struct RouteCheck {
    pub ok: bool,
    pub line: String,
}

/// Connects, handshakes, authenticates and PINGs every route once.
pub async fn check(config: &Config, store: &TokenStore) -> Vec<RouteCheck> {
    let mut results = Vec::new();
    for route in &config.routes {
        let started = Instant::now();
        let result = check_route(route, config, store).await;
        let tls = if route.tls.is_some() {
            "TLS"
        } else {
            "plaintext"
        };
        let head = format!(
            "{} {} -> {} ({tls})",
            route.name,
            route.listen,
            route.describe_upstream()
        );
        results.push(match result {
            Ok(slot) => RouteCheck {
                ok: true,
                line: format!(
                    "ok    {head}: AUTH with the {slot} token, PONG in {:.1?}",
                    started.elapsed()
                ),
            },
            Err(error) => RouteCheck {
                ok: false,
                line: format!("FAIL  {head}: {error}"),
            },
        });
    }
    results
}

/// One real connection to `route`'s server: connect, TLS, AUTH, PING. Returns the token slot
/// the server accepted.
async fn check_route(
    route: &Route,
    config: &Config,
    store: &TokenStore,
) -> Result<&'static str, String> {
    let timeouts = &config.connections;
    let (connector, _) = crate::sentinel::route_connector(
        route.upstream.clone(),
        route.tls.as_ref(),
        route.sentinel.as_ref(),
        timeouts.connect_timeout,
        timeouts.auth_timeout,
    )
    .map_err(|e| e.to_string())?;
    let mut stream = connector.connect().await.map_err(|e| e.to_string())?;
    let upstream = connector.describe();
    let slot = handshake::authenticate(
        &mut stream,
        store,
        config.connections.username.as_deref(),
        &upstream,
        config.connections.auth_timeout,
        None,
    )
    .await
    .map_err(|e| e.to_string())?;
    ping(&mut stream, &upstream, config.connections.auth_timeout)
        .await
        .map_err(|e| e.to_string())?;
    Ok(slot.as_str())
}

async fn ping<S>(stream: &mut S, upstream: &str, timeout: Duration) -> Result<(), ConnError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let exchange = async {
        let mut buf = bytes::BytesMut::new();
        let frame =
            handshake::exchange(stream, b"*1\r\n$4\r\nPING\r\n", &mut buf, upstream).await?;
        let reply = String::from_utf8_lossy(&frame).trim_end().to_owned();
        if reply == "+PONG" {
            Ok(())
        } else {
            Err(ConnError::AuthFailed {
                upstream: upstream.to_owned(),
                reply: format!("PING answered {reply:?}"),
            })
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| ConnError::auth_timeout(timeout, upstream))?
}
