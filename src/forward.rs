//! The I/O of an authenticated connection: read each side, feed `connection::Connection`, write
//! what it decided. Nothing here decides what happens to a byte.
//!
//! One task drives both directions in one poll loop, so the connection's state has one owner
//! and no lock. Each side is read only once what was read from the other has been written
//! (backpressure, bounded memory), with one exception: while the client's requests wait on a
//! reply (RESET's), the server is read even if the client is slow to take its replies, as Redis
//! would buffer them; otherwise a client that writes its whole pipeline before reading would
//! wait forever. Bytes passed on are slices of the buffer they were read into, never copies.

mod feed;
mod follow;
mod outbox;
mod side_trips;
mod timers;

use crate::client_auth::ClientPasswords;
use crate::cluster::rewrite::Rewriter;
use crate::config::ConnectionSettings;
use crate::connection::{Actions, Carried, Connection, Rules, SideTrip};
use crate::error::ConnError;
use crate::handshake::AuthTarget;
use crate::metrics::RouteMetrics;
use crate::primary::Switches;
use crate::token::TokenStore;
use bytes::BytesMut;
use feed::reserve;
use follow::Sent;
pub(crate) use follow::{Reopen, Reopened};
use outbox::Outbox;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, ready};
use std::time::Instant;
pub(crate) use timers::Window;
use timers::{Alarm, Idle, Renewer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::io::poll_read_buf;

/// How much to read per call: one full TLS record.
const READ_SIZE: usize = 16 * 1024;
/// The proxy's own replies a slow client may leave unread before its requests wait.
const MAX_CLIENT_BACKLOG: usize = 4 * 1024 * 1024;

/// What the proxy needs from its route while forwarding.
pub(crate) struct Context {
    pub store: Arc<TokenStore>,
    /// The route's server, as errors name it.
    pub upstream: String,
    pub settings: ConnectionSettings,
    pub metrics: RouteMetrics,
    /// `--client-password-file`: clients must authenticate to the proxy first.
    pub client_passwords: Option<Arc<ClientPasswords>>,
    /// When a client of this route last listed every connection's id (CLIENT LIST, ACL LOG):
    /// connections open then are not reused.
    pub(crate) clients_listed: std::sync::Mutex<Option<Instant>>,
    /// `--cluster`: the node table, and the node this route leads to.
    pub(crate) cluster: Option<crate::cluster::ClusterLink>,
    /// Where the route's primary is (`--follow-primary`).
    pub(crate) primary: Arc<crate::primary::Primary>,
}

impl Context {
    /// Who the proxy authenticates as on this route, against what, within what time.
    pub(crate) fn auth_target(&self) -> AuthTarget<'_> {
        AuthTarget {
            store: &self.store,
            username: self.settings.username.as_deref(),
            upstream: &self.upstream,
            timeout: self.settings.auth_timeout,
            metrics: Some(&self.metrics),
        }
    }
}

/// How a connection ended.
pub(crate) enum Ended<U> {
    /// Both sides are closed, or closing.
    Closed,
    /// The client left owing nothing: the upstream connection, what was read from it and not
    /// yet used, and whether the client set state RESET leaves as it is, for `reuse`.
    HandedBack {
        upstream: U,
        unread: BytesMut,
        sticky_state: bool,
    },
}

/// The client side of a proxied connection.
pub(crate) struct Client<R, W> {
    pub r: R,
    pub w: W,
    /// What the session brings from a shared connection (`--multiplex`).
    pub carried: Carried,
}

impl<R, W> Client<R, W> {
    /// A client new to the upstream connection.
    pub(crate) fn new(r: R, w: W) -> Self {
        Client {
            r,
            w,
            carried: Carried::default(),
        }
    }
}

/// Forwards between the client's two halves and the authenticated `upstream` until either side
/// ends. `authenticated_at`: when the server last accepted the proxy's AUTH on `upstream`;
/// `reopen`: how to reach the primary again when a replica refuses a command.
pub(crate) async fn run<R, W, U>(
    client: Client<R, W>,
    upstream: U,
    ctx: &Context,
    authenticated_at: Instant,
    reopen: &dyn Reopen<U>,
) -> Result<Ended<U>, ConnError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    // The user the proxy authenticates as: `--username`, else the token source's own.
    let credentials = ctx.store.credentials();
    let source_user = credentials.as_ref().and_then(|c| c.username.as_deref());
    let rules = Rules {
        client_passwords: ctx.client_passwords.as_deref(),
        username: ctx.settings.username.as_deref().or(source_user),
        metrics: &ctx.metrics,
        cluster: ctx.cluster.as_ref().map(|link| Rewriter {
            nodes: &*link.table,
            this_node: &link.this_node,
        }),
        follow_primary: ctx.cluster.is_none() && ctx.primary.follows(),
    };
    let mut conn = Connection::new(rules);
    conn.carried(&client.carried);
    let Client {
        r: client_r,
        w: client_w,
        ..
    } = client;
    let mut io = Io {
        ctx,
        reopen,
        sent: rules.follow_primary.then(Sent::default),
        switches: ctx.primary.switches(),
        client_r,
        client_w,
        upstream,
        from_client: BytesMut::new(),
        from_server: BytesMut::new(),
        to_server: Outbox::default(),
        to_client: Outbox::default(),
        actions: Actions::default(),
        requests_waiting: false,
        replies_waiting: false,
        client_eof: false,
        upstream_shut: false,
        idle: ctx.settings.idle_timeout.map(Idle::new),
        born: authenticated_at,
        // The token of the last AUTH is the store's current one: a pooled connection made
        // with older tokens is never handed out (`serve/pool.rs`).
        renewer: ctx.settings.renewal.map(|policy| {
            let expires = credentials.as_ref().and_then(|c| c.expires);
            Renewer::new(policy, authenticated_at.into(), expires)
        }),
    };
    loop {
        match std::future::poll_fn(|cx| io.poll_turn(&mut conn, cx)).await {
            Turn::Done(result) => {
                match &result {
                    Err(ConnError::LeftReplica { .. }) => {
                        // Refused by a replica where the session could not move: new
                        // connections must not land on it either.
                        ctx.primary.refused();
                        ctx.metrics.failover_not_moved("state");
                    }
                    Err(ConnError::PrimarySwitched { .. }) => {
                        ctx.metrics.failover_not_moved("state");
                    }
                    _ => {}
                }
                return result.map(|()| Ended::Closed);
            }
            Turn::Reauthenticate => io.reauthenticate(&mut conn).await,
            Turn::RefreshTopology => io.refresh_topology(&mut conn).await,
            Turn::FollowPrimary => io.follow_primary(&mut conn).await,
            Turn::HandBack => {
                return Ok(Ended::HandedBack {
                    upstream: io.upstream,
                    unread: io.from_server,
                    sticky_state: conn.left_sticky_state(),
                });
            }
        }
    }
}

/// Why the poll loop stopped.
enum Turn {
    /// RESET took effect: authenticate again, then go on.
    Reauthenticate,
    /// A redirect names a node no topology reply announced: read the topology again.
    RefreshTopology,
    /// A replica refused a command: move the session to the primary.
    FollowPrimary,
    /// The client left owing nothing and the route reuses connections.
    HandBack,
    Done(Result<(), ConnError>),
}

struct Io<'c, R, W, U> {
    ctx: &'c Context,
    reopen: &'c dyn Reopen<U>,
    /// With `--follow-primary`: the client's bytes whose replies have not all come.
    sent: Option<Sent>,
    /// With `--sentinel`: the switches of primary the Sentinels announce.
    switches: Option<Switches<'c>>,
    client_r: R,
    client_w: W,
    upstream: U,
    from_client: BytesMut,
    from_server: BytesMut,
    to_server: Outbox,
    to_client: Outbox,
    actions: Actions,
    /// Bytes read that the connection did not take yet because it could not then.
    requests_waiting: bool,
    replies_waiting: bool,
    client_eof: bool,
    upstream_shut: bool,
    idle: Option<Idle>,
    renewer: Option<Renewer>,
    /// When the upstream connection was opened.
    born: Instant,
}

impl<R, W, U> Io<'_, R, W, U>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    /// Moves bytes until the connection ends or must authenticate again.
    fn poll_turn(&mut self, conn: &mut Connection<'_>, cx: &mut TaskContext<'_>) -> Poll<Turn> {
        loop {
            if let Poll::Ready(Err(e)) = self.to_server.poll_drain(&mut self.upstream, cx) {
                return Poll::Ready(Turn::Done(Err(ConnError::UpstreamIo(e))));
            }
            if let Poll::Ready(Err(e)) = self.to_client.poll_drain(&mut self.client_w, cx) {
                return Poll::Ready(Turn::Done(Err(ConnError::ClientIo(e))));
            }
            let wants = conn.wants();
            if wants.closing && self.to_client.is_empty() {
                let _ = ready!(Pin::new(&mut self.client_w).poll_shutdown(cx));
                let outcome = conn
                    .take_outcome()
                    .expect("a closing connection has an outcome");
                return Poll::Ready(Turn::Done(outcome));
            }
            match wants.side_trip {
                Some(SideTrip::Reauthenticate) if self.to_server.is_empty() => {
                    return Poll::Ready(Turn::Reauthenticate);
                }
                Some(SideTrip::RefreshTopology) => return Poll::Ready(Turn::RefreshTopology),
                Some(SideTrip::FollowPrimary) => return Poll::Ready(Turn::FollowPrimary),
                _ => {}
            }
            if let Some(switches) = &mut self.switches
                && switches.poll_switched(cx)
            {
                conn.primary_switched();
            }
            if conn.move_if_switched() || self.renew_if_due(conn, &wants) {
                continue;
            }
            if self.client_eof && !self.upstream_shut && self.to_server.is_empty() {
                let refusal = self.reuse_refusal(&wants);
                if self.ctx.settings.reuse && refusal.is_none() {
                    if self.to_client.is_empty() {
                        let _ = ready!(Pin::new(&mut self.client_w).poll_shutdown(cx));
                        return Poll::Ready(Turn::HandBack);
                    }
                } else if Pin::new(&mut self.upstream).poll_shutdown(cx).is_ready() {
                    // The client is done sending: pass that on and let the replies owed arrive.
                    self.upstream_shut = true;
                    if self.ctx.settings.reuse {
                        self.ctx.metrics.not_reused(refusal.unwrap_or("owed"));
                    }
                }
            }
            let moved = match self.poll_reads(conn, cx) {
                Ok(moved) => moved,
                Err(error) => return Poll::Ready(Turn::Done(Err(error))),
            };
            if moved {
                continue;
            }
            if let Some(idle) = &mut self.idle
                && idle.poll_expired(cx, wants.idle_closable)
            {
                return Poll::Ready(Turn::Done(Err(ConnError::IdleTimeout(idle.timeout))));
            }
            match self.renewer.as_mut().and_then(|renewer| renewer.poll(cx)) {
                Some(Alarm::Due) => continue,
                Some(Alarm::Cut) => {
                    self.ctx.metrics.closed_at_lifetime();
                    return Poll::Ready(Turn::Done(Err(ConnError::LifetimeReached)));
                }
                None => return Poll::Pending,
            }
        }
    }

    /// Feeds what waits and reads each side that may be read; true if anything moved.
    fn poll_reads(
        &mut self,
        conn: &mut Connection<'_>,
        cx: &mut TaskContext<'_>,
    ) -> Result<bool, ConnError> {
        let mut moved = false;
        if self.requests_waiting && conn.wants().requests {
            self.feed_requests(conn)?;
            moved = true;
        }
        if self.replies_waiting && conn.wants().replies {
            self.feed_replies(conn)?;
            moved = true;
        }
        if self.wants_requests(&conn.wants()) {
            reserve(&mut self.from_client);
            if let Poll::Ready(read) =
                poll_read_buf(Pin::new(&mut self.client_r), cx, &mut self.from_client)
            {
                match read.map_err(ConnError::ClientIo)? {
                    0 => self.client_eof = true,
                    n => {
                        self.ctx.metrics.bytes_upstream.increment(n as u64);
                        self.touch();
                        self.feed_requests(conn)?;
                    }
                }
                moved = true;
            }
        }
        if self.wants_replies(&conn.wants()) {
            reserve(&mut self.from_server);
            if let Poll::Ready(read) =
                poll_read_buf(Pin::new(&mut self.upstream), cx, &mut self.from_server)
            {
                match read {
                    // Redis closes TCP without a TLS close_notify; that is its normal close.
                    Ok(0) => self.server_closed(conn)?,
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                        self.server_closed(conn)?;
                    }
                    Err(e) => {
                        // A reset: moved on as a close is, if the session follows the primary.
                        self.server_closed(conn)?;
                        if conn.wants().closing {
                            return Err(ConnError::UpstreamIo(e));
                        }
                    }
                    Ok(n) => {
                        self.ctx.metrics.bytes_downstream.increment(n as u64);
                        self.touch();
                        self.feed_replies(conn)?;
                    }
                }
                moved = true;
            }
        }
        Ok(moved)
    }
}
