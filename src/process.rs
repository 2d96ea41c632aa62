//! The proxy process's life: bind the listeners, load the tokens, build the routes, serve, and
//! drain on the shutdown signal. The admin endpoints answer first (`/readyz` 503 while the token
//! loads); then the routes serve; on the shutdown signal readiness turns false, new
//! connections are still accepted for `--shutdown-delay`, then refused, and open connections
//! get `--shutdown-grace` to finish before they are closed.

use crate::client_auth::ClientPasswords;
use crate::config::Config;
use crate::health::Health;
use crate::listener::Listener;
use crate::serve::RouteRuntime;
use crate::token::{Credentials, Refresher, TokenError, TokenStore};
use crate::upstream::TlsConfigError;
use crate::{admin, health, listener, metrics, serve, token};
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot listen on {addr} (route {route}): {error}")]
    Bind {
        route: String,
        addr: String,
        error: std::io::Error,
    },
    #[error("cannot load the client passwords: {0}")]
    ClientPasswords(TokenError),
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

/// The sockets the proxy serves, bound before `run` so that tests and `main` choose them.
pub struct Listeners {
    /// One per route, in `config.routes` order.
    pub routes: Vec<Listener>,
    pub admin: Option<TcpListener>,
}

/// Binds every route's listener, in route order, and the admin listener.
pub async fn bind(config: &Config) -> Result<Listeners, RunError> {
    let mut routes = Vec::with_capacity(config.routes.len());
    for route in &config.routes {
        let listener = Listener::bind(&route.listen, config.unix_socket_mode)
            .await
            .map_err(|error| RunError::Bind {
                route: route.name.clone(),
                addr: route.listen.to_string(),
                error,
            })?;
        routes.push(listener);
    }
    let admin = match config.admin_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|error| RunError::Bind {
                    route: "admin".into(),
                    addr: addr.to_string(),
                    error,
                })?,
        ),
        None => None,
    };
    Ok(Listeners { routes, admin })
}

/// Loads the configured token source once into a new store; returns what it loaded, too.
pub async fn load_tokens(config: &Config) -> Result<(Arc<TokenStore>, Credentials), RunError> {
    metrics::install();
    let store = Arc::new(TokenStore::new());
    let credentials = config.token.load().await.inspect_err(|_| {
        metrics::PROCESS.token_reload(config.token.kind(), "failed");
    })?;
    metrics::PROCESS.token_reload(config.token.kind(), "changed");
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
    let polling = config.token.polling(config.token_refresh_interval);
    let refresher = Refresher::new(
        Arc::clone(store) as _,
        config.token.clone(),
        polling,
        initial,
    );
    tokio::spawn(refresher.run(stop.clone()));
}

/// Loads `--client-password-file`, when set, and keeps it current until `stop`.
pub async fn load_client_passwords(
    config: &Config,
    stop: &CancellationToken,
) -> Result<Option<Arc<ClientPasswords>>, RunError> {
    let Some(path) = &config.client_password_file else {
        return Ok(None);
    };
    let (passwords, refresher) = ClientPasswords::load(path)
        .await
        .map_err(RunError::ClientPasswords)?;
    tokio::spawn(refresher.run(stop.clone()));
    Ok(Some(passwords))
}

/// Builds each route (its connector, with its TLS config built once, and shared state) from
/// `shared`; routes serve with `serving`, and `own_ports[i]` is route `i`'s TCP listener port (a
/// cluster route's configured endpoint is served there).
pub(crate) fn routes(
    config: &Config,
    shared: &serve::RouteShared,
    serving: &serve::Serving,
    own_ports: &[Option<u16>],
) -> Result<Vec<Arc<RouteRuntime>>, RunError> {
    let routes = config.routes.iter().enumerate();
    routes
        .map(|(index, route)| {
            let tls = route.tls.as_ref();
            let runtime = RouteRuntime::new(
                index,
                route.name.clone(),
                route.upstream.clone(),
                tls,
                route.sentinel.as_ref(),
                shared,
            )
            .map_err(|error| RunError::Tls {
                route: route.name.clone(),
                error,
            })?;
            let runtime = if route.multiplex {
                runtime.multiplexed()
            } else {
                runtime
            };
            if !route.cluster {
                return Ok(Arc::new(runtime));
            }
            // A cluster route's node table asks this very route for the topology.
            Ok(Arc::new_cyclic(|me| {
                let endpoint = serve::nodes::Endpoint {
                    serving: serving.clone(),
                    route: me.clone(),
                    own_port: own_ports.get(index).copied().flatten(),
                    metrics: runtime.metrics().clone(),
                };
                let table = serve::nodes::table(route, &config.cluster_ports, shared, endpoint);
                runtime.with_cluster(crate::cluster::ClusterLink {
                    table,
                    this_node: route.upstream.clone(),
                })
            }))
        })
        .collect()
}

/// Serves `listeners` until `shutdown` completes (or `/quitquitquit` is posted), then drains.
pub async fn run(
    listeners: Listeners,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let life = Lifecycle::start(listeners.admin, &config);
    life.health.starting(&format!(
        "loading the token from {}",
        config.token.describe()
    ));
    let loaded = load_tokens(&config).await;
    let (store, initial) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => {
            life.stop.cancel();
            return Err(error);
        }
    };
    life.serve(listeners.routes, config, store, initial, shutdown)
        .await
}

/// `run` with a token store the caller loaded (and may watch); `initial` is what it holds.
pub async fn run_with_tokens(
    listeners: Listeners,
    config: Config,
    store: Arc<TokenStore>,
    initial: Credentials,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let life = Lifecycle::start(listeners.admin, &config);
    life.serve(listeners.routes, config, store, initial, shutdown)
        .await
}

/// What outlives the routes: probes, the quit request, the background tasks' stop signal.
struct Lifecycle {
    health: Arc<Health>,
    /// Cancelled by `POST /quitquitquit`.
    quit: CancellationToken,
    /// Stops the admin listener, the refresher and the SIGHUP handler at the very end.
    stop: CancellationToken,
}

impl Lifecycle {
    fn start(admin: Option<TcpListener>, config: &Config) -> Self {
        let life = Lifecycle {
            health: Health::new(config.routes.len()),
            quit: CancellationToken::new(),
            stop: CancellationToken::new(),
        };
        metrics::install();
        if let Some(admin) = admin {
            tokio::spawn(admin::serve(
                admin,
                Arc::clone(&life.health),
                life.quit.clone(),
                life.stop.clone(),
            ));
        }
        life
    }

    async fn serve(
        self,
        listeners: Vec<Listener>,
        config: Config,
        store: Arc<TokenStore>,
        initial: Credentials,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), RunError> {
        let result = self
            .serve_until(listeners, config, store, initial, shutdown)
            .await;
        self.stop.cancel();
        result
    }

    async fn serve_until(
        &self,
        listeners: Vec<Listener>,
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
        let client_passwords = load_client_passwords(&config, &self.stop).await?;
        let accepting = CancellationToken::new();
        let connections = Connections {
            close: CancellationToken::new(),
            tracker: TaskTracker::new(),
            accept_loops: TaskTracker::new(),
        };
        // Every route, node listeners included, shares the limit and the shutdown.
        let serving = serve::Serving {
            accepting: accepting.clone(),
            close: connections.close.clone(),
            tracker: connections.tracker.clone(),
            limit: Arc::new(tokio::sync::Semaphore::new(config.max_connections as usize)),
        };
        let own_ports: Vec<Option<u16>> = listeners
            .iter()
            .map(|listener| match listener.local_addr() {
                Some(listener::ListenAddr::Tcp(addr)) => Some(addr.port()),
                _ => None,
            })
            .collect();
        let shared = serve::RouteShared {
            settings: config.connections.clone(),
            store: Arc::clone(&store),
            client_passwords,
            health: Arc::clone(&self.health),
        };
        let routes = routes(&config, &shared, &serving, &own_ports)?;
        spawn_refresher(&config, &store, initial, &self.stop);
        // Registered before the first accept, so a SIGHUP can never hit the default (fatal) action.
        if let Ok(hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            tokio::spawn(reload_on_sighup(
                hangups,
                Arc::clone(&store),
                self.stop.clone(),
            ));
        }
        for (listener, route) in listeners.into_iter().zip(routes.iter().cloned()) {
            let addr = listener
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default();
            info!(route = %route.name, listen = %addr, upstream = %route.connector.describe(), "Listening");
            if let Some(sentinels) = &route.sentinels {
                let primary = Arc::clone(&route.forward.primary);
                let switched = move || primary.switched();
                tokio::spawn(Arc::clone(sentinels).watch(switched, self.stop.clone()));
            }
            tokio::spawn(serve::multiplex::keep_lanes(
                Arc::clone(&route),
                self.stop.clone(),
            ));
            tokio::spawn(serve::keep_pool_filled(
                Arc::clone(&route),
                self.stop.clone(),
            ));
            connections
                .accept_loops
                .spawn(serve::serve(listener, route, serving.clone()));
        }
        let probes = config.ready_requires_upstream.then(|| {
            routes
                .iter()
                .map(|route| Arc::clone(route) as Arc<dyn health::UpstreamProbe>)
                .collect()
        });
        self.health.ready(Arc::clone(&store), probes);
        notify(sd_notify::NotifyState::Ready);
        info!(token.source = config.token.kind(), token.from = %config.token.describe(), "Ready");
        tokio::select! {
            () = shutdown => info!("Shutdown signal received"),
            () = self.quit.cancelled() => {}
        }
        self.health.draining();
        notify(sd_notify::NotifyState::Stopping);
        connections.drain(&config, &accepting).await;
        Ok(())
    }
}

/// The open client connections, for draining.
struct Connections {
    close: CancellationToken,
    tracker: TaskTracker,
    /// Each route's accept loop: waited for, so that a Unix socket's file is gone on return.
    accept_loops: TaskTracker,
}

impl Connections {
    /// Keeps accepting for the delay, stops accepting, waits up to the grace period, then
    /// closes whatever is still open.
    async fn drain(self, config: &Config, accepting: &CancellationToken) {
        info!(delay = ?config.shutdown_delay, grace = ?config.shutdown_grace, open = self.tracker.len(), "Draining");
        tokio::time::sleep(config.shutdown_delay).await;
        accepting.cancel();
        self.accept_loops.close();
        self.accept_loops.wait().await;
        self.tracker.close();
        if tokio::time::timeout(config.shutdown_grace, self.tracker.wait())
            .await
            .is_err()
        {
            warn!(
                open = self.tracker.len(),
                "Connections still open after the shutdown grace period; closing them"
            );
            self.close.cancel();
            self.tracker.wait().await;
        }
        info!("Stopped");
    }
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

/// Tells a service manager (systemd's `Type=notify`) where the process stands: ready once every
/// listener serves with the first token loaded, stopping at the drain. Nothing without
/// `NOTIFY_SOCKET`.
fn notify(state: sd_notify::NotifyState) {
    if let Err(error) = sd_notify::notify(false, &[state]) {
        tracing::warn!(error = %error, "Could not notify the service manager ($NOTIFY_SOCKET)");
    }
}
