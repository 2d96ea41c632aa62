//! Cluster mode in the reply stream: the reply to a topology request is held whole and
//! rewritten, and an error that is Redis's own redirect to a node the server announced is
//! rewritten, each in its place; every other frame passes untouched (`docs/cluster.md`).

use super::{Actions, Connection, ToClient};
use crate::cluster::rewrite::Redirect;
use crate::cluster::{ClusterError, Topology};
use crate::error::ConnError;
use bytes::Bytes;

impl Connection<'_> {
    /// A whole topology reply: passed on rewritten. A malformed one ends the connection with
    /// an error; a node that could not be given a listener is answered in the reply's place.
    pub(super) fn rewritten(&mut self, kind: Topology, frame: &[u8], actions: &mut Actions) {
        let Some(rewriter) = self.rules.cluster else {
            actions
                .client
                .push(ToClient::Send(Bytes::copy_from_slice(frame)));
            return;
        };
        match rewriter.topology(kind, frame) {
            Ok(bytes) => {
                self.rules.metrics.topology_rewritten();
                actions.client.push(ToClient::Send(Bytes::from(bytes)));
            }
            Err(error) => self.cluster_failed(error, actions),
        }
    }

    /// A whole error frame: a redirect to a node served locally is passed on rewritten; one
    /// to a node no topology reply named is held until the topology is refreshed; anything
    /// else passes as it came.
    pub(super) fn redirect(&mut self, frame: Vec<u8>, actions: &mut Actions) {
        match self.rules.cluster.map(|r| r.redirect(&frame)) {
            Some(Redirect::Unknown(_)) => self.stream.frame.held = Some(frame),
            verdict => self.pass_redirect(frame, verdict, actions),
        }
    }

    /// The topology was read again (or could not be): the held redirect is rewritten if the
    /// server now lists its node, else passed on as the server sent it, never served.
    pub fn topology_refreshed(&mut self, actions: &mut Actions) {
        let Some(frame) = self.stream.frame.held.take() else {
            return;
        };
        let verdict = self.rules.cluster.map(|r| r.redirect(&frame));
        if matches!(verdict, Some(Redirect::Unknown(_))) {
            self.rules.metrics.redirect_unknown();
        }
        self.pass_redirect(frame, verdict, actions);
        self.fire_due_now(actions);
        self.settle_quiet();
    }

    /// Passes the error on: rewritten for a node served locally, else as the server sent it.
    fn pass_redirect(&mut self, frame: Vec<u8>, verdict: Option<Redirect>, actions: &mut Actions) {
        let bytes = match verdict {
            Some(Redirect::Local(rewritten)) => {
                self.rules.metrics.redirect_rewritten();
                rewritten
            }
            _ => frame,
        };
        actions.client.push(ToClient::Send(Bytes::from(bytes)));
    }

    /// Answers the reply's place with the error; a malformed reply also ends the connection.
    pub(super) fn cluster_failed(&mut self, error: ClusterError, actions: &mut Actions) {
        let text = format!("ERR redis-auth-proxy: {error}");
        actions
            .client
            .push(ToClient::Send(Bytes::from(crate::resp::error_reply(&text))));
        if matches!(error, ClusterError::Malformed(_)) {
            self.outcome = Some(Err(ConnError::Cluster(error)));
        }
    }
}
