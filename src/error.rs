//! Why a proxied connection ended, and what that means to the client, the logs and the metrics.
//! `ConnError::outcome` is the one place that decides.

use crate::resp::ProtocolError;
use crate::resp::reply::MalformedReply;
use std::time::Duration;
use tracing::Level;

/// The step of reaching the server that timed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Connect,
    Auth,
}

impl Stage {
    fn as_str(self) -> &'static str {
        match self {
            Stage::Connect => "connect and TLS handshake",
            Stage::Auth => "AUTH",
        }
    }
}

/// A proxied connection's failure. Texts name the upstream and the cause, never a token.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("no token is loaded")]
    NoToken,
    #[error("cannot resolve upstream {upstream}: {error}")]
    Resolve {
        upstream: String,
        error: std::io::Error,
    },
    #[error("cannot connect to upstream {upstream}: {error}")]
    Connect {
        upstream: String,
        error: std::io::Error,
    },
    #[error("TLS handshake with upstream {upstream} failed: {error}")]
    Tls {
        upstream: String,
        error: std::io::Error,
    },
    #[error("timed out after {after:?} in {} with upstream {upstream}", stage.as_str())]
    Timeout {
        stage: Stage,
        after: Duration,
        upstream: String,
    },
    #[error("upstream {upstream} rejected {tried} (WRONGPASS)")]
    AuthRejected {
        upstream: String,
        tried: &'static str,
    },
    #[error("upstream {upstream} refused AUTH: {reply}")]
    AuthFailed { upstream: String, reply: String },
    #[error("upstream {upstream} closed the connection during AUTH")]
    AuthClosed { upstream: String },
    #[error("{0}")]
    ClientProtocol(#[from] ProtocolError),
    #[error("client connection failed: {0}")]
    ClientIo(std::io::Error),
    #[error("upstream connection failed: {0}")]
    UpstreamIo(std::io::Error),
    #[error("{0}")]
    UpstreamProtocol(#[from] MalformedReply),
    #[error(
        "wrong client password where no reply could be placed (MULTI, pub/sub, MONITOR or CLIENT REPLY)"
    )]
    ClientWrongPassword,
    #[error("idle for {0:?} (--idle-timeout)")]
    IdleTimeout(Duration),
    #[error(
        "closed before the server's cut of IAM connections: never quiet long enough to authenticate again (--iam-connection-lifetime)"
    )]
    LifetimeReached,
    #[error("{0}")]
    Cluster(crate::cluster::ClusterError),
    #[error(
        "no primary answered at upstream {upstream} within {after:?} (--failover-timeout); the last node was {role}"
    )]
    NoPrimary {
        upstream: String,
        after: Duration,
        role: &'static str,
    },
    #[error(
        "the server refused a command as a replica where the session cannot move ({reason}); closed so that the next connection reaches the primary"
    )]
    LeftReplica { reason: &'static str },
    #[error(
        "the Sentinels switched the primary where the session cannot move ({reason}); closed so that the next connection reaches the new primary"
    )]
    PrimarySwitched { reason: &'static str },
    #[error("left its replies unread past the output limit of a shared connection (--multiplex)")]
    OutputLimit,
    #[error("the shared upstream connection was lost in the middle of a reply")]
    SharedConnectionLost,
    #[error("no shared upstream connection could be opened: {0}")]
    NoSharedConnection(String),
    #[error("Sentinel lookup of {master} failed: {reason}")]
    Sentinel { master: String, reason: String },
}

/// What a failure means: the reply to send (if the client can still take one), a bounded label
/// for metrics, and how loudly to log it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub reply: Option<String>,
    pub label: &'static str,
    pub level: Level,
}

impl ConnError {
    /// The server did not answer an exchange of the proxy's own (AUTH, ROLE, a replayed
    /// setting) within `after`.
    pub fn auth_timeout(after: Duration, upstream: &str) -> ConnError {
        ConnError::Timeout {
            stage: Stage::Auth,
            after,
            upstream: upstream.to_owned(),
        }
    }

    /// The stage at which reaching the server failed, for metrics; `None` after it was reached.
    pub fn stage(&self) -> Option<&'static str> {
        Some(match self {
            ConnError::NoToken => "no_token",
            ConnError::Resolve { .. } => "dns",
            ConnError::Connect { .. } => "tcp",
            ConnError::Tls { .. } => "tls",
            ConnError::Timeout { .. } => "timeout",
            ConnError::NoPrimary { .. } => "no_primary",
            ConnError::Sentinel { .. } => "sentinel",
            ConnError::AuthRejected { .. }
            | ConnError::AuthFailed { .. }
            | ConnError::AuthClosed { .. } => "auth",
            _ => return None,
        })
    }

    /// Why authentication failed, for `redis_auth_proxy_auth_failures_total`.
    pub fn auth_failure_reason(&self) -> Option<&'static str> {
        Some(match self {
            ConnError::AuthRejected { .. } => "rejected",
            ConnError::AuthFailed { .. } => "error",
            ConnError::AuthClosed { .. } => "closed",
            ConnError::Timeout {
                stage: Stage::Auth, ..
            } => "timeout",
            _ => return None,
        })
    }

    /// The one mapping from a failure to its reply, metric label and log level.
    pub fn outcome(&self) -> Outcome {
        let (label, level) = match self {
            ConnError::NoToken => ("no_token", Level::ERROR),
            ConnError::Resolve { .. } => ("dns", Level::WARN),
            ConnError::Connect { .. } => ("tcp", Level::WARN),
            ConnError::Tls { .. } => ("tls", Level::WARN),
            ConnError::Timeout { .. } => ("timeout", Level::WARN),
            ConnError::AuthRejected { .. } => ("auth_rejected", Level::WARN),
            ConnError::AuthFailed { .. } | ConnError::AuthClosed { .. } => ("auth", Level::WARN),
            ConnError::ClientProtocol(_) => ("client_protocol", Level::DEBUG),
            ConnError::ClientIo(_) => ("client_io", Level::DEBUG),
            ConnError::UpstreamIo(_) => ("upstream_io", Level::DEBUG),
            ConnError::UpstreamProtocol(_) => ("upstream_protocol", Level::WARN),
            ConnError::ClientWrongPassword => ("client_auth", Level::DEBUG),
            ConnError::IdleTimeout(_) => ("idle_timeout", Level::DEBUG),
            ConnError::LifetimeReached => ("iam_lifetime", Level::WARN),
            ConnError::Cluster(_) => ("cluster_topology", Level::WARN),
            ConnError::NoPrimary { .. } => ("no_primary", Level::WARN),
            ConnError::LeftReplica { .. } => ("left_replica", Level::INFO),
            ConnError::PrimarySwitched { .. } => ("primary_switched", Level::INFO),
            ConnError::Sentinel { .. } => ("sentinel", Level::WARN),
            ConnError::OutputLimit => ("output_limit", Level::WARN),
            ConnError::SharedConnectionLost => ("upstream_io", Level::DEBUG),
            ConnError::NoSharedConnection(_) => ("no_shared_connection", Level::WARN),
        };
        let reply = match self {
            // Protocol errors are worded exactly as Redis words them.
            ConnError::ClientProtocol(e) => Some(format!("ERR {e}")),
            // The client is gone or the stream is mid-reply: nothing can be said in order.
            ConnError::ClientIo(_) | ConnError::UpstreamIo(_) | ConnError::UpstreamProtocol(_) => {
                None
            }
            // Already answered in order (WRONGPASS), or closed silently as Redis's `timeout` does.
            // Already answered in the reply's place.
            ConnError::Cluster(_) => None,
            // The server's refusal was passed on in its place.
            ConnError::LeftReplica { .. } => None,
            // Closed between replies, as the old primary would close it once demoted.
            ConnError::PrimarySwitched { .. } => None,
            // As Redis closes a client past client-output-buffer-limit, without a word; and
            // mid-reply nothing can be said in order.
            ConnError::OutputLimit | ConnError::SharedConnectionLost => None,
            // The server would have closed it a little later, without a word either.
            ConnError::ClientWrongPassword
            | ConnError::IdleTimeout(_)
            | ConnError::LifetimeReached => None,
            other => Some(format!("ERR redis-auth-proxy: {other}")),
        };
        Outcome {
            reply,
            label,
            level,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_failures_become_err_replies_naming_the_cause() {
        let err = ConnError::AuthRejected {
            upstream: "cache:6379".into(),
            tried: "the current and the previous token",
        };
        let outcome = err.outcome();
        assert_eq!(
            outcome.reply.as_deref(),
            Some(
                "ERR redis-auth-proxy: upstream cache:6379 rejected the current and the previous token (WRONGPASS)"
            )
        );
        assert_eq!(outcome.label, "auth_rejected");
    }

    #[test]
    fn client_protocol_errors_use_redis_wording() {
        let err = ConnError::from(ProtocolError::InvalidBulkLength);
        assert_eq!(
            err.outcome().reply.as_deref(),
            Some("ERR Protocol error: invalid bulk length")
        );
    }
}
