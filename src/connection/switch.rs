//! A switch the route's Sentinels announced (`+switch-master`, `crate::sentinel`). A Sentinel
//! demotes the old primary seconds after it names the new one, and what the old one accepts
//! meanwhile is lost when it resyncs as a replica: so a session moves on the announcement, not
//! on a refusal. It moves at its next quiet moment (every reply owed in, no request half read),
//! and its new requests wait meanwhile so that such a moment comes; nothing is sent again, as
//! nothing was refused. A transaction (MULTI, WATCH) ends first. A session whose state cannot
//! move (pub/sub, MONITOR, CLIENT REPLY, tracking, AUTH as another user) is closed between
//! replies, as the old primary itself closes it when demoted, but sooner, so that the client's
//! next connection reaches the new primary.

use super::follow::PROXY_EXCHANGE;
use super::stream::Replies;
use super::{Awaiting, Connection};
use crate::error::ConnError;

impl Connection<'_> {
    /// The route's Sentinels announced a new primary; `move_if_switched` acts on it.
    pub fn primary_switched(&mut self) {
        if let Some(follow) = &mut self.follow {
            follow.switched = true;
        }
    }

    /// Whether the client's next requests wait for the session to move: a switch is
    /// announced, no request is half read, and no transaction has to end first.
    pub(super) fn holds_for_switch(&self) -> bool {
        self.follow.as_ref().is_some_and(|f| f.switched)
            && self.session.at_boundary()
            && !self.session.in_multi
            && !self.session.watching
    }

    /// Acts on an announced switch if the session is quiet: one that can move starts to
    /// (`SideTrip::FollowPrimary`, nothing to send again), one that cannot closes. Returns
    /// whether either happened; cheap when no switch is announced.
    pub fn move_if_switched(&mut self) -> bool {
        if !self.follow.as_ref().is_some_and(|f| f.switched)
            || !self.holds_for_switch()
            || self.outcome.is_some()
            || self.awaiting.is_some()
            || !self.stream.at_boundary()
        {
            return false;
        }
        let counted = self.stream.sending == Replies::Counted
            && self.stream.receiving == Replies::Counted
            && !self.stream.pubsub_used;
        match self.state_cannot_move() {
            Ok(()) if self.stream.caught_up() => {
                self.follow.as_mut().expect("following").move_from_here();
                self.awaiting = Some(Awaiting::Primary);
                true
            }
            Err(reason) if reason != PROXY_EXCHANGE && (!counted || self.stream.caught_up()) => {
                self.outcome = Some(Err(ConnError::PrimarySwitched { reason }));
                true
            }
            _ => false,
        }
    }
}
