//! redis-auth-proxy: plain RESP on localhost in, TLS and AUTH to Redis or Valkey out.
//!
//! Where a byte goes:
//! - `server` accepts a client on a route's listener and runs its connection;
//! - `upstream` opens TCP and TLS to the route's server (DNS at every connect);
//! - `handshake` authenticates that connection with a token from the `token` store;
//! - `forward` then carries the client's requests up and the replies down, using `resp` to
//!   find request and reply boundaries, and answers or rewrites AUTH, HELLO AUTH and RESET.
//!
//! `config` turns flags, environment and file into a `Config`; `secret` holds the one type
//! that may carry a token; `error` maps every failure to a reply and a log level; `check` is
//! the `check` subcommand.

#![forbid(unsafe_code)]

pub mod check;
pub mod config;
pub mod error;
pub mod forward;
pub mod handshake;
pub mod resp;
pub mod secret;
pub mod server;
pub mod token;
pub mod upstream;

use crate::config::Config;
use crate::server::RouteRuntime;
use crate::token::{Credentials, Refresher, TokenError, TokenStore};
use crate::upstream::{Connector, TlsConfigError};
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot listen on {addr} (route {route}): {error}")]
    Bind {
        route: String,
        addr: std::net::SocketAddr,
        error: std::io::Error,
    },
    #[error("route {route}: {error}")]
    Tls {
        route: String,
        error: TlsConfigError,
    },
    #[error("cannot load the token: {0}")]
    Token(#[from] TokenError),
    #[error("{listeners} listeners given for {routes} routes")]
    ListenerCount { listeners: usize, routes: usize },
}

/// Binds every route's listener, in route order.
pub async fn bind(config: &Config) -> Result<Vec<TcpListener>, RunError> {
    let mut listeners = Vec::with_capacity(config.routes.len());
    for route in &config.routes {
        let listener = TcpListener::bind(route.listen)
            .await
            .map_err(|error| RunError::Bind {
                route: route.name.clone(),
                addr: route.listen,
                error,
            })?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Loads the configured token source once into a new store; returns what it loaded, too.
pub async fn load_tokens(config: &Config) -> Result<(Arc<TokenStore>, Credentials), RunError> {
    let store = Arc::new(TokenStore::new());
    let credentials = config.token.load().await?;
    token::refresh::warn_on_elasticache_rules(&credentials);
    store.update(credentials.clone());
    Ok((store, credentials))
}

/// Keeps `store` current from the configured source until `stop` is cancelled.
pub fn spawn_refresher(
    config: &Config,
    store: &Arc<TokenStore>,
    initial: Credentials,
    stop: &CancellationToken,
) {
    let refresher = Refresher::new(
        Arc::clone(store),
        config.token.clone(),
        initial,
        config.token_refresh_interval,
    );
    tokio::spawn(refresher.run(stop.clone()));
}

/// Builds each route's connector (its TLS config, built once) and shared state.
pub fn routes(
    config: &Config,
    store: &Arc<TokenStore>,
) -> Result<Vec<Arc<RouteRuntime>>, RunError> {
    config
        .routes
        .iter()
        .map(|route| {
            let connector = Connector::new(
                route.upstream.clone(),
                route.tls.as_ref(),
                config.connect_timeout,
            )
            .map_err(|error| RunError::Tls {
                route: route.name.clone(),
                error,
            })?;
            Ok(Arc::new(RouteRuntime::new(
                route.name.clone(),
                connector,
                Arc::clone(store),
                config.username.clone(),
                config.auth_timeout,
            )))
        })
        .collect()
}

/// Serves `listeners` (one per route, in `config.routes` order) until `shutdown` completes.
pub async fn run(
    listeners: Vec<TcpListener>,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let (store, initial) = load_tokens(&config).await?;
    run_with_tokens(listeners, config, store, initial, shutdown).await
}

/// `run` with a token store the caller loaded (and may watch); `initial` is what it holds.
pub async fn run_with_tokens(
    listeners: Vec<TcpListener>,
    config: Config,
    store: Arc<TokenStore>,
    initial: Credentials,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    if listeners.len() != config.routes.len() {
        return Err(RunError::ListenerCount {
            listeners: listeners.len(),
            routes: config.routes.len(),
        });
    }
    let routes = routes(&config, &store)?;
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    spawn_refresher(&config, &store, initial, &stop);
    // Registered before the first accept, so a SIGHUP can never hit the default (fatal) action.
    if let Ok(hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        tokio::spawn(reload_on_sighup(hangups, Arc::clone(&store), stop.clone()));
    }
    for (listener, route) in listeners.into_iter().zip(routes) {
        let addr = listener.local_addr().ok();
        info!(route = %route.name, listen = ?addr, upstream = %route.connector.addr, "Listening");
        tokio::spawn(server::serve(
            listener,
            route,
            stop.clone(),
            tracker.clone(),
        ));
    }
    info!(token.source = config.token.kind(), token.from = %config.token.describe(), "Ready");
    shutdown.await;
    info!("Shutting down");
    stop.cancel();
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// SIGHUP reloads the token source at once, as daemons conventionally reload on it.
async fn reload_on_sighup(
    mut hangups: tokio::signal::unix::Signal,
    store: Arc<TokenStore>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            Some(()) = hangups.recv() => {
                info!("SIGHUP: reloading the token source");
                store.request_reload();
            }
        }
    }
}
