//! Cluster mode in the reply stream: the reply to a topology request is held whole and
//! rewritten, and an error that is a redirect is rewritten, each in its place; every other
//! frame passes untouched (`docs/cluster.md`).

use super::{Actions, Connection, ToClient};
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
                crate::metrics::cluster::topology_rewritten(self.rules.metrics.route());
                actions.client.push(ToClient::Send(Bytes::from(bytes)));
            }
            Err(error) => self.cluster_failed(error, actions),
        }
    }

    /// A whole error frame: a redirect is passed on rewritten, anything else as it came.
    pub(super) fn redirect(&mut self, frame: Vec<u8>, actions: &mut Actions) {
        let rewritten = self.rules.cluster.and_then(|r| r.redirect(&frame));
        match rewritten {
            None => actions.client.push(ToClient::Send(Bytes::from(frame))),
            Some(Ok(bytes)) => {
                crate::metrics::cluster::redirect_rewritten(self.rules.metrics.route());
                actions.client.push(ToClient::Send(Bytes::from(bytes)));
            }
            Some(Err(error)) => self.cluster_failed(error, actions),
        }
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
