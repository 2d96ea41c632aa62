//! The module doc's invariants as code, checked after every step the in-memory driver takes.

use super::super::stream::{Act, Claim, MarkKind, Replies};
use super::*;

impl Connection<'_> {
    pub(super) fn check_invariants(&self) {
        let stream = &self.stream;
        let wants = self.wants();
        // The reply frontier catches up with the request frontier through `Act::Mode` marks.
        if stream.sending == Replies::Counted {
            assert_eq!(
                stream.receiving,
                Replies::Counted,
                "counted again on one side"
            );
        } else if stream.receiving != stream.sending {
            let last_mode = stream.marks.iter().rev().find_map(|mark| match mark.kind {
                MarkKind::Between(Act::Mode(replies)) => Some(replies),
                _ => None,
            });
            assert_eq!(
                last_mode,
                Some(stream.sending),
                "no mark switches the replies"
            );
        }
        if stream.receiving == Replies::Counted {
            assert!(stream.answered <= stream.sent, "more answered than sent");
        }
        let ats: Vec<u64> = stream.marks.iter().map(|mark| mark.at).collect();
        assert!(ats.is_sorted(), "marks out of order: {ats:?}");
        assert!(stream.marks.len() <= MAX_MARKS + 4, "marks unbounded");
        // Each wait on a reply has the mark that ends it.
        let claims = |wanted: fn(Claim) -> bool| {
            stream
                .marks
                .iter()
                .any(|mark| matches!(mark.kind, MarkKind::Reply(claim) if wanted(claim)))
        };
        let resetting = claims(|c| matches!(c, Claim::Reset | Claim::Marker { reset: true }));
        assert_eq!(
            self.awaiting == Some(Awaiting::Renewal),
            claims(|c| c == Claim::Renewal),
            "a renewal in flight and its claim"
        );
        assert_eq!(
            self.awaiting == Some(Awaiting::Probe),
            claims(|c| c == Claim::Probe),
            "a probe in flight and its claim"
        );
        if self.awaiting == Some(Awaiting::ResetReply) {
            assert!(resetting, "RESET awaited with no claim on its reply");
        }
        assert_eq!(
            self.awaiting == Some(Awaiting::Primary),
            wants.side_trip == Some(SideTrip::FollowPrimary),
            "a refusal followed and its side trip"
        );
        if let Some(follow) = &self.follow {
            follow.check(stream.answered);
        }
        if self.stream.frame.held.is_some() {
            assert!(
                self.rules.cluster.is_some(),
                "a redirect held outside cluster mode"
            );
        }
        // What the report says follows from the state, never the other way round.
        // A held redirect holds replies only: requests may still be forwarded meanwhile.
        let reauthenticating = wants.side_trip == Some(SideTrip::Reauthenticate);
        if wants.closing || self.session.done() || reauthenticating {
            assert!(!wants.requests, "requests taken while {wants:?}");
        }
        if wants.side_trip.is_some() || wants.closing {
            assert!(!wants.replies, "replies taken while {wants:?}");
        }
        if wants.reuse.is_ok() || wants.renewable {
            assert!(wants.idle_closable, "reusable while owing: {wants:?}");
        }
    }
}
