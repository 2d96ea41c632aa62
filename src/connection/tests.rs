//! The connection's decisions, in memory: no server, no socket. `Wire` plays the I/O around a
//! `Connection` as `forward` does (bytes not taken are offered again, ranges become bytes) and
//! records what each side would receive.

mod cluster;
mod counting;
mod errors;
mod follow;
mod invariants;
mod model;
mod modes;
mod renewal;
mod reuse;
mod switch;
mod users;

use super::*;
use crate::client_auth::{ClientPasswords, NOAUTH, WRONGPASS};
use crate::resp::encode_request;

const MARKER: &str = "redis-auth-proxy-test-marker";
/// What `ToServer::Auth` stands for in the recorded server stream.
const PROXY_AUTH: &[u8] = b"<proxy AUTH>";

fn metrics() -> &'static RouteMetrics {
    Box::leak(Box::new(RouteMetrics::new("test")))
}

fn rules(passwords: Option<&'static ClientPasswords>) -> Rules<'static> {
    Rules {
        client_passwords: passwords,
        username: None,
        metrics: metrics(),
        cluster: None,
        follow_primary: false,
    }
}

fn req(args: &[&str]) -> Vec<u8> {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    encode_request(&args)
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

struct Wire {
    conn: Connection<'static>,
    from_client: Vec<u8>,
    from_server: Vec<u8>,
    /// What the server and the client have received.
    server: Vec<u8>,
    client: Vec<u8>,
    actions: Actions,
    /// Every client byte the connection took, as `forward` keeps them to send again.
    consumed: Vec<u8>,
}

impl Wire {
    fn new() -> Self {
        Wire::with(rules(None))
    }

    fn with(rules: Rules<'static>) -> Self {
        Wire {
            conn: {
                let mut conn = Connection::new(rules);
                conn.stream.marker = Some(Bytes::from_static(MARKER.as_bytes()));
                conn
            },
            from_client: Vec::new(),
            from_server: Vec::new(),
            server: Vec::new(),
            client: Vec::new(),
            actions: Actions::default(),
            consumed: Vec::new(),
        }
    }

    fn client_sends(&mut self, bytes: &[u8]) {
        self.from_client.extend_from_slice(bytes);
        self.pump();
    }

    fn server_sends(&mut self, bytes: &[u8]) {
        self.from_server.extend_from_slice(bytes);
        self.pump();
    }

    /// Feeds what each side sent for as long as the connection takes any of it, as `forward`
    /// does: by what `wants()` reports. After each step the connection's invariants hold.
    fn pump(&mut self) {
        self.conn.check_invariants();
        loop {
            // As `forward` asks at every turn.
            let mut moved = self.conn.move_if_switched();
            if self.conn.wants().requests && !self.from_client.is_empty() {
                let input = std::mem::take(&mut self.from_client);
                let used = self.conn.on_requests(&input, &mut self.actions);
                self.consumed.extend_from_slice(&input[..used]);
                self.apply(&input);
                self.from_client = input[used..].to_vec();
                moved = used > 0;
                self.conn.check_invariants();
            }
            if self.conn.wants().replies && !self.from_server.is_empty() {
                let input = std::mem::take(&mut self.from_server);
                let used = self.conn.on_replies(&input, &mut self.actions);
                self.apply(&input);
                self.from_server = input[used..].to_vec();
                moved |= used > 0;
                self.conn.check_invariants();
            }
            if !moved {
                return;
            }
        }
    }

    fn apply(&mut self, input: &[u8]) {
        for action in self.actions.server.drain(..) {
            match action {
                ToServer::Pass(range) => self.server.extend_from_slice(&input[range]),
                ToServer::Send(bytes) => self.server.extend_from_slice(&bytes),
                ToServer::Auth => self.server.extend_from_slice(PROXY_AUTH),
            }
        }
        for action in self.actions.client.drain(..) {
            match action {
                ToClient::Pass(range) => self.client.extend_from_slice(&input[range]),
                ToClient::Send(bytes) => self.client.extend_from_slice(&bytes),
            }
        }
    }

    fn reauthenticated(&mut self, result: Result<(), ConnError>) {
        assert!(
            self.conn.wants().side_trip == Some(SideTrip::Reauthenticate),
            "no RESET to follow"
        );
        self.conn.reauthenticated(result, &mut self.actions);
        self.apply(&[]);
        self.pump();
    }

    fn topology_refreshed(&mut self) {
        assert!(
            self.conn.wants().side_trip == Some(SideTrip::RefreshTopology),
            "no redirect held"
        );
        self.conn.topology_refreshed(&mut self.actions);
        self.apply(&[]);
        self.pump();
    }

    /// Moves the session as `forward` does: on success the new server gets the settings to
    /// replay, then the client's bytes from the resend window on (what `take_server` then
    /// returns); the old server's unread bytes are dropped.
    fn follow_primary(&mut self, result: Result<(), ConnError>) {
        assert!(
            self.conn.wants().side_trip == Some(SideTrip::FollowPrimary),
            "no refusal to follow"
        );
        let window = self.conn.resend_window().expect("following") as usize;
        self.server = self.conn.settings_to_replay().concat();
        self.server.extend_from_slice(&self.consumed[window..]);
        self.from_server.clear();
        self.conn.followed(result, &mut self.actions);
        self.apply(&[]);
        self.pump();
    }

    fn take_server(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.server)
    }

    fn take_client(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.client)
    }
}

/// The proxy's probe after a request that may bring counting back, and the server's answers to
/// it: replies counted again, or RESP2's subscribed mode.
fn probe() -> Vec<u8> {
    req(&["PING", MARKER])
}

fn probe_counted() -> Vec<u8> {
    format!("${}\r\n{MARKER}\r\n", MARKER.len()).into_bytes()
}

fn probe_subscribed() -> Vec<u8> {
    format!("*2\r\n$4\r\npong\r\n${}\r\n{MARKER}\r\n", MARKER.len()).into_bytes()
}

fn marker_error() -> Vec<u8> {
    format!("-ERR unknown command '{MARKER}', with args beginning with: \r\n").into_bytes()
}

#[test]
fn pipelined_auth_among_commands_is_answered_in_its_place() {
    let mut wire = Wire::new();
    let (set, get) = (req(&["SET", "k", "v"]), req(&["GET", "k"]));
    wire.client_sends(&cat(&[&set, &req(&["AUTH", "old"]), &get]));
    assert_eq!(wire.take_server(), cat(&[&set, &get]));
    assert!(wire.take_client().is_empty(), "+OK waits for SET's reply");
    wire.server_sends(b"+OK\r\n$1\r\nv\r\n");
    assert_eq!(wire.take_client(), b"+OK\r\n+OK\r\n$1\r\nv\r\n");
    assert!(wire.conn.wants().idle_closable);
}

#[test]
fn an_auth_owing_nothing_is_answered_at_once() {
    let mut wire = Wire::new();
    wire.client_sends(&req(&["AUTH", "default", "pw"]));
    assert_eq!(wire.take_client(), b"+OK\r\n");
    assert!(wire.take_server().is_empty());
}

#[test]
fn auth_inside_multi_becomes_the_proxys_auth_for_the_server_to_queue() {
    let mut wire = Wire::new();
    wire.client_sends(&cat(&[
        &req(&["MULTI"]),
        &req(&["AUTH", "x"]),
        &req(&["EXEC"]),
    ]));
    assert_eq!(
        wire.take_server(),
        cat(&[&req(&["MULTI"]), PROXY_AUTH, &req(&["EXEC"])])
    );
    wire.server_sends(b"+OK\r\n+QUEUED\r\n*1\r\n+OK\r\n");
    assert_eq!(wire.take_client(), b"+OK\r\n+QUEUED\r\n*1\r\n+OK\r\n");
    // After EXEC, AUTH is answered in place again.
    wire.client_sends(&req(&["AUTH", "x"]));
    assert_eq!(wire.take_client(), b"+OK\r\n");
}

#[test]
fn an_own_reply_never_lands_inside_a_push_or_after_an_attribute() {
    let mut wire = Wire::new();
    wire.server_sends(b">3\r\n$10\r\ninvalidate\r\n");
    wire.client_sends(&req(&["AUTH", "pw"]));
    assert_eq!(wire.take_client(), b">3\r\n$10\r\ninvalidate\r\n");
    wire.server_sends(b"$1\r\na\r\n$1\r\nb\r\n");
    assert_eq!(wire.take_client(), b"$1\r\na\r\n$1\r\nb\r\n+OK\r\n");

    let mut wire = Wire::new();
    wire.client_sends(&req(&["GET", "k"]));
    wire.client_sends(&req(&["AUTH", "pw"]));
    wire.server_sends(b"|1\r\n+ttl\r\n:3\r\n");
    assert_eq!(wire.take_client(), b"|1\r\n+ttl\r\n:3\r\n");
    wire.server_sends(b"$1\r\nv\r\n");
    assert_eq!(wire.take_client(), b"$1\r\nv\r\n+OK\r\n");
}

#[test]
fn the_client_password_gate_refuses_in_reply_order_and_forwards_nothing_before_it() {
    let passwords = Box::leak(Box::new(ClientPasswords::fixed("app-pw")));
    let mut wire = Wire::with(rules(Some(passwords)));
    wire.client_sends(&cat(&[
        &req(&["SET", "k", "v"]),
        &req(&["AUTH", "wrong"]),
        &req(&["AUTH", "default", "app-pw"]),
        &req(&["GET", "k"]),
    ]));
    assert_eq!(wire.take_server(), req(&["GET", "k"]));
    assert_eq!(
        wire.take_client(),
        cat(&[NOAUTH, WRONGPASS, b"+OK\r\n"]),
        "refusals come at once: nothing before them is owed"
    );
    wire.server_sends(b"$1\r\nv\r\n");
    assert_eq!(wire.take_client(), b"$1\r\nv\r\n");
    // RESET logs the client out, as it does on a server.
    wire.client_sends(&cat(&[&req(&["RESET"]), &req(&["GET", "k"])]));
    assert_eq!(wire.take_server(), req(&["RESET"]));
    wire.server_sends(b"+RESET\r\n");
    wire.reauthenticated(Ok(()));
    assert_eq!(wire.take_client(), cat(&[b"+RESET\r\n", NOAUTH]));
    assert!(wire.take_server().is_empty());
}

#[test]
fn a_wrong_password_where_no_reply_can_be_placed_closes_after_saying_so() {
    let passwords = Box::leak(Box::new(ClientPasswords::fixed("app-pw")));
    let mut wire = Wire::with(rules(Some(passwords)));
    wire.client_sends(&cat(&[
        &req(&["AUTH", "app-pw"]),
        &req(&["MULTI"]),
        &req(&["AUTH", "bad"]),
    ]));
    wire.server_sends(b"+OK\r\n");
    assert_eq!(
        wire.take_client(),
        cat(&[b"+OK\r\n", b"+OK\r\n", WRONGPASS])
    );
    assert!(matches!(
        wire.conn.take_outcome(),
        Some(Err(ConnError::ClientWrongPassword))
    ));
}

#[test]
fn requests_wait_once_too_many_own_replies_are_pending() {
    let mut wire = Wire::new();
    wire.client_sends(&req(&["BLPOP", "list", "0"]));
    let auths: Vec<u8> = (0..MAX_MARKS + 10)
        .flat_map(|_| req(&["AUTH", "pw"]))
        .collect();
    wire.client_sends(&auths);
    assert!(!wire.conn.wants().requests);
    assert!(!wire.from_client.is_empty(), "the rest waits, unread");
    wire.server_sends(b"*2\r\n$4\r\nlist\r\n$1\r\nx\r\n");
    assert!(wire.from_client.is_empty());
    assert!(wire.conn.wants().idle_closable);
}

#[test]
fn an_own_answer_follows_the_invalidation_the_reply_before_it_caused() {
    let mut wire = Wire::new();
    wire.client_sends(&cat(&[&req(&["SET", "k", "v"]), &req(&["AUTH", "pw"])]));
    let invalidation = b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n";
    wire.server_sends(&cat(&[b"+OK\r\n", invalidation]));
    assert_eq!(
        wire.take_client(),
        cat(&[b"+OK\r\n", invalidation, b"+OK\r\n"])
    );
}

#[test]
fn reset_waits_until_every_earlier_reply_has_arrived() {
    // Redis closes a connection that RESET logged out with over 1 KiB of replies unsent.
    let mut wire = Wire::new();
    wire.client_sends(&cat(&[&req(&["GET", "big"]), &req(&["RESET"])]));
    assert_eq!(wire.take_server(), req(&["GET", "big"]));
    assert!(wire.conn.wants().replies_first);
    wire.server_sends(b"$3\r\nbig\r\n");
    assert_eq!(wire.take_server(), req(&["RESET"]));
}

#[test]
fn an_auth_right_after_client_caching_goes_to_the_server_to_consume_its_flag() {
    let mut wire = Wire::new();
    let caching = req(&["CLIENT", "CACHING", "yes"]);
    wire.client_sends(&cat(&[
        &caching,
        &req(&["AUTH", "pw"]),
        &req(&["GET", "k"]),
    ]));
    assert_eq!(
        wire.take_server(),
        cat(&[&caching, PROXY_AUTH, &req(&["GET", "k"])])
    );
}

#[test]
fn discard_with_an_argument_does_not_end_multi() {
    let mut wire = Wire::new();
    let batch = cat(&[
        &req(&["MULTI"]),
        &req(&["DISCARD", "x"]),
        &req(&["AUTH", "pw"]),
    ]);
    wire.client_sends(&batch);
    assert_eq!(
        wire.take_server(),
        cat(&[&req(&["MULTI"]), &req(&["DISCARD", "x"]), PROXY_AUTH]),
        "still inside MULTI: the server queues the proxy's AUTH"
    );
}
