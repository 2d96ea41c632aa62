//! Where a route's primary is (`--follow-primary`): whether the route's endpoint answers as a
//! primary (only then does a session refused by a replica follow it), and whether a failover
//! is under way (new connections are then checked before a client gets them, and pooled ones
//! made before it are not handed out). The check itself is one exchange: `ROLE` and `PING`
//! pipelined, made only on a route's first connection, once a minute while the endpoint has
//! not answered as a primary, and during a failover; never per connection in steady state.
//!
//! What a refused session does is decided in `connection/follow.rs`; `forward` moves it.

use crate::error::ConnError;
use crate::handshake::read_frame;
use crate::lock;
use crate::resp::encode_request;
use bytes::BytesMut;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::sync::futures::Notified;

/// How often an endpoint that did not answer as a primary is asked again.
const RECHECK: Duration = Duration::from_secs(60);
/// The largest ROLE reply read (a primary lists its replicas: a few hundred bytes).
const MAX_ROLE_REPLY: usize = 64 * 1024;

/// What a server said it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// `ROLE` says master and `PING` is answered: writes will be taken.
    Primary,
    /// `ROLE` says slave (or sentinel): writes would be refused with READONLY.
    Replica,
    /// The node is loading its data set (`-LOADING`): nothing but a few commands is answered.
    Loading,
    /// ROLE was refused (an ACL without it) or answered oddly: the proxy cannot tell.
    Unknown,
}

impl Role {
    /// Reads the replies to `ROLE` and `PING`.
    pub(crate) fn of(role: &[u8], ping: &[u8]) -> Role {
        if role.starts_with(b"-LOADING") || ping.starts_with(b"-LOADING") {
            return Role::Loading;
        }
        // ROLE's first element, in RESP2 and RESP3 alike: `*N\r\n$6\r\nmaster\r\n`.
        let first = (role.strip_prefix(b"*").and_then(after_line))
            .and_then(|rest| rest.strip_prefix(b"$"))
            .and_then(after_line);
        match first {
            Some(rest) if rest.starts_with(b"master\r\n") && ping.starts_with(b"+PONG") => {
                Role::Primary
            }
            Some(rest) if rest.starts_with(b"slave\r\n") || rest.starts_with(b"sentinel\r\n") => {
                Role::Replica
            }
            _ => Role::Unknown,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
            Role::Loading => "loading",
            Role::Unknown => "unknown",
        }
    }
}

/// What follows the first line of `bytes`.
fn after_line(bytes: &[u8]) -> Option<&[u8]> {
    let end = bytes.iter().position(|&b| b == b'\n')?;
    Some(&bytes[end + 1..])
}

/// What a route knows of its primary; shared by all its connections.
pub(crate) struct Primary {
    /// `--follow-primary`.
    enabled: bool,
    /// `--failover-timeout`.
    pub timeout: Duration,
    /// What the endpoint answered last: `UNCHECKED`, `PRIMARY` or `NOT_PRIMARY`.
    endpoint: AtomicU8,
    checked_at: Mutex<Option<Instant>>,
    /// When a connection of the route was last refused by a replica.
    refused_at: Mutex<Option<Instant>>,
    /// Whether the route has Sentinels to announce switches (`--sentinel`).
    announced: bool,
    /// How many switches the route's Sentinels announced, and the sessions waiting to hear.
    switches: AtomicU64,
    switched: Notify,
}

const UNCHECKED: u8 = 0;
const PRIMARY: u8 = 1;
const NOT_PRIMARY: u8 = 2;

impl Primary {
    pub(crate) fn new(enabled: bool, timeout: Duration) -> Self {
        Primary {
            enabled,
            timeout,
            endpoint: AtomicU8::new(UNCHECKED),
            checked_at: Mutex::new(None),
            refused_at: Mutex::new(None),
            announced: false,
            switches: AtomicU64::new(0),
            switched: Notify::new(),
        }
    }

    /// The route's primary is found through Sentinels, which announce its switches.
    pub(crate) fn announced_by_sentinels(mut self) -> Self {
        self.announced = true;
        self
    }

    /// A session's ear for announced switches, on a route that follows the primary and has
    /// Sentinels; `None` elsewhere (a refusal is then the only sign of a failover).
    pub(crate) fn switches(&self) -> Option<Switches<'_>> {
        (self.announced && self.enabled).then(|| Switches::new(self))
    }

    /// Whether a session refused by a replica follows the primary: the endpoint answered as a
    /// primary (a reader endpoint, whose nodes are all replicas, never does).
    pub(crate) fn follows(&self) -> bool {
        self.enabled && self.endpoint.load(Ordering::Relaxed) == PRIMARY
    }

    /// Whether a new connection should be checked before a client gets it.
    pub(crate) fn wants_check(&self) -> bool {
        if !self.enabled {
            return false;
        }
        if self.in_failover() {
            return true;
        }
        match self.endpoint.load(Ordering::Relaxed) {
            UNCHECKED => true,
            PRIMARY => false,
            _ => lock(&self.checked_at).is_none_or(|at| at.elapsed() >= RECHECK),
        }
    }

    /// Records what a check found.
    pub(crate) fn checked(&self, role: Role) {
        *lock(&self.checked_at) = Some(Instant::now());
        let endpoint = match role {
            Role::Primary => PRIMARY,
            // A replica during a failover does not make the endpoint a reader endpoint.
            Role::Replica | Role::Loading if self.follows() => PRIMARY,
            _ => NOT_PRIMARY,
        };
        self.endpoint.store(endpoint, Ordering::Relaxed);
    }

    /// A connection of the route was refused by a replica: a failover is under way.
    pub(crate) fn refused(&self) {
        *lock(&self.refused_at) = Some(Instant::now());
    }

    /// The route's Sentinels announced a new primary: a failover begins (new connections are
    /// checked, older pooled ones dropped) and every live session hears of it (`Switches`).
    pub(crate) fn switched(&self) {
        self.refused();
        self.switches.fetch_add(1, Ordering::AcqRel);
        self.switched.notify_waiters();
    }

    /// Within `--failover-timeout` of the last refusal.
    pub(crate) fn in_failover(&self) -> bool {
        lock(&self.refused_at).is_some_and(|at| at.elapsed() < self.timeout)
    }

    /// Whether a connection made at `born` may be on the old primary.
    pub(crate) fn predates_failover(&self, born: Instant) -> bool {
        lock(&self.refused_at).is_some_and(|at| born <= at)
    }
}

/// One session's ear for the switches its route's Sentinels announce.
pub(crate) struct Switches<'p> {
    primary: &'p Primary,
    /// The switches heard so far.
    heard: u64,
    /// Armed before the count is read, so that no switch falls between the two.
    wait: Pin<Box<Notified<'p>>>,
}

impl<'p> Switches<'p> {
    fn new(primary: &'p Primary) -> Self {
        Switches {
            primary,
            heard: primary.switches.load(Ordering::Acquire),
            wait: Box::pin(primary.switched.notified()),
        }
    }

    /// Whether a switch was announced since last asked; if not, `cx` is woken at the next.
    pub(crate) fn poll_switched(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            let now = self.primary.switches.load(Ordering::Acquire);
            if now != self.heard {
                self.heard = now;
                self.wait = Box::pin(self.primary.switched.notified());
                return true;
            }
            match self.wait.as_mut().poll(cx) {
                Poll::Ready(()) => self.wait = Box::pin(self.primary.switched.notified()),
                Poll::Pending => return false,
            }
        }
    }
}

/// Asks an authenticated connection what it is: `ROLE` and `PING` in one write, within
/// `timeout`. Leaves nothing unread: both replies are read whole.
pub(crate) async fn check<S>(
    stream: &mut S,
    upstream: &str,
    timeout: Duration,
) -> Result<Role, ConnError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let exchange = async {
        let mut request = encode_request(&[b"ROLE"]);
        request.extend_from_slice(&encode_request(&[b"PING"]));
        stream
            .write_all(&request)
            .await
            .map_err(ConnError::UpstreamIo)?;
        stream.flush().await.map_err(ConnError::UpstreamIo)?;
        let mut buf = BytesMut::new();
        let role = read_frame(stream, &mut buf, upstream, MAX_ROLE_REPLY).await?;
        let ping = read_frame(stream, &mut buf, upstream, MAX_ROLE_REPLY).await?;
        match (role, ping) {
            (Some(role), Some(ping)) => Ok(Role::of(&role, &ping)),
            _ => Ok(Role::Unknown),
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| ConnError::auth_timeout(timeout, upstream))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_primary_is_told_from_a_replica_and_a_loading_node_in_either_protocol() {
        let master = b"*3\r\n$6\r\nmaster\r\n:10\r\n*0\r\n";
        let slave = b"*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:6379\r\n$9\r\nconnected\r\n:10\r\n";
        assert_eq!(Role::of(master, b"+PONG\r\n"), Role::Primary);
        assert_eq!(Role::of(slave, b"+PONG\r\n"), Role::Replica);
        assert_eq!(
            Role::of(
                master,
                b"-LOADING Redis is loading the dataset in memory\r\n"
            ),
            Role::Loading
        );
        assert_eq!(
            Role::of(b"-NOPERM this user has no permissions\r\n", b"+PONG\r\n"),
            Role::Unknown
        );
        assert_eq!(Role::of(b"*0\r\n", b"+PONG\r\n"), Role::Unknown);
    }

    #[test]
    fn an_endpoint_that_answered_as_a_primary_is_followed_and_a_reader_endpoint_is_not() {
        let primary = Primary::new(true, Duration::from_secs(30));
        assert!(primary.wants_check() && !primary.follows());
        primary.checked(Role::Primary);
        assert!(primary.follows() && !primary.wants_check());
        // A replica seen during a failover leaves the endpoint a primary endpoint.
        primary.checked(Role::Replica);
        assert!(primary.follows());
        let reader = Primary::new(true, Duration::from_secs(30));
        reader.checked(Role::Replica);
        assert!(!reader.follows() && !reader.wants_check());
        let off = Primary::new(false, Duration::from_secs(30));
        off.checked(Role::Primary);
        assert!(!off.follows() && !off.wants_check());
    }

    #[test]
    fn a_refusal_starts_a_failover_that_checks_new_connections_and_retires_older_ones() {
        let primary = Primary::new(true, Duration::from_secs(30));
        primary.checked(Role::Primary);
        let before = Instant::now();
        assert!(!primary.in_failover() && !primary.predates_failover(before));
        primary.refused();
        assert!(primary.in_failover() && primary.wants_check());
        assert!(primary.predates_failover(before));
        assert!(!primary.predates_failover(Instant::now() + Duration::from_millis(1)));
    }

    #[test]
    fn a_switch_wakes_every_session_of_a_route_with_sentinels_and_is_heard_once() {
        use std::sync::Arc;
        use std::sync::atomic::AtomicUsize;
        use std::task::{Wake, Waker};
        struct Count(AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        let primary = Primary::new(true, Duration::from_secs(30)).announced_by_sentinels();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);
        let (mut first, mut second) = (primary.switches().unwrap(), primary.switches().unwrap());
        assert!(!first.poll_switched(&mut cx) && !second.poll_switched(&mut cx));
        primary.switched();
        assert_eq!(count.0.load(Ordering::Relaxed), 2, "both sessions woken");
        assert!(first.poll_switched(&mut cx) && second.poll_switched(&mut cx));
        assert!(!first.poll_switched(&mut cx), "heard once");
        assert!(primary.in_failover(), "new connections are checked");
        // A switch before a session first listens is not news to it.
        let mut late = primary.switches().unwrap();
        assert!(!late.poll_switched(&mut cx));
        let no_sentinels = Primary::new(true, Duration::from_secs(30));
        assert!(no_sentinels.switches().is_none());
        let off = Primary::new(false, Duration::from_secs(30)).announced_by_sentinels();
        assert!(off.switches().is_none());
    }
}
