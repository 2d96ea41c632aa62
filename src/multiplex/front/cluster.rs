//! Cluster mode on shared connections (`--cluster` with `--multiplex`): the replies that name
//! nodes are rewritten in their place, as on a connection of the client's own
//! (`connection/cluster.rs`). The reply to a topology request and every error reply are held
//! whole, then rewritten or passed on; a redirect to a node no topology reply named waits
//! while the topology is read again. Every other reply passes as the slices it came in.

use super::{Ending, Front};
use crate::cluster::rewrite::{Redirect, Rewriter};
use crate::cluster::{ClusterError, ClusterLink, Topology};
use crate::error::ConnError;
use crate::resp::reply::{FrameKind, MalformedReply, ReplyScanner, Scan};
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;

/// A client's replies on a cluster route's shared connection, split where they must be
/// rewritten.
pub(crate) struct ClusterReplies<'a> {
    link: &'a ClusterLink,
    pub(super) split: Split,
}

/// Where a client's replies are split. Pure.
#[derive(Default)]
pub(crate) struct Split {
    scanner: ReplyScanner,
    /// Requests sent and replies passed: a reply's number is its request's.
    sent: u64,
    answered: u64,
    /// The numbers of the topology requests sent, with their kind.
    claims: VecDeque<(u64, Topology)>,
    /// The reply being held until it is whole.
    held: Option<BytesMut>,
}

/// A stretch of reply bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Passed on as it is.
    Pass(Bytes),
    /// A whole reply to a topology request.
    Topology(Topology, BytesMut),
    /// A whole error reply: perhaps a redirect.
    Error(BytesMut),
}

impl<'a> ClusterReplies<'a> {
    pub(crate) fn new(link: &'a ClusterLink) -> Self {
        ClusterReplies {
            link,
            split: Split::default(),
        }
    }

    fn rewriter(&self) -> Rewriter<'a> {
        Rewriter {
            nodes: &*self.link.table,
            this_node: &self.link.this_node,
        }
    }
}

impl Split {
    /// The request that will be the `nth` (from 0) of those sent next is a topology request.
    pub(crate) fn claim(&mut self, nth: u64, kind: Topology) {
        self.claims.push_back((self.sent + nth, kind));
    }

    /// `n` requests were sent.
    pub(crate) fn sent(&mut self, n: u64) {
        self.sent += n;
    }

    /// Splits reply bytes into what passes and the whole replies to rewrite.
    pub(crate) fn split(&mut self, bytes: Bytes) -> Result<Vec<Piece>, MalformedReply> {
        let mut pieces = Vec::new();
        let (mut pos, mut pass_from) = (0, 0);
        while pos < bytes.len() {
            if self.held.is_none() && self.scanner.at_boundary() {
                let claimed = self.claims.front().is_some_and(|c| c.0 == self.answered);
                if claimed || bytes[pos] == b'-' {
                    if pos > pass_from {
                        pieces.push(Piece::Pass(bytes.slice(pass_from..pos)));
                    }
                    self.held = Some(BytesMut::new());
                }
            }
            let (len, ended) = match self.scanner.scan(&bytes[pos..])? {
                Scan::End { len, kind } => (len, kind == FrameKind::Reply),
                Scan::Partial => (bytes.len() - pos, false),
            };
            if let Some(held) = &mut self.held {
                held.extend_from_slice(&bytes[pos..pos + len]);
            }
            pos += len;
            if ended {
                if let Some(whole) = self.held.take() {
                    pieces.push(self.whole(whole));
                    pass_from = pos;
                }
                self.answered += 1;
            }
        }
        if self.held.is_none() && pos > pass_from {
            pieces.push(Piece::Pass(bytes.slice(pass_from..pos)));
        }
        Ok(pieces)
    }

    fn whole(&mut self, whole: BytesMut) -> Piece {
        match self.claims.front() {
            Some(&(n, kind)) if n == self.answered => {
                self.claims.pop_front();
                Piece::Topology(kind, whole)
            }
            _ => Piece::Error(whole),
        }
    }
}

impl<'a> Front<'a> {
    /// With `--cluster`: the replies on `link`'s node that name nodes are rewritten.
    pub(crate) fn with_cluster(mut self, link: Option<&'a ClusterLink>) -> Self {
        self.cluster = link.map(ClusterReplies::new);
        self
    }

    /// A topology request about to be sent (not queued inside MULTI): its reply is rewritten.
    pub(super) fn claim_topology(&mut self, whole: &super::Whole) {
        let in_multi = self.loan.as_ref().is_some_and(|(_, loan)| loan.in_multi);
        if let (Some(cluster), Some(kind)) = (&mut self.cluster, whole.topology)
            && !in_multi
        {
            cluster.split.claim(self.batch, kind);
        }
    }

    /// Passes reply bytes from a cluster route's lane on, rewriting what names nodes.
    pub(super) async fn cluster_replies(&mut self, bytes: Bytes) -> Result<(), ConnError> {
        let Some(cluster) = &mut self.cluster else {
            self.out.push(bytes);
            return Ok(());
        };
        let pieces = cluster.split.split(bytes)?;
        for piece in pieces {
            let rewriter = cluster.rewriter();
            let bytes = match piece {
                Piece::Pass(bytes) => bytes,
                Piece::Topology(kind, whole) => match rewriter.topology(kind, &whole) {
                    Ok(rewritten) => {
                        self.metrics.topology_rewritten();
                        Bytes::from(rewritten)
                    }
                    Err(error) => {
                        if matches!(error, ClusterError::Malformed(_)) {
                            self.ending = Some(Ending::Lost);
                        }
                        let text = format!("ERR redis-auth-proxy: {error}");
                        Bytes::from(crate::resp::error_reply(&text))
                    }
                },
                Piece::Error(whole) => {
                    let mut verdict = rewriter.redirect(&whole);
                    if matches!(verdict, Redirect::Unknown(_)) {
                        // Not believed until a fresh topology from the endpoint names it.
                        cluster.link.table.refresh().await;
                        verdict = cluster.rewriter().redirect(&whole);
                    }
                    match verdict {
                        Redirect::Local(rewritten) => {
                            self.metrics.redirect_rewritten();
                            Bytes::from(rewritten)
                        }
                        Redirect::Unknown(_) => {
                            self.metrics.redirect_unknown();
                            whole.freeze()
                        }
                        Redirect::NotRedirect => whole.freeze(),
                    }
                }
            };
            self.out.push(bytes);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(text: &'static str) -> Piece {
        Piece::Pass(Bytes::from_static(text.as_bytes()))
    }

    fn held(text: &str) -> BytesMut {
        BytesMut::from(text.as_bytes())
    }

    #[test]
    fn errors_and_claimed_topology_replies_are_held_whole_and_the_rest_passes_as_it_came() {
        let mut split = Split::default();
        split.claim(2, Topology::Slots);
        split.sent(4);
        let replies = "+OK\r\n-MOVED 1 h:1\r\n*1\r\n$1\r\nx\r\n:1\r\n";
        // Every cut of the replies into two reads gives the same pieces, joined.
        for cut in 0..=replies.len() {
            let mut s = Split::default();
            s.claim(2, Topology::Slots);
            s.sent(4);
            let mut pieces = s
                .split(Bytes::copy_from_slice(&replies.as_bytes()[..cut]))
                .unwrap();
            pieces.extend(
                s.split(Bytes::copy_from_slice(&replies.as_bytes()[cut..]))
                    .unwrap(),
            );
            let mut passed = String::new();
            let mut whole = Vec::new();
            for piece in pieces {
                match piece {
                    Piece::Pass(b) => passed.push_str(std::str::from_utf8(&b).unwrap()),
                    other => whole.push(other),
                }
            }
            assert_eq!(passed, "+OK\r\n:1\r\n", "cut at {cut}");
            let expected = [
                Piece::Error(held("-MOVED 1 h:1\r\n")),
                Piece::Topology(Topology::Slots, held("*1\r\n$1\r\nx\r\n")),
            ];
            assert_eq!(whole, expected, "cut at {cut}");
        }
        let pieces = split.split(Bytes::from_static(replies.as_bytes())).unwrap();
        assert_eq!(pieces[0], pass("+OK\r\n"));
        assert_eq!(pieces[3], pass(":1\r\n"));
    }
}
