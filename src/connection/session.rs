//! The client's side of a connection: what it asked for and set, apart from the upstream
//! stream that carries its requests.

use crate::resp::request::RequestScanner;

/// Where the client's request stream stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Input {
    /// Requests are read and forwarded.
    Forwarding,
    /// The request being scanned is refused: its remaining bytes are dropped, not forwarded.
    Dropping,
    /// QUIT is being forwarded; once it is whole, nothing after it is.
    Quitting,
    /// No more requests are read: QUIT was sent, or a malformed request was found.
    Done,
}

/// The client's CLIENT REPLY mode, as the server will apply it to the next request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ClientReply {
    On,
    /// CLIENT REPLY OFF: the server answers nothing.
    Off,
    /// CLIENT REPLY SKIP was the last request: the server does not answer the next one.
    Skip,
}

/// The client's session.
pub(super) struct Session {
    /// The client's requests being scanned. Until the client has sent the
    /// `--client-password-file` password the scanner applies Redis's limits for an
    /// unauthenticated client: its flag is the session's authentication, kept once.
    pub(super) requests: RequestScanner,
    pub(super) input: Input,
    pub(super) in_multi: bool,
    pub(super) client_reply: ClientReply,
    /// The last request forwarded was CLIENT CACHING, whose flag the next command consumes.
    pub(super) caching_next: bool,
    /// CLIENT NO-EVICT, NO-TOUCH or SETINFO was forwarded: state RESET does not clear.
    pub(super) sticky_state: bool,
    /// The client may name this connection on the server (it learned its id: CLIENT ID, INFO,
    /// LIST, HELLO), or the server keeps what it read (CLIENT TRACKING ON): RESET undoes
    /// neither, so the connection is never handed to another client.
    pub(super) identity_exposed: bool,
    /// CLIENT LIST or ACL LOG was forwarded since last asked: every connection's id is known.
    pub(super) listed_clients: bool,
    /// WATCH was forwarded and no EXEC, DISCARD, UNWATCH or RESET since: keys are watched on
    /// this connection, which a move to another cannot carry.
    pub(super) watching: bool,
    /// CLIENT TRACKING ON was forwarded: the server tracks keys for this connection.
    pub(super) tracking: bool,
    /// AUTH (or HELLO AUTH) naming another ACL user went to the server.
    pub(super) other_user: bool,
}

impl Session {
    pub(super) fn new(authenticated: bool) -> Self {
        let mut session = Session {
            requests: RequestScanner::new(),
            input: Input::Forwarding,
            in_multi: false,
            client_reply: ClientReply::On,
            caching_next: false,
            sticky_state: false,
            identity_exposed: false,
            listed_clients: false,
            watching: false,
            tracking: false,
            other_user: false,
        };
        session.set_authenticated(authenticated);
        session
    }

    /// False until the client has sent the `--client-password-file` password.
    pub(super) fn authenticated(&self) -> bool {
        !self.requests.unauthenticated()
    }

    pub(super) fn set_authenticated(&mut self, authenticated: bool) {
        self.requests.set_unauthenticated(!authenticated);
    }

    /// No request half read.
    pub(super) fn at_boundary(&self) -> bool {
        self.requests.at_boundary()
    }

    pub(super) fn done(&self) -> bool {
        self.input == Input::Done
    }

    /// The server may not answer the next request (CLIENT REPLY OFF or SKIP).
    pub(super) fn replies_suppressed(&self) -> bool {
        self.client_reply != ClientReply::On
    }

    /// RESET took effect: MULTI and CLIENT REPLY are behind, and with a client password the
    /// client is logged out, as on a server.
    pub(super) fn reset(&mut self, authenticated: bool) {
        self.in_multi = false;
        self.watching = false;
        self.tracking = false;
        self.other_user = false;
        self.client_reply = ClientReply::On;
        self.set_authenticated(authenticated);
    }
}
