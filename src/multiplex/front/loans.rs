//! A client's loans: a connection of its own lent for a transaction or a blocking command
//! (`borrow.rs` decides what its requests do meanwhile), given back once the loan is over, or
//! kept for good when a request needs it for the rest of the session.

use super::{Ending, Front, LOST, Left};
use crate::error::ConnError;
use bytes::Bytes;
use tracing::debug;

impl Front<'_> {
    /// Borrows a connection for the request waiting at the front of the client's bytes: its
    /// lane is the client's until the loan ends.
    pub(super) async fn borrow(&mut self, reason: &'static str) -> Result<(), ConnError> {
        let borrowed = self.lanes.borrow(reason, self.protocol).await?;
        debug!(reason, "Lent a connection to a client");
        self.lane = Some(std::sync::Arc::clone(&borrowed.lane));
        self.loan = Some((borrowed, super::Loan::default()));
        Ok(())
    }

    /// Gives the lent connection back, if the loan is over: the client's next requests go to
    /// its lane again.
    pub(super) fn end_loan_if_over(&mut self) {
        if self.loan.as_ref().is_some_and(|(_, loan)| loan.over()) {
            self.end_loan();
        }
    }

    /// Gives the lent connection back (nothing is owed on it): reset for another client, or
    /// closed.
    pub(super) fn end_loan(&mut self) {
        if let Some((borrowed, loan)) = self.loan.take() {
            self.lanes.give_back(borrowed, loan.sticky);
            self.lane = None;
        }
    }

    /// The client needs a connection of its own from the request at the front of its bytes:
    /// the one lent to it if its transaction is still open, a new one otherwise.
    pub(super) fn pin(&mut self, reason: &'static str) -> Left {
        self.end_loan_if_over();
        Left::Pin(super::Pinned {
            unread: std::mem::take(&mut self.from_client),
            reason,
            name: self.state.name.take(),
            authenticated: self.state.authenticated,
            kept: self.loan.take(),
            protocol: self.protocol,
        })
    }

    /// The client moves to the lanes of `protocol` (nothing is owed).
    pub(super) fn switch_protocol(&mut self, protocol: u8) {
        if self.protocol != protocol {
            self.protocol = protocol;
            self.lane = None;
        }
    }

    /// HELLO for `protocol`, the `len` bytes at the front of the client's, once nothing is
    /// owed: the client moves to that protocol's lanes and is answered with their HELLO reply.
    /// False if the server has none (the request is left for a connection of the client's own).
    pub(super) async fn hello(&mut self, protocol: u8, len: usize) -> Result<bool, ConnError> {
        let lane = self.lanes.lane(protocol, self.slot).await?;
        let Some(reply) = lane.hello.clone() else {
            return Ok(false);
        };
        let _ = self.from_client.split_to(len);
        self.state.protocol = protocol;
        self.switch_protocol(protocol);
        self.lane = Some(lane);
        self.out.push(reply);
        Ok(true)
    }

    /// The last `requests` sent will never be answered: each is owed the error for a lost
    /// reply instead, in its place, and the client is closed after them.
    pub(super) fn lose(&mut self, requests: u64) {
        self.ledger.withdraw(requests, &Bytes::from_static(LOST));
        self.ledger.answered(0, &mut self.out);
        self.ending = Some(Ending::Lost);
    }
}
