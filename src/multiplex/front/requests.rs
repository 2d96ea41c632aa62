//! A client's requests on its lane: read whole, judged one by one (`rules.rs`, and
//! `borrow.rs` while a connection is lent), shared ones sent together, the proxy's answers put
//! in their places, and a pin, a loan or a HELLO stopping the reading until nothing is owed.

use super::{Act, Ending, Front};
use crate::error::ConnError;
use crate::multiplex::borrow::Step;
use crate::multiplex::lane::Submission;
use crate::multiplex::rules::{Verdict, judge};
use crate::multiplex::words::{MAX_SHARED_REQUEST, Whole, whole_request};
use bytes::Bytes;
use std::sync::Arc;

impl Front<'_> {
    /// Takes the whole requests read, judging each: shared ones go to the lane together,
    /// answers take their place, a pin or a loan stops reading.
    pub(super) async fn requests(&mut self) -> Result<(), ConnError> {
        while self.ending.is_none() {
            let start = self.scanned;
            let Some(whole) = whole_request(&self.from_client, start, self.state.authenticated)
            else {
                break;
            };
            let end = whole.end;
            match self.act(start, &whole) {
                Act::Share => {
                    self.claim_topology(&whole);
                    self.scanned = end;
                    self.batch += 1;
                }
                act @ (Act::Answer(_) | Act::Quit | Act::Reset) => {
                    self.send_batch(start).await?;
                    let _ = self.from_client.split_to(end - start);
                    self.scanned = 0;
                    let (answer, ending) = match act {
                        Act::Answer(answer) => (answer, None),
                        Act::Quit => (Bytes::from_static(b"+OK\r\n"), Some(Ending::Quit)),
                        _ => (Bytes::from_static(b"+RESET\r\n"), Some(Ending::Return)),
                    };
                    if !answer.is_empty()
                        && let Some(now) = self.ledger.own(answer)
                    {
                        self.out.push(now);
                    }
                    self.ending = ending;
                    if self.ending.is_none() && self.state.protocol != self.protocol {
                        // RESET on RESP3 lanes: back to RESP2 ones before the next request.
                        self.ending = Some(Ending::Return);
                    }
                }
                Act::Hello(protocol) => {
                    self.send_batch(start).await?;
                    self.scanned = 0;
                    let len = end - start;
                    self.ending = Some(Ending::Hello { protocol, len });
                }
                Act::Pin(reason) => {
                    self.send_batch(start).await?;
                    self.scanned = 0;
                    // Held for a transaction or a command only, a connection is lent, not
                    // kept; one lent already is kept for good.
                    let lend = self.loan.is_none() && matches!(reason, "blocking" | "transaction");
                    self.ending = Some(if lend {
                        Ending::Borrow(reason)
                    } else {
                        Ending::Pin(reason)
                    });
                }
            }
        }
        let scanned = self.scanned;
        self.send_batch(scanned).await
    }

    /// Judges the whole request `from_client[start..end]`, as on a lane, then as a lent
    /// connection takes it if the client holds one.
    fn act(&mut self, start: usize, whole: &Whole) -> Act {
        let end = whole.end;
        let request = &self.from_client[start..end];
        if whole.empty {
            // `*0`: Redis answers nothing, so the shared connection need not see it.
            return Act::Answer(Bytes::new());
        }
        let pin = if end - start > MAX_SHARED_REQUEST {
            "large"
        } else if request.first() != Some(&b'*') {
            "inline"
        } else if !self.words.read(request) {
            "malformed"
        } else {
            let (words, n) = self.words.get(request);
            let verdict = judge(&words[..n], self.words.count, &mut self.state, &self.rules);
            if let Some(event) = self.state.auth_event.take() {
                self.metrics.client_auth(event);
            }
            let step = match &mut self.loan {
                Some((_, loan)) => loan.step(&words[..n], &verdict),
                None => Step::AsJudged,
            };
            return match (step, verdict) {
                (Step::Send, _) | (Step::AsJudged, Verdict::Share) => Act::Share,
                (Step::Reset, _) => Act::Reset,
                (Step::Keep(reason), _) | (Step::AsJudged, Verdict::Pin(reason)) => {
                    Act::Pin(reason)
                }
                (Step::AsJudged, Verdict::Answer(answer)) => Act::Answer(answer),
                (Step::AsJudged, Verdict::Quit) => Act::Quit,
                (Step::AsJudged, Verdict::Hello(protocol)) => Act::Hello(protocol),
            };
        };
        Act::Pin(pin)
    }

    /// Sends `from_client[..end]`, the whole shared requests scanned, to the lane.
    pub(super) async fn send_batch(&mut self, end: usize) -> Result<(), ConnError> {
        if self.batch == 0 {
            return Ok(());
        }
        let bytes = self.from_client.split_to(end).freeze();
        self.scanned -= end.min(self.scanned);
        let requests = std::mem::take(&mut self.batch);
        self.send(bytes, requests).await
    }

    /// Sends requests on the client's lane, counting the replies they are owed.
    async fn send(&mut self, bytes: Bytes, requests: u64) -> Result<(), ConnError> {
        self.ledger.shared(requests);
        if let Some(cluster) = &mut self.cluster {
            cluster.split.sent(requests);
        }
        self.submit(bytes, requests).await
    }

    /// Hands counted requests to the client's lane: the one it is bound to, or, owing nothing
    /// else, a current one (its lane was lost or retired).
    pub(super) async fn submit(
        &mut self,
        mut bytes: Bytes,
        requests: u64,
    ) -> Result<(), ConnError> {
        loop {
            let owes_before = self.ledger.owed_by_server() > requests;
            let lane = match &self.lane {
                Some(lane) if owes_before || self.loan.is_some() || !lane.leaving() => {
                    Arc::clone(lane)
                }
                _ => {
                    let lane = self.lanes.lane(self.protocol, self.slot).await?;
                    self.lane = Some(Arc::clone(&lane));
                    lane
                }
            };
            let submission = Submission {
                bytes,
                requests,
                sink: self.sink.clone(),
            };
            match lane.submit(submission) {
                Ok(()) => return Ok(()),
                Err(_) if owes_before || self.loan.is_some() => {
                    // The lane is gone with earlier replies owed (those will be lost), or it was
                    // lent: these are answered as lost in their place, and the client is closed.
                    self.lose(requests);
                    return Ok(());
                }
                Err(back) => {
                    bytes = back.bytes;
                    self.lane = None;
                }
            }
        }
    }
}
