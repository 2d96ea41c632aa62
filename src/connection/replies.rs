//! The server-to-client half of the decisions: where each reply goes, and what the marks do
//! between replies.

use super::stream::{Act, Claim, Fate, Mark, MarkKind, Replies};
use super::{Actions, Awaiting, Connection, ToClient};
use crate::cluster::ClusterError;
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
            if pos == input.len() || self.side_trip().is_some() || self.outcome.is_some() {
                break;
            }
            if self.stream.receiving == Replies::Raw {
                pos = input.len();
                break;
            }
            if self.stream.at_boundary() {
                self.begin_frame(input[pos]);
                if self.holds_frame() {
                    actions.pass_to_client(pass_from..pos);
                }
            }
            let (end, ended) = match self.stream.replies.scan(&input[pos..]) {
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
        self.forget_answered();
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
        self.stream.at_boundary()
            && !self.stream.after_attribute
            && self.outcome.is_none()
            && self.stream.frame.held.is_none()
    }

    /// Carries out the marks due at this point of the reply stream, before `next` (what has
    /// arrived after it, perhaps nothing; `Mark::due` says why that matters). Returns true
    /// once the connection is to close.
    fn fire_due(
        &mut self,
        actions: &mut Actions,
        pass_from: &mut usize,
        pos: usize,
        next: &[u8],
    ) -> bool {
        loop {
            let (counted, answered) = (
                self.stream.receiving == Replies::Counted,
                self.stream.answered,
            );
            let Some(mark) = (self.stream.marks)
                .pop_front_if(|mark| mark.due(counted, answered, next.starts_with(INVALIDATION)))
            else {
                return false;
            };
            actions.pass_to_client(*pass_from..pos);
            *pass_from = pos;
            let MarkKind::Between(act) = mark.kind else {
                unreachable!("a claim is never due between replies")
            };
            if self.act(act, actions) {
                return true;
            }
        }
    }

    /// Carries out what a mark does between replies; true once the connection is to close.
    fn act(&mut self, act: Act, actions: &mut Actions) -> bool {
        match act {
            Act::Answer(reply) => actions.client.push(ToClient::Send(reply)),
            Act::Mode(replies) => self.stream.receiving = replies,
            Act::Fail { reply, error } => {
                actions.client.push(ToClient::Send(reply));
                self.outcome = Some(Err(error));
                return true;
            }
        }
        false
    }

    /// Decides the fate of the frame starting with `first`.
    fn begin_frame(&mut self, first: u8) {
        let refusal_possible = self.may_be_refusal(first);
        let stream = &mut self.stream;
        stream.frame.head.clear();
        stream.frame.fate = Fate::Pass;
        if matches!(first, b'>' | b'|') {
            return;
        }
        let counted = stream.receiving == Replies::Counted;
        // Where a marker command was sent: not counting, or after pub/sub (messages first).
        let marker_possible =
            first == b'-' && (stream.receiving == Replies::Uncounted || stream.pubsub_used);
        stream.frame.fate = match stream.marks.front() {
            Some(Mark {
                at,
                kind: MarkKind::Reply(claim),
            }) if claim.may_be(first, counted && *at == stream.answered, marker_possible) => {
                Fate::Claimed(*claim)
            }
            _ if first == b'-' && self.rules.cluster.is_some() => Fate::MaybeRedirect,
            _ if refusal_possible => Fate::MaybeRefused,
            _ => Fate::Pass,
        };
    }

    /// Whether the frame in progress is kept back (whole or in part) rather than passed on.
    fn holds_frame(&self) -> bool {
        !matches!(
            self.stream.frame.fate,
            Fate::Pass | Fate::Claimed(Claim::Reset)
        )
    }

    /// Keeps what settling the frame needs; a frame that may be the marker is held back.
    fn keep(&mut self, bytes: &[u8], actions: &mut Actions, pass_from: &mut usize, end: usize) {
        let frame = &mut self.stream.frame;
        let keep_head = |head: &mut Vec<u8>, expected: &[u8]| {
            let room = expected.len().saturating_sub(head.len());
            head.extend_from_slice(&bytes[..bytes.len().min(room)]);
        };
        match frame.fate {
            Fate::Pass => {}
            Fate::Claimed(Claim::Reset) => keep_head(&mut frame.head, b"+RESET\r\n"),
            Fate::Claimed(Claim::Renewal) => {
                keep_head(&mut frame.head, b"+OK\r\n");
                *pass_from = end;
            }
            Fate::Claimed(Claim::Rewrite(_)) => {
                frame.head.extend_from_slice(bytes);
                *pass_from = end;
                if frame.head.len() > MAX_TOPOLOGY {
                    let error = ClusterError::Malformed(format!("over {MAX_TOPOLOGY} bytes"));
                    self.cluster_failed(error, actions);
                }
            }
            Fate::Claimed(Claim::Marker { .. } | Claim::Probe)
            | Fate::MaybeRedirect
            | Fate::MaybeRefused => {
                frame.head.extend_from_slice(bytes);
                *pass_from = end;
                if frame.head.len() > MAX_INSPECT {
                    let held = std::mem::take(&mut frame.head);
                    actions.client.push(ToClient::Send(Bytes::from(held)));
                    frame.fate = Fate::Pass;
                }
            }
        }
    }

    /// Settles a frame that just ended.
    fn end_frame(&mut self, kind: FrameKind, actions: &mut Actions) {
        match kind {
            FrameKind::Attribute => {
                self.stream.after_attribute = true;
                return;
            }
            FrameKind::Push => return,
            FrameKind::Reply => self.stream.after_attribute = false,
        }
        let head = std::mem::take(&mut self.stream.frame.head);
        let counts = match std::mem::take(&mut self.stream.frame.fate) {
            Fate::Pass => true,
            Fate::MaybeRedirect => {
                self.redirect(head, actions);
                true
            }
            Fate::MaybeRefused => self.refusal(head, actions),
            Fate::Claimed(claim) => self.settle(claim, head, actions),
        };
        if counts && self.stream.receiving == Replies::Counted {
            self.stream.answered += 1;
        }
    }

    /// Settles a claimed reply that just ended (or one that may have been it); false where
    /// the count starts again from here.
    fn settle(&mut self, claim: Claim, head: Vec<u8>, actions: &mut Actions) -> bool {
        match claim {
            Claim::Reset => {
                self.stream.marks.pop_front();
                if head == b"+RESET\r\n" {
                    self.reset_done();
                    return false;
                }
                // Refused (an ACL, say): nothing was reset.
                self.awaiting = None;
            }
            Claim::Marker { reset } if self.stream.is_marker_reply(&head) => {
                self.stream.marks.pop_front();
                if reset {
                    self.reset_done();
                } else {
                    self.fail_now(actions);
                }
                return false;
            }
            Claim::Renewal => self.renewal_answered(head == b"+OK\r\n"),
            Claim::Rewrite(kind) => {
                self.stream.marks.pop_front();
                self.rewritten(kind, &head, actions);
            }
            Claim::Probe => match self.stream.probe_reply(&head) {
                Some(counted) => {
                    self.probe_answered(counted);
                    return false;
                }
                None => actions.client.push(ToClient::Send(Bytes::from(head))),
            },
            Claim::Marker { .. } => actions.client.push(ToClient::Send(Bytes::from(head))),
        }
        true
    }

    /// The marker's error came after the valid requests before a malformed one: every reply
    /// they were owed has passed, so the failure queued behind it goes now.
    fn fail_now(&mut self, actions: &mut Actions) {
        if let Some(Mark {
            kind: MarkKind::Between(act @ Act::Fail { .. }),
            ..
        }) = self.stream.marks.pop_front()
        {
            self.act(act, actions);
        }
    }

    /// The probe's reply came: every earlier request is answered and later ones were held, so
    /// counting starts again from here, or the connection stays subscribed.
    fn probe_answered(&mut self, counted: bool) {
        self.stream.marks.pop_front();
        self.awaiting = None;
        if counted {
            self.stream.count_again();
        }
    }
}
