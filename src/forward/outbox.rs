//! Bytes waiting to be written to one side, in order, with what the proxy must not keep.

use bytes::Bytes;
use secrecy::zeroize::Zeroizing;
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::AsyncWrite;

enum Chunk {
    Shared(Bytes),
    /// The proxy's own AUTH: wiped from memory once written.
    Secret(Zeroizing<Vec<u8>>),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Shared(bytes) => bytes,
            Chunk::Secret(bytes) => bytes,
        }
    }
}

#[derive(Default)]
pub(super) struct Outbox {
    chunks: VecDeque<Chunk>,
    /// Bytes of the front chunk already written.
    written: usize,
    /// Bytes queued and not yet written.
    len: usize,
    /// Written since the last flush: a TLS writer may keep records until flushed.
    unflushed: bool,
}

impl Outbox {
    pub(super) fn push(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.len += bytes.len();
            self.chunks.push_back(Chunk::Shared(bytes));
        }
    }

    pub(super) fn push_secret(&mut self, bytes: Zeroizing<Vec<u8>>) {
        self.len += bytes.len();
        self.chunks.push_back(Chunk::Secret(bytes));
    }

    /// Drops what is queued: the connection it was for is being replaced.
    pub(super) fn clear(&mut self) {
        *self = Outbox::default();
    }

    pub(super) fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Writes and flushes as much as `writer` takes now; ready once all is written.
    pub(super) fn poll_drain<W: AsyncWrite + Unpin>(
        &mut self,
        writer: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while let Some(front) = self.chunks.front() {
            let rest = &front.bytes()[self.written..];
            let n = ready!(Pin::new(&mut *writer).poll_write(cx, rest))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.unflushed = true;
            self.written += n;
            self.len -= n;
            if self.written == front.bytes().len() {
                self.chunks.pop_front();
                self.written = 0;
            }
        }
        if self.unflushed {
            ready!(Pin::new(&mut *writer).poll_flush(cx))?;
            self.unflushed = false;
        }
        Poll::Ready(Ok(()))
    }
}
