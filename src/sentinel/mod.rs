//! Redis Sentinel as the way a route finds its primary (`--sentinel`, `--sentinel-master`).
//!
//! Each new upstream connection goes to the primary the Sentinels name. One task per route
//! (`watch.rs`) keeps a connection to one Sentinel subscribed to `+switch-master`: while it is
//! subscribed, the address it last named is used as is (the Sentinel pushes every change, so
//! asking again would tell nothing new); while it is not, the Sentinels are asked at every
//! connection, one after another until one answers. A switch announced there moves the
//! route's live sessions to the new primary at their next quiet moment, without waiting for
//! the old primary to refuse a write: a Sentinel demotes the old primary only seconds later,
//! and what it accepts meanwhile is lost when it resyncs as a replica.
//!
//! Only the address ever comes from a Sentinel: the token goes to a server the Sentinels the
//! operator configured announce, and the Sentinels get only their own password.

mod reply;
mod watch;

use crate::address::UpstreamAddr;
use crate::error::ConnError;
use crate::handshake::exchange;
use crate::lock;
use crate::resp::encode_request;
use crate::secret::Token;
use crate::upstream::{Connector, Locate, TlsConfigError, TlsSettings, UpstreamStream};
use bytes::BytesMut;
use secrecy::zeroize::Zeroizing;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The port a Sentinel listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 26379;

/// Where a route's Sentinels are and how to talk to them, as validated by `config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelSettings {
    /// `--sentinel`, in the order given: asked in turn.
    pub addrs: Vec<UpstreamAddr>,
    /// `--sentinel-master`: the name the Sentinels monitor the primary under.
    pub master: String,
    /// `--sentinel-username`.
    pub username: Option<String>,
    /// `--sentinel-password-file`: the Sentinels' own `requirepass`, read at each connection.
    pub password_file: Option<PathBuf>,
    /// `None`: plain TCP (`--sentinel-tls false`).
    pub tls: Option<TlsSettings>,
}

impl SentinelSettings {
    /// How errors, logs and `check` name a route's server.
    pub fn describe(&self) -> String {
        format!("master {} via Sentinel", self.master)
    }
}

/// A route's connector: to `addr`, or with `sentinel` to the primary its Sentinels name (they
/// get `answer_timeout` to answer), with the Sentinels to watch.
pub(crate) fn route_connector(
    addr: UpstreamAddr,
    tls: Option<&TlsSettings>,
    sentinel: Option<&SentinelSettings>,
    connect_timeout: Duration,
    answer_timeout: Duration,
) -> Result<(Connector, Option<Arc<Sentinels>>), TlsConfigError> {
    let connector = Connector::new(addr, tls, connect_timeout)?;
    let Some(sentinel) = sentinel else {
        return Ok((connector, None));
    };
    let sentinels = Arc::new(Sentinels::new(
        sentinel.clone(),
        connect_timeout,
        answer_timeout,
    )?);
    let locator: Arc<dyn Locate> = sentinels.clone();
    Ok((connector.locating_with(locator), Some(sentinels)))
}

/// A route's Sentinels, and the primary they last named.
pub(crate) struct Sentinels {
    settings: SentinelSettings,
    connectors: Vec<Connector>,
    /// How long a Sentinel has to answer.
    timeout: Duration,
    /// The primary the subscribed Sentinel named last.
    known: Mutex<Option<UpstreamAddr>>,
    /// Whether a Sentinel connection is subscribed to `+switch-master` now: only then is
    /// `known` current.
    subscribed: AtomicBool,
}

impl Sentinels {
    pub(crate) fn new(
        settings: SentinelSettings,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Result<Self, TlsConfigError> {
        let connectors = (settings.addrs.iter())
            .map(|addr| Connector::new(addr.clone(), settings.tls.as_ref(), connect_timeout))
            .collect::<Result<_, _>>()?;
        Ok(Sentinels {
            settings,
            connectors,
            timeout,
            known: Mutex::new(None),
            subscribed: AtomicBool::new(false),
        })
    }

    /// Where the primary is: the subscribed Sentinel's last word, else the first Sentinel
    /// that answers.
    pub(crate) async fn primary(&self) -> Result<UpstreamAddr, ConnError> {
        if self.subscribed.load(Ordering::Acquire)
            && let Some(known) = lock(&self.known).clone()
        {
            return Ok(known);
        }
        self.ask().await
    }

    /// Asks each Sentinel in turn where the primary is; the first answer wins.
    async fn ask(&self) -> Result<UpstreamAddr, ConnError> {
        let mut failures = Vec::new();
        for connector in &self.connectors {
            match self.ask_one(connector).await {
                Ok(addr) => return Ok(addr),
                Err(error) => failures.push(format!("{}: {error}", connector.addr)),
            }
        }
        Err(ConnError::Sentinel {
            master: self.settings.master.clone(),
            reason: failures.join("; "),
        })
    }

    async fn ask_one(&self, connector: &Connector) -> Result<UpstreamAddr, ConnError> {
        let (mut stream, mut buf) = self.open(connector).await?;
        let name = connector.addr.to_string();
        let request = self.get_master();
        let asked = exchange(&mut stream, &request, &mut buf, &name);
        let reply = tokio::time::timeout(self.timeout, asked)
            .await
            .map_err(|_| ConnError::auth_timeout(self.timeout, &name))??;
        reply::master_addr(&reply).map_err(|reason| ConnError::Sentinel {
            master: self.settings.master.clone(),
            reason,
        })
    }

    /// `SENTINEL GET-MASTER-ADDR-BY-NAME <master>`.
    fn get_master(&self) -> Vec<u8> {
        let master = self.settings.master.as_bytes();
        encode_request(&[b"SENTINEL", b"GET-MASTER-ADDR-BY-NAME", master])
    }

    /// A connection to one Sentinel, authenticated if it has a password; with what was read
    /// past the AUTH reply.
    async fn open(&self, connector: &Connector) -> Result<(UpstreamStream, BytesMut), ConnError> {
        let mut stream = connector.connect().await?;
        let mut buf = BytesMut::new();
        let Some(password) = self.password().await? else {
            return Ok((stream, buf));
        };
        let name = connector.addr.to_string();
        let mut words: Vec<&[u8]> = vec![b"AUTH"];
        words.extend(self.settings.username.as_deref().map(str::as_bytes));
        words.push(password.expose().as_bytes());
        let command = Zeroizing::new(encode_request(&words));
        let sent = exchange(&mut stream, &command, &mut buf, &name);
        let reply = tokio::time::timeout(self.timeout, sent)
            .await
            .map_err(|_| ConnError::auth_timeout(self.timeout, &name))??;
        if !reply.starts_with(b"+OK") {
            let reply = String::from_utf8_lossy(&reply);
            return Err(ConnError::AuthFailed {
                upstream: name,
                reply: password.redact_from(reply.trim_end()),
            });
        }
        Ok((stream, buf))
    }

    /// The Sentinels' password, read from its file now (so that a new one is used at once).
    async fn password(&self) -> Result<Option<Token>, ConnError> {
        let Some(path) = &self.settings.password_file else {
            return Ok(None);
        };
        let text = tokio::fs::read_to_string(path)
            .await
            .map_err(|error| ConnError::Sentinel {
                master: self.settings.master.clone(),
                reason: format!(
                    "cannot read --sentinel-password-file {}: {error}",
                    path.display()
                ),
            })?;
        let text = Zeroizing::new(text);
        let first = text.lines().next().unwrap_or("").trim();
        Ok(Some(Token::new(first.to_owned())))
    }
}

impl Locate for Sentinels {
    fn locate(&self) -> Pin<Box<dyn Future<Output = Result<UpstreamAddr, ConnError>> + Send + '_>> {
        Box::pin(self.primary())
    }

    fn describe(&self) -> String {
        self.settings.describe()
    }
}
