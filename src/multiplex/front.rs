//! A client on a shared connection: its whole requests go to its lane, its replies come back
//! from it in order with the proxy's own answers in their places, until the client leaves or a
//! request needs a connection of its own (then `Pin`, once every reply owed has been written).
//!
//! The client's requests are read only while fewer than `MAX_IN_FLIGHT` replies are owed, and
//! only once what was read has been handled: a client that pipelines without reading waits, as
//! on a connection of its own.

use super::lane::{Delivery, Lane, Sink, Submission};
use super::ledger::Ledger;
use super::rules::{ClientState, Rules, Verdict, judge};
use super::words::Words;
use crate::error::ConnError;
use crate::metrics::RouteMetrics;
use crate::resp::request::{Command, RequestScanner, Step};
use bytes::{Bytes, BytesMut};
use std::io::IoSlice;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// How much to read from a client per call, at least and at most.
const MIN_READ: usize = 512;
const MAX_READ: usize = 16 * 1024;
/// Replies a client may owe on its lane before its next requests wait.
const MAX_IN_FLIGHT: u64 = 1024;
/// The largest request sent on a shared connection; a larger one pins its client (a shared
/// connection writes each request whole, so one large value would hold up every client).
pub(crate) const MAX_SHARED_REQUEST: usize = 512 * 1024;
/// What each lost reply becomes.
pub(crate) const LOST: &[u8] = b"-ERR redis-auth-proxy: the shared upstream connection was lost before the reply; the command may or may not have run\r\n";

/// How a client's time on a shared connection ended.
pub(crate) enum Left {
    /// The client closed, or was closed.
    Closed,
    /// A request needs a connection of the client's own: `unread` starts with it;
    /// `authenticated`: the client already gave the client password.
    Pin {
        unread: BytesMut,
        reason: &'static str,
        name: Option<Bytes>,
        authenticated: bool,
    },
}

/// A lane, once one is open.
pub(crate) type LaneFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Arc<Lane>, ConnError>> + Send + 'a>>;

/// Where a client gets a lane, now and after its lane is lost or retired: always the same
/// slot's, so that a client's requests never go on two lanes at once.
pub(crate) trait LaneSource: Sync {
    fn lane(&self, slot: usize) -> LaneFuture<'_>;
}

/// One client's side of multiplexing.
pub(crate) struct Front<'a> {
    lanes: &'a dyn LaneSource,
    slot: usize,
    /// `--idle-timeout`: a client owing nothing and sending nothing this long is closed.
    idle_timeout: Option<std::time::Duration>,
    rules: Rules<'a>,
    metrics: &'a RouteMetrics,
    lane: Option<Arc<Lane>>,
    sink: Sink,
    rx: mpsc::UnboundedReceiver<Delivery>,
    ledger: Ledger,
    state: ClientState,
    words: Words,
    from_client: BytesMut,
    /// Bytes of `from_client` scanned into whole requests not yet sent.
    scanned: usize,
    /// Whole requests in `from_client[..scanned]`.
    batch: u64,
    /// Replies and answers due to the client, in order.
    out: Vec<Bytes>,
    /// Bytes of `out` that came from the lane (counted against the output limit).
    out_from_lane: usize,
    ending: Option<Ending>,
    /// How much the next read offers.
    read_size: usize,
}

enum Ending {
    Quit,
    Pin(&'static str),
    Lost,
}

impl<'a> Front<'a> {
    pub(crate) fn new(
        lanes: &'a dyn LaneSource,
        slot: usize,
        rules: Rules<'a>,
        idle_timeout: Option<std::time::Duration>,
        metrics: &'a RouteMetrics,
    ) -> Self {
        let (sink, rx) = Sink::new();
        Front {
            lanes,
            slot,
            idle_timeout,
            state: ClientState::new(&rules),
            rules,
            metrics,
            lane: None,
            sink,
            rx,
            ledger: Ledger::default(),
            words: Words::default(),
            from_client: BytesMut::new(),
            scanned: 0,
            batch: 0,
            out: Vec::new(),
            out_from_lane: 0,
            ending: None,
            read_size: MIN_READ,
        }
    }

    /// Serves the client until it leaves or must be pinned.
    pub(crate) async fn run<R, W>(mut self, mut reader: R, mut writer: W) -> Result<Left, ConnError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut client_eof = false;
        loop {
            self.flush_out(&mut writer).await?;
            if self.ledger.settled() {
                match self.ending.take() {
                    Some(Ending::Quit) | Some(Ending::Lost) => {
                        let _ = writer.shutdown().await;
                        return Ok(Left::Closed);
                    }
                    Some(Ending::Pin(reason)) => {
                        return Ok(Left::Pin {
                            unread: self.from_client,
                            reason,
                            name: self.state.name.take(),
                            authenticated: self.state.authenticated,
                        });
                    }
                    None if client_eof => return Ok(Left::Closed),
                    None => {}
                }
            }
            let reading = self.ending.is_none()
                && !client_eof
                && self.ledger.owed_by_server() < MAX_IN_FLIGHT;
            let spare = self.from_client.capacity() - self.from_client.len();
            if spare < self.read_size / 4 {
                self.from_client.reserve(self.read_size);
            }
            let offered = self.from_client.capacity() - self.from_client.len();
            let idle = self
                .idle_timeout
                .filter(|_| self.ledger.settled() && reading);
            tokio::select! {
                () = tokio::time::sleep(idle.unwrap_or_default()), if idle.is_some() => {
                    return Err(ConnError::IdleTimeout(idle.unwrap_or_default()));
                }
                delivery = self.rx.recv() => {
                    let delivery = delivery.expect("the front holds a sender");
                    self.delivered(delivery).await?;
                }
                read = reader.read_buf(&mut self.from_client), if reading => {
                    let n = read.map_err(ConnError::ClientIo)?;
                    if n == 0 {
                        client_eof = true;
                    } else {
                        // Reads grow while they fill what was offered (a pipelining client)
                        // and stay small otherwise, so an idle client holds little memory.
                        self.read_size = if n == offered {
                            (self.read_size * 2).min(MAX_READ)
                        } else {
                            (self.read_size / 2).max(MIN_READ)
                        };
                        self.requests().await?;
                    }
                }
            }
        }
    }

    /// Writes what is due to the client.
    async fn flush_out<W: AsyncWrite + Unpin>(&mut self, writer: &mut W) -> Result<(), ConnError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let mut chunks: std::collections::VecDeque<Bytes> = self.out.drain(..).collect();
        // A client that does not read would hold this write forever: its cut-off ends it.
        let cut_off = Arc::clone(&self.sink.cut_off);
        tokio::select! {
            written = write_chunks(writer, &mut chunks) => written.map_err(ConnError::ClientIo)?,
            () = cut_off.notified() => return Err(ConnError::OutputLimit),
        }
        let written = std::mem::take(&mut self.out_from_lane);
        self.sink.buffered.fetch_sub(written, Ordering::Relaxed);
        Ok(())
    }

    async fn delivered(&mut self, delivery: Delivery) -> Result<(), ConnError> {
        match delivery {
            Delivery::Replies { bytes, replies } => {
                self.out_from_lane += bytes.len();
                self.out.push(bytes);
                self.ledger.answered(replies, &mut self.out);
            }
            Delivery::Lost { replies, mid_reply } => {
                if mid_reply {
                    // Half a reply was passed on: nothing more can be said in order.
                    return Err(ConnError::SharedConnectionLost);
                }
                for _ in 0..replies {
                    self.out.push(Bytes::from_static(LOST));
                }
                self.ledger.answered(replies, &mut self.out);
                self.ending = Some(Ending::Lost);
            }
            Delivery::Unsent { bytes, requests } => {
                // Never written: sent again on the next lane, unless earlier replies were lost.
                if !matches!(self.ending, Some(Ending::Lost)) {
                    self.lane = None;
                    self.submit(bytes, requests).await?;
                }
            }
            Delivery::Overflow => return Err(ConnError::OutputLimit),
        }
        Ok(())
    }

    /// Takes the whole requests read, judging each: shared ones go to the lane together,
    /// answers take their place, a pin stops reading.
    async fn requests(&mut self) -> Result<(), ConnError> {
        while self.ending.is_none() {
            let start = self.scanned;
            let Some((end, empty)) = self.whole_request(start) else {
                break;
            };
            let request = &self.from_client[start..end];
            let verdict = if empty {
                // `*0`: Redis answers nothing, so the shared connection need not see it.
                Verdict::Answer(Bytes::new())
            } else if end - start > MAX_SHARED_REQUEST {
                Verdict::Pin("large")
            } else if request.first() != Some(&b'*') {
                Verdict::Pin("inline")
            } else if !self.words.read(request) {
                Verdict::Pin("malformed")
            } else {
                let (words, n) = self.words.get(request);
                let verdict = judge(&words[..n], self.words.count, &mut self.state, &self.rules);
                if let Some(event) = self.state.auth_event.take() {
                    self.metrics.client_auth(event);
                }
                verdict
            };
            match verdict {
                Verdict::Share => {
                    self.scanned = end;
                    self.batch += 1;
                }
                Verdict::Answer(answer) => {
                    self.send_batch(start).await?;
                    let _ = self.from_client.split_to(end - start);
                    self.scanned = 0;
                    if !answer.is_empty()
                        && let Some(now) = self.ledger.own(answer)
                    {
                        self.out.push(now);
                    }
                }
                Verdict::Quit => {
                    self.send_batch(start).await?;
                    let _ = self.from_client.split_to(end - start);
                    self.scanned = 0;
                    if let Some(now) = self.ledger.own(Bytes::from_static(b"+OK\r\n")) {
                        self.out.push(now);
                    }
                    self.ending = Some(Ending::Quit);
                }
                Verdict::Pin(reason) => {
                    self.send_batch(start).await?;
                    self.scanned = 0;
                    self.ending = Some(Ending::Pin(reason));
                }
            }
        }
        let scanned = self.scanned;
        self.send_batch(scanned).await
    }

    /// Where the request at `start` ends, if it is whole, and whether it is empty (`*0`);
    /// `None` to wait for more bytes. A request that cannot be read (a protocol error) or is
    /// still coming past the size limit is judged at once: it goes to a connection of the
    /// client's own, where the usual path answers it.
    fn whole_request(&self, start: usize) -> Option<(usize, bool)> {
        let mut scanner = RequestScanner::new();
        // Before the client password, Redis's tighter limits on a request's size.
        scanner.set_unauthenticated(!self.state.authenticated);
        let mut pos = start;
        let mut empty = false;
        loop {
            match scanner.step(&self.from_client[pos..]) {
                Ok(Step::Start { len, command }) => {
                    pos += len;
                    empty = command == Command::Empty;
                }
                Ok(Step::Continue { len }) => pos += len,
                Ok(Step::NeedMore) if self.from_client.len() - start > MAX_SHARED_REQUEST => {
                    return Some((self.from_client.len(), false));
                }
                Ok(Step::NeedMore) => return None,
                Err(_) => return Some((self.from_client.len(), false)),
            }
            if scanner.at_boundary() && pos > start {
                return Some((pos, empty));
            }
        }
    }

    /// Sends `from_client[..end]`, the whole shared requests scanned, to the lane.
    async fn send_batch(&mut self, end: usize) -> Result<(), ConnError> {
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
        self.submit(bytes, requests).await
    }

    /// Hands counted requests to the client's lane: the one it is bound to, or, owing nothing
    /// else, a current one (its lane was lost or retired).
    async fn submit(&mut self, mut bytes: Bytes, requests: u64) -> Result<(), ConnError> {
        loop {
            let owes_before = self.ledger.owed_by_server() > requests;
            let lane = match &self.lane {
                Some(lane) if owes_before || !lane.leaving() => Arc::clone(lane),
                _ => {
                    let lane = self.lanes.lane(self.slot).await?;
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
                Err(_) if owes_before => {
                    // The lane is gone with earlier replies owed: those will be lost, so these
                    // wait behind them as errors, and the client is closed.
                    self.ledger.withdraw(requests, &Bytes::from_static(LOST));
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

/// Writes `chunks` in order with vectored writes (no copy into one buffer), then flushes.
async fn write_chunks<W: AsyncWrite + Unpin>(
    writer: &mut W,
    chunks: &mut std::collections::VecDeque<Bytes>,
) -> std::io::Result<()> {
    while !chunks.is_empty() {
        let slices: Vec<IoSlice<'_>> = chunks.iter().map(|c| IoSlice::new(c)).collect();
        let mut written = writer.write_vectored(&slices).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while written > 0 {
            let front = chunks.front_mut().expect("written bytes came from a chunk");
            if written >= front.len() {
                written -= front.len();
                chunks.pop_front();
            } else {
                let _ = front.split_to(written);
                written = 0;
            }
        }
    }
    writer.flush().await
}
