//! The accept loop and the life of one client connection.
//!
//! A connection is a straight line: connect upstream (DNS, TCP, TLS), authenticate, forward.
//! If reaching or authenticating to the server fails, the client gets one `-ERR` naming the
//! cause and the connection closes; other connections are not affected.

mod failover;
pub(crate) mod multiplex;
pub(crate) mod nodes;
pub(crate) mod pool;
pub(crate) use pool::keep_pool_filled;
mod refresh;
pub(crate) mod reuse;

use crate::address::UpstreamAddr;
use crate::client_auth::ClientPasswords;
use crate::config::ConnectionSettings;
use crate::error::ConnError;
use crate::forward;
use crate::handshake;
use crate::health::Health;
use crate::listener::{ClientStream, Listener};
use crate::metrics::RouteMetrics;
use crate::primary::Primary;
use crate::sentinel::{self, SentinelSettings, Sentinels};
use crate::token::TokenStore;
use crate::upstream::{Connector, TlsConfigError, TlsSettings, UpstreamStream};
use pool::Pool;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, Level, debug, error, info_span, warn};

/// How long a client that is being refused may keep sending before the socket is closed.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// What every route is made with besides its own name and server: the settings of its
/// connections, the token store, the client passwords and the health the probes read. A cluster
/// node's route is made with the same, so a setting reaches a node as it reaches its route.
#[derive(Clone)]
pub(crate) struct RouteShared {
    pub settings: ConnectionSettings,
    pub store: Arc<TokenStore>,
    pub client_passwords: Option<Arc<ClientPasswords>>,
    pub health: Arc<Health>,
}

/// Everything one route's connections share.
pub(crate) struct RouteRuntime {
    /// Position in `config.routes` (`usize::MAX` for a cluster node's route).
    pub index: usize,
    pub name: String,
    pub connector: Connector,
    pub forward: forward::Context,
    health: Arc<Health>,
    /// `--upstream-pool-size` ready connections, when configured.
    pub pool: Option<Arc<Pool>>,
    /// With `--sentinel`: where the primary is; `process` runs their watch.
    pub sentinels: Option<Arc<Sentinels>>,
    /// With `--multiplex`: the shared upstream connections; `process` keeps them open.
    pub lanes: Option<Arc<crate::multiplex::Lanes>>,
}

impl RouteRuntime {
    /// The route `name` to `upstream`, over TLS with `tls` (`None`: plain TCP), or to the
    /// primary its Sentinels name. The one place a route's connector is made.
    pub(crate) fn new(
        index: usize,
        name: String,
        upstream: UpstreamAddr,
        tls: Option<&TlsSettings>,
        sentinel: Option<&SentinelSettings>,
        shared: &RouteShared,
    ) -> Result<Self, TlsConfigError> {
        let settings = &shared.settings;
        let (connect, answer) = (settings.connect_timeout, settings.auth_timeout);
        let (connector, sentinels) =
            sentinel::route_connector(upstream, tls, sentinel, connect, answer)?;
        let connector = connector.counting_handshakes(&name);
        let metrics = RouteMetrics::new(&name);
        let (size, max_age) = (settings.pool_size as usize, settings.pool_max_age);
        let pool = (size > 0).then(|| Arc::new(Pool::new(metrics.clone(), size, max_age)));
        if settings.renewal.is_some() {
            metrics.register_iam();
        }
        if settings.follow_primary {
            metrics.register_failover();
        }
        let mut primary = Primary::new(settings.follow_primary, settings.failover_timeout);
        if sentinels.is_some() {
            primary = primary.announced_by_sentinels();
        }
        Ok(RouteRuntime {
            pool,
            sentinels,
            lanes: None,
            index,
            forward: forward::Context {
                store: Arc::clone(&shared.store),
                upstream: connector.describe(),
                settings: settings.clone(),
                metrics,
                client_passwords: shared.client_passwords.clone(),
                clients_listed: std::sync::Mutex::new(None),
                cluster: None,
                primary: Arc::new(primary),
            },
            name,
            connector,
            health: Arc::clone(&shared.health),
        })
    }

    /// With `--cluster`: replies naming nodes are rewritten, and nodes served, through `link`.
    /// A cluster's failovers are its own (MOVED), so sessions do not follow a primary.
    pub(crate) fn with_cluster(mut self, link: crate::cluster::ClusterLink) -> Self {
        self.forward.cluster = Some(link);
        self.forward.primary = Arc::new(Primary::new(false, Duration::ZERO));
        self
    }

    /// With `--multiplex`: clients share the route's lanes.
    pub(crate) fn multiplexed(mut self) -> Self {
        let settings = &self.forward.settings;
        let wait = settings.connect_timeout + settings.auth_timeout;
        let count = settings.multiplex_connections as usize;
        self.lanes = Some(Arc::new(crate::multiplex::Lanes::new(
            count, wait, &self.name,
        )));
        self
    }

    pub(crate) fn metrics(&self) -> &RouteMetrics {
        &self.forward.metrics
    }

    /// Connects to the server and authenticates: one usable upstream connection.
    pub(crate) async fn open_upstream(&self) -> Result<UpstreamStream, ConnError> {
        let ctx = &self.forward;
        let mut upstream = self.connector.connect().await?;
        let slot = handshake::authenticate(
            &mut upstream,
            &ctx.store,
            ctx.settings.username.as_deref(),
            &ctx.upstream,
            ctx.settings.auth_timeout,
            Some(&ctx.metrics),
        )
        .await?;
        debug!(token.slot = slot.as_str(), "Authenticated upstream");
        self.health.upstream_ok(self.index);
        self.check_primary(&mut upstream).await?;
        Ok(upstream)
    }
}

/// `/readyz` with `--ready-requires-upstream`: the route's own connector, TLS settings and
/// token store, exactly as a client's connection would use them.
impl crate::health::UpstreamProbe for RouteRuntime {
    fn probe(&self) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(async move {
            self.open_upstream()
                .await
                .map(drop)
                .map_err(|error| format!("route {}: {error}", self.name))
        })
    }
}

/// How a route's accept loop is told to stop, and what its connections share with the others.
#[derive(Clone)]
pub(crate) struct Serving {
    pub accepting: CancellationToken,
    pub close: CancellationToken,
    pub tracker: TaskTracker,
    /// `--max-connections`, over all routes.
    pub limit: Arc<Semaphore>,
}

/// Accepts clients until `serving.accepting` is cancelled; each connection runs on the tracker
/// until it ends or `serving.close` is cancelled.
pub(crate) async fn serve(listener: Listener, route: Arc<RouteRuntime>, serving: Serving) {
    let Serving {
        accepting,
        close,
        tracker,
        limit,
    } = serving;
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            () = accepting.cancelled() => {
                // Dropping the listener refuses new clients; its socket file goes with it.
                listener.remove_socket_file();
                return;
            }
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((mut client, peer)) => {
                backoff = Duration::from_millis(5);
                let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
                    route.metrics().rejected("max_connections");
                    warn!(route = %route.name, client.addr = %peer, "Refused a client: --max-connections reached");
                    tokio::spawn(async move {
                        refuse_client(&mut client, "ERR max number of clients reached").await
                    });
                    continue;
                };
                let route = Arc::clone(&route);
                let close = close.clone();
                let span = info_span!("conn", route = %route.name, client.addr = %peer);
                tracker.spawn(
                    async move {
                        tokio::select! {
                            () = close.cancelled() => debug!("Closed at the end of the shutdown grace period"),
                            () = handle(client, &route) => {}
                        }
                        drop(permit);
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

/// Runs one client connection to its end, counts it and logs how it ended.
async fn handle(client: ClientStream, route: &Arc<RouteRuntime>) {
    let metrics = route.metrics();
    metrics.connections.increment(1);
    metrics.connections_active.increment(1.0);
    debug!("Accepted");
    let result = proxy(client, route).await;
    metrics.connections_active.decrement(1.0);
    match result {
        Ok(()) => debug!("Closed"),
        Err(error) => {
            let outcome = error.outcome();
            metrics.connection_error(outcome.label);
            match outcome.level {
                Level::ERROR => error!(error = %error, reason = outcome.label, "Connection failed"),
                Level::WARN => warn!(error = %error, reason = outcome.label, "Connection failed"),
                _ => debug!(error = %error, reason = outcome.label, "Connection ended"),
            }
        }
    }
}

async fn proxy(mut client: ClientStream, route: &Arc<RouteRuntime>) -> Result<(), ConnError> {
    if let Some(lanes) = &route.lanes {
        return match &mut client {
            ClientStream::Tcp(stream) => {
                multiplex::serve_client(stream.split(), route, lanes).await
            }
            ClientStream::Unix(stream) => {
                multiplex::serve_client(stream.split(), route, lanes).await
            }
        };
    }
    match reach_upstream(route).await {
        Ok((upstream, born)) => match &mut client {
            ClientStream::Tcp(stream) => {
                let (r, w) = stream.split();
                carry(forward::Client::new(r, w), upstream, born, route).await
            }
            ClientStream::Unix(stream) => {
                let (r, w) = stream.split();
                carry(forward::Client::new(r, w), upstream, born, route).await
            }
        },
        Err(error) => {
            if let Some(reply) = error.outcome().reply {
                refuse_client(&mut client, &reply).await;
            }
            Err(error)
        }
    }
}

/// Forwards between the client and its own upstream connection until either ends; a
/// connection the client left owing nothing is reset and pooled again (`--upstream-reuse`).
async fn carry<R, W>(
    client: forward::Client<R, W>,
    upstream: UpstreamStream,
    born: Instant,
    route: &RouteRuntime,
) -> Result<(), ConnError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let _lease = route
        .pool
        .as_ref()
        .filter(|_| route.forward.settings.reuse)
        .map(|pool| pool.lease());
    match forward::run(client, upstream, &route.forward, born, route).await {
        Ok(forward::Ended::Closed) => Ok(()),
        Ok(forward::Ended::HandedBack {
            upstream,
            unread,
            sticky_state,
        }) => {
            reuse::recycle(route, upstream, unread, born, sticky_state).await;
            Ok(())
        }
        Err(error) => {
            if route.forward.settings.reuse {
                route.metrics().not_reused("error");
            }
            Err(error)
        }
    }
}

/// Connects and authenticates, recording how long it took or at which stage it failed; returns
/// the connection and when it was made.
async fn reach_upstream(route: &RouteRuntime) -> Result<(UpstreamStream, Instant), ConnError> {
    let primary = &route.forward.primary;
    if let Some(pool) = &route.pool {
        while let Some(ready) = pool.take(route.forward.store.version()) {
            if primary.predates_failover(ready.1) {
                // Perhaps on the old primary, now a replica.
                route.metrics().pool_evicted("failover");
                continue;
            }
            debug!("Took a ready upstream connection from the pool");
            return Ok(ready);
        }
    }
    let started = Instant::now();
    // During a failover (a session was refused by a replica, or lost its server) a new
    // connection waits for the primary too; otherwise it fails fast, as a direct one would.
    let reached = if primary.in_failover() {
        route.open_primary().await
    } else {
        route.open_upstream().await
    };
    let reached = reached.map(|stream| (stream, started));
    let metrics = route.metrics();
    match &reached {
        Ok(_) => {
            metrics
                .connect_duration
                .record(started.elapsed().as_secs_f64());
        }
        Err(error) => {
            if let Some(stage) = error.stage() {
                metrics.rejected(stage);
                if stage != "no_token" {
                    metrics.connect_failure(stage);
                }
            }
            if let Some(reason) = error.auth_failure_reason() {
                metrics.auth_failure(reason);
            }
        }
    }
    reached
}

async fn refuse_client(client: &mut ClientStream, reply: &str) {
    match client {
        ClientStream::Tcp(stream) => refuse(stream, reply).await,
        ClientStream::Unix(stream) => refuse(stream, reply).await,
    }
}

/// Sends one error and closes without a reset: the client's unread requests are drained first,
/// since closing a socket with unread input makes the kernel discard the error we sent.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(client: &mut S, reply: &str) {
    let _ = client.write_all(&crate::resp::error_reply(reply)).await;
    let _ = client.shutdown().await;
    let drain = async {
        let mut sink = [0u8; 4096];
        while matches!(client.read(&mut sink).await, Ok(n) if n > 0) {}
    };
    let _ = tokio::time::timeout(REFUSAL_LINGER, drain).await;
}
