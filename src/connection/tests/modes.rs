//! RESET, the modes where replies are not counted (SUBSCRIBE, MONITOR, CLIENT REPLY), QUIT and
//! replication streams.

use super::*;
use crate::error::ConnError;

#[test]
fn subscribe_stops_counting_and_reset_starts_it_again_after_authenticating() {
    let mut wire = Wire::new();
    wire.client_sends(&req(&["SUBSCRIBE", "c"]));
    assert_eq!(
        wire.take_server(),
        cat(&[&req(&["SUBSCRIBE", "c"]), &probe()])
    );
    wire.server_sends(b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n");
    wire.server_sends(&probe_subscribed());
    // Replies cannot be placed by count: the server answers the proxy's own AUTH.
    wire.client_sends(&req(&["AUTH", "pw"]));
    assert_eq!(wire.take_server(), PROXY_AUTH);
    assert_eq!(
        wire.take_client(),
        b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n",
        "the probe's answer is kept from the client"
    );
    let (reset, ping) = (req(&["RESET"]), req(&["PING"]));
    wire.client_sends(&cat(&[&reset, &req(&["AUTH", "pw"]), &ping]));
    assert_eq!(wire.take_server(), cat(&[&reset, &req(&[MARKER])]));
    let message = b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$6\r\n+RESET\r\n";
    wire.server_sends(&cat(&[message, b"+RESET\r\n", &marker_error()]));
    assert_eq!(wire.take_client(), cat(&[message, b"+RESET\r\n"]));
    assert!(
        wire.take_server().is_empty(),
        "nothing goes before the proxy's AUTH"
    );
    wire.reauthenticated(Ok(()));
    assert_eq!(
        wire.take_server(),
        ping,
        "AUTH after RESET is answered in place"
    );
    assert_eq!(wire.take_client(), b"+OK\r\n");
    wire.server_sends(b"+PONG\r\n");
    assert_eq!(wire.take_client(), b"+PONG\r\n");
    assert!(wire.conn.wants().idle_closable);
}

#[test]
fn monitor_output_passes_and_reset_ends_it() {
    let mut wire = Wire::new();
    wire.client_sends(&req(&["MONITOR"]));
    let lines = b"+OK\r\n+1700000000.1 [0 127.0.0.1:1] \"RESET\"\r\n+RESET\r\n";
    wire.server_sends(lines);
    assert_eq!(
        wire.take_client(),
        lines,
        "a line reading +RESET is only content"
    );
    assert!(
        !wire.conn.wants().idle_closable,
        "a monitoring client is never idle"
    );
    wire.client_sends(&req(&["RESET"]));
    wire.server_sends(&cat(&[b"+RESET\r\n", &marker_error()]));
    assert_eq!(wire.take_client(), b"+RESET\r\n");
    wire.reauthenticated(Ok(()));
    assert!(wire.conn.wants().idle_closable);
}

#[test]
fn client_reply_skip_then_reset_does_not_wait_for_a_reply_that_never_comes() {
    let mut wire = Wire::new();
    wire.client_sends(&cat(&[
        &req(&["CLIENT", "REPLY", "SKIP"]),
        &req(&["RESET"]),
    ]));
    // The server answers neither (SKIP swallows RESET's reply); only the marker's error comes.
    wire.server_sends(&marker_error());
    assert!(wire.take_client().is_empty());
    assert!(wire.conn.wants().side_trip == Some(SideTrip::Reauthenticate));
    wire.reauthenticated(Ok(()));
    wire.client_sends(&req(&["AUTH", "pw"]));
    assert_eq!(wire.take_client(), b"+OK\r\n");
}

#[test]
fn client_reply_off_leaves_auth_to_the_server() {
    let mut wire = Wire::new();
    wire.client_sends(&cat(&[
        &req(&["CLIENT", "REPLY", "OFF"]),
        &req(&["AUTH", "pw"]),
    ]));
    assert_eq!(
        wire.take_server(),
        cat(&[&req(&["CLIENT", "REPLY", "OFF"]), PROXY_AUTH])
    );
    assert!(wire.take_client().is_empty());
}

#[test]
fn requests_after_reset_wait_for_its_reply_and_the_proxys_auth() {
    let mut wire = Wire::new();
    let (reset, get) = (req(&["RESET"]), req(&["GET", "k"]));
    wire.client_sends(&cat(&[&reset, &get]));
    assert_eq!(wire.take_server(), reset);
    assert!(wire.conn.wants().replies_first);
    wire.server_sends(b"+RESET\r\n");
    assert_eq!(wire.take_client(), b"+RESET\r\n");
    assert!(wire.take_server().is_empty());
    wire.reauthenticated(Ok(()));
    assert_eq!(wire.take_server(), get);
}

#[test]
fn a_refused_reset_resets_nothing_and_needs_no_authentication() {
    let mut wire = Wire::new();
    wire.client_sends(&cat(&[&req(&["RESET"]), &req(&["PING"])]));
    wire.server_sends(b"-NOPERM this user has no permissions to run the 'reset' command\r\n");
    assert!(wire.conn.wants().side_trip != Some(SideTrip::Reauthenticate));
    assert_eq!(
        wire.take_server(),
        cat(&[&req(&["RESET"]), &req(&["PING"])])
    );
}

#[test]
fn a_failed_authentication_after_reset_is_the_last_reply() {
    let mut wire = Wire::new();
    wire.client_sends(&cat(&[&req(&["RESET"]), &req(&["PING"])]));
    wire.server_sends(b"+RESET\r\n");
    wire.take_client();
    wire.reauthenticated(Err(ConnError::AuthRejected {
        upstream: "cache:6379".into(),
        tried: "the token",
    }));
    let reply = String::from_utf8(wire.take_client()).unwrap();
    assert!(
        reply.starts_with("-ERR redis-auth-proxy: upstream cache:6379 rejected"),
        "{reply}"
    );
    assert!(matches!(
        wire.conn.take_outcome(),
        Some(Err(ConnError::AuthRejected { .. }))
    ));
    assert_eq!(wire.take_server(), req(&["RESET"]), "PING is never sent");
}

#[test]
fn reset_with_an_argument_is_only_forwarded() {
    let mut wire = Wire::new();
    wire.client_sends(&cat(&[&req(&["RESET", "x"]), &req(&["PING"])]));
    assert_eq!(
        wire.take_server(),
        cat(&[&req(&["RESET", "x"]), &req(&["PING"])])
    );
    assert!(!wire.conn.wants().replies_first);
}

#[test]
fn a_replication_stream_passes_unscanned() {
    let mut wire = Wire::new();
    wire.client_sends(&req(&["PSYNC", "?", "-1"]));
    let stream = b"+FULLRESYNC 8de1 0\r\n\n\n$5\r\nREDIS*1\r\n$4\r\nPING\r\n";
    wire.server_sends(stream);
    wire.client_sends(&req(&["REPLCONF", "ACK", "0"]));
    assert_eq!(wire.take_client(), stream);
    assert!(!wire.conn.wants().closing);
}

#[test]
fn nothing_after_quit_is_forwarded() {
    let mut wire = Wire::new();
    wire.client_sends(&cat(&[&req(&["QUIT"]), &req(&["SET", "k", "v"])]));
    assert_eq!(wire.take_server(), req(&["QUIT"]));
    assert!(!wire.conn.wants().requests);
}

#[test]
fn malformed_input_after_subscribe_comes_after_the_replies_owed() {
    let mut wire = Wire::new();
    wire.client_sends(&cat(&[&req(&["SUBSCRIBE", "c"]), b"*1\r\n$x\r\n"]));
    assert_eq!(
        wire.take_server(),
        cat(&[&req(&["SUBSCRIBE", "c"]), &probe()])
    );
    let subscribed = b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n";
    wire.server_sends(&cat(&[subscribed, &probe_subscribed()]));
    assert_eq!(
        wire.take_server(),
        req(&[MARKER]),
        "still subscribed: the marker follows"
    );
    assert_eq!(
        wire.take_client(),
        subscribed,
        "the error waits for the replies owed"
    );
    wire.server_sends(&marker_error());
    assert_eq!(
        wire.take_client(),
        b"-ERR Protocol error: invalid bulk length\r\n"
    );
    assert!(matches!(
        wire.conn.take_outcome(),
        Some(Err(ConnError::ClientProtocol(_)))
    ));
}

#[test]
fn malformed_input_under_client_reply_off_is_answered_at_once() {
    let mut wire = Wire::new();
    wire.client_sends(&cat(&[&req(&["CLIENT", "REPLY", "OFF"]), b"*1\r\n$x\r\n"]));
    assert_eq!(
        wire.take_server(),
        req(&["CLIENT", "REPLY", "OFF"]),
        "no marker: no reply would come"
    );
    assert_eq!(
        wire.take_client(),
        b"-ERR Protocol error: invalid bulk length\r\n"
    );
}
