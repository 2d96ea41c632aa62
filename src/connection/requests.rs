//! The client-to-server half of the decisions: what each request becomes.

use super::{Actions, Awaiting, Connection, Mark, Replies, ToServer};
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
        let mut pos = 0;
        loop {
            pos = self.take_requests(input, pos, actions);
            // An answer placed after the last reply already passed goes out now; what waited
            // for quiet may then go on.
            self.fire_due_now(actions);
            if !(self.awaiting == Some(Awaiting::Quiet) && self.settle_quiet()) {
                return pos;
            }
        }
    }

    /// Takes requests from `input[start..]` while they can be taken; returns where it stopped.
    fn take_requests(&mut self, input: &[u8], start: usize, actions: &mut Actions) -> usize {
        let mut pos = start;
        let mut pass_from = start;
        while self.accepts_requests() {
            let mid_request = !self.requests.at_boundary();
            let step = match self.requests.step(&input[pos..]) {
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
                    if self.dropping {
                        pass_from = pos;
                    }
                }
                Step::Start {
                    command: Command::Reset,
                    ..
                } if self.request_mode != Replies::Raw && self.owes_replies() => {
                    // RESET logs the connection out, and Redis closes a connection that is
                    // logged out with over 1 KiB of replies unsent: let those arrive first.
                    self.awaiting = Some(Awaiting::Quiet);
                    continue;
                }
                Step::Start { len, command } if self.passes(&command) => {
                    self.dropping = false;
                    pos += len;
                    self.forwarded(&command, actions, &mut pass_from, pos);
                }
                Step::Start { len, command }
                    if self.authenticated && self.names_another_user(&command) =>
                {
                    if self.owes_replies() {
                        // Offered again from its start once the replies owed have arrived.
                        self.awaiting = Some(Awaiting::Quiet);
                        continue;
                    }
                    // Forwarded as sent: the server checks it and answers in its place.
                    self.dropping = false;
                    pos += len;
                    self.sent += 1;
                    self.identity_exposed |= matches!(command, Command::HelloWithAuth { .. });
                }
                Step::Start { len, command } => {
                    actions.pass_to_server(pass_from..pos);
                    pos += len;
                    pass_from = pos;
                    self.dropping = true;
                    self.intercept(command, actions);
                }
            }
            if self.quitting && self.requests.at_boundary() {
                self.requests_done = true;
            }
            if self.probe_due && self.requests.at_boundary() {
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

    /// Whether requests are still owed replies before an AUTH may go alone. Where replies are
    /// not counted (pub/sub, MONITOR, CLIENT REPLY) or are queued (MULTI) there is no such
    /// point; the AUTH goes as a direct connection would send it.
    pub(super) fn owes_replies(&self) -> bool {
        let counted = self.request_mode == Replies::Counted && !self.in_multi;
        counted && (self.sent != self.answered || !self.marks.is_empty())
    }

    /// Whether a request goes upstream in the client's own bytes. Before the client has
    /// authenticated, only what Redis allows then (QUIT, RESET) does.
    fn passes(&self, command: &Command) -> bool {
        command.passes_through()
            && (self.authenticated
                || matches!(command, Command::Quit | Command::Reset | Command::Empty))
    }

    /// Records what a forwarded request does to the reply stream.
    fn forwarded(
        &mut self,
        command: &Command,
        actions: &mut Actions,
        pass_from: &mut usize,
        pos: usize,
    ) {
        self.caching_next = matches!(command, Command::ClientCaching);
        let skipped = std::mem::take(&mut self.skip_next);
        if skipped && !matches!(command, Command::Empty) {
            self.replies_suppressed = false;
            self.probe_due = true;
        }
        match command {
            Command::Empty => return,
            Command::ClientReply(mode) => {
                if self.request_mode == Replies::Counted {
                    self.switch_replies(Replies::Uncounted);
                }
                self.replies_suppressed = *mode != ReplyMode::On;
                self.skip_next = *mode == ReplyMode::Skip;
                self.probe_due = *mode == ReplyMode::On;
            }
            Command::ClientSticky => self.sticky_state = true,
            Command::ClientIdentity | Command::ClientTracking | Command::Hello => {
                self.identity_exposed = true;
            }
            Command::ClientList => {
                self.identity_exposed = true;
                self.listed_clients = true;
            }
            Command::Multi => self.in_multi = true,
            Command::EndMulti => self.in_multi = false,
            Command::Quit => self.quitting = true,
            Command::Monitor | Command::PubSub { .. } => {
                // Counted before (RESP3, or not yet subscribed) the probe tells whether it still
                // is; not counted (subscribed in RESP2), only an UNSUBSCRIBE can change that.
                let may_count = match command {
                    Command::PubSub { leaving } => {
                        *leaving || self.request_mode == Replies::Counted
                    }
                    _ => false,
                };
                if self.request_mode == Replies::Counted {
                    self.switch_replies(Replies::Uncounted);
                }
                self.pubsub_used |= matches!(command, Command::PubSub { .. });
                let lost = matches!(command, Command::Monitor) || self.in_multi;
                self.counting_lost |= lost;
                self.probe_due = (self.probe_due || may_count) && !lost;
            }
            Command::Replicate => self.switch_replies(Replies::Raw),
            // Inside MULTI the reply is +QUEUED and the topology comes in EXEC's array, which
            // is not rewritten (docs/cluster.md).
            Command::ClusterTopology(kind)
                if self.rules.cluster.is_some()
                    && self.request_mode == Replies::Counted
                    && !self.in_multi =>
            {
                self.marks.push_back(Mark::Rewrite {
                    at: self.sent,
                    kind: *kind,
                });
            }
            Command::Reset if self.request_mode != Replies::Raw => {
                actions.pass_to_server(*pass_from..pos);
                *pass_from = pos;
                self.reset(actions);
                return;
            }
            _ => {}
        }
        self.sent += 1;
    }

    /// Sends `PING <marker>` after the request just forwarded, where replies may answer
    /// requests one to one again, unless nothing could answer it (CLIENT REPLY OFF or SKIP) or
    /// only RESET can bring counting back. Later requests wait for its reply.
    fn probe(&mut self, actions: &mut Actions) {
        self.probe_due = false;
        let useful = self.request_mode == Replies::Uncounted
            && self.awaiting.is_none()
            && !self.counting_lost
            && !self.in_multi
            && !self.replies_suppressed
            && !self.requests_done;
        if !useful {
            return;
        }
        let command = encode_request(&[b"PING", &self.marker()]);
        actions.server.push(ToServer::Send(Bytes::from(command)));
        self.marks.push_back(Mark::Probe);
        self.awaiting = Some(Awaiting::Probe);
    }

    fn switch_replies(&mut self, replies: Replies) {
        self.marks.push_back(Mark::Mode {
            at: self.sent,
            replies,
        });
        self.request_mode = replies;
    }

    /// RESET is on its way: later requests wait until its reply has passed, then the proxy
    /// authenticates again. While not counting, the marker command says where its effects end.
    fn reset(&mut self, actions: &mut Actions) {
        self.rules.metrics.intercepted("reset");
        self.probe_due = false;
        let marker = (self.request_mode != Replies::Counted).then(|| {
            let command = encode_request(&[&self.marker()]);
            actions.server.push(ToServer::Send(Bytes::from(command)));
        });
        self.marks.push_back(Mark::Reset {
            at: self.sent,
            marker: marker.is_some(),
        });
        self.sent += 1;
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
                    self.identity_exposed = true;
                    actions.server.push(ToServer::Send(Bytes::from(rewritten)));
                    self.sent += 1;
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
            self.set_authenticated(true);
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
        if !std::mem::take(&mut self.caching_next) && self.place_reply(b"+OK\r\n") {
            debug!("Answered client AUTH");
        } else {
            debug!("Replaced client AUTH with the proxy's");
            actions.server.push(ToServer::Auth);
            self.sent += 1;
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
        let placeable =
            self.request_mode == Replies::Counted && !self.in_multi && !self.pubsub_used;
        if placeable {
            self.marks.push_back(Mark::Answer {
                at: self.sent,
                reply: Bytes::from_static(reply),
            });
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
        if mid_request && !self.dropping {
            self.sent -= 1;
        }
        let reply = Bytes::from(error_reply(&format!("ERR {error}")));
        let after_marker = (self.request_mode == Replies::Uncounted || self.pubsub_used)
            && !self.replies_suppressed;
        if after_marker {
            let command = encode_request(&[&self.marker()]);
            actions.server.push(ToServer::Send(Bytes::from(command)));
        }
        self.requests_done = true;
        self.marks.push_back(Mark::Fail {
            at: self.sent,
            reply,
            error: error.into(),
            after_marker,
        });
    }

    /// Queues an error for the client after every reply it is owed; no more requests are read.
    fn fail(&mut self, reply: Bytes, error: ConnError) {
        self.requests_done = true;
        self.marks.push_back(Mark::Fail {
            at: self.sent,
            reply,
            error,
            after_marker: false,
        });
    }
}
