//! The server-to-client half of the decisions: where each reply goes, and what the marks do
//! between replies.

use super::{Actions, Awaiting, Connection, Mark, Replies, ToClient};
use crate::cluster::{ClusterError, Topology};
use crate::error::ConnError;
use crate::resp::reply::{FrameKind, Scan};
use bytes::Bytes;

/// How a RESP3 tracking invalidation push begins.
const INVALIDATION: &[u8] = b">2\r\n$10\r\ninvalidate\r\n";

/// The most of a reply held back to see whether it is the marker or a redirect; longer
/// replies are not.
const MAX_INSPECT: usize = 512;
/// The largest topology reply rewritten (CLUSTER NODES of a 1,000-node cluster is ~200 KB).
const MAX_TOPOLOGY: usize = 16 << 20;

/// What happens to the reply frame in progress.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Passed on.
    #[default]
    Pass,
    /// Passed on; it answers RESET, which took effect if it is `+RESET`.
    ResetReply,
    /// Held back until it ends: it may be the error naming the marker command after RESET.
    MaybeMarker,
    /// Kept from the client: it answers the proxy's AUTH renewing the connection.
    Renewal,
    /// Held whole and rewritten: it answers a cluster topology request.
    Rewrite(Topology),
    /// Held back until it ends (cluster mode): an error that may be a redirect to rewrite.
    MaybeRedirect,
    /// Held back until it ends: it may answer the proxy's `PING <marker>`.
    MaybeProbe,
}

/// The reply frame in progress: its fate, and what is kept of it to settle that.
#[derive(Debug, Default)]
pub(super) struct Frame {
    fate: Fate,
    head: Vec<u8>,
    /// A whole redirect to a node no topology reply named, held with every reply after it
    /// until the topology has been read again.
    pub(super) held: Option<Vec<u8>>,
}

impl Connection<'_> {
    /// Takes the server's bytes; returns how many were consumed (all, unless the connection
    /// must authenticate again first: the rest then waits for `reauthenticated`).
    pub fn on_replies(&mut self, input: &[u8], actions: &mut Actions) -> usize {
        let mut pos = 0;
        let mut pass_from = 0;
        loop {
            if self.between_frames() && self.fire_due(actions, &mut pass_from, pos, &input[pos..]) {
                return input.len();
            }
            if pos == input.len()
                || self.needs_reauthentication()
                || self.needs_topology()
                || self.outcome.is_some()
            {
                break;
            }
            if self.reply_mode == Replies::Raw {
                pos = input.len();
                break;
            }
            if self.replies.at_boundary() {
                self.begin_frame(input[pos]);
                if self.frame.fate != Fate::Pass && self.frame.fate != Fate::ResetReply {
                    actions.pass_to_client(pass_from..pos);
                }
            }
            let (end, ended) = match self.replies.scan(&input[pos..]) {
                Ok(Scan::Partial) => (input.len(), None),
                Ok(Scan::End { len, kind }) => (pos + len, Some(kind)),
                Err(error) => {
                    actions.pass_to_client(pass_from..pos);
                    self.outcome = Some(Err(ConnError::UpstreamProtocol(error)));
                    return input.len();
                }
            };
            self.keep(&input[pos..end], actions, &mut pass_from, end);
            pos = end;
            if let Some(kind) = ended {
                self.end_frame(kind, actions);
            }
        }
        actions.pass_to_client(pass_from..pos);
        self.settle_quiet();
        pos
    }

    /// Ends the wait for quiet once nothing is owed; true if it ended.
    pub(super) fn settle_quiet(&mut self) -> bool {
        let ended = self.awaiting == Some(Awaiting::Quiet) && !self.owes_replies();
        if ended {
            self.awaiting = None;
        }
        ended
    }

    /// Runs the marks due when no reply is in progress (the client's AUTH answered at once).
    pub(super) fn fire_due_now(&mut self, actions: &mut Actions) {
        if self.between_frames() {
            self.fire_due(actions, &mut 0, 0, &[]);
        }
    }

    /// Between two replies, where the proxy's own bytes may go: not inside a frame, and not
    /// between an attribute and the reply it annotates.
    fn between_frames(&self) -> bool {
        self.replies.at_boundary()
            && !self.after_attribute
            && self.outcome.is_none()
            && self.frame.held.is_none()
    }

    /// Carries out the marks due at this point of the reply stream, before `next` (what has
    /// arrived after it, perhaps nothing). Returns true once the connection is to close.
    ///
    /// An answer of the proxy's own waits behind a tracking invalidation that follows the reply
    /// before it: the server sends that (for the key the command just wrote) before it runs
    /// the next command, which on a direct connection would be the AUTH answered here. Other
    /// pushes (pub/sub messages, which come when they come, and RESP3 subscribe confirmations,
    /// which answer later commands) do not hold it.
    fn fire_due(
        &mut self,
        actions: &mut Actions,
        pass_from: &mut usize,
        pos: usize,
        next: &[u8],
    ) -> bool {
        while let Some(mark) = self.marks.front() {
            let counted = self.reply_mode == Replies::Counted;
            let due = match mark {
                Mark::Answer { at, .. } => {
                    counted && *at == self.answered && !next.starts_with(INVALIDATION)
                }
                Mark::Mode { at, .. }
                | Mark::Fail {
                    at,
                    after_marker: false,
                    ..
                } => !counted || *at == self.answered,
                // Settled by the marker's error, in `end_frame`.
                Mark::Fail { .. } => false,
                // Settled by its reply, in `end_frame`.
                Mark::Reset { .. } | Mark::Renewal { .. } | Mark::Rewrite { .. } | Mark::Probe => {
                    false
                }
            };
            if !due {
                return false;
            }
            actions.pass_to_client(*pass_from..pos);
            *pass_from = pos;
            match self.marks.pop_front() {
                Some(Mark::Answer { reply, .. }) => actions.client.push(ToClient::Send(reply)),
                Some(Mark::Mode { replies, .. }) => self.reply_mode = replies,
                Some(Mark::Fail { reply, error, .. }) => {
                    actions.client.push(ToClient::Send(reply));
                    self.outcome = Some(Err(error));
                    return true;
                }
                Some(
                    Mark::Reset { .. } | Mark::Renewal { .. } | Mark::Rewrite { .. } | Mark::Probe,
                )
                | None => return false,
            }
        }
        false
    }

    /// Decides the fate of the frame starting with `first`.
    fn begin_frame(&mut self, first: u8) {
        self.frame.head.clear();
        self.frame.fate = Fate::Pass;
        if matches!(first, b'>' | b'|') {
            return;
        }
        // Where a marker command was sent: not counting, or after pub/sub (messages first).
        let maybe_marker =
            first == b'-' && (self.reply_mode == Replies::Uncounted || self.pubsub_used);
        self.frame.fate = match self.marks.front() {
            Some(Mark::Reset { at, marker: false })
                if self.reply_mode == Replies::Counted && *at == self.answered =>
            {
                Fate::ResetReply
            }
            Some(Mark::Renewal { at })
                if self.reply_mode == Replies::Counted && *at == self.answered =>
            {
                Fate::Renewal
            }
            Some(Mark::Rewrite { at, kind })
                if self.reply_mode == Replies::Counted && *at == self.answered =>
            {
                Fate::Rewrite(*kind)
            }
            Some(Mark::Reset { marker: true, .. })
            | Some(Mark::Fail {
                after_marker: true, ..
            }) if maybe_marker => Fate::MaybeMarker,
            Some(Mark::Probe) if matches!(first, b'$' | b'*') => Fate::MaybeProbe,
            _ if first == b'-' && self.rules.cluster.is_some() => Fate::MaybeRedirect,
            _ => Fate::Pass,
        };
    }

    /// Keeps what settling the frame needs; a frame that may be the marker is held back.
    fn keep(&mut self, bytes: &[u8], actions: &mut Actions, pass_from: &mut usize, end: usize) {
        match self.frame.fate {
            Fate::Pass => {}
            Fate::ResetReply => {
                let room = b"+RESET\r\n".len().saturating_sub(self.frame.head.len());
                self.frame
                    .head
                    .extend_from_slice(&bytes[..bytes.len().min(room)]);
            }
            Fate::Renewal => {
                let room = b"+OK\r\n".len().saturating_sub(self.frame.head.len());
                self.frame
                    .head
                    .extend_from_slice(&bytes[..bytes.len().min(room)]);
                *pass_from = end;
            }
            Fate::Rewrite(_) => {
                self.frame.head.extend_from_slice(bytes);
                *pass_from = end;
                if self.frame.head.len() > MAX_TOPOLOGY {
                    let error = ClusterError::Malformed(format!("over {MAX_TOPOLOGY} bytes"));
                    self.cluster_failed(error, actions);
                }
            }
            Fate::MaybeMarker | Fate::MaybeRedirect | Fate::MaybeProbe => {
                self.frame.head.extend_from_slice(bytes);
                *pass_from = end;
                if self.frame.head.len() > MAX_INSPECT {
                    let held = std::mem::take(&mut self.frame.head);
                    actions.client.push(ToClient::Send(Bytes::from(held)));
                    self.frame.fate = Fate::Pass;
                }
            }
        }
    }

    /// Settles a frame that just ended.
    fn end_frame(&mut self, kind: FrameKind, actions: &mut Actions) {
        match kind {
            FrameKind::Attribute => {
                self.after_attribute = true;
                return;
            }
            FrameKind::Push => return,
            FrameKind::Reply => self.after_attribute = false,
        }
        let head = std::mem::take(&mut self.frame.head);
        match std::mem::take(&mut self.frame.fate) {
            Fate::Pass => {}
            Fate::ResetReply => {
                self.marks.pop_front();
                if head == b"+RESET\r\n" {
                    return self.reset_done();
                }
                // Refused (an ACL, say): nothing was reset.
                self.awaiting = None;
            }
            Fate::MaybeMarker if self.is_marker_reply(&head) => {
                match self.marks.pop_front() {
                    Some(Mark::Fail { reply, error, .. }) => {
                        actions.client.push(ToClient::Send(reply));
                        self.outcome = Some(Err(error));
                    }
                    _ => self.reset_done(),
                }
                return;
            }
            Fate::MaybeMarker => actions.client.push(ToClient::Send(Bytes::from(head))),
            Fate::Renewal => self.renewal_answered(head == b"+OK\r\n"),
            Fate::Rewrite(kind) => {
                self.marks.pop_front();
                self.rewritten(kind, &head, actions);
            }
            Fate::MaybeRedirect => self.redirect(head, actions),
            Fate::MaybeProbe => match self.probe_reply(&head) {
                Some(counted) => return self.probe_answered(counted),
                None => actions.client.push(ToClient::Send(Bytes::from(head))),
            },
        }
        if self.reply_mode == Replies::Counted {
            self.answered += 1;
        }
    }

    /// The reply to `PING <marker>`: `Some(true)` for the bulk string (replies answer requests
    /// one to one), `Some(false)` for RESP2's subscribed `*2 pong <marker>`.
    fn probe_reply(&self, frame: &[u8]) -> Option<bool> {
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

    /// The probe's reply came: every earlier request is answered and later ones were held, so
    /// counting starts again from here, or the connection stays subscribed.
    fn probe_answered(&mut self, counted: bool) {
        self.marks.pop_front();
        self.awaiting = None;
        if counted {
            self.request_mode = Replies::Counted;
            self.reply_mode = Replies::Counted;
            self.answered = self.sent;
        }
    }

    /// The marker is sent as a command name no server knows; the error naming it comes
    /// whether or not RESET left the connection authenticated.
    fn is_marker_reply(&self, frame: &[u8]) -> bool {
        let Some(marker) = &self.marker else {
            return false;
        };
        frame
            .windows(marker.len() + 2)
            .any(|w| w[0] == b'\'' && w.ends_with(b"'") && w[1..=marker.len()] == marker[..])
    }
}
