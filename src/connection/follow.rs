//! Following the primary (`--follow-primary`). A command refused because the server is no
//! longer the primary (`-READONLY`), is loading its data (`-LOADING`) or sends the client to
//! the primary (Valkey's `-REDIRECT`) was not executed: Redis checks before it runs anything.
//! So the proxy may send it again elsewhere. When such a refusal answers the oldest request in
//! flight, the session moves: the refusal and every later reply from the old node are kept
//! from the client, `forward` opens a connection to the endpoint until a primary answers,
//! tells it the session's settings again (HELLO, SELECT, CLIENT SETNAME, in the order sent),
//! and sends again every request from the refused one on, from the client's own bytes. Reads
//! the old node answered after the refusal go again too: their answers may be stale.
//!
//! To know which bytes those are, the session remembers where each request in flight starts
//! in the client's byte stream, and where the last byte the server did not get as sent lies
//! (an AUTH answered in place, a rewritten HELLO): only a stretch of requests that all went as
//! sent can be sent again. State that cannot move (MULTI, WATCH, pub/sub, MONITOR, CLIENT REPLY,
//! tracking, AUTH as another user, an exchange of the proxy's own in flight) is not moved: the
//! client gets the refusal, as on a direct connection, and the connection closes right after
//! it, so that the client's next connection reaches the new primary.

use super::stream::{Replies, Stream};
use super::{Actions, Awaiting, Connection, ToClient, ToServer};
use crate::error::ConnError;
use crate::resp::request::Command;
use bytes::Bytes;
use std::collections::VecDeque;

/// The reply to each request in flight on a connection the server closed, where the session
/// moves on: the client cannot know whether it ran, as with a connection error.
pub(super) const LOST: &[u8] =
    b"-ERR redis-auth-proxy: the upstream connection was lost before the reply; the command may or may not have run\r\n";

/// Why a session cannot move while the proxy's own exchange with the server is under way.
pub(super) const PROXY_EXCHANGE: &str = "an exchange of the proxy's own in flight";

/// How a refusal that means "not executed: the primary is elsewhere" begins.
const REFUSALS: [&[u8]; 3] = [b"-READONLY ", b"-LOADING ", b"-REDIRECT "];

/// State a session set on its connection that a new connection must be told again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Setting {
    /// HELLO: the protocol version (and perhaps the name).
    Protocol,
    /// SELECT: the database.
    Database,
    /// CLIENT SETNAME.
    Name,
}

impl Setting {
    /// The setting a forwarded request sets, if a new connection must be told it again.
    pub(super) fn set_by(command: &Command) -> Option<Setting> {
        match command {
            Command::Hello => Some(Setting::Protocol),
            Command::Select => Some(Setting::Database),
            Command::ClientSetName => Some(Setting::Name),
            _ => None,
        }
    }
}

/// What the session remembers to be able to move.
#[derive(Debug, Default)]
pub(super) struct Follow {
    /// For each request in flight: its count and where it starts in the client's bytes.
    starts: VecDeque<(u64, u64)>,
    /// Client bytes consumed so far.
    consumed: u64,
    /// Where the last consumed byte the server did not get as sent ends.
    altered_until: u64,
    /// The requests to tell a new connection, latest of each kind, in the order sent.
    settings: Vec<(Setting, Bytes)>,
    /// The refusal being followed, kept from the client until the move succeeds or fails.
    refused: Option<Refused>,
    /// The count of the last MULTI forwarded: a transaction in flight when the connection is
    /// lost gets no invented errors (no server answers MULTI itself with one, and clients
    /// that send a transaction at once do not expect it), the connection closes.
    pub(super) multi_at: Option<u64>,
    /// After a move, the requests below this count were sent again to a node that answered
    /// as the primary: a refusal of one of them is not a failover (a script can return any
    /// error) and passes on in its place, so one request never moves a session twice.
    resent_until: u64,
    /// The route's Sentinels announced a new primary that the session has not moved to yet
    /// (`switch.rs`).
    pub(super) switched: bool,
}

#[derive(Debug)]
struct Refused {
    /// The server's refusal; `None` where the connection was lost, or the primary switched.
    reply: Option<Bytes>,
    from: u64,
}

impl Follow {
    /// The starts of requests in flight are in order, none of a request answered, none past
    /// the bytes consumed.
    #[cfg(test)]
    pub(super) fn check(&self, answered: u64) {
        let starts: Vec<_> = self.starts.iter().collect();
        assert!(starts.is_sorted(), "starts out of order: {starts:?}");
        assert!(
            (self.starts.iter()).all(|&(count, at)| count >= answered && at <= self.consumed),
            "a start answered or past the bytes consumed: {starts:?}, answered {answered}"
        );
    }

    /// The session moves with nothing refused (the connection was lost, or the primary
    /// switched): only what the client sends from now on goes to the new connection.
    pub(super) fn move_from_here(&mut self) {
        self.switched = false;
        self.refused = Some(Refused {
            reply: None,
            from: self.consumed,
        });
    }

    /// Where the client's bytes that may be sent again begin: nothing before is needed.
    fn window_start(&self) -> u64 {
        self.refused.as_ref().map_or_else(
            || self.starts.front().map_or(self.consumed, |&(_, at)| at),
            |refused| refused.from,
        )
    }
}

impl Connection<'_> {
    /// Where the request starting at `pos` of this call's input lies in the client's bytes.
    pub(super) fn client_offset(&self, pos: usize) -> u64 {
        self.follow.as_ref().map_or(0, |f| f.consumed + pos as u64)
    }

    /// Requests counted since `sent_before` start at client offset `at`.
    pub(super) fn note_sent(&mut self, sent_before: u64, at: u64) {
        if let Some(follow) = &mut self.follow {
            for count in sent_before..self.stream.sent {
                follow.starts.push_back((count, at));
            }
        }
    }

    /// Remembers a request that set `setting`, to be told to a new connection; `None`, one
    /// too large to keep (a name streamed over several reads): the setting is not told.
    pub(super) fn remember(&mut self, setting: Setting, request: Option<&[u8]>) {
        if let Some(follow) = &mut self.follow {
            follow.settings.retain(|(kind, _)| *kind != setting);
            if let Some(request) = request {
                let request = Bytes::copy_from_slice(request);
                follow.settings.push((setting, request));
            }
        }
    }

    /// After a call took `used` bytes: notes where any of them did not go to the server as
    /// sent (the server actions from `first` on are this call's).
    pub(super) fn account(&mut self, first: usize, used: usize, actions: &Actions) {
        let Some(follow) = &mut self.follow else {
            return;
        };
        let base = follow.consumed;
        let mut expected = 0;
        for action in &actions.server[first..] {
            match action {
                ToServer::Pass(range) if range.start == expected => expected = range.end,
                ToServer::Pass(range) => {
                    follow.altered_until = base + range.start as u64;
                    expected = range.end;
                }
                ToServer::Send(_) | ToServer::Auth => {
                    follow.altered_until = base + used as u64;
                }
            }
        }
        if used > expected {
            follow.altered_until = follow.altered_until.max(base + used as u64);
        }
        follow.consumed += used as u64;
    }

    /// Forgets where answered requests started.
    pub(super) fn forget_answered(&mut self) {
        let answered = self.stream.answered;
        if let Some(follow) = &mut self.follow {
            while follow
                .starts
                .front()
                .is_some_and(|&(count, _)| count < answered)
            {
                follow.starts.pop_front();
            }
        }
    }

    /// RESET took effect: nothing the session set is left to tell a new connection.
    pub(super) fn forget_settings(&mut self) {
        if let Some(follow) = &mut self.follow {
            follow.settings.clear();
        }
    }

    /// Where the client's bytes still needed for a move begin; `None` when not following.
    pub fn resend_window(&self) -> Option<u64> {
        self.follow.as_ref().map(Follow::window_start)
    }

    /// What a new connection must be told before the requests are sent again.
    pub fn settings_to_replay(&self) -> Vec<Bytes> {
        self.follow.as_ref().map_or_else(Vec::new, |follow| {
            follow.settings.iter().map(|(_, b)| b.clone()).collect()
        })
    }

    /// How many requests go again when the move succeeds.
    pub fn requests_to_resend(&self) -> u64 {
        self.stream.sent - self.stream.answered
    }

    /// Whether a reply starting with `first` may be a refusal to follow.
    pub(super) fn may_be_refusal(&self, first: u8) -> bool {
        first == b'-' && self.follow.is_some() && self.stream.receiving == Replies::Counted
    }

    /// Settles a reply that may be a refusal: passed on if it is not; kept and followed if the
    /// session can move; passed on, then the connection closed, if it cannot. Returns whether
    /// the reply counts as answered.
    pub(super) fn refusal(&mut self, head: Vec<u8>, actions: &mut Actions) -> bool {
        let resent = (self.follow.as_ref()).is_some_and(|f| self.stream.answered < f.resent_until);
        if resent || !REFUSALS.iter().any(|refusal| head.starts_with(refusal)) {
            actions.client.push(ToClient::Send(Bytes::from(head)));
            return true;
        }
        match self.cannot_move() {
            Err(reason) => {
                actions.client.push(ToClient::Send(Bytes::from(head)));
                self.outcome = Some(Err(ConnError::LeftReplica { reason }));
                true
            }
            Ok(from) => {
                let follow = self.follow.as_mut().expect("a refusal is followed");
                follow.refused = Some(Refused {
                    reply: Some(Bytes::from(head)),
                    from,
                });
                self.awaiting = Some(Awaiting::Primary);
                false
            }
        }
    }

    /// The server closed the connection: a session that can move does, once every request in
    /// flight has had an error in its place (their replies will never come, and whether they
    /// ran cannot be known). Not where a reply or a request is half through. Returns whether
    /// the session moves.
    pub(super) fn follow_after_loss(&mut self, actions: &mut Actions) -> bool {
        let transaction_in_flight = (self.follow.as_ref())
            .is_some_and(|f| f.multi_at.is_some_and(|at| at >= self.stream.answered));
        let movable = self.follow.is_some()
            && !transaction_in_flight
            && self.outcome.is_none()
            && self.stream.at_boundary()
            && self.session.at_boundary()
            && self.state_cannot_move().is_ok();
        if !movable {
            return false;
        }
        for _ in self.stream.answered..self.stream.sent {
            actions
                .client
                .push(ToClient::Send(Bytes::from_static(LOST)));
        }
        self.stream.answered = self.stream.sent;
        self.forget_answered();
        self.follow.as_mut().expect("following").move_from_here();
        self.awaiting = Some(Awaiting::Primary);
        true
    }

    /// Where the requests to send again start, or why the session cannot move.
    fn cannot_move(&self) -> Result<u64, &'static str> {
        self.state_cannot_move()?;
        let (follow, stream) = (self.follow.as_ref().ok_or("not following")?, &self.stream);
        // Starts of requests answered earlier in this same read are forgotten only after it.
        let oldest = follow
            .starts
            .iter()
            .find(|&&(count, _)| count >= stream.answered);
        match oldest {
            Some(&(count, at)) if count == stream.answered && follow.altered_until <= at => Ok(at),
            _ => Err("requests the proxy answered or changed in flight"),
        }
    }

    /// Why what the session set on its connection cannot be carried to another, if it cannot.
    pub(super) fn state_cannot_move(&self) -> Result<(), &'static str> {
        let (session, stream) = (&self.session, &self.stream);
        if session.in_multi {
            return Err("MULTI");
        }
        if session.watching {
            return Err("WATCH");
        }
        if stream.pubsub_used
            || stream.counting_lost
            || stream.sending != Replies::Counted
            || stream.receiving != Replies::Counted
        {
            return Err("pub/sub, MONITOR or CLIENT REPLY");
        }
        if session.tracking {
            return Err("CLIENT TRACKING");
        }
        if session.other_user {
            return Err("AUTH as another user");
        }
        if self.awaiting.is_some() || !stream.marks.is_empty() {
            return Err(PROXY_EXCHANGE);
        }
        if session.done() {
            return Err("QUIT or a malformed request");
        }
        Ok(())
    }

    /// The result of moving to the new primary. On success the requests from the refused one
    /// on have been sent again there, and counting starts anew; on failure the client gets the
    /// refusal it was kept from, and the connection closes.
    pub fn followed(&mut self, result: Result<(), ConnError>, actions: &mut Actions) {
        assert_eq!(
            self.awaiting,
            Some(Awaiting::Primary),
            "no refusal to follow"
        );
        self.awaiting = None;
        self.forget_answered();
        let follow = self.follow.as_mut().expect("a refusal is followed");
        let refused = follow.refused.take().expect("a refusal is followed");
        match result {
            Ok(()) => {
                let answered = self.stream.answered;
                for start in &mut follow.starts {
                    start.0 -= answered;
                }
                let resent = self.stream.sent - answered;
                follow.resent_until = resent;
                follow.switched = false;
                self.stream = Stream {
                    sent: resent,
                    ..Stream::default()
                };
            }
            Err(error) => {
                if let Some(reply) = refused.reply {
                    actions.client.push(ToClient::Send(reply));
                }
                self.outcome = Some(Err(error));
            }
        }
    }
}
