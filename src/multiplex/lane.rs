//! One shared upstream connection (a lane): the requests of many clients written in the order
//! they came, each client's whole requests together, and each reply passed back to the client
//! that owes it. A FIFO of entries (`Entry`: whose replies, how many) ties the two halves: the
//! writer pushes an entry before it writes the requests, the reader pops it when the last
//! reply has passed. Replies are slices of the buffer they were read into, passed as they come
//! (a large reply streams), never decoded.
//!
//! Writes coalesce without a timer: whatever was queued while the previous write was in flight
//! goes in the next one. A client that left has its replies read and dropped. A client whose
//! replies pile up unread past the output limit is cut off, alone. When the connection is lost,
//! every client owed a reply on it is told so (`Delivery::Lost`), and requests not yet written
//! go back to their clients (`Delivery::Unsent`), which may send them on another lane.

mod borrowed;

pub(crate) use borrowed::{Handback, start_borrowed};

use crate::lock;
use crate::metrics::RouteMetrics;
use crate::metrics::multiplex::MultiplexMetrics;
use crate::resp::reply::{FrameKind, ReplyScanner, Scan};
use borrowed::Back;
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// How much to read per call: one full TLS record.
const READ_SIZE: usize = 16 * 1024;
/// The most requests' bytes gathered into one write.
const MAX_WRITE: usize = 256 * 1024;

/// What a lane tells a client.
#[derive(Debug)]
pub(crate) enum Delivery {
    /// Reply bytes, in order; `replies` replies end within them.
    Replies { bytes: Bytes, replies: u64 },
    /// The connection was lost with `replies` replies owed: whether their requests ran cannot
    /// be known. `mid_reply`: part of the next reply was passed on already.
    Lost { replies: u64, mid_reply: bool },
    /// These requests were never written (the connection was lost first).
    Unsent { bytes: Bytes, requests: u64 },
    /// The client left its replies unread past the output limit: it is cut off.
    Overflow,
}

/// Where a client's replies go, and how many bytes of them it has not yet written out.
#[derive(Clone)]
pub(crate) struct Sink {
    pub tx: mpsc::UnboundedSender<Delivery>,
    pub buffered: Arc<AtomicUsize>,
    /// Set once the client was cut off: nothing more is delivered.
    pub cut: Arc<AtomicBool>,
    /// Told when the client is cut off, so that a write to it that never ends is given up.
    pub cut_off: Arc<Notify>,
}

impl Sink {
    pub(crate) fn new() -> (Sink, mpsc::UnboundedReceiver<Delivery>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let sink = Sink {
            tx,
            buffered: Arc::new(AtomicUsize::new(0)),
            cut: Arc::new(AtomicBool::new(false)),
            cut_off: Arc::new(Notify::new()),
        };
        (sink, rx)
    }

    /// Passes `bytes` on unless the client is gone or over `limit`; false once it is cut off.
    fn deliver(&self, bytes: Bytes, replies: u64, limit: usize) -> bool {
        if self.cut.load(Ordering::Relaxed) || self.tx.is_closed() {
            return false;
        }
        let held = self.buffered.fetch_add(bytes.len(), Ordering::Relaxed) + bytes.len();
        if held > limit {
            self.cut.store(true, Ordering::Relaxed);
            let _ = self.tx.send(Delivery::Overflow);
            self.cut_off.notify_one();
            return false;
        }
        let _ = self.tx.send(Delivery::Replies { bytes, replies });
        true
    }
}

/// Requests of one client, whole, for the lane to write.
pub(crate) struct Submission {
    pub bytes: Bytes,
    pub requests: u64,
    pub sink: Sink,
}

/// Whose replies come next, and how many.
struct Entry {
    sink: Sink,
    replies: u64,
}

/// When a lane is replaced, so that the server never cuts it (IAM and Entra ID connections
/// live only so long after their AUTH): as a connection of a client's own would authenticate
/// again in band, a lane is retired and its clients move to a new one between requests.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Retirement {
    pub at: std::time::Instant,
    /// Entra ID: only once the token store holds a token that expires after this one.
    pub after_token: Option<std::time::SystemTime>,
}

/// One shared upstream connection, as clients see it.
pub(crate) struct Lane {
    tx: mpsc::UnboundedSender<Submission>,
    /// Whose replies come next: the writer pushes, the reader pops.
    fifo: Arc<Mutex<VecDeque<Entry>>>,
    pub retirement: Option<Retirement>,
    /// Cancelled when the connection is lost, or the lane retired.
    pub closed: CancellationToken,
    /// No new client binds to a retired lane; its clients move off between requests.
    retired: AtomicBool,
    /// Told when the lane closes or retires, so that another is opened.
    changed: Arc<Notify>,
    /// A borrowed connection's lane was closed to give its connection back (`Handback`).
    given_back: AtomicBool,
    /// The server's reply to the lane's own HELLO (in the lane's protocol), which answers a
    /// client's HELLO; `None` where the server has no HELLO.
    pub hello: Option<Bytes>,
}

impl Lane {
    /// Hands `submission` to the lane, or back if it is gone.
    pub(crate) fn submit(&self, submission: Submission) -> Result<(), Submission> {
        self.tx.send(submission).map_err(|e| e.0)
    }

    /// Whether a client owing nothing should move to another lane before its next request.
    pub(crate) fn leaving(&self) -> bool {
        self.closed.is_cancelled() || self.retired.load(Ordering::Relaxed)
    }

    /// No new requests should come here: a client moves off at its next quiet moment.
    pub(crate) fn retire(&self) {
        if !self.retired.swap(true, Ordering::Relaxed) {
            self.changed.notify_one();
        }
    }

    /// No client is owed a reply on this lane now.
    pub(crate) fn owes_nothing(&self) -> bool {
        lock(&self.fifo).is_empty()
    }

    /// Whether the node refused a write as a replica: it is no primary to go back to.
    pub(crate) fn retired(&self) -> bool {
        self.retired.load(Ordering::Relaxed)
    }

    /// Stops a borrowed connection's lane so that its `Handback` returns the connection.
    pub(crate) fn give_back(&self) {
        self.given_back.store(true, Ordering::Relaxed);
        self.closed.cancel();
    }

    /// Closes the lane: clients owed replies are told they are lost.
    pub(crate) fn close(&self) {
        self.closed.cancel();
        self.changed.notify_one();
    }
}

/// Starts the two halves of a lane over `stream`; `limit` is each client's output limit;
/// `changed` is told when the lane closes or retires.
pub(crate) fn start<S>(
    stream: S,
    metrics: (RouteMetrics, MultiplexMetrics),
    limit: usize,
    changed: Arc<Notify>,
    (retirement, hello): (Option<Retirement>, Option<Bytes>),
) -> Arc<Lane>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    launch(stream, metrics, limit, (changed, retirement, hello), None)
}

fn launch<S>(
    stream: S,
    metrics: (RouteMetrics, MultiplexMetrics),
    limit: usize,
    (changed, retirement, hello): (Arc<Notify>, Option<Retirement>, Option<Bytes>),
    back: Option<Back<S>>,
) -> Arc<Lane>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let fifo = Arc::new(Mutex::new(VecDeque::new()));
    let lane = Arc::new(Lane {
        tx,
        fifo: Arc::clone(&fifo),
        retirement,
        closed: CancellationToken::new(),
        retired: AtomicBool::new(false),
        changed,
        given_back: AtomicBool::new(false),
        hello,
    });
    let (reader, writer) = tokio::io::split(stream);
    let halves = Halves {
        lane: Arc::clone(&lane),
        fifo,
        metrics,
        limit,
        shared: back.is_none(),
    };
    let read_half = halves.clone();
    let (read_back, write_back) = back.unzip();
    tokio::spawn(async move { read_half.read(reader, read_back).await });
    tokio::spawn(async move { halves.write(writer, rx, write_back).await });
    lane
}

#[derive(Clone)]
struct Halves {
    lane: Arc<Lane>,
    fifo: Arc<Mutex<VecDeque<Entry>>>,
    metrics: (RouteMetrics, MultiplexMetrics),
    limit: usize,
    /// A shared connection, not a borrowed one: its loss is counted.
    shared: bool,
}

impl Halves {
    /// Writes what clients submit until the lane closes, then hands back what was not written.
    async fn write<W: AsyncWrite + Unpin>(
        self,
        mut writer: W,
        mut rx: mpsc::UnboundedReceiver<Submission>,
        back: Option<oneshot::Sender<W>>,
    ) {
        // One buffer for each write: a TLS stream seals what it is given in one call into its
        // own records, so many clients' requests written at once cost one record and one
        // system call, not one each.
        let mut out = BytesMut::with_capacity(READ_SIZE);
        loop {
            let first = tokio::select! {
                () = self.lane.closed.cancelled() => None,
                first = rx.recv() => first,
            };
            let Some(first) = first else { break };
            // While replies are owed, other clients are about to send (their replies are on
            // the way): one turn of the scheduler lets them queue theirs for this same write.
            // No timer, and a quiet lane writes at once.
            let busy = !lock(&self.fifo).is_empty();
            if busy {
                tokio::task::yield_now().await;
            }
            let mut requests = first.requests;
            self.enter(&first);
            out.extend_from_slice(&first.bytes);
            while out.len() < MAX_WRITE {
                let Ok(next) = rx.try_recv() else { break };
                requests += next.requests;
                self.enter(&next);
                out.extend_from_slice(&next.bytes);
            }
            self.metrics.1.requests_in_write(requests);
            self.metrics.0.bytes_upstream.increment(out.len() as u64);
            let written = async {
                writer.write_all(&out).await?;
                writer.flush().await
            };
            if let Err(error) = written.await {
                debug!(%error, "A shared upstream connection failed to write");
                if self.shared && !self.lane.closed.is_cancelled() {
                    self.metrics.1.shared_connection_lost();
                }
                self.lane.close();
                break;
            }
            out.clear();
        }
        // Replies owed for what this half wrote after the reader gave up are lost too.
        self.lose_owed(false);
        // Whatever is still queued was never written: its clients may send it elsewhere.
        rx.close();
        while let Ok(submission) = rx.try_recv() {
            let _ = submission.sink.tx.send(Delivery::Unsent {
                bytes: submission.bytes,
                requests: submission.requests,
            });
        }
        match back {
            Some(back) if self.lane.given_back.load(Ordering::Relaxed) => {
                let _ = back.send(writer);
            }
            _ => {
                let _ = writer.shutdown().await;
            }
        }
    }

    /// Records whose replies come next, before their requests are written.
    fn enter(&self, submission: &Submission) {
        lock(&self.fifo).push_back(Entry {
            sink: submission.sink.clone(),
            replies: submission.requests,
        });
    }

    /// Reads replies and passes each to the client owed it, until the connection ends; then
    /// tells every client still owed replies that they are lost.
    async fn read<R: AsyncRead + Unpin>(
        self,
        mut reader: R,
        back: Option<oneshot::Sender<(R, BytesMut)>>,
    ) {
        let mut buf = BytesMut::with_capacity(READ_SIZE);
        let mut scanner = ReplyScanner::new();
        loop {
            if buf.capacity() - buf.len() < READ_SIZE / 4 {
                buf.reserve(READ_SIZE);
            }
            let read = tokio::select! {
                () = self.lane.closed.cancelled() => break,
                read = reader.read_buf(&mut buf) => read,
            };
            match read {
                Ok(0) => break,
                Ok(n) => self.metrics.0.bytes_downstream.increment(n as u64),
                Err(error) => {
                    debug!(%error, "A shared upstream connection failed to read");
                    break;
                }
            }
            if let Err(error) = self.route(&mut buf, &mut scanner) {
                warn!(%error, "A shared upstream connection sent a malformed reply; it is closed");
                break;
            }
        }
        if self.shared && !self.lane.closed.is_cancelled() {
            self.metrics.1.shared_connection_lost();
        }
        let whole = scanner.at_boundary() && self.lane.owes_nothing();
        self.lane.close();
        self.lose_owed(!scanner.at_boundary());
        if let Some(back) = back.filter(|_| whole && self.lane.given_back.load(Ordering::Relaxed)) {
            let _ = back.send((reader, buf));
        }
    }

    /// Tells every client still owed replies that they are lost; `mid_reply`: part of the
    /// first one was passed on.
    fn lose_owed(&self, mut mid_reply: bool) {
        let lost: Vec<Entry> = lock(&self.fifo).drain(..).collect();
        for entry in lost {
            let _ = entry.sink.tx.send(Delivery::Lost {
                replies: entry.replies,
                mid_reply,
            });
            mid_reply = false;
        }
    }

    /// Passes what `buf` holds to the clients owed it: consecutive replies of one client as
    /// one slice, a reply not yet whole as it stands.
    fn route(
        &self,
        buf: &mut BytesMut,
        scanner: &mut ReplyScanner,
    ) -> Result<(), crate::resp::reply::MalformedReply> {
        let mut fifo = lock(&self.fifo);
        while !buf.is_empty() {
            let Some(entry) = fifo.front_mut() else {
                // Nothing is owed (RESP2 has no pushes): the server spoke out of turn.
                return Err(crate::resp::reply::MalformedReply(buf[0]));
            };
            let mut end = 0;
            let mut ended = 0;
            while end < buf.len() && ended < entry.replies {
                match scanner.scan(&buf[end..])? {
                    Scan::End { len, kind } => {
                        end += len;
                        if kind == FrameKind::Reply {
                            ended += 1;
                        }
                    }
                    Scan::Partial => end = buf.len(),
                }
            }
            let bytes = buf.split_to(end).freeze();
            if ended > 0 && bytes.starts_with(b"-READONLY ") {
                // The node was demoted: new requests go to a new lane (the keeper opens one).
                self.lane.retire();
            }
            entry.sink.deliver(bytes, ended, self.limit);
            entry.replies -= ended;
            if entry.replies == 0 {
                fifo.pop_front();
            }
        }
        Ok(())
    }
}
