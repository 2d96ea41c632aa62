//! The byte path of an authenticated connection, in both directions.
//!
//! Requests go upstream as they arrive, in the client's own bytes, except the few the proxy
//! must handle itself (see `resp::request::Command`). Replies come back as they arrive. Both
//! directions count requests and replies, because an intercepted `AUTH` must be answered `+OK`
//! exactly where the server would have answered it, and the proxy's own `AUTH` after `RESET`
//! must be answered to the proxy, not the client.
//!
//! Counting holds while Redis answers each request once. After SUBSCRIBE, MONITOR or CLIENT
//! REPLY it does not, so until the next RESET the proxy stops counting and sends its own AUTH
//! (with the live token) in place of the client's, letting the server answer as it would.
//! Inside MULTI the same substitution makes the server answer `+QUEUED` as it would.
//!
//! The two directions talk through a short queue of `Action`s, each placed at the reply count
//! where it applies. The queue is empty for ordinary traffic, which then costs two counters.
//!
//! With `--client-password-file` the same queue answers the client's AUTH (`+OK` or
//! `-WRONGPASS`) and refuses everything before it (`-NOAUTH`) in reply order; a refused
//! request's bytes are dropped, never forwarded. `--idle-timeout` watches both directions.

use crate::client_auth::{ClientPasswords, NOAUTH, NOAUTH_HELLO, WRONGPASS};
use crate::error::{ConnError, Stage};
use crate::handshake::{AuthTarget, Exchange, auth_command, authenticate_over};
use crate::metrics::RouteMetrics;
use crate::resp::error_reply;
use crate::resp::reply::{FrameKind, ReplyScanner, Scan};
use crate::resp::request::{ClientCredentials, Command, RequestScanner, Step};
use crate::token::TokenStore;
use bytes::{Buf, BytesMut};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, oneshot};
use tracing::{debug, warn};

/// How much to read per call: one full TLS record.
const READ_SIZE: usize = 16 * 1024;
/// Bytes of a reply kept to recognise it (`+RESET\r\n`) or to report it (an AUTH error).
const MAX_INSPECT: usize = 512;
/// Actions not yet carried out beyond which the client's requests wait: a client that sends
/// AUTH or refused commands without reading the answers cannot grow the queue without bound.
const MAX_ACTIONS: usize = 1024;

/// What the proxy needs from its route while forwarding.
pub struct Context {
    pub store: Arc<TokenStore>,
    pub username: Option<String>,
    pub upstream: String,
    pub auth_timeout: Duration,
    pub metrics: RouteMetrics,
    /// `--client-password-file`: clients must authenticate to the proxy first.
    pub client_passwords: Option<Arc<ClientPasswords>>,
    /// `--idle-timeout`.
    pub idle_timeout: Option<Duration>,
}

/// Something the reply direction must do at a given reply count.
enum Action {
    /// Once `at` replies have gone to the client, send this reply of the proxy's own.
    Reply { at: u64, reply: &'static [u8] },
    /// From reply `at` on, replies no longer answer requests one to one.
    StopCounting { at: u64 },
    /// Reply `at` answers RESET (found by its text when not counting); report it once passed on.
    AwaitReset { at: u64, seen: oneshot::Sender<()> },
    /// Reply `at` answers the proxy's own AUTH: keep it from the client and report it.
    Swallow {
        at: u64,
        reply: oneshot::Sender<Vec<u8>>,
    },
    /// Once `at` replies have gone to the client, send this error and close.
    Fail { at: u64, reply: Vec<u8> },
}

struct Shared {
    queue: Mutex<VecDeque<Action>>,
    /// Actions in `queue`, not yet taken by the reply direction.
    queued: AtomicUsize,
    wake: Notify,
    /// Actions pushed and not yet carried out, and a signal when they drop below the limit.
    live: AtomicUsize,
    room: Notify,
    idle: Idle,
}

impl Shared {
    fn push(&self, action: Action) {
        self.queue.lock().expect("queue lock").push_back(action);
        self.queued.fetch_add(1, Ordering::Release);
        self.live.fetch_add(1, Ordering::AcqRel);
        self.wake.notify_one();
    }

    fn carried_out(&self) {
        if self.live.fetch_sub(1, Ordering::AcqRel) == MAX_ACTIONS {
            self.room.notify_one();
        }
    }

    async fn wait_for_room(&self) {
        loop {
            let notified = self.room.notified();
            if self.live.load(Ordering::Acquire) < MAX_ACTIONS {
                return;
            }
            notified.await;
        }
    }
}

/// What `--idle-timeout` needs to know: when bytes last moved, and whether the client is
/// waiting for something (a reply owed, or a subscription), which Redis never times out.
struct Idle {
    enabled: bool,
    started: Instant,
    last_active_ms: AtomicU64,
    sent: AtomicU64,
    answered: AtomicU64,
    counting: AtomicBool,
}

impl Idle {
    fn new(enabled: bool) -> Self {
        Idle {
            enabled,
            started: Instant::now(),
            last_active_ms: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            counting: AtomicBool::new(true),
        }
    }

    fn touch(&self) {
        if self.enabled {
            let now = self.started.elapsed().as_millis() as u64;
            self.last_active_ms.store(now, Ordering::Relaxed);
        }
    }

    fn idle_for(&self) -> Duration {
        let now = self.started.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_active_ms.load(Ordering::Relaxed)))
    }

    fn owes_nothing(&self) -> bool {
        self.counting.load(Ordering::Relaxed)
            && self.sent.load(Ordering::Relaxed) == self.answered.load(Ordering::Relaxed)
    }

    /// Resolves once the connection has been idle for `timeout` with nothing owed.
    async fn expired(&self, timeout: Option<Duration>) -> ConnError {
        let Some(timeout) = timeout else {
            return std::future::pending().await;
        };
        loop {
            let idle_for = self.idle_for();
            if idle_for >= timeout && self.owes_nothing() {
                return ConnError::IdleTimeout(timeout);
            }
            let wait = timeout.checked_sub(idle_for).unwrap_or(timeout);
            tokio::time::sleep(wait).await;
        }
    }
}

/// Forwards between the client's two halves and the authenticated `upstream` until either side
/// ends.
pub async fn run<R, W, U>(
    client_r: R,
    client_w: W,
    upstream: U,
    ctx: &Context,
) -> Result<(), ConnError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let shared = Shared {
        queue: Mutex::default(),
        queued: AtomicUsize::new(0),
        wake: Notify::new(),
        live: AtomicUsize::new(0),
        room: Notify::new(),
        idle: Idle::new(ctx.idle_timeout.is_some()),
    };
    // The TLS stream cannot split without a lock; the client sockets can.
    let (upstream_r, upstream_w) = tokio::io::split(upstream);
    let requests = Requests::new(&shared, ctx).run(client_r, upstream_w);
    let replies = Replies::new(&shared, &ctx.metrics).run(upstream_r, client_w);
    tokio::pin!(requests, replies);
    tokio::select! {
        biased;
        result = &mut replies => result,
        finish = &mut requests => match finish {
            // The client stopped sending, or a failure was queued in reply order: let the
            // replies still owed reach it.
            Ok(None) => replies.await,
            Ok(Some(error)) => replies.await.and(Err(error)),
            Err(error) => Err(error),
        },
        error = shared.idle.expired(ctx.idle_timeout) => Err(error),
    }
}

/// The client-to-server direction.
struct Requests<'a> {
    shared: &'a Shared,
    ctx: &'a Context,
    scanner: RequestScanner,
    /// Requests sent upstream that the server answers (the reply count they will reach).
    sent: u64,
    counting: bool,
    in_multi: bool,
    /// False until the client has sent the `--client-password-file` password.
    authenticated: bool,
    /// The request being scanned is refused: its remaining bytes are dropped, not forwarded.
    dropping: bool,
}

impl<'a> Requests<'a> {
    fn new(shared: &'a Shared, ctx: &'a Context) -> Self {
        let mut scanner = RequestScanner::new();
        let authenticated = ctx.client_passwords.is_none();
        scanner.set_unauthenticated(!authenticated);
        Requests {
            shared,
            ctx,
            scanner,
            sent: 0,
            counting: true,
            in_multi: false,
            authenticated,
            dropping: false,
        }
    }

    /// Returns `Ok(None)` when the client closed, `Ok(Some(e))` when a failure reply was queued.
    async fn run<R, W>(
        mut self,
        mut client: R,
        mut upstream: W,
    ) -> Result<Option<ConnError>, ConnError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut buf = BytesMut::new();
        loop {
            buf.reserve(READ_SIZE);
            let n = client
                .read_buf(&mut buf)
                .await
                .map_err(ConnError::ClientIo)?;
            if n == 0 {
                let _ = upstream.shutdown().await;
                return Ok(None);
            }
            self.shared.idle.touch();
            self.ctx.metrics.bytes_upstream.increment(n as u64);
            if let Err(error) = self.forward(&mut buf, &mut upstream).await? {
                return Ok(Some(error));
            }
            if self.shared.idle.enabled {
                self.shared.idle.sent.store(self.sent, Ordering::Relaxed);
            }
            self.shared.wait_for_room().await;
        }
    }

    /// Forwards every complete request in `buf` and consumes it; keeps an incomplete head.
    /// The inner `Err` is a failure already queued for the client.
    async fn forward<W: AsyncWrite + Unpin>(
        &mut self,
        buf: &mut BytesMut,
        upstream: &mut W,
    ) -> Result<Result<(), ConnError>, ConnError> {
        let mut pos = 0;
        let mut flushed = 0;
        loop {
            let step = match self.scanner.step(&buf[pos..]) {
                Ok(step) => step,
                Err(error) => {
                    send(upstream, &buf[flushed..pos]).await?;
                    flush(upstream).await?;
                    self.fail(error_reply(&format!("ERR {error}")));
                    buf.clear();
                    return Ok(Err(error.into()));
                }
            };
            match step {
                Step::NeedMore => break,
                Step::Continue { len } => {
                    pos += len;
                    if self.dropping {
                        flushed = pos;
                    }
                }
                Step::Start { len, command } if self.passes(&command) => {
                    self.dropping = false;
                    pos += len;
                    let reset = (command == Command::Reset).then(|| self.await_reset());
                    self.note(&command);
                    if let Some(reset_seen) = reset {
                        send(upstream, &buf[flushed..pos]).await?;
                        flushed = pos;
                        if let Err(error) = self.reauthenticate(reset_seen, upstream).await? {
                            buf.clear();
                            return Ok(Err(error));
                        }
                    }
                }
                Step::Start { len, command } => {
                    send(upstream, &buf[flushed..pos]).await?;
                    pos += len;
                    flushed = pos;
                    self.dropping = true;
                    if let Err(error) = self.intercept(command, upstream).await? {
                        buf.clear();
                        return Ok(Err(error));
                    }
                }
            }
        }
        send(upstream, &buf[flushed..pos]).await?;
        // A TLS writer may keep records it could not send yet; nothing else would push them
        // out, so every batch ends with a flush.
        flush(upstream).await?;
        buf.advance(pos);
        Ok(Ok(()))
    }

    /// Whether a request goes upstream in the client's own bytes. Before the client has
    /// authenticated, only what Redis allows then (QUIT, RESET) does.
    fn passes(&self, command: &Command) -> bool {
        command.passes_through()
            && (self.authenticated
                || matches!(command, Command::Quit | Command::Reset | Command::Empty))
    }

    fn await_reset(&mut self) -> oneshot::Receiver<()> {
        self.ctx.metrics.intercepted("reset");
        let (seen, rx) = oneshot::channel();
        self.shared.push(Action::AwaitReset {
            at: self.sent,
            seen,
        });
        rx
    }

    /// Records what a forwarded request does to the reply stream.
    fn note(&mut self, command: &Command) {
        match command {
            Command::Empty => return,
            Command::Multi => self.in_multi = true,
            Command::EndMulti => self.in_multi = false,
            Command::Uncountable if self.counting => {
                self.shared.push(Action::StopCounting { at: self.sent });
                self.counting = false;
            }
            Command::Reset => {
                // RESET leaves MULTI, pub/sub, MONITOR and CLIENT REPLY behind, and with a
                // client password it logs the client out, as it does on a server.
                self.in_multi = false;
                self.counting = true;
                self.set_authenticated(self.ctx.client_passwords.is_none());
            }
            _ => {}
        }
        self.sent += 1;
    }

    fn set_authenticated(&mut self, authenticated: bool) {
        self.authenticated = authenticated;
        self.scanner.set_unauthenticated(!authenticated);
    }

    /// Answers or rewrites a request the server must not see as sent. The inner `Err` is a
    /// failure already queued for the client.
    async fn intercept<W: AsyncWrite + Unpin>(
        &mut self,
        command: Command,
        upstream: &mut W,
    ) -> Result<Result<(), ConnError>, ConnError> {
        match command {
            Command::Auth(sent) => {
                self.ctx.metrics.intercepted("auth");
                if !self.client_password_ok(&sent) {
                    return Ok(self.reply(WRONGPASS));
                }
                self.answer_auth(upstream).await?;
            }
            Command::HelloWithAuth {
                rewritten,
                credentials,
            } => {
                self.ctx.metrics.intercepted("hello");
                if !self.client_password_ok(&credentials) {
                    return Ok(self.reply(WRONGPASS));
                }
                debug!("Removed AUTH from client HELLO");
                send(upstream, &rewritten).await?;
                self.sent += 1;
            }
            Command::Hello => {
                self.ctx.metrics.client_auth("noauth");
                return Ok(self.reply(NOAUTH_HELLO));
            }
            _ => {
                self.ctx.metrics.client_auth("noauth");
                return Ok(self.reply(NOAUTH));
            }
        }
        Ok(Ok(()))
    }

    /// Checks a client's AUTH against `--client-password-file`; without one, any is accepted.
    fn client_password_ok(&mut self, sent: &ClientCredentials) -> bool {
        let Some(passwords) = &self.ctx.client_passwords else {
            return true;
        };
        if passwords.check(sent) {
            self.ctx.metrics.client_auth("accepted");
            self.set_authenticated(true);
            true
        } else {
            self.ctx.metrics.client_auth("wrongpass");
            debug!("Client sent a wrong password");
            false
        }
    }

    /// A client AUTH the proxy accepted: `+OK` in its place, or, where replies cannot be
    /// placed by count, the proxy's own AUTH for the server to answer as it would.
    async fn answer_auth<W: AsyncWrite + Unpin>(
        &mut self,
        upstream: &mut W,
    ) -> Result<(), ConnError> {
        if self.place_reply(b"+OK\r\n") {
            debug!("Answered client AUTH");
            return Ok(());
        }
        debug!("Replaced client AUTH with the proxy's");
        let credentials = self.ctx.store.credentials().ok_or(ConnError::NoToken)?;
        let slot = self.ctx.store.attempt_order(&credentials)[0];
        let command = auth_command(&credentials, self.ctx.username.as_deref(), slot);
        send(upstream, &command).await?;
        self.sent += 1;
        Ok(())
    }

    /// Places one of the proxy's replies where the server's would have gone. Where that cannot
    /// be done (a wrong password inside MULTI or after SUBSCRIBE), it is sent and the
    /// connection closed.
    fn reply(&mut self, reply: &'static [u8]) -> Result<(), ConnError> {
        if self.place_reply(reply) {
            return Ok(());
        }
        self.fail(reply.to_vec());
        Err(ConnError::ClientWrongPassword)
    }

    /// Queues `reply` where the server's would have gone; false where replies are not counted
    /// one to one (after SUBSCRIBE, MONITOR, CLIENT REPLY) or the server queues them (MULTI).
    fn place_reply(&self, reply: &'static [u8]) -> bool {
        let placeable = self.counting && !self.in_multi;
        if placeable {
            self.shared.push(Action::Reply {
                at: self.sent,
                reply,
            });
        }
        placeable
    }

    /// Authenticates again after RESET, once the server has answered it. The inner `Err` is a
    /// failure already queued for the client.
    async fn reauthenticate<W: AsyncWrite + Unpin>(
        &mut self,
        reset_seen: oneshot::Receiver<()>,
        upstream: &mut W,
    ) -> Result<Result<(), ConnError>, ConnError> {
        flush(upstream).await?;
        // Waiting for +RESET first keeps the AUTH alone on the wire (see `handshake`).
        if reset_seen.await.is_err() {
            return Err(closed());
        }
        let ctx = self.ctx;
        let target = AuthTarget {
            store: &ctx.store,
            username: ctx.username.as_deref(),
            upstream: &ctx.upstream,
            timeout: ctx.auth_timeout,
            metrics: Some(&ctx.metrics),
        };
        let mut channel = Queued {
            requests: self,
            upstream,
        };
        match authenticate_over(&mut channel, &target).await {
            Ok(slot) => {
                debug!(
                    token.slot = slot.as_str(),
                    "Authenticated again after RESET"
                );
                Ok(Ok(()))
            }
            Err(error @ (ConnError::AuthRejected { .. } | ConnError::AuthFailed { .. })) => {
                warn!(error = %error, "Authentication after RESET failed");
                ctx.metrics
                    .auth_failure(error.auth_failure_reason().unwrap_or("error"));
                self.fail(error_reply(&error.outcome().reply.unwrap_or_default()));
                Ok(Err(error))
            }
            Err(ConnError::Timeout { after, .. }) => Err(ConnError::Timeout {
                stage: Stage::Auth,
                after,
                upstream: ctx.upstream.clone(),
            }),
            Err(error) => Err(error),
        }
    }

    /// Queues an error for the client after every reply it is owed.
    fn fail(&self, reply: Vec<u8>) {
        self.shared.push(Action::Fail {
            at: self.sent,
            reply,
        });
    }
}

/// The proxy's own AUTH on a connection a client is using: the reply is taken out of the
/// reply stream at its place.
struct Queued<'r, 'a, W> {
    requests: &'r mut Requests<'a>,
    upstream: &'r mut W,
}

impl<W: AsyncWrite + Unpin> Exchange for Queued<'_, '_, W> {
    async fn exchange(&mut self, command: &[u8]) -> Result<Vec<u8>, ConnError> {
        let (reply, rx) = oneshot::channel();
        self.requests.shared.push(Action::Swallow {
            at: self.requests.sent,
            reply,
        });
        self.requests.sent += 1;
        send(self.upstream, command).await?;
        flush(self.upstream).await?;
        rx.await.map_err(|_| closed())
    }
}

fn closed() -> ConnError {
    ConnError::UpstreamIo(std::io::ErrorKind::UnexpectedEof.into())
}

async fn send<W: AsyncWrite + Unpin>(upstream: &mut W, bytes: &[u8]) -> Result<(), ConnError> {
    if bytes.is_empty() {
        return Ok(());
    }
    upstream
        .write_all(bytes)
        .await
        .map_err(ConnError::UpstreamIo)
}

async fn flush<W: AsyncWrite + Unpin>(upstream: &mut W) -> Result<(), ConnError> {
    upstream.flush().await.map_err(ConnError::UpstreamIo)
}

/// What the reply direction does with the frame it is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    /// Pass it on.
    Forward,
    /// Pass it on; it is the counted reply to RESET.
    ResetReply,
    /// Pass it on, keeping its head to see whether it is `+RESET` (while not counting).
    MaybeReset,
    /// Keep it from the client: it answers the proxy's AUTH.
    Swallow,
}

/// The server-to-client direction.
struct Replies<'a> {
    shared: &'a Shared,
    metrics: &'a RouteMetrics,
    scanner: ReplyScanner,
    actions: VecDeque<Action>,
    /// Replies passed on (or swallowed) so far, while counting.
    answered: u64,
    counting: bool,
    frame: Frame,
    head: Vec<u8>,
}

impl<'a> Replies<'a> {
    fn new(shared: &'a Shared, metrics: &'a RouteMetrics) -> Self {
        Replies {
            shared,
            metrics,
            scanner: ReplyScanner::new(),
            actions: VecDeque::new(),
            answered: 0,
            counting: true,
            frame: Frame::Forward,
            head: Vec::new(),
        }
    }

    async fn run<R, W>(mut self, mut upstream: R, mut client: W) -> Result<(), ConnError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut buf = BytesMut::new();
        let shared = self.shared;
        // One waiter registration for as long as no action arrives, not one per read.
        let mut woken = std::pin::pin!(shared.wake.notified());
        loop {
            self.take_actions();
            if self.fire_due(&mut client).await? {
                return Ok(());
            }
            buf.reserve(READ_SIZE);
            tokio::select! {
                biased;
                read = upstream.read_buf(&mut buf) => {
                    let n = match read {
                        Ok(n) => n,
                        // Redis closes TCP without a TLS close_notify; that is its normal close.
                        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
                        Err(e) => return Err(ConnError::UpstreamIo(e)),
                    };
                    if n == 0 {
                        let _ = client.shutdown().await;
                        return Ok(());
                    }
                    self.metrics.bytes_downstream.increment(n as u64);
                    shared.idle.touch();
                }
                () = &mut woken => {
                    woken.set(shared.wake.notified());
                    continue;
                }
            }
            self.take_actions();
            if self.pass(&buf, &mut client).await? {
                return Ok(());
            }
            if shared.idle.enabled {
                shared.idle.answered.store(self.answered, Ordering::Relaxed);
                shared.idle.counting.store(self.counting, Ordering::Relaxed);
            }
            buf.clear();
            if buf.capacity() > 4 * READ_SIZE {
                buf = BytesMut::new();
            }
        }
    }

    fn take_actions(&mut self) {
        if self.shared.queued.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut queue = self.shared.queue.lock().expect("queue lock");
        self.shared.queued.fetch_sub(queue.len(), Ordering::Release);
        self.actions.extend(queue.drain(..));
    }

    /// Runs the actions due at this point of the reply stream. Returns true once the
    /// connection is to close.
    async fn fire_due<W: AsyncWrite + Unpin>(&mut self, client: &mut W) -> Result<bool, ConnError> {
        loop {
            let due = match self.actions.front() {
                Some(Action::Reply { at, .. } | Action::StopCounting { at }) => {
                    *at == self.answered
                }
                Some(Action::Fail { at, .. }) => !self.counting || *at == self.answered,
                _ => false,
            };
            if !due {
                return Ok(false);
            }
            let action = self.actions.pop_front();
            self.shared.carried_out();
            match action {
                Some(Action::Reply { reply, .. }) => write(client, reply).await?,
                Some(Action::StopCounting { .. }) => self.counting = false,
                Some(Action::Fail { reply, .. }) => {
                    write(client, &reply).await?;
                    let _ = client.shutdown().await;
                    return Ok(true);
                }
                _ => unreachable!("checked above"),
            }
        }
    }

    /// Decides what to do with the frame starting with `first`.
    fn begin_frame(&mut self, first: u8) {
        self.head.clear();
        self.frame = Frame::Forward;
        if matches!(first, b'>' | b'|') {
            return;
        }
        match self.actions.front() {
            Some(Action::Swallow { at, .. }) if self.counting && *at == self.answered => {
                self.frame = Frame::Swallow;
            }
            Some(Action::AwaitReset { at, .. }) if self.counting && *at == self.answered => {
                self.frame = Frame::ResetReply;
            }
            Some(Action::AwaitReset { .. }) if !self.counting => self.frame = Frame::MaybeReset,
            _ => {}
        }
    }

    fn keep_head(&mut self, bytes: &[u8]) {
        if matches!(self.frame, Frame::Swallow | Frame::MaybeReset) {
            let room = MAX_INSPECT.saturating_sub(self.head.len());
            self.head.extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
    }

    /// Settles a frame that just ended.
    fn end_frame(&mut self, kind: FrameKind) {
        if kind != FrameKind::Reply {
            return;
        }
        let settled = match self.frame {
            Frame::Forward => false,
            Frame::MaybeReset => self.head == b"+RESET\r\n",
            Frame::ResetReply | Frame::Swallow => true,
        };
        if settled {
            self.shared.carried_out();
            match self.actions.pop_front() {
                Some(Action::AwaitReset { at, seen }) => {
                    self.counting = true;
                    self.answered = at;
                    let _ = seen.send(());
                }
                Some(Action::Swallow { reply, .. }) => {
                    let _ = reply.send(std::mem::take(&mut self.head));
                }
                _ => unreachable!("frame kind follows the front action"),
            }
        }
        if self.counting {
            self.answered += 1;
        }
        self.frame = Frame::Forward;
    }

    /// Passes a chunk of replies on, acting at frame boundaries. Returns true to close.
    async fn pass<W: AsyncWrite + Unpin>(
        &mut self,
        chunk: &[u8],
        client: &mut W,
    ) -> Result<bool, ConnError> {
        // Actions taken with this chunk may be due before its first reply (an AUTH answered
        // while the read was already under way; SUBSCRIBE's stop-counting point).
        if !self.actions.is_empty() && self.fire_due(client).await? {
            return Ok(true);
        }
        let mut pos = 0;
        let mut flushed = 0;
        while pos < chunk.len() {
            if self.scanner.at_boundary() {
                self.begin_frame(chunk[pos]);
            }
            let start = pos;
            let ended = match self.scanner.scan(&chunk[pos..])? {
                Scan::Partial => {
                    pos = chunk.len();
                    None
                }
                Scan::End { len, kind } => {
                    pos += len;
                    Some(kind)
                }
            };
            self.keep_head(&chunk[start..pos]);
            if self.frame == Frame::Swallow {
                write(client, &chunk[flushed..start]).await?;
                flushed = pos;
            }
            let Some(kind) = ended else { continue };
            self.end_frame(kind);
            if !self.actions.is_empty() {
                self.take_actions();
                write(client, &chunk[flushed..pos]).await?;
                flushed = pos;
                if self.fire_due(client).await? {
                    return Ok(true);
                }
            }
        }
        write(client, &chunk[flushed..]).await?;
        Ok(false)
    }
}

async fn write<W: AsyncWrite + Unpin>(client: &mut W, bytes: &[u8]) -> Result<(), ConnError> {
    if bytes.is_empty() {
        return Ok(());
    }
    client.write_all(bytes).await.map_err(ConnError::ClientIo)
}
