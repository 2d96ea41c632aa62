//! A multiplexed route's side (`--multiplex`, `crate::multiplex`): keeping its lanes open, and
//! serving a client on them until it leaves or is pinned, then on a connection of its own.

use super::{RouteRuntime, carry, reach_upstream, reuse};
use crate::connection::Carried;
use crate::error::ConnError;
use crate::forward;
use crate::handshake::{exchange, read_frame};
use crate::multiplex::{
    self, BorrowFuture, Borrowed, Connections, Front, LaneFuture, Lanes, Left, Loan, OUTPUT_LIMIT,
    Pinned, Retirement, Rules,
};
use crate::resp::encode_request;
use bytes::BytesMut;
use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Keeps every slot of a multiplexed route's lanes open until `stop`: a lane lost or retired
/// (its node refused a write as a replica) is replaced at once, with backoff while the server
/// cannot be reached; replaced lanes close once no client is on them.
pub(crate) async fn keep_lanes(route: Arc<RouteRuntime>, stop: CancellationToken) {
    let Some(lanes) = route.lanes.clone() else {
        return;
    };
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut failed = false;
        let store_expires = route.forward.store.credentials().and_then(|c| c.expires);
        lanes.retire_old(store_expires);
        let slots =
            (lanes.protocols().iter()).flat_map(|&p| (0..lanes.slots()).map(move |s| (p, s)));
        for (protocol, slot) in slots {
            if lanes.current(protocol, slot).is_some() {
                continue;
            }
            match open_lane(&route, protocol).await {
                Ok((stream, hello)) => {
                    let metrics = (route.metrics().clone(), lanes.metrics.clone());
                    let changed = Arc::clone(&lanes.changed);
                    let about = (retirement(&route), hello);
                    let lane = multiplex::start(stream, metrics, OUTPUT_LIMIT, changed, about);
                    lanes.put(protocol, slot, lane);
                    debug!(route = %route.name, slot, protocol, "Opened a shared upstream connection");
                }
                Err(error) => {
                    warn!(route = %route.name, %error, "Could not open a shared upstream connection");
                    lanes.failed(&error);
                    failed = true;
                    break;
                }
            }
        }
        let open = lanes.tidy();
        lanes.metrics.shared.set(open as f64);
        let wait = if failed {
            backoff = (backoff * 2).min(Duration::from_secs(5));
            backoff
        } else {
            backoff = Duration::from_millis(100);
            Duration::from_secs(1)
        };
        tokio::select! {
            () = stop.cancelled() => {
                lanes.close_all();
                return;
            }
            () = lanes.changed.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Opens and authenticates a lane's connection and switches it to `protocol` with HELLO,
/// whose reply then answers the HELLO of the lane's clients (`None` where the server has no
/// HELLO: such a lane still speaks RESP2, and a client asking for a protocol is pinned).
async fn open_lane(
    route: &RouteRuntime,
    protocol: u8,
) -> Result<(crate::upstream::UpstreamStream, Option<bytes::Bytes>), ConnError> {
    let mut stream = route.open_upstream().await?;
    let reply = say_hello(&mut stream, protocol, route).await?;
    Ok((stream, reply))
}

/// `HELLO protocol` on a connection of the proxy's own, within `--auth-timeout`: the reply,
/// or `None` if the server refused it.
async fn say_hello(
    stream: &mut crate::upstream::UpstreamStream,
    protocol: u8,
    route: &RouteRuntime,
) -> Result<Option<bytes::Bytes>, ConnError> {
    let ctx = &route.forward;
    let command = encode_request(&[b"HELLO", protocol.to_string().as_bytes()]);
    let mut buf = BytesMut::new();
    let asked = async {
        stream
            .write_all(&command)
            .await
            .map_err(ConnError::UpstreamIo)?;
        stream.flush().await.map_err(ConnError::UpstreamIo)?;
        read_frame(stream, &mut buf, &ctx.upstream, 64 * 1024).await
    };
    let reply = tokio::time::timeout(ctx.settings.auth_timeout, asked)
        .await
        .map_err(|_| ConnError::auth_timeout(ctx.settings.auth_timeout, &ctx.upstream))??;
    if !buf.is_empty() {
        return Err(ConnError::AuthFailed {
            upstream: ctx.upstream.clone(),
            reply: "unexpected bytes after the reply to HELLO".into(),
        });
    }
    Ok(reply
        .filter(|r| !r.starts_with(b"-"))
        .map(bytes::Bytes::from))
}

/// When a lane opened now is replaced: when a connection of a client's own would authenticate
/// again in band (`forward::Window`), so that the server never cuts it.
fn retirement(route: &RouteRuntime) -> Option<Retirement> {
    use std::hash::{BuildHasher, RandomState};
    let ctx = &route.forward;
    let policy = ctx.settings.renewal?;
    let expires = ctx.store.credentials().and_then(|c| c.expires);
    let token_life = expires.and_then(|at| at.duration_since(std::time::SystemTime::now()).ok());
    let spread = (RandomState::new().hash_one(0u8) % 1001) as f64 / 1000.0;
    let window = forward::Window::new(policy, token_life, spread)?;
    Some(Retirement {
        at: std::time::Instant::now() + window.renew_after,
        after_token: expires.filter(|_| window.needs_newer_token),
    })
}

/// Serves one client: on its slot's lane (and on connections lent to it for transactions and
/// blocking commands), then, if a request pins it, on a connection of its own from that
/// request on (told the name it set, if any).
pub(crate) async fn serve_client<R, W>(
    (mut reader, mut writer): (R, W),
    route: &Arc<RouteRuntime>,
    lanes: &Lanes,
) -> Result<(), ConnError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let ctx = &route.forward;
    let credentials = ctx.store.credentials();
    let own_user = (ctx.settings.username.as_deref())
        .or_else(|| credentials.as_ref().and_then(|c| c.username.as_deref()));
    let rules = Rules {
        own_user,
        passwords: ctx.client_passwords.as_deref(),
    };
    let idle = ctx.settings.idle_timeout;
    let slot = lanes.slot_for_new_client();
    let supply = Supply { route, lanes };
    let front =
        Front::new(&supply, slot, rules, idle, route.metrics()).with_cluster(ctx.cluster.as_ref());
    lanes.metrics.clients.increment(1.0);
    let left = front.run(&mut reader, &mut writer).await;
    lanes.metrics.clients.decrement(1.0);
    let pinned = match left {
        Ok(Left::Closed) => return Ok(()),
        Ok(Left::Pin(pinned)) => pinned,
        Err(error) => {
            if matches!(error, ConnError::OutputLimit) {
                lanes.metrics.output_limit_closed();
                warn!("Closed a client that left its replies unread past the output limit");
            }
            // Where the error has words for the client, they go in the place of the request
            // that could not be served (every earlier reply has been written).
            if let Some(reply) = error.outcome().reply {
                let _ = writer.write_all(&crate::resp::error_reply(&reply)).await;
            }
            return Err(error);
        }
    };
    lanes.metrics.pinned(pinned.reason);
    debug!(
        reason = pinned.reason,
        "Pinned a client to an upstream connection of its own"
    );
    serve_pinned(reader, writer, pinned, route).await
}

/// Serves a pinned client on the connection lent to it, if it keeps one in the middle of a
/// transaction, or on a new one, from its unread bytes on.
async fn serve_pinned<R, W>(
    reader: R,
    mut writer: W,
    pinned: Pinned,
    route: &RouteRuntime,
) -> Result<(), ConnError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (mut upstream, born, loan) = match pinned.kept {
        Some((borrowed, loan)) => match take_back(borrowed.lane, borrowed.handback, route).await {
            Some((upstream, unread)) if unread.is_empty() => (upstream, borrowed.born, loan),
            // Lost, or it spoke out of turn: the transaction cannot go on.
            _ => return Err(ConnError::SharedConnectionLost),
        },
        // The protocol the client asked for on a lane (a lent connection has it).
        None => match reach_speaking(route, pinned.protocol).await {
            Ok((upstream, born)) => (upstream, born, Loan::default()),
            Err(error) => {
                if let Some(reply) = error.outcome().reply {
                    let _ = writer.write_all(&crate::resp::error_reply(&reply)).await;
                }
                return Err(error);
            }
        },
    };
    // Inside MULTI the server would queue it, and EXEC's reply would hold its answer.
    if let Some(name) = pinned.name.as_ref().filter(|_| !loan.in_multi) {
        tell_name(&mut upstream, name, route).await?;
    }
    let unread = Cursor::new(BytesMut::freeze(pinned.unread));
    let hello = encode_request(&[b"HELLO", pinned.protocol.to_string().as_bytes()]);
    let carried = Carried {
        authenticated: pinned.authenticated,
        in_multi: loan.in_multi,
        watching: loan.watching,
        hello: (pinned.protocol != 2).then(|| hello.into()),
        name: (pinned.name).map(|name| encode_request(&[b"CLIENT", b"SETNAME", &name]).into()),
    };
    let client = forward::Client {
        r: unread.chain(reader),
        w: writer,
        carried,
    };
    carry(client, upstream, born, route).await
}

/// Where a multiplexed client's connections come from: its slot's lane, and the route's
/// connections for a loan (from the warm pool when there is one, which takes them back).
struct Supply<'a> {
    route: &'a Arc<RouteRuntime>,
    lanes: &'a Lanes,
}

impl Connections for Supply<'_> {
    fn lane(&self, protocol: u8, slot: usize) -> LaneFuture<'_> {
        self.lanes.wait_for(protocol, slot)
    }

    fn borrow(&self, reason: &'static str, protocol: u8) -> BorrowFuture<'_> {
        Box::pin(async move {
            let (upstream, born) = reach_speaking(self.route, protocol).await?;
            self.lanes.metrics.pinned(reason);
            // With --upstream-reuse a lent connection counts as the pool's: it comes back.
            let lease = (self.route.pool.as_ref())
                .filter(|_| self.route.forward.settings.reuse)
                .map(|pool| Box::new(pool.lease()) as Box<dyn Send + Sync>);
            let metrics = (self.route.metrics().clone(), self.lanes.metrics.clone());
            let (lane, handback) = multiplex::start_borrowed(upstream, metrics, OUTPUT_LIMIT);
            Ok(Borrowed {
                lane,
                handback,
                born,
                lease,
            })
        })
    }

    fn give_back(&self, borrowed: Borrowed, sticky: bool) {
        let route = Arc::clone(self.route);
        let metrics = self.lanes.metrics.clone();
        tokio::spawn(async move {
            // A node that refused a write as a replica is no primary to go back to.
            let usable = borrowed.lease.is_some() && !borrowed.lane.retired();
            match take_back(borrowed.lane, borrowed.handback, &route).await {
                Some((upstream, unread)) if usable => {
                    metrics.returned("reset");
                    reuse::recycle(&route, upstream, unread, borrowed.born, sticky).await;
                }
                _ => metrics.returned("closed"),
            }
        });
    }
}

/// A connection of the client's own (from the pool or new), told `protocol` if it is not RESP2.
async fn reach_speaking(
    route: &RouteRuntime,
    protocol: u8,
) -> Result<(crate::upstream::UpstreamStream, std::time::Instant), ConnError> {
    let (mut upstream, born) = reach_upstream(route).await?;
    if protocol != 2 {
        say_hello(&mut upstream, protocol, route).await?;
    }
    Ok((upstream, born))
}

/// Stops a lent connection's lane and takes the connection back, within `--auth-timeout`;
/// `None` if it was lost or stopped owing replies.
async fn take_back(
    lane: Arc<multiplex::Lane>,
    handback: multiplex::Handback<crate::upstream::UpstreamStream>,
    route: &RouteRuntime,
) -> Option<(crate::upstream::UpstreamStream, BytesMut)> {
    lane.give_back();
    let wait = route.forward.settings.auth_timeout;
    tokio::time::timeout(wait, handback.take())
        .await
        .ok()
        .flatten()
}

/// Tells a pinned connection the name its client set while on a lane.
async fn tell_name(
    upstream: &mut crate::upstream::UpstreamStream,
    name: &[u8],
    route: &RouteRuntime,
) -> Result<(), ConnError> {
    let ctx = &route.forward;
    let command = encode_request(&[b"CLIENT", b"SETNAME", name]);
    let mut buf = BytesMut::new();
    let told = exchange(upstream, &command, &mut buf, &ctx.upstream);
    let reply = tokio::time::timeout(ctx.settings.auth_timeout, told)
        .await
        .map_err(|_| ConnError::auth_timeout(ctx.settings.auth_timeout, &ctx.upstream))??;
    if !reply.starts_with(b"+OK") {
        info!("The server refused the client's name on its pinned connection");
    }
    Ok(())
}
