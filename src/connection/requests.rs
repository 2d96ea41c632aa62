//! The client-to-server half of the decisions: what each request becomes.

use super::follow::Setting;
use super::session::{ClientReply, Input};
use super::stream::{Act, Claim, MarkKind, Replies};
use super::{Actions, Awaiting, Connection, ToServer};
use crate::client_auth::{NOAUTH, NOAUTH_HELLO, WRONGPASS};
use crate::error::ConnError;
use crate::resp::request::{ClientCredentials, Command, ReplyMode, Step};
use crate::resp::{ProtocolError, encode_request, error_reply};
use bytes::Bytes;
use tracing::debug;

impl Connection<'_> {
    /// Takes the client's bytes; returns how many were consumed. The rest (an incomplete
    /// request, or requests that must wait) is to be offered again with more bytes after it.
    pub fn on_requests(&mut self, input: &[u8], actions: &mut Actions) -> usize {
        let first = actions.server.len();
        let mut pos = 0;
        loop {
            pos = self.take_requests(input, pos, actions);
            // An answer placed after the last reply already passed goes out now; what waited
            // for quiet may then go on.
            self.fire_due_now(actions);
            if !(self.awaiting == Some(Awaiting::Quiet) && self.settle_quiet()) {
                self.account(first, pos, actions);
                return pos;
            }
        }
    }

    /// Takes requests from `input[start..]` while they can be taken; returns where it stopped.
    fn take_requests(&mut self, input: &[u8], start: usize, actions: &mut Actions) -> usize {
        let mut pos = start;
        let mut pass_from = start;
        while self.accepts_requests() {
            let (sent_before, at) = (self.stream.sent, self.client_offset(pos));
            let mid_request = !self.session.at_boundary();
            let step = match self.session.requests.step(&input[pos..]) {
                Ok(step) => step,
                Err(error) => {
                    actions.pass_to_server(pass_from..pos);
                    self.malformed(error, mid_request, actions);
                    pass_from = input.len();
                    pos = input.len();
                    break;
                }
            };
            match step {
                Step::NeedMore => break,
                Step::Continue { len } => {
                    pos += len;
                    if self.session.input == Input::Dropping {
                        pass_from = pos;
                    }
                }
                Step::Start {
                    command: Command::Reset,
                    ..
                } if self.stream.sending != Replies::Raw && self.owes_replies() => {
                    // RESET logs the connection out, and Redis closes a connection that is
                    // logged out with over 1 KiB of replies unsent: let those arrive first.
                    self.awaiting = Some(Awaiting::Quiet);
                    continue;
                }
                Step::Start { len, command } if self.passes(&command) => {
                    self.session.input = Input::Forwarding;
                    let start = pos;
                    pos += len;
                    if let Some(setting) = Setting::set_by(&command) {
                        // Kept only when it came whole in this read, as it nearly always does.
                        let whole = self.session.at_boundary().then(|| &input[start..pos]);
                        self.remember(setting, whole);
                    }
                    self.forwarded(&command, actions, &mut pass_from, pos);
                }
                Step::Start { len, command }
                    if self.session.authenticated() && self.names_another_user(&command) =>
                {
                    if self.owes_replies() {
                        // Offered again from its start once the replies owed have arrived.
                        self.awaiting = Some(Awaiting::Quiet);
                        continue;
                    }
                    // Forwarded as sent: the server checks it and answers in its place.
                    self.session.input = Input::Forwarding;
                    pos += len;
                    self.stream.sent += 1;
                    self.session.other_user = true;
                    self.session.identity_exposed |=
                        matches!(command, Command::HelloWithAuth { .. });
                }
                Step::Start { len, command } => {
                    actions.pass_to_server(pass_from..pos);
                    pos += len;
                    pass_from = pos;
                    self.session.input = Input::Dropping;
                    self.intercept(command, actions);
                }
            }
            self.note_sent(sent_before, at);
            if self.session.input == Input::Quitting && self.session.at_boundary() {
                self.session.input = Input::Done;
            }
            if self.stream.probe_due && self.session.at_boundary() {
                actions.pass_to_server(pass_from..pos);
                pass_from = pos;
                self.probe(actions);
            }
        }
        actions.pass_to_server(pass_from..pos);
        pos
    }

    /// `AUTH user pass` or `HELLO ... AUTH user pass` naming a user other than the proxy's.
    fn names_another_user(&self, command: &Command) -> bool {
        let credentials = match command {
            Command::Auth(credentials) => credentials,
            Command::HelloWithAuth { credentials, .. } => credentials,
            _ => return false,
        };
        let own = self.rules.username.unwrap_or("default").as_bytes();
        credentials
            .username
            .as_deref()
            .is_some_and(|user| user != own)
    }

    /// Whether a request goes upstream in the client's own bytes. Before the client has
    /// authenticated, only what Redis allows then (QUIT, RESET) does.
    fn passes(&self, command: &Command) -> bool {
        command.passes_through()
            && (self.session.authenticated()
                || matches!(command, Command::Quit | Command::Reset | Command::Empty))
    }

    /// Records what a forwarded request does to the session and the reply stream.
    fn forwarded(
        &mut self,
        command: &Command,
        actions: &mut Actions,
        pass_from: &mut usize,
        pos: usize,
    ) {
        let session = &mut self.session;
        let stream = &mut self.stream;
        session.caching_next = matches!(command, Command::ClientCaching);
        // The skip applies to the next request, even an empty one, as Redis's `resetClient`.
        if session.client_reply == ClientReply::Skip {
            session.client_reply = ClientReply::On;
            stream.probe_due = true;
        }
        match command {
            Command::Empty => return,
            Command::ClientReply(mode) => {
                if stream.sending == Replies::Counted {
                    stream.switch(Replies::Uncounted);
                }
                session.client_reply = match mode {
                    ReplyMode::On => ClientReply::On,
                    ReplyMode::Off => ClientReply::Off,
                    ReplyMode::Skip => ClientReply::Skip,
                };
                stream.probe_due = *mode == ReplyMode::On;
            }
            Command::ClientSticky => session.sticky_state = true,
            Command::ClientIdentity | Command::Hello => session.identity_exposed = true,
            Command::ClientTracking => {
                session.identity_exposed = true;
                session.tracking = true;
            }
            Command::Watch => session.watching = true,
            Command::Unwatch => session.watching = false,
            Command::ClientList => {
                session.identity_exposed = true;
                session.listed_clients = true;
            }
            Command::Multi => {
                session.in_multi = true;
                if let Some(follow) = &mut self.follow {
                    follow.multi_at = Some(stream.sent);
                }
            }
            Command::EndMulti => {
                session.in_multi = false;
                session.watching = false;
            }
            Command::Quit => session.input = Input::Quitting,
            Command::Monitor | Command::PubSub { .. } => {
                // Counted before (RESP3, or not yet subscribed) the probe tells whether it still
                // is; not counted (subscribed in RESP2), only an UNSUBSCRIBE can change that.
                let may_count = match command {
                    Command::PubSub { leaving } => *leaving || stream.sending == Replies::Counted,
                    _ => false,
                };
                if stream.sending == Replies::Counted {
                    stream.switch(Replies::Uncounted);
                }
                stream.pubsub_used |= matches!(command, Command::PubSub { .. });
                let lost = matches!(command, Command::Monitor) || session.in_multi;
                stream.counting_lost |= lost;
                stream.probe_due = (stream.probe_due || may_count) && !lost;
            }
            Command::Replicate => stream.switch(Replies::Raw),
            // Inside MULTI the reply is +QUEUED and the topology comes in EXEC's array, which
            // is not rewritten (docs/cluster.md).
            Command::ClusterTopology(kind)
                if self.rules.cluster.is_some()
                    && stream.sending == Replies::Counted
                    && !session.in_multi =>
            {
                stream.place(MarkKind::Reply(Claim::Rewrite(*kind)));
            }
            Command::Reset if stream.sending != Replies::Raw => {
                actions.pass_to_server(*pass_from..pos);
                *pass_from = pos;
                self.reset(actions);
                return;
            }
            _ => {}
        }
        stream.sent += 1;
    }

    /// Sends `PING <marker>` after the request just forwarded, where replies may answer
    /// requests one to one again, unless nothing could answer it (CLIENT REPLY OFF or SKIP) or
    /// only RESET can bring counting back. Later requests wait for its reply.
    fn probe(&mut self, actions: &mut Actions) {
        self.stream.probe_due = false;
        let useful = self.stream.sending == Replies::Uncounted
            && self.awaiting.is_none()
            && !self.stream.counting_lost
            && !self.session.in_multi
            && !self.session.replies_suppressed()
            && !self.session.done();
        if !useful {
            return;
        }
        let command = encode_request(&[b"PING", &self.stream.marker()]);
        actions.server.push(ToServer::Send(Bytes::from(command)));
        self.stream.place(MarkKind::Reply(Claim::Probe));
        self.awaiting = Some(Awaiting::Probe);
    }

    /// RESET is on its way: later requests wait until its reply has passed, then the proxy
    /// authenticates again. While not counting, the marker command says where its effects end.
    fn reset(&mut self, actions: &mut Actions) {
        self.rules.metrics.intercepted("reset");
        self.stream.probe_due = false;
        let marker = (self.stream.sending != Replies::Counted).then(|| {
            let command = encode_request(&[&self.stream.marker()]);
            actions.server.push(ToServer::Send(Bytes::from(command)));
        });
        let claim = match marker {
            Some(()) => Claim::Marker { reset: true },
            None => Claim::Reset,
        };
        self.stream.place(MarkKind::Reply(claim));
        self.stream.sent += 1;
        self.awaiting = Some(Awaiting::ResetReply);
    }

    /// Answers or rewrites a request the server must not see as sent.
    fn intercept(&mut self, command: Command, actions: &mut Actions) {
        match command {
            Command::Auth(sent) => {
                self.rules.metrics.intercepted("auth");
                if self.client_password_ok(&sent) {
                    self.answer_auth(actions);
                } else {
                    self.reply_or_fail(WRONGPASS);
                }
            }
            Command::HelloWithAuth {
                rewritten,
                credentials,
                well_formed,
            } => {
                self.rules.metrics.intercepted("hello");
                if !well_formed || self.client_password_ok(&credentials) {
                    debug!("Removed AUTH from client HELLO");
                    self.session.identity_exposed = true;
                    self.remember(Setting::Protocol, Some(&rewritten));
                    actions.server.push(ToServer::Send(Bytes::from(rewritten)));
                    self.stream.sent += 1;
                } else {
                    self.reply_or_fail(WRONGPASS);
                }
            }
            Command::Hello => {
                self.rules.metrics.client_auth("noauth");
                self.reply_or_fail(NOAUTH_HELLO);
            }
            _ => {
                self.rules.metrics.client_auth("noauth");
                self.reply_or_fail(NOAUTH);
            }
        }
    }

    /// Checks a client's AUTH against `--client-password-file`; without one, any is accepted.
    fn client_password_ok(&mut self, sent: &ClientCredentials) -> bool {
        let Some(passwords) = self.rules.client_passwords else {
            return true;
        };
        if passwords.check(sent) {
            self.rules.metrics.client_auth("accepted");
            self.session.set_authenticated(true);
            true
        } else {
            self.rules.metrics.client_auth("wrongpass");
            debug!("Client sent a wrong password");
            false
        }
    }

    /// A client AUTH the proxy accepted: `+OK` in its place, or, where replies cannot be
    /// placed by count, the proxy's own AUTH for the server to answer as it would. Right after
    /// CLIENT CACHING the proxy's AUTH goes too, so that it consumes the one-shot flag as the
    /// client's AUTH would have.
    fn answer_auth(&mut self, actions: &mut Actions) {
        if !std::mem::take(&mut self.session.caching_next) && self.place_reply(b"+OK\r\n") {
            debug!("Answered client AUTH");
        } else {
            debug!("Replaced client AUTH with the proxy's");
            actions.server.push(ToServer::Auth);
            self.stream.sent += 1;
        }
    }

    /// Places one of the proxy's replies where the server's would have gone. Where that cannot
    /// be done (a wrong password inside MULTI or after SUBSCRIBE), it is sent and the
    /// connection closed.
    fn reply_or_fail(&mut self, reply: &'static [u8]) {
        if !self.place_reply(reply) {
            self.fail(Bytes::from_static(reply), ConnError::ClientWrongPassword);
        }
    }

    /// Queues `reply` where the server's would have gone; false where replies are not counted
    /// one to one (after SUBSCRIBE, MONITOR, CLIENT REPLY), where a pub/sub message the server
    /// sends first could come before it, or where the server queues them (MULTI).
    fn place_reply(&mut self, reply: &'static [u8]) -> bool {
        let placeable = self.stream.sending == Replies::Counted
            && !self.session.in_multi
            && !self.stream.pubsub_used;
        if placeable {
            let reply = Bytes::from_static(reply);
            self.stream.place(MarkKind::Between(Act::Answer(reply)));
        }
        placeable
    }

    /// A malformed request: the requests before it are answered, then the error, then the
    /// connection closes, as Redis does. A request cut short by the error is never answered,
    /// so it is not counted.
    /// While not counting (or after pub/sub, where a message may come before the error), a
    /// marker command sent after the valid requests says when their replies have all come,
    /// unless the server may not answer it (CLIENT REPLY OFF or SKIP).
    fn malformed(&mut self, error: ProtocolError, mid_request: bool, actions: &mut Actions) {
        if mid_request && self.session.input != Input::Dropping {
            self.stream.sent -= 1;
        }
        let reply = Bytes::from(error_reply(&format!("ERR {error}")));
        let after_marker = (self.stream.sending == Replies::Uncounted || self.stream.pubsub_used)
            && !self.session.replies_suppressed();
        if after_marker {
            let command = encode_request(&[&self.stream.marker()]);
            actions.server.push(ToServer::Send(Bytes::from(command)));
            self.stream
                .place(MarkKind::Reply(Claim::Marker { reset: false }));
        }
        self.fail(reply, error.into());
    }

    /// Queues an error for the client after every reply it is owed; no more requests are read.
    fn fail(&mut self, reply: Bytes, error: ConnError) {
        self.session.input = Input::Done;
        self.stream
            .place(MarkKind::Between(Act::Fail { reply, error }));
    }
}
