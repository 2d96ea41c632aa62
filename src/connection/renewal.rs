//! Renewing an IAM connection in band: the server cuts an IAM connection 12 hours after its
//! last AUTH, so the proxy sends its own AUTH again at a quiet moment and keeps the answer
//! from the client, who sees nothing.
//!
//! Quiet means what makes an AUTH safe and invisible: every reply in (a failed AUTH behind
//! pending replies gets no answer on Redis 7.2–8.0), replies counted (not subscribed, not in
//! MONITOR or CLIENT REPLY), not inside MULTI (it would be queued), no CLIENT CACHING flag
//! for the AUTH to consume, and no request half sent.

use super::stream::{Claim, MarkKind};
use super::{Actions, Awaiting, Connection, ToServer};

impl Connection<'_> {
    /// Sends the proxy's AUTH if the connection is quiet; the client's next requests then wait
    /// for its answer. Returns false, doing nothing, when not quiet.
    pub fn renew(&mut self, actions: &mut Actions) -> bool {
        if !self.wants().renewable {
            return false;
        }
        actions.server.push(ToServer::Auth);
        self.stream.place(MarkKind::Reply(Claim::Renewal));
        self.stream.sent += 1;
        self.awaiting = Some(Awaiting::Renewal);
        true
    }

    /// Whether the server accepted the renewal AUTH, once its answer has come; taken once.
    pub fn take_renewal(&mut self) -> Option<bool> {
        self.renewed.take()
    }

    /// The renewal AUTH was answered (and kept from the client): requests go on.
    pub(super) fn renewal_answered(&mut self, accepted: bool) {
        self.stream.marks.pop_front();
        self.awaiting = None;
        self.renewed = Some(accepted);
    }
}
