//! The upstream side of a connection: what was sent and answered, and the decisions placed in
//! the reply stream (`Mark`s), apart from the client's session that the requests came from.

use crate::cluster::Topology;
use crate::error::ConnError;
use crate::resp::reply::ReplyScanner;
use bytes::Bytes;
use std::collections::VecDeque;

/// How the replies relate to the requests, from some reply count on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Replies {
    /// One reply per request (pushes and attributes aside).
    Counted,
    /// Pub/sub, MONITOR or CLIENT REPLY: no count says where a reply belongs.
    Uncounted,
    /// A replication stream: not RESP, copied as it comes until the server closes.
    Raw,
}

/// A decision about the reply stream, taken where it reaches reply `at`.
#[derive(Debug)]
pub(super) struct Mark {
    pub(super) at: u64,
    pub(super) kind: MarkKind,
}

impl Mark {
    /// Whether the mark acts now, between replies: `answered` replies have passed (`counted`
    /// says whether that count means anything), and the next frame is an invalidation or not.
    ///
    /// An answer of the proxy's own waits behind a tracking invalidation that follows the
    /// reply before it: the server sends that (for the key the command just wrote) before it
    /// runs the next command, which on a direct connection would be the AUTH answered here.
    /// Other pushes (pub/sub messages, which come when they come, and RESP3 subscribe
    /// confirmations, which answer later commands) do not hold it. A claim waits for its
    /// reply instead.
    pub(super) fn due(&self, counted: bool, answered: u64, invalidation_next: bool) -> bool {
        match &self.kind {
            MarkKind::Between(Act::Answer(_)) => {
                counted && self.at == answered && !invalidation_next
            }
            MarkKind::Between(Act::Mode(_) | Act::Fail { .. }) => !counted || self.at == answered,
            MarkKind::Reply(_) => false,
        }
    }
}

#[derive(Debug)]
pub(super) enum MarkKind {
    /// Acts between two replies, once `at` replies have passed.
    Between(Act),
    /// Claims a reply, and is settled when that reply ends.
    Reply(Claim),
}

/// What a mark does between two replies.
#[derive(Debug)]
pub(super) enum Act {
    /// Send this reply of the proxy's own; only while replies are counted.
    Answer(Bytes),
    /// From here on replies are `Uncounted` or `Raw`; at once while not counting.
    Mode(Replies),
    /// Send this error, then close; at once while not counting.
    Fail { reply: Bytes, error: ConnError },
}

/// A reply that is the proxy's business, and so the fate of a frame that is (or may be) it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Claim {
    /// Reply `at` answers RESET: passed on; RESET took effect if it is `+RESET`.
    Reset,
    /// The error naming the marker command, while not counting or after pub/sub (where a
    /// message may come first): held until it ends, kept from the client. Sent after RESET
    /// (`reset`: RESET's effects end there), or after the valid requests before a malformed
    /// one (the failure queued behind it goes then).
    Marker { reset: bool },
    /// Reply `at` answers the proxy's own AUTH renewing the connection: kept from the client.
    Renewal,
    /// Reply `at` answers a cluster topology request: held whole and rewritten.
    Rewrite(Topology),
    /// The reply to the proxy's `PING <marker>`, sent while replies are not counted, says
    /// where the replies to earlier requests end and whether counting holds again (a bulk
    /// string) or the connection is subscribed in RESP2 (`*2 pong <marker>`). Held until it
    /// ends, kept from the client.
    Probe,
}

impl Claim {
    /// Whether a frame starting with `first` may be the claimed reply. `in_turn`: it is reply
    /// `at` of a counted stream; `marker_possible`: an error here may name the marker.
    pub(super) fn may_be(self, first: u8, in_turn: bool, marker_possible: bool) -> bool {
        match self {
            Claim::Reset | Claim::Renewal | Claim::Rewrite(_) => in_turn,
            Claim::Marker { .. } => marker_possible,
            Claim::Probe => matches!(first, b'$' | b'*'),
        }
    }
}

/// What happens to the reply frame in progress.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fate {
    /// Passed on.
    #[default]
    Pass,
    /// It is, or may be, the reply the first mark claims.
    Claimed(Claim),
    /// Held back until it ends (cluster mode): an error that may be a redirect to rewrite.
    MaybeRedirect,
    /// Held back until it ends (`--follow-primary`): an error that may be a replica's
    /// refusal, to follow to the primary (`follow.rs`).
    MaybeRefused,
}

/// The reply frame in progress: its fate, and what is kept of it to settle that.
#[derive(Debug, Default)]
pub(super) struct Frame {
    pub(super) fate: Fate,
    pub(super) head: Vec<u8>,
    /// A whole redirect to a node no topology reply named, held with every reply after it
    /// until the topology has been read again.
    pub(super) held: Option<Vec<u8>>,
}

/// The upstream stream's state.
pub(super) struct Stream {
    pub(super) replies: ReplyScanner,
    /// Requests sent that the server will answer, while counting.
    pub(super) sent: u64,
    /// Replies passed on (or kept from the client), while counting.
    pub(super) answered: u64,
    /// How replies relate to requests at the request frontier; the reply frontier's view is
    /// `receiving`, which catches up through `Act::Mode`.
    pub(super) sending: Replies,
    pub(super) receiving: Replies,
    pub(super) marks: VecDeque<Mark>,
    pub(super) frame: Frame,
    /// An attribute ended; the reply it annotates comes next and nothing may go between.
    pub(super) after_attribute: bool,
    /// The random name of the command that follows a RESET while not counting; made when
    /// first needed.
    pub(super) marker: Option<Bytes>,
    /// Replies may answer requests one to one again once the request being scanned is whole
    /// (after UNSUBSCRIBE, CLIENT REPLY ON, the request CLIENT REPLY SKIP skipped): a probe
    /// goes after it.
    pub(super) probe_due: bool,
    /// The client used pub/sub: a message can come between any two replies, also where they
    /// are counted again (RESP3), so the proxy places no reply of its own until RESET.
    pub(super) pubsub_used: bool,
    /// Replies stopped being counted for a reason no probe can undo (MONITOR, pub/sub inside
    /// MULTI): only RESET starts counting again.
    pub(super) counting_lost: bool,
}

impl Default for Stream {
    fn default() -> Self {
        Stream {
            replies: ReplyScanner::new(),
            sent: 0,
            answered: 0,
            sending: Replies::Counted,
            receiving: Replies::Counted,
            marks: VecDeque::new(),
            frame: Frame::default(),
            after_attribute: false,
            marker: None,
            probe_due: false,
            pubsub_used: false,
            counting_lost: false,
        }
    }
}

impl Stream {
    /// Every request sent is answered and no mark waits.
    pub(super) fn caught_up(&self) -> bool {
        self.sent == self.answered && self.marks.is_empty()
    }

    /// Caught up, and replies are counted at both ends.
    pub(super) fn settled(&self) -> bool {
        self.caught_up() && self.sending == Replies::Counted && self.receiving == Replies::Counted
    }

    /// No reply half read.
    pub(super) fn at_boundary(&self) -> bool {
        self.replies.at_boundary()
    }

    /// Places a mark at the request about to be counted.
    pub(super) fn place(&mut self, kind: MarkKind) {
        self.marks.push_back(Mark {
            at: self.sent,
            kind,
        });
    }

    /// From the next request on, replies relate to requests as `replies` says.
    pub(super) fn switch(&mut self, replies: Replies) {
        self.place(MarkKind::Between(Act::Mode(replies)));
        self.sending = replies;
    }

    /// Every earlier request is answered and later ones were held: counting starts again here.
    pub(super) fn count_again(&mut self) {
        self.sending = Replies::Counted;
        self.receiving = Replies::Counted;
        self.answered = self.sent;
    }

    /// RESET took effect: counting holds again, and nothing of pub/sub or MONITOR is left.
    pub(super) fn reset(&mut self) {
        self.count_again();
        self.probe_due = false;
        self.pubsub_used = false;
        self.counting_lost = false;
    }

    /// The marker, made on first use: random, so that no reply can be taken for its error.
    pub(super) fn marker(&mut self) -> Bytes {
        self.marker
            .get_or_insert_with(|| {
                use std::hash::{BuildHasher, RandomState};
                let state = RandomState::new();
                let (a, b) = (state.hash_one(1u8), state.hash_one(2u8));
                Bytes::from(format!("redis-auth-proxy-{a:016x}{b:016x}"))
            })
            .clone()
    }

    /// The marker is sent as a command name no server knows; the error naming it comes
    /// whether or not RESET left the connection authenticated.
    pub(super) fn is_marker_reply(&self, frame: &[u8]) -> bool {
        let Some(marker) = &self.marker else {
            return false;
        };
        frame
            .windows(marker.len() + 2)
            .any(|w| w[0] == b'\'' && w.ends_with(b"'") && w[1..=marker.len()] == marker[..])
    }

    /// The reply to `PING <marker>`: `Some(true)` for the bulk string (replies answer requests
    /// one to one), `Some(false)` for RESP2's subscribed `*2 pong <marker>`.
    pub(super) fn probe_reply(&self, frame: &[u8]) -> Option<bool> {
        let marker = self.marker.as_ref()?;
        let bulk = format!("${}\r\n", marker.len());
        let rest = frame.strip_suffix(b"\r\n")?.strip_suffix(&marker[..])?;
        if rest == bulk.as_bytes() {
            Some(true)
        } else if rest.strip_suffix(bulk.as_bytes())? == b"*2\r\n$4\r\npong\r\n" {
            Some(false)
        } else {
            None
        }
    }
}
