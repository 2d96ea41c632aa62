//! A lane over a connection lent to one client (a transaction or a blocking command,
//! `front/loans.rs`): the same two halves as a shared lane, which hand the connection back
//! when `Lane::give_back` stops them with nothing owed, so that it can be reset for another
//! client.

use super::{Lane, launch};
use crate::metrics::RouteMetrics;
use crate::metrics::multiplex::MultiplexMetrics;
use bytes::BytesMut;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::sync::{Notify, oneshot};

/// Starts a lane over a connection of one client's own (borrowed for a transaction or a
/// blocking command), and what returns the connection once `Lane::give_back` stops it.
pub(crate) fn start_borrowed<S>(
    stream: S,
    metrics: (RouteMetrics, MultiplexMetrics),
    limit: usize,
) -> (Arc<Lane>, Handback<S>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read_tx, read) = oneshot::channel();
    let (write_tx, write) = oneshot::channel();
    let changed = Arc::new(Notify::new());
    let back = Some((read_tx, write_tx));
    let lane = launch(stream, metrics, limit, (changed, None, None), back);
    (lane, Handback { read, write })
}

/// Where a borrowed connection's halves come back.
pub(super) type Back<S> = (
    oneshot::Sender<(ReadHalf<S>, BytesMut)>,
    oneshot::Sender<WriteHalf<S>>,
);

/// A borrowed connection, back from its lane once both halves stopped.
pub(crate) struct Handback<S> {
    read: oneshot::Receiver<(ReadHalf<S>, BytesMut)>,
    write: oneshot::Receiver<WriteHalf<S>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Handback<S> {
    /// The connection and what was read from it past the last reply; `None` when it was lost,
    /// or stopped mid-reply or owing replies.
    pub(crate) async fn take(self) -> Option<(S, BytesMut)> {
        let (read, unread) = self.read.await.ok()?;
        let write = self.write.await.ok()?;
        Some((read.unsplit(write), unread))
    }
}
