//! Keeping up with the Sentinels: one connection at a time subscribed to `+switch-master`,
//! through the first Sentinel that takes it, the next one when it fails. A silent connection is
//! PINGed, and dropped when the PING is not answered either, so a Sentinel that vanished
//! without a close is noticed within two intervals.

use super::reply::{self, Event};
use super::{Sentinels, lock};
use crate::address::UpstreamAddr;
use crate::error::ConnError;
use crate::handshake::read_frame;
use crate::resp::encode_request;
use crate::upstream::{Connector, UpstreamStream};
use bytes::BytesMut;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How long the subscription may be silent before it is PINGed.
const PING_EVERY: Duration = Duration::from_secs(5);
/// The largest frame read from a Sentinel (a `+switch-master` message is under 300 bytes).
const MAX_FRAME: usize = 64 * 1024;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl Sentinels {
    /// Until `stop`: follows the Sentinels; a switch of the route's master is recorded, then
    /// `switched` is called (the route's sessions move).
    pub(crate) async fn watch<F>(self: Arc<Self>, switched: F, stop: CancellationToken)
    where
        F: Fn() + Send + Sync,
    {
        let mut backoff = FIRST_BACKOFF;
        loop {
            for connector in &self.connectors {
                let ended = tokio::select! {
                    () = stop.cancelled() => return,
                    ended = self.follow(connector, &switched, &mut backoff) => ended,
                };
                self.subscribed.store(false, Ordering::Release);
                let Err(error) = ended;
                warn!(sentinel = %connector.addr, %error, "No subscription to this Sentinel; trying the next");
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Asks one Sentinel where the primary is and subscribes to its switches (`+switch-master`,
    /// and `+promoted-slave`, the first sign), in one write so that no switch falls between
    /// the two; then follows it until the connection fails.
    async fn follow(
        &self,
        connector: &Connector,
        switched: &(dyn Fn() + Sync),
        backoff: &mut Duration,
    ) -> Result<Infallible, ConnError> {
        let name = connector.addr.to_string();
        let (mut stream, mut buf) = self.open(connector).await?;
        let mut request = self.get_master();
        request.extend_from_slice(&encode_request(&[b"SUBSCRIBE", b"+switch-master"]));
        self.write(&mut stream, &request, &name).await?;
        let answer = self
            .read(&mut stream, &mut buf, &name, self.timeout)
            .await?;
        let addr = reply::master_addr(&answer).map_err(|reason| self.error(reason))?;
        self.read(&mut stream, &mut buf, &name, self.timeout)
            .await?;
        info!(sentinel = %name, master = %self.settings.master, primary = %addr, "Following the Sentinel");
        self.learned(addr, switched);
        self.subscribed.store(true, Ordering::Release);
        *backoff = FIRST_BACKOFF;
        let mut pinged = false;
        loop {
            match self.read(&mut stream, &mut buf, &name, PING_EVERY).await {
                Ok(frame) => {
                    pinged = false;
                    if let Event::Switched(addr) = reply::event(&frame, &self.settings.master) {
                        self.learned(addr, switched);
                    }
                }
                Err(ConnError::Timeout { .. }) if !pinged => {
                    self.write(&mut stream, &encode_request(&[b"PING"]), &name)
                        .await?;
                    pinged = true;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Records where the primary is; a change from what was known is a switch.
    fn learned(&self, addr: UpstreamAddr, switched: &(dyn Fn() + Sync)) {
        let previous = lock(&self.known).replace(addr.clone());
        if let Some(previous) = previous
            && previous != addr
        {
            info!(master = %self.settings.master, from = %previous, to = %addr,
                "The Sentinels switched the primary; sessions move to the new one");
            switched();
        }
    }

    async fn write(
        &self,
        stream: &mut UpstreamStream,
        bytes: &[u8],
        name: &str,
    ) -> Result<(), ConnError> {
        let written = async {
            stream.write_all(bytes).await?;
            stream.flush().await
        };
        tokio::time::timeout(self.timeout, written)
            .await
            .map_err(|_| ConnError::auth_timeout(self.timeout, name))?
            .map_err(ConnError::UpstreamIo)
    }

    /// The next frame, within `within`.
    async fn read(
        &self,
        stream: &mut UpstreamStream,
        buf: &mut BytesMut,
        name: &str,
        within: Duration,
    ) -> Result<Vec<u8>, ConnError> {
        tokio::time::timeout(within, read_frame(stream, buf, name, MAX_FRAME))
            .await
            .map_err(|_| ConnError::auth_timeout(within, name))??
            .ok_or_else(|| self.error("a frame over 64 KiB".into()))
    }

    pub(super) fn error(&self, reason: String) -> ConnError {
        ConnError::Sentinel {
            master: self.settings.master.clone(),
            reason,
        }
    }
}
