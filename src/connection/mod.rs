//! The decisions of one proxied connection, with no I/O.
//!
//! `Connection` is fed the bytes each side sent (`on_requests`, `on_replies`) and says what to
//! write where (`Actions`): ranges of those same bytes, passed on unchanged, and the few bytes
//! of the proxy's own. The async code in `forward` only reads, feeds and writes; everything
//! that decides (answer AUTH in place, refuse before the client password, re-authenticate
//! after RESET, stop counting after SUBSCRIBE, close after an error) lives here and is tested
//! in memory (`tests.rs`).
//!
//! A client's AUTH is answered by the proxy only for the proxy's own user; AUTH (or HELLO AUTH)
//! naming another ACL user goes to the server, alone once every earlier reply has arrived, and
//! the server decides, as on a direct connection.
//!
//! Both directions count: `sent` requests that the server will answer, `answered` replies
//! passed on. A decision about the reply stream is a `Mark` placed at a reply count; the
//! marks are empty for ordinary traffic, which then costs two counters and one range per read.
//! Marks take effect only between frames, so the proxy's bytes never land inside a reply or a
//! RESP3 push.
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
mod renewal;
mod replies;
mod requests;
#[cfg(test)]
mod tests;

use crate::client_auth::ClientPasswords;
use crate::cluster::Topology;
use crate::cluster::rewrite::Rewriter;
use crate::error::ConnError;
use crate::metrics::RouteMetrics;
use crate::resp::reply::ReplyScanner;
use crate::resp::request::RequestScanner;
use bytes::Bytes;
use std::collections::VecDeque;
use std::ops::Range;

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

/// How the replies relate to the requests, from some reply count on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replies {
    /// One reply per request (pushes and attributes aside).
    Counted,
    /// Pub/sub, MONITOR or CLIENT REPLY: no count says where a reply belongs.
    Uncounted,
    /// A replication stream: not RESP, copied as it comes until the server closes.
    Raw,
}

/// A decision about the reply stream, taken when it reaches reply `at`.
#[derive(Debug)]
enum Mark {
    /// Send this reply of the proxy's own once `at` replies have passed.
    Answer { at: u64, reply: Bytes },
    /// From reply `at` on, replies are `Replies::Uncounted` or `Replies::Raw`.
    Mode { at: u64, replies: Replies },
    /// Reply `at` answers RESET; while not counting (`marker`), the error naming the marker
    /// command sent after it says where RESET's effects end.
    Reset { at: u64, marker: bool },
    /// Send this error once `at` replies have passed, then close. While not counting: once the
    /// error naming the marker command sent after the bad request has come (`after_marker`), or
    /// at once where no reply can come (CLIENT REPLY OFF or SKIP).
    Fail {
        at: u64,
        reply: Bytes,
        error: ConnError,
        after_marker: bool,
    },
    /// Reply `at` answers the proxy's own AUTH sent to renew an IAM connection: kept from the
    /// client.
    Renewal { at: u64 },
    /// Reply `at` answers a cluster topology request: rewritten to name local listeners.
    Rewrite { at: u64, kind: Topology },
    /// The reply to the proxy's `PING <marker>`, sent while replies are not counted, says
    /// where the replies to earlier requests end and whether counting holds again (a bulk
    /// string) or the connection is subscribed in RESP2 (`*2 pong <marker>`). Kept from the
    /// client.
    Probe,
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
}

/// One proxied connection's state, both directions.
pub struct Connection<'a> {
    rules: Rules<'a>,
    requests: RequestScanner,
    replies: ReplyScanner,
    /// Requests sent that the server will answer, while counting.
    sent: u64,
    /// Replies passed on (or kept from the client), while counting.
    answered: u64,
    /// How replies relate to requests at the request frontier; the reply frontier's view is
    /// `reply_mode`, which catches up through `Mark::Mode`.
    request_mode: Replies,
    reply_mode: Replies,
    marks: VecDeque<Mark>,
    awaiting: Option<Awaiting>,
    in_multi: bool,
    /// False until the client has sent the `--client-password-file` password.
    authenticated: bool,
    /// The request being scanned is refused: its remaining bytes are dropped, not forwarded.
    dropping: bool,
    /// QUIT is being forwarded; once it is whole, nothing after it is.
    quitting: bool,
    /// CLIENT REPLY OFF is on, or CLIENT REPLY SKIP was the last request: the server may not
    /// answer the next one.
    replies_suppressed: bool,
    /// The last request forwarded was CLIENT REPLY SKIP.
    skip_next: bool,
    /// The last request forwarded was CLIENT CACHING, whose flag the next command consumes.
    caching_next: bool,
    /// Replies may answer requests one to one again once the request being scanned is whole
    /// (after UNSUBSCRIBE, CLIENT REPLY ON, the request CLIENT REPLY SKIP skipped): a probe
    /// goes after it.
    probe_due: bool,
    /// The client used pub/sub: a message can come between any two replies, also where they
    /// are counted again (RESP3), so the proxy places no reply of its own until RESET.
    pubsub_used: bool,
    /// Replies stopped being counted for a reason no probe can undo (MONITOR, pub/sub inside
    /// MULTI): only RESET starts counting again.
    counting_lost: bool,
    /// CLIENT NO-EVICT, NO-TOUCH or SETINFO was forwarded: state RESET does not clear.
    sticky_state: bool,
    /// The client may name this connection on the server (it learned its id: CLIENT ID, INFO,
    /// LIST, HELLO), or the server keeps what it read (CLIENT TRACKING ON): RESET undoes
    /// neither, so the connection is never handed to another client.
    identity_exposed: bool,
    /// CLIENT LIST or ACL LOG was forwarded since last asked: every connection's id is known.
    listed_clients: bool,
    /// No more requests are read: QUIT was sent, or a malformed request was found.
    requests_done: bool,
    /// The current reply frame's fate and what was kept of it.
    frame: replies::Frame,
    /// An attribute ended; the reply it annotates comes next and nothing may go between.
    after_attribute: bool,
    /// The random name of the command that follows a RESET while not counting; made when
    /// first needed.
    marker: Option<Bytes>,
    /// Set once the connection is to close, after the client has what is queued for it.
    outcome: Option<Result<(), ConnError>>,
    /// Whether the server accepted the last renewal AUTH, until taken.
    renewed: Option<bool>,
}

impl<'a> Connection<'a> {
    pub fn new(rules: Rules<'a>) -> Self {
        let authenticated = rules.client_passwords.is_none();
        let mut requests = RequestScanner::new();
        requests.set_unauthenticated(!authenticated);
        Connection {
            rules,
            requests,
            replies: ReplyScanner::new(),
            sent: 0,
            answered: 0,
            request_mode: Replies::Counted,
            reply_mode: Replies::Counted,
            marks: VecDeque::new(),
            awaiting: None,
            in_multi: false,
            authenticated,
            dropping: false,
            quitting: false,
            replies_suppressed: false,
            skip_next: false,
            caching_next: false,
            probe_due: false,
            pubsub_used: false,
            counting_lost: false,
            sticky_state: false,
            identity_exposed: false,
            listed_clients: false,
            requests_done: false,
            frame: replies::Frame::default(),
            after_attribute: false,
            marker: None,
            outcome: None,
            renewed: None,
        }
    }

    /// Whether the client's next bytes can be taken now.
    pub fn accepts_requests(&self) -> bool {
        !self.requests_done
            && self.outcome.is_none()
            && self.awaiting.is_none()
            && self.marks.len() < MAX_MARKS
    }

    /// Whether the client's requests wait on a reply still to come: the server must then be
    /// read even while the client is slow to take what it was sent, or neither would move.
    pub fn awaits_server(&self) -> bool {
        matches!(
            self.awaiting,
            Some(Awaiting::ResetReply | Awaiting::Quiet | Awaiting::Renewal | Awaiting::Probe)
        )
    }

    /// Whether the proxy must authenticate the connection again (after RESET) before going on;
    /// answer with `reauthenticated`.
    pub fn needs_reauthentication(&self) -> bool {
        self.awaiting == Some(Awaiting::Reauthentication)
    }

    /// Every request answered, nothing pending, and replies counted (not subscribed, not in
    /// MONITOR): what `--idle-timeout` requires before closing, as Redis's `timeout` does.
    pub fn owes_nothing(&self) -> bool {
        self.sent == self.answered
            && self.request_mode == Replies::Counted
            && self.reply_mode == Replies::Counted
            && self.marks.is_empty()
            && self.awaiting.is_none()
            && !self.needs_topology()
    }

    /// Whether the upstream connection could serve another client once this one has left:
    /// every request answered and counted, none cut short, nothing held, no error. RESET then
    /// clears what the client left behind.
    pub fn reusable(&self) -> bool {
        self.owes_nothing()
            && self.requests.at_boundary()
            && self.replies.at_boundary()
            && !self.requests_done
            && self.outcome.is_none()
    }

    /// Why the upstream connection may not serve another client once this one has left, for
    /// the metric: `None` when it may.
    pub fn reuse_refusal(&self) -> Option<&'static str> {
        if !self.reusable() {
            Some("owed")
        } else if self.identity_exposed {
            Some("identity")
        } else {
            None
        }
    }

    /// Whether the client asked for every connection's id (CLIENT LIST, ACL LOG) since last
    /// asked: connections then open must not be reused either.
    pub fn take_listed_clients(&mut self) -> bool {
        std::mem::take(&mut self.listed_clients)
    }

    /// Whether the client set state that RESET leaves as it is (CLIENT NO-EVICT, NO-TOUCH,
    /// SETINFO), which reuse must undo.
    pub fn left_sticky_state(&self) -> bool {
        self.sticky_state
    }

    /// The connection is to close once the client has what was queued for it; taken once.
    pub fn take_outcome(&mut self) -> Option<Result<(), ConnError>> {
        self.outcome.take()
    }

    pub fn is_closing(&self) -> bool {
        self.outcome.is_some()
    }

    /// The server closed its side.
    pub fn server_closed(&mut self) {
        self.outcome.get_or_insert(Ok(()));
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
        self.request_mode = Replies::Counted;
        self.reply_mode = Replies::Counted;
        self.answered = self.sent;
        self.in_multi = false;
        self.replies_suppressed = false;
        self.skip_next = false;
        self.probe_due = false;
        self.pubsub_used = false;
        self.counting_lost = false;
        self.set_authenticated(self.rules.client_passwords.is_none());
        self.awaiting = Some(Awaiting::Reauthentication);
    }

    /// The marker, made on first use: random, so that no reply can be taken for its error.
    fn marker(&mut self) -> Bytes {
        self.marker
            .get_or_insert_with(|| {
                use std::hash::{BuildHasher, RandomState};
                let state = RandomState::new();
                let (a, b) = (state.hash_one(1u8), state.hash_one(2u8));
                Bytes::from(format!("redis-auth-proxy-{a:016x}{b:016x}"))
            })
            .clone()
    }

    fn set_authenticated(&mut self, authenticated: bool) {
        self.authenticated = authenticated;
        self.requests.set_unauthenticated(!authenticated);
    }
}
