//! A client on a shared connection: its whole requests go to its lane, its replies come back
//! from it in order with the proxy's own answers in their places, until the client leaves or a
//! request needs a connection of its own (then `Pin`, once every reply owed has been written).
//! A transaction or a blocking command borrows a connection instead, run as a lane of the
//! client's own, and gives it back once over (`front/loans.rs`).
//!
//! The client's requests are read only while fewer than `MAX_IN_FLIGHT` replies are owed, and
//! only once what was read has been handled: a client that pipelines without reading waits, as
//! on a connection of its own.

mod cluster;
mod loans;
mod requests;

use super::borrow::Loan;
use super::lane::{Delivery, Handback, Lane, Sink};
use super::ledger::Ledger;
use super::rules::{ClientState, Rules};
use super::words::{Whole, Words};
use crate::error::ConnError;
use crate::metrics::RouteMetrics;
use crate::upstream::UpstreamStream;
use bytes::{Bytes, BytesMut};
pub(crate) use cluster::ClusterReplies;
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
/// What each lost reply becomes.
pub(crate) const LOST: &[u8] = b"-ERR redis-auth-proxy: the shared upstream connection was lost before the reply; the command may or may not have run\r\n";

/// How a client's time on a shared connection ended.
pub(crate) enum Left {
    /// The client closed, or was closed.
    Closed,
    /// A request needs a connection of the client's own.
    Pin(Pinned),
}

/// What a client takes to a connection of its own.
pub(crate) struct Pinned {
    /// The client's bytes not yet sent: they start with the request that pinned it.
    pub unread: BytesMut,
    /// The metric label.
    pub reason: &'static str,
    pub name: Option<Bytes>,
    /// The client already gave the client password.
    pub authenticated: bool,
    /// The connection lent to it, in the middle of a transaction, which it keeps.
    pub kept: Option<(Borrowed, Loan)>,
    /// The protocol the client speaks (HELLO 3 answered on a lane).
    pub protocol: u8,
}

/// A connection of a client's own, lent for a transaction or a blocking command and run as a
/// lane of its own: back from `handback` once `Lane::give_back` stops it.
pub(crate) struct Borrowed {
    pub lane: Arc<Lane>,
    pub handback: Handback<UpstreamStream>,
    /// When it was opened (a pooled connection's age counts).
    pub born: std::time::Instant,
    /// Whatever the supplier holds for as long as the loan lasts (the pool's lease).
    pub lease: Option<Box<dyn Send + Sync>>,
}

type Boxed<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
/// A lane, once one is open.
pub(crate) type LaneFuture<'a> = Boxed<'a, Result<Arc<Lane>, ConnError>>;
/// A lent connection, once one is open and authenticated.
pub(crate) type BorrowFuture<'a> = Boxed<'a, Result<Borrowed, ConnError>>;

/// Where a client gets its connections.
pub(crate) trait Connections: Sync {
    /// Its lane, now and after its lane is lost or retired: always the same slot's, so that a
    /// client's requests never go on two lanes at once.
    fn lane(&self, protocol: u8, slot: usize) -> LaneFuture<'_>;
    /// A connection of its own speaking `protocol`, lent for a transaction or a blocking
    /// command (`reason`).
    fn borrow(&self, reason: &'static str, protocol: u8) -> BorrowFuture<'_>;
    /// A loan is over with nothing owed: the connection is reset for another client, or closed.
    /// `sticky`: the client set state that RESET leaves.
    fn give_back(&self, borrowed: Borrowed, sticky: bool);
}

/// One client's side of multiplexing.
pub(crate) struct Front<'a> {
    lanes: &'a dyn Connections,
    slot: usize,
    /// `--idle-timeout`: a client owing nothing and sending nothing this long is closed.
    idle_timeout: Option<std::time::Duration>,
    rules: Rules<'a>,
    metrics: &'a RouteMetrics,
    lane: Option<Arc<Lane>>,
    /// The protocol of the lanes the client is on (its own can change first: RESET).
    protocol: u8,
    /// The connection lent to the client, while it holds one; its lane is `lane` meanwhile.
    loan: Option<(Borrowed, Loan)>,
    /// `--cluster`: the replies that name nodes, rewritten.
    cluster: Option<ClusterReplies<'a>>,
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
    /// A transaction or a blocking command: a connection is lent once nothing is owed.
    Borrow(&'static str),
    /// RESET while a connection is lent, or while on RESP3 lanes: the connection goes back and
    /// the client to RESP2 lanes before any later request is read.
    Return,
    /// HELLO: once nothing is owed, the client moves to the lanes of `protocol` and is
    /// answered with their HELLO reply; the request (`len` bytes) is still unread.
    Hello {
        protocol: u8,
        len: usize,
    },
    Lost,
}

/// What one whole request becomes.
enum Act {
    Share,
    Answer(Bytes),
    Quit,
    Reset,
    Pin(&'static str),
    Hello(u8),
}

impl<'a> Front<'a> {
    pub(crate) fn new(
        lanes: &'a dyn Connections,
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
            protocol: 2,
            loan: None,
            cluster: None,
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
    pub(crate) async fn run<R, W>(mut self, reader: R, writer: W) -> Result<Left, ConnError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let served = self.serve(reader, writer).await;
        if let Some((borrowed, loan)) = self.loan.take() {
            // Left with replies owed (perhaps blocked): RESET cannot make that clean.
            match &served {
                Ok(Left::Closed) if self.ledger.settled() => {
                    self.lanes.give_back(borrowed, loan.sticky)
                }
                _ => borrowed.lane.close(),
            }
        }
        served
    }

    async fn serve<R, W>(&mut self, mut reader: R, mut writer: W) -> Result<Left, ConnError>
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
                    Some(Ending::Pin(reason)) => return Ok(self.pin(reason)),
                    Some(Ending::Borrow(reason)) => {
                        self.borrow(reason).await?;
                        self.requests().await?;
                        continue;
                    }
                    Some(Ending::Return) => {
                        self.end_loan();
                        self.switch_protocol(self.state.protocol);
                        self.requests().await?;
                        continue;
                    }
                    Some(Ending::Hello { protocol, len }) => {
                        if !self.hello(protocol, len).await? {
                            return Ok(self.pin("protocol"));
                        }
                        self.requests().await?;
                        continue;
                    }
                    None if client_eof => return Ok(Left::Closed),
                    None => self.end_loan_if_over(),
                }
            } else if client_eof && self.loan.is_some() {
                // Gone while a lent connection owes it replies (blocked, perhaps for good).
                return Ok(Left::Closed);
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
                self.cluster_replies(bytes).await?;
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
                // Never written: sent again on the next lane, unless earlier replies were lost
                // or the lane was lent (a transaction cannot go on elsewhere): lost too, then.
                if self.loan.is_some() || matches!(self.ending, Some(Ending::Lost)) {
                    self.lose(requests);
                } else {
                    self.lane = None;
                    self.submit(bytes, requests).await?;
                }
            }
            Delivery::Overflow => return Err(ConnError::OutputLimit),
        }
        Ok(())
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
