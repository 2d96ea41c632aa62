//! What a request means to the proxy: the scanner's verdict on each request it starts.

use secrecy::{ExposeSecret, SecretSlice};

/// What a request means to the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Anything the proxy only forwards.
    Other,
    /// `*0`, a negative count or an empty inline line: Redis runs nothing and sends no reply.
    Empty,
    /// `AUTH pass` or `AUTH user pass`: answered by the proxy, never forwarded.
    Auth(ClientCredentials),
    /// `HELLO` without an AUTH clause.
    Hello,
    /// `HELLO ... AUTH u p ...`: forwarded as `rewritten`, without the AUTH clause, when it
    /// names the proxy's user. With other options malformed (`well_formed` false) the password
    /// is not checked: the server answers with its own syntax error. One naming another user
    /// goes as sent, whatever its options, for the server to answer as its version does (7.0
    /// checks the AUTH clause before later options, 7.2 after all of them).
    HelloWithAuth {
        /// Boxed, so that `Command` (returned for every request) stays 64 bytes.
        rewritten: Box<[u8]>,
        credentials: ClientCredentials,
        well_formed: bool,
    },
    /// `QUIT`: allowed before the client has authenticated, as Redis allows it.
    Quit,
    /// `RESET` (without arguments: with any, the server refuses it and nothing is reset).
    Reset,
    /// `MULTI`: later requests are queued by the server until EXEC or DISCARD.
    Multi,
    /// `EXEC` or `DISCARD` (without arguments, as only then do they end MULTI).
    EndMulti,
    /// `MONITOR`: from its reply on, the server's output answers no request.
    Monitor,
    /// `(P|S)SUBSCRIBE`, `(P|S)UNSUBSCRIBE`: in RESP2 the connection may enter or leave the
    /// subscribed mode, where replies do not answer requests one to one; in RESP3 their
    /// answers are pushes, and an error (an ACL, a cluster redirect) a reply. `leaving`: an
    /// UNSUBSCRIBE, the only kind that can end RESP2's subscribed mode.
    PubSub { leaving: bool },
    /// `CLIENT REPLY ON|OFF|SKIP`: replies no longer answer requests one to one.
    ClientReply(ReplyMode),
    /// `CLIENT CACHING yes|no`: applies to the next command the server runs.
    ClientCaching,
    /// `CLIENT NO-EVICT`, `NO-TOUCH` or `SETINFO`: state that RESET leaves as it is.
    ClientSticky,
    /// `CLIENT ID` or `CLIENT INFO`: the client learns its connection's id on the server.
    ClientIdentity,
    /// `CLIENT LIST` or `ACL LOG`: the client learns the ids of every connection on the server.
    ClientList,
    /// `CLIENT TRACKING ON ...`: the server remembers the keys this connection reads, past RESET.
    ClientTracking,
    /// `SELECT`: a connection that replaces this one is told it again.
    Select,
    /// `CLIENT SETNAME`: a connection that replaces this one is told it again.
    ClientSetName,
    /// `WATCH key...`: keys are watched on this connection until EXEC, DISCARD or UNWATCH.
    Watch,
    /// `UNWATCH`.
    Unwatch,
    /// `SYNC` or `PSYNC`: the server answers with a replication stream, which is not RESP.
    Replicate,
    /// `CLUSTER SLOTS`, `SHARDS`, `NODES`, `REPLICAS id` or `SLAVES id`: the reply names nodes,
    /// rewritten in cluster mode.
    ClusterTopology(crate::cluster::Topology),
}

impl Command {
    /// Whether the request's bytes are forwarded unchanged.
    pub fn passes_through(&self) -> bool {
        !matches!(self, Command::Auth(_) | Command::HelloWithAuth { .. })
    }
}

/// What `CLIENT REPLY` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyMode {
    On,
    Off,
    Skip,
}

/// The user and password a client sent with AUTH or HELLO: checked against
/// `--client-password-file`, never forwarded. Redacted in `Debug`, zeroised on drop.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    pub username: Option<Vec<u8>>,
    pub password: SecretSlice<u8>,
}

impl ClientCredentials {
    pub(super) fn new(username: Option<&[u8]>, password: &[u8]) -> Self {
        ClientCredentials {
            username: username.map(<[u8]>::to_vec),
            password: SecretSlice::from(password.to_vec()),
        }
    }
}

/// Equal when both the user and the password are; for tests of the scanner.
impl PartialEq for ClientCredentials {
    fn eq(&self, other: &Self) -> bool {
        self.username == other.username
            && self.password.expose_secret() == other.password.expose_secret()
    }
}

impl Eq for ClientCredentials {}
