//! Feeding the connection what was read, and queueing what it decided: the part of the loop
//! that turns the core's ranges into slices of the buffers read (`queue`), never copies.

use super::{Io, MAX_CLIENT_BACKLOG, READ_SIZE};
use crate::connection::{Connection, ToClient, ToServer, Wants};
use crate::error::ConnError;
use crate::handshake::auth_command;
use bytes::{Bytes, BytesMut};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};

impl<R, W, U> Io<'_, R, W, U>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    /// The server's side ended: the connection closes, or the session moves to the primary.
    pub(super) fn server_closed(&mut self, conn: &mut Connection<'_>) -> Result<(), ConnError> {
        self.actions.clear();
        conn.server_closed(self.client_eof, &mut self.actions);
        self.queue(&Bytes::new())
    }

    /// Why the upstream connection may not serve the next client; `None` when it may. Besides
    /// what the connection itself says, a connection open when some client listed every
    /// connection's id may be named by that client and is not handed on.
    pub(super) fn reuse_refusal(&self, wants: &Wants) -> Option<&'static str> {
        wants.reuse.err().or_else(|| {
            let listed = *self.ctx.clients_listed.lock().expect("clients listed");
            listed
                .is_some_and(|at| at >= self.born)
                .then_some("identity")
        })
    }

    pub(super) fn wants_requests(&self, wants: &Wants) -> bool {
        wants.requests
            && !self.client_eof
            && !self.requests_waiting
            && self.to_server.is_empty()
            && self.to_client.len() < MAX_CLIENT_BACKLOG
    }

    pub(super) fn wants_replies(&self, wants: &Wants) -> bool {
        wants.replies && !self.replies_waiting && (self.to_client.is_empty() || wants.replies_first)
    }

    pub(super) fn touch(&mut self) {
        if let Some(idle) = &mut self.idle {
            idle.touch();
        }
    }

    pub(super) fn feed_requests(&mut self, conn: &mut Connection<'_>) -> Result<(), ConnError> {
        self.actions.clear();
        let used = conn.on_requests(&self.from_client, &mut self.actions);
        if conn.take_listed_clients() {
            *self.ctx.clients_listed.lock().expect("clients listed") = Some(Instant::now());
        }
        let input = self.from_client.split_to(used).freeze();
        self.requests_waiting = !self.from_client.is_empty() && !conn.wants().requests;
        if let Some(sent) = &mut self.sent {
            sent.push(input.clone());
            sent.keep_from(conn.resend_window().unwrap_or(u64::MAX));
        }
        self.queue(&input)
    }

    pub(super) fn feed_replies(&mut self, conn: &mut Connection<'_>) -> Result<(), ConnError> {
        self.actions.clear();
        let used = conn.on_replies(&self.from_server, &mut self.actions);
        let input = self.from_server.split_to(used).freeze();
        self.replies_waiting = !self.from_server.is_empty();
        if let Some(sent) = &mut self.sent {
            sent.keep_from(conn.resend_window().unwrap_or(u64::MAX));
        }
        self.queue(&input)
    }

    /// Queues what the connection decided; `Pass` ranges are slices of `input`, not copies.
    pub(super) fn queue(&mut self, input: &Bytes) -> Result<(), ConnError> {
        for action in self.actions.server.drain(..) {
            match action {
                ToServer::Pass(range) => self.to_server.push(input.slice(range)),
                ToServer::Send(bytes) => self.to_server.push(bytes),
                ToServer::Auth => {
                    let store = &self.ctx.store;
                    let credentials = store.credentials().ok_or(ConnError::NoToken)?;
                    let slot = store.attempt_order(&credentials)[0];
                    let username = self.ctx.settings.username.as_deref();
                    self.to_server
                        .push_secret(auth_command(&credentials, username, slot));
                }
            }
        }
        for action in self.actions.client.drain(..) {
            match action {
                ToClient::Pass(range) => self.to_client.push(input.slice(range)),
                ToClient::Send(bytes) => self.to_client.push(bytes),
            }
        }
        Ok(())
    }
}

/// Makes room for one more read, reusing the buffer once what was passed on is written.
pub(super) fn reserve(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < READ_SIZE / 4 {
        buf.reserve(READ_SIZE);
    }
}
