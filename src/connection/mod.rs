//! The decisions of one proxied connection, with no I/O.
//!
//! `Connection` is fed the bytes each side sent (`on_requests`, `on_replies`) and says what to
//! write where (`Actions`): ranges of those same bytes, passed on unchanged, and the few bytes
//! of the proxy's own. After each call, `wants()` reports what it needs of the I/O around it
//! (which side to read, an exchange of the proxy's own, whether it may close, be renewed or be
//! handed to another client): `forward` and the in-memory driver (`tests.rs`) act on that one
//! report, so the tests drive the machine that runs. Everything that decides (answer AUTH in
//! place, refuse before the client password, re-authenticate after RESET, stop counting after
//! SUBSCRIBE, close after an error) lives here.
//!
//! What it remembers is in two sides, so that either can change hands:
//! - the client's `Session` (`session.rs`): what the client asked for and set (its MULTI, its
//!   CLIENT REPLY mode, its authentication to the proxy, state a reset leaves behind);
//! - the upstream `Stream` (`stream.rs`): requests `sent` that the server will answer,
//!   `answered` replies passed on, and `Mark`s: decisions about the reply stream placed at a
//!   reply count (an answer of the proxy's own, a change of mode, a reply the proxy claims).
//!   Marks are empty for ordinary traffic, which then costs two counters and one range per
//!   read, and they take effect only between frames, so the proxy's bytes never land inside a
//!   reply or a RESP3 push.
//!
//! A stream carrying several sessions' requests is the same counting with the session named
//! at each count, each reply routed to the session owning it; a session moved to a new
//! upstream connection keeps its `Session` and starts a new `Stream`.
//!
//! A client's AUTH is answered by the proxy only for the proxy's own user; AUTH (or HELLO AUTH)
//! naming another ACL user goes to the server, alone once every earlier reply has arrived, and
//! the server decides, as on a direct connection.
//!
//! Counting holds while Redis answers each request once. After SUBSCRIBE, MONITOR or CLIENT
//! REPLY it does not, so until RESET the proxy stops counting and sends its own AUTH in place
//! of the client's, letting the server answer as it would (inside MULTI too, where the server
//! answers `+QUEUED`). A RESET sent while not counting is followed by a command named with a
//! random marker: the server's `-ERR unknown command '<marker>'` (sent whether or not RESET left
//! the connection authenticated, and whether or not RESET itself was answered, as after
//! `CLIENT REPLY SKIP`) says where RESET's effects end, and is kept from the client. After SYNC
//! or PSYNC the replies are a replication stream and pass unscanned.

mod cluster;
mod follow;
mod renewal;
mod replies;
mod requests;
mod session;
mod stream;
mod switch;
#[cfg(test)]
mod tests;

use crate::client_auth::ClientPasswords;
use crate::cluster::rewrite::Rewriter;
use crate::error::ConnError;
use crate::metrics::RouteMetrics;
use bytes::Bytes;
use session::Session;
use std::ops::Range;
use stream::{Replies, Stream};

/// Marks not yet reached beyond which the client's requests wait: a client that sends AUTH or
/// refused commands without reading the answers cannot grow them without bound.
const MAX_MARKS: usize = 1024;

/// What the connection knows of its route.
#[derive(Clone, Copy)]
pub struct Rules<'a> {
    /// `--client-password-file`: clients must authenticate to the proxy first.
    pub client_passwords: Option<&'a ClientPasswords>,
    /// The ACL user the proxy authenticates as (`None`: `default`). A client's AUTH naming
    /// this user is answered by the proxy; one naming another user goes to the server.
    pub username: Option<&'a str>,
    pub metrics: &'a RouteMetrics,
    /// `--cluster`: replies naming nodes are rewritten to name local listeners.
    pub cluster: Option<Rewriter<'a>>,
    /// `--follow-primary`, on an endpoint that answered as a primary: a session refused by a
    /// replica moves to the new primary (`follow.rs`).
    pub follow_primary: bool,
}

/// Bytes for the server, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToServer {
    /// These bytes of the input just given, unchanged.
    Pass(Range<usize>),
    /// Bytes of the proxy's own: a rewritten HELLO, the marker after RESET.
    Send(Bytes),
    /// The proxy's own `AUTH` with the live token, for the server to answer in the client's
    /// place.
    Auth,
}

/// Bytes for the client, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToClient {
    /// These bytes of the input just given, unchanged.
    Pass(Range<usize>),
    /// A reply of the proxy's own.
    Send(Bytes),
}

/// What one call decided, for the I/O to carry out in order. Ranges refer to that call's input.
#[derive(Debug, Default)]
pub struct Actions {
    pub server: Vec<ToServer>,
    pub client: Vec<ToClient>,
}

impl Actions {
    pub fn clear(&mut self) {
        self.server.clear();
        self.client.clear();
    }

    fn pass_to_server(&mut self, range: Range<usize>) {
        if !range.is_empty() {
            self.server.push(ToServer::Pass(range));
        }
    }

    fn pass_to_client(&mut self, range: Range<usize>) {
        if !range.is_empty() {
            self.client.push(ToClient::Pass(range));
        }
    }
}

/// What the connection needs of the I/O around it now; see `Connection::wants`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wants {
    /// The client's next bytes can be taken.
    pub requests: bool,
    /// The server's next bytes can be taken.
    pub replies: bool,
    /// The client's requests wait on a reply still to come: read the server even while the
    /// client is slow to take what it was sent, or neither would move.
    pub replies_first: bool,
    /// An exchange of the proxy's own with the server comes before anything else moves.
    pub side_trip: Option<SideTrip>,
    /// To close once the client has what was queued for it (`take_outcome`).
    pub closing: bool,
    /// Every request answered, nothing pending, replies counted (not subscribed, not in
    /// MONITOR): what `--idle-timeout` requires before closing, as Redis's `timeout` does.
    pub idle_closable: bool,
    /// Whether the upstream connection could serve another client once this one has left
    /// (RESET then clears what the client left behind); else why not, for the metric.
    pub reuse: Result<(), &'static str>,
    /// An IAM renewal AUTH may go now (`renew`): quiet, and nothing for it to disturb.
    pub renewable: bool,
}

/// An exchange of the proxy's own that the I/O carries out, then reports back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SideTrip {
    /// RESET took effect: authenticate again, then call `reauthenticated`.
    Reauthenticate,
    /// A redirect names a node no topology reply announced: read the topology again, then
    /// call `topology_refreshed`.
    RefreshTopology,
    /// The server refused a command as a replica (or while loading): open a connection to the
    /// primary, tell it `settings_to_replay`, send the client's bytes from the refused request
    /// on (`resend_window`) again, then call `followed`.
    FollowPrimary,
}

/// Where the connection waits on something other than the client's next request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    /// An AUTH for another user, or a RESET, waits until every earlier request is answered:
    /// Redis 7.2–8.0 send no reply to a failed AUTH behind pending replies, and Redis closes a
    /// connection that RESET logged out with more than 1 KiB of replies unsent.
    Quiet,
    /// RESET was sent; the client's later requests wait until its reply has passed.
    ResetReply,
    /// RESET took effect; the proxy must authenticate again before anything else is sent.
    Reauthentication,
    /// The proxy's own AUTH renewing the connection was sent; the client's requests wait for
    /// its reply.
    Renewal,
    /// The proxy's `PING <marker>` was sent to learn whether replies answer requests one to
    /// one again; the client's requests wait for its reply.
    Probe,
    /// A refusal by a replica is being followed to the primary; nothing moves meanwhile.
    Primary,
}

/// What a session brings to this connection from where it began (a shared connection under
/// `--multiplex`, where the proxy answered what the session set).
#[derive(Debug, Default)]
pub struct Carried {
    /// The client gave the client password already.
    pub authenticated: bool,
    /// MULTI was sent and not ended, keys are watched (on a lent connection kept for good).
    pub in_multi: bool,
    pub watching: bool,
    /// The HELLO and CLIENT SETNAME this connection was told for the session, which a new
    /// primary is told again (`follow.rs`).
    pub hello: Option<Bytes>,
    pub name: Option<Bytes>,
}

/// One proxied connection: the client's session, the upstream stream carrying it, and what
/// joins them (a wait, the end).
pub struct Connection<'a> {
    rules: Rules<'a>,
    session: Session,
    stream: Stream,
    awaiting: Option<Awaiting>,
    /// Set once the connection is to close, after the client has what is queued for it.
    outcome: Option<Result<(), ConnError>>,
    /// Whether the server accepted the last renewal AUTH, until taken.
    renewed: Option<bool>,
    /// With `rules.follow_primary`: what moving to a new primary needs.
    follow: Option<follow::Follow>,
}

impl<'a> Connection<'a> {
    pub fn new(rules: Rules<'a>) -> Self {
        Connection {
            session: Session::new(rules.client_passwords.is_none()),
            stream: Stream::default(),
            rules,
            awaiting: None,
            outcome: None,
            renewed: None,
            follow: rules.follow_primary.then(follow::Follow::default),
        }
    }

    /// The session began elsewhere (on a shared connection, `--multiplex`): what it brings.
    pub fn carried(&mut self, carried: &Carried) {
        if carried.authenticated {
            self.session.set_authenticated(true);
        }
        self.session.in_multi = carried.in_multi;
        self.session.watching = carried.watching;
        if let Some(follow) = self.follow.as_mut().filter(|_| carried.in_multi) {
            follow.multi_at = Some(0);
        }
        self.remember(follow::Setting::Protocol, carried.hello.as_deref());
        self.remember(follow::Setting::Name, carried.name.as_deref());
    }

    /// What the connection needs of the I/O now. Cheap: a handful of comparisons.
    pub fn wants(&self) -> Wants {
        let closing = self.outcome.is_some();
        let side_trip = self.side_trip();
        let idle_closable = self.owes_nothing();
        let reusable = idle_closable
            && self.session.at_boundary()
            && self.stream.at_boundary()
            && !self.session.done()
            && !closing;
        Wants {
            requests: self.accepts_requests(),
            replies: side_trip.is_none() && !closing,
            replies_first: matches!(
                self.awaiting,
                Some(Awaiting::ResetReply | Awaiting::Quiet | Awaiting::Renewal | Awaiting::Probe)
            ),
            side_trip,
            closing,
            idle_closable,
            reuse: match (reusable, self.session.identity_exposed) {
                (false, _) => Err("owed"),
                (true, true) => Err("identity"),
                (true, false) => Ok(()),
            },
            renewable: reusable && !self.session.in_multi && !self.session.caching_next,
        }
    }

    fn side_trip(&self) -> Option<SideTrip> {
        if self.awaiting == Some(Awaiting::Reauthentication) {
            Some(SideTrip::Reauthenticate)
        } else if self.awaiting == Some(Awaiting::Primary) {
            Some(SideTrip::FollowPrimary)
        } else if self.stream.frame.held.is_some() {
            Some(SideTrip::RefreshTopology)
        } else {
            None
        }
    }

    fn accepts_requests(&self) -> bool {
        !self.session.done()
            && self.outcome.is_none()
            && self.awaiting.is_none()
            && self.stream.marks.len() < MAX_MARKS
            && !self.holds_for_switch()
    }

    fn owes_nothing(&self) -> bool {
        self.stream.settled() && self.awaiting.is_none() && self.stream.frame.held.is_none()
    }

    /// Whether the client asked for every connection's id (CLIENT LIST, ACL LOG) since last
    /// asked: connections then open must not be reused either.
    pub fn take_listed_clients(&mut self) -> bool {
        std::mem::take(&mut self.session.listed_clients)
    }

    /// Whether the client set state that RESET leaves as it is (CLIENT NO-EVICT, NO-TOUCH,
    /// SETINFO), which reuse must undo.
    pub fn left_sticky_state(&self) -> bool {
        self.session.sticky_state
    }

    /// The connection is to close once the client has what was queued for it; taken once.
    pub fn take_outcome(&mut self) -> Option<Result<(), ConnError>> {
        self.outcome.take()
    }

    /// The server closed its side (or the connection failed). Following the primary, a
    /// session that can move does (`follow.rs`), unless the client has left (`client_left`:
    /// the server closed because the proxy passed the client's end on); otherwise the
    /// connection closes.
    pub fn server_closed(&mut self, client_left: bool, actions: &mut Actions) {
        if client_left || !self.follow_after_loss(actions) {
            self.outcome.get_or_insert(Ok(()));
        }
    }

    /// The result of authenticating again after RESET. On failure the client gets the error
    /// (it is owed nothing else) and the connection closes.
    pub fn reauthenticated(&mut self, result: Result<(), ConnError>, actions: &mut Actions) {
        assert_eq!(
            self.awaiting,
            Some(Awaiting::Reauthentication),
            "reauthenticated without a RESET to follow"
        );
        self.awaiting = None;
        if let Err(error) = result {
            let reply = error.outcome().reply.unwrap_or_default();
            let reply = Bytes::from(crate::resp::error_reply(&reply));
            actions.client.push(ToClient::Send(reply));
            self.outcome = Some(Err(error));
        }
    }

    /// RESET took effect on the server: MULTI, pub/sub, MONITOR and CLIENT REPLY are behind,
    /// and with a client password the client is logged out, as on a server.
    fn reset_done(&mut self) {
        self.stream.reset();
        self.session.reset(self.rules.client_passwords.is_none());
        self.forget_settings();
        self.awaiting = Some(Awaiting::Reauthentication);
    }

    /// Whether requests are still owed replies before an AUTH may go alone. Where replies are
    /// not counted (pub/sub, MONITOR, CLIENT REPLY) or are queued (MULTI) there is no such
    /// point; the AUTH goes as a direct connection would send it.
    fn owes_replies(&self) -> bool {
        self.stream.sending == Replies::Counted
            && !self.session.in_multi
            && !self.stream.caught_up()
    }
}
