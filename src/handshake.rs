//! Authenticating an upstream connection: when it is fresh, and again after a client's RESET.
//!
//! AUTH is sent alone and its reply awaited: Redis 7.2–8.0 send no reply to a failed AUTH that
//! was pipelined behind other commands, which would desynchronise the stream. On WRONGPASS the
//! other stored token is tried, and the store remembers which one the server took. After a
//! client's RESET the connection owes the client nothing more, so the same direct exchange is
//! used there (`forward` holds the client's later requests meanwhile).

use crate::error::{ConnError, Stage};
use crate::metrics::RouteMetrics;
use crate::resp::encode_request;
use crate::resp::reply::{FrameKind, ReplyScanner, Scan};
use crate::token::{Credentials, Slot, TokenStore};
use bytes::BytesMut;
use secrecy::zeroize::Zeroizing;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::{debug, warn};

/// The longest AUTH reply read; real ones are one short line.
const MAX_AUTH_REPLY: usize = 4096;
/// The first wait after a throttled AUTH; it doubles, up to `MAX_THROTTLE_BACKOFF`.
const FIRST_THROTTLE_BACKOFF: Duration = Duration::from_millis(50);
const MAX_THROTTLE_BACKOFF: Duration = Duration::from_secs(1);

/// What the server said to one AUTH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthReply {
    Accepted,
    /// `WRONGPASS` (Redis 6+) or `ERR invalid password` (Redis 5): try the other token.
    Rejected,
    /// The server has no password set. The connection works, but the setup is suspect.
    NoPasswordSet,
    /// Memorystore's IAM backend is over its quota or failing (`ERR_IAM_EXHAUSTED`,
    /// `ERR_IAM_OTHER`): try again after a backoff. With the text.
    Throttled(String),
    /// Any other error, with its text (tokens already removed).
    Failed(String),
}

impl AuthReply {
    /// Classifies a raw reply frame.
    pub(crate) fn parse(frame: &[u8], credentials: &Credentials) -> AuthReply {
        let text = String::from_utf8_lossy(frame);
        let text = text.trim_end();
        if text == "+OK" {
            return AuthReply::Accepted;
        }
        let Some(error) = text.strip_prefix('-') else {
            return AuthReply::Failed("unexpected reply to AUTH".into());
        };
        if error.starts_with("WRONGPASS") || error.starts_with("ERR invalid password") {
            AuthReply::Rejected
        } else if error.starts_with("ERR (ERR_IAM_EXHAUSTED)")
            || error.starts_with("ERR (ERR_IAM_OTHER)")
        {
            AuthReply::Throttled(credentials.redact(error))
        } else if error.contains("without any password configured")
            || error.contains("no password is set")
        {
            AuthReply::NoPasswordSet
        } else {
            AuthReply::Failed(credentials.redact(error))
        }
    }
}

/// Encodes `AUTH [user] token` in a buffer that is zeroised when dropped.
pub(crate) fn auth_command(
    credentials: &Credentials,
    username: Option<&str>,
    slot: Slot,
) -> Zeroizing<Vec<u8>> {
    let token = credentials.token(slot).unwrap_or(&credentials.current);
    let user = username.or(credentials.username.as_deref());
    let command = match user {
        Some(user) => encode_request(&[b"AUTH", user.as_bytes(), token.expose().as_bytes()]),
        None => encode_request(&[b"AUTH", token.expose().as_bytes()]),
    };
    Zeroizing::new(command)
}

/// The phrase for error texts: which tokens were tried.
pub(crate) fn tried_phrase(attempts: usize) -> &'static str {
    if attempts > 1 {
        "the current and the previous token"
    } else {
        "the token"
    }
}

/// Who is authenticating, against what, and where to count it.
#[derive(Clone, Copy)]
pub(crate) struct AuthTarget<'a> {
    pub store: &'a TokenStore,
    pub username: Option<&'a str>,
    pub upstream: &'a str,
    pub timeout: Duration,
    pub metrics: Option<&'a RouteMetrics>,
}

/// Authenticates a fresh `stream`; see `authenticate_buffered`.
pub(crate) async fn authenticate<S>(
    stream: &mut S,
    store: &TokenStore,
    username: Option<&str>,
    upstream: &str,
    timeout: Duration,
    metrics: Option<&RouteMetrics>,
) -> Result<Slot, ConnError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let target = AuthTarget {
        store,
        username,
        upstream,
        timeout,
        metrics,
    };
    authenticate_buffered(stream, &mut BytesMut::with_capacity(256), &target).await
}

/// Authenticates `stream`, which owes no other reply, trying the token that last worked first;
/// `buf` holds what was read from it and not yet used, and keeps what follows the AUTH reply.
/// When the server rejects every stored token, the token source is reloaded at once and, if
/// that brought new tokens, they are tried before giving up.
pub(crate) async fn authenticate_buffered<S>(
    stream: &mut S,
    buf: &mut BytesMut,
    target: &AuthTarget<'_>,
) -> Result<Slot, ConnError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match try_tokens(stream, buf, target).await {
        Err(ConnError::AuthRejected { .. })
            if target.store.reload_and_wait(target.timeout).await =>
        {
            debug!(
                upstream = target.upstream,
                "Retrying AUTH with reloaded tokens"
            );
            try_tokens(stream, buf, target).await
        }
        other => other,
    }
}

async fn try_tokens<S>(
    stream: &mut S,
    buf: &mut BytesMut,
    target: &AuthTarget<'_>,
) -> Result<Slot, ConnError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let AuthTarget {
        store,
        username,
        upstream,
        timeout,
        metrics,
    } = *target;
    let record = |slot: Slot, result: &'static str| {
        if let Some(metrics) = metrics {
            metrics.auth_attempt(slot.as_str(), result);
        }
    };
    let credentials = store.credentials().ok_or(ConnError::NoToken)?;
    let order = store.attempt_order(&credentials);
    // Throttled AUTHs are tried again until this moment, then the last refusal stands.
    let give_up_at = tokio::time::Instant::now() + timeout;
    let mut backoff = FIRST_THROTTLE_BACKOFF;
    let mut attempts = order.iter().copied().enumerate().peekable();
    while let Some(&(attempt, slot)) = attempts.peek() {
        let command = auth_command(&credentials, username, slot);
        let exchanged =
            tokio::time::timeout(timeout, exchange(stream, &command, buf, upstream)).await;
        let frame = match exchanged {
            Ok(Ok(frame)) => frame,
            Ok(Err(error)) => {
                record(slot, "error");
                return Err(error);
            }
            Err(_) => {
                record(slot, "error");
                return Err(ConnError::Timeout {
                    stage: Stage::Auth,
                    after: timeout,
                    upstream: upstream.to_owned(),
                });
            }
        };
        match AuthReply::parse(&frame, &credentials) {
            AuthReply::Accepted => record(slot, "accepted"),
            AuthReply::NoPasswordSet => {
                record(slot, "no_password");
                warn!(
                    upstream,
                    "Upstream has no password set; connecting without one"
                );
            }
            AuthReply::Rejected => {
                record(slot, "rejected");
                debug!(
                    upstream,
                    token.slot = slot.as_str(),
                    "Upstream rejected token"
                );
                if attempt + 1 < order.len() {
                    attempts.next();
                    continue;
                }
                return Err(ConnError::AuthRejected {
                    upstream: upstream.to_owned(),
                    tried: tried_phrase(order.len()),
                });
            }
            AuthReply::Throttled(reply) => {
                record(slot, "throttled");
                let wait = jittered(backoff);
                if tokio::time::Instant::now() + wait >= give_up_at {
                    return Err(ConnError::AuthFailed {
                        upstream: upstream.to_owned(),
                        reply,
                    });
                }
                debug!(
                    upstream,
                    ?wait,
                    "The server's IAM check is throttling; trying again"
                );
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(MAX_THROTTLE_BACKOFF);
                continue;
            }
            AuthReply::Failed(reply) => {
                record(slot, "error");
                return Err(ConnError::AuthFailed {
                    upstream: upstream.to_owned(),
                    reply,
                });
            }
        }
        if slot == Slot::Previous && attempt > 0 {
            debug!(upstream, "Fell back to the previous token");
            if let Some(metrics) = metrics {
                metrics.fallback();
            }
        }
        store.record_success(slot);
        return Ok(slot);
    }
    unreachable!("attempt order always holds the current slot")
}

/// `wait` times 0.5 to 1.0, so that connections throttled together do not return together.
fn jittered(wait: Duration) -> Duration {
    use std::hash::{BuildHasher, RandomState};
    let spread = RandomState::new().hash_one(0u8) % 501;
    wait.mul_f64(0.5 + spread as f64 / 1000.0)
}

/// Writes one command and reads its reply, leaving any later bytes in `buf`.
pub(crate) async fn exchange<S>(
    stream: &mut S,
    command: &[u8],
    buf: &mut BytesMut,
    upstream: &str,
) -> Result<Vec<u8>, ConnError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    stream
        .write_all(command)
        .await
        .map_err(ConnError::UpstreamIo)?;
    stream.flush().await.map_err(ConnError::UpstreamIo)?;
    read_reply(stream, buf, upstream).await
}

/// Reads the next reply frame, skipping RESP3 pushes before it, and leaves any later bytes in
/// `buf`. Replies the proxy waits for itself are one short line; a longer one is refused.
pub(crate) async fn read_reply<S>(
    stream: &mut S,
    buf: &mut BytesMut,
    upstream: &str,
) -> Result<Vec<u8>, ConnError>
where
    S: AsyncRead + Unpin,
{
    read_frame(stream, buf, upstream, MAX_AUTH_REPLY)
        .await?
        .ok_or_else(|| ConnError::AuthFailed {
            upstream: upstream.to_owned(),
            reply: "reply to AUTH is too long".into(),
        })
}

/// Reads the next reply frame, skipping RESP3 pushes before it, and leaves any later bytes in
/// `buf`; `None` once more than `max` bytes are held without a whole frame.
pub(crate) async fn read_frame<S>(
    stream: &mut S,
    buf: &mut BytesMut,
    upstream: &str,
    max: usize,
) -> Result<Option<Vec<u8>>, ConnError>
where
    S: AsyncRead + Unpin,
{
    let mut scanner = ReplyScanner::new();
    let mut scanned = 0;
    loop {
        while scanned < buf.len() {
            match scanner.scan(&buf[scanned..])? {
                Scan::Partial => scanned = buf.len(),
                Scan::End { len, kind } => {
                    let frame = buf.split_to(scanned + len);
                    scanned = 0;
                    if kind == FrameKind::Reply {
                        return Ok(Some(frame.to_vec()));
                    }
                }
            }
        }
        if buf.len() > max {
            return Ok(None);
        }
        buf.reserve(512.max(buf.len().min(64 * 1024)));
        let n = stream.read_buf(buf).await.map_err(ConnError::UpstreamIo)?;
        if n == 0 {
            return Err(ConnError::AuthClosed {
                upstream: upstream.to_owned(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Token;

    #[test]
    fn memorystore_throttling_is_told_from_a_refused_token() {
        let credentials = Credentials {
            username: None,
            current: Token::new("tok-abcdefghijklmnop".into()),
            previous: None,
            expires: None,
        };
        let throttled =
            b"-ERR (ERR_IAM_EXHAUSTED) Memorystore IAM authentication backend quota exceeded.\r\n";
        assert!(matches!(
            AuthReply::parse(throttled, &credentials),
            AuthReply::Throttled(_)
        ));
        let other = b"-ERR (ERR_IAM_OTHER) Memorystore IAM authentication backend error.\r\n";
        assert!(matches!(
            AuthReply::parse(other, &credentials),
            AuthReply::Throttled(_)
        ));
        let refused = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n";
        assert_eq!(AuthReply::parse(refused, &credentials), AuthReply::Rejected);
    }
}
