//! Bad input from either side: answered in its place, then the connection closes.

use super::*;

#[test]
fn malformed_input_after_valid_requests_is_answered_after_them_then_closes() {
    let mut wire = Wire::new();
    wire.client_sends(&cat(&[
        &req(&["GET", "k"]),
        b"*1\r\n$x\r\n",
        &req(&["PING"]),
    ]));
    assert_eq!(wire.take_server(), req(&["GET", "k"]));
    assert!(wire.take_client().is_empty());
    wire.server_sends(b"$1\r\nv\r\n");
    assert_eq!(
        wire.take_client(),
        b"$1\r\nv\r\n-ERR Protocol error: invalid bulk length\r\n"
    );
    assert!(matches!(
        wire.conn.take_outcome(),
        Some(Err(ConnError::ClientProtocol(_)))
    ));
}

#[test]
fn a_malformed_header_in_a_later_read_is_answered_at_once() {
    let mut wire = Wire::new();
    wire.client_sends(b"*2\r\n$3\r\nGET\r\n");
    wire.client_sends(b"$-5\r\n");
    assert_eq!(
        wire.take_client(),
        b"-ERR Protocol error: invalid bulk length\r\n"
    );
    assert!(wire.conn.wants().closing);
}

#[test]
fn a_malformed_reply_closes_after_the_replies_before_it() {
    let mut wire = Wire::new();
    wire.client_sends(&cat(&[&req(&["GET", "a"]), &req(&["GET", "b"])]));
    wire.server_sends(b"$1\r\na\r\n?what\r\n");
    assert_eq!(wire.take_client(), b"$1\r\na\r\n");
    assert!(matches!(
        wire.conn.take_outcome(),
        Some(Err(ConnError::UpstreamProtocol(_)))
    ));
}

#[test]
fn hello_with_malformed_options_never_sends_the_clients_credentials() {
    let mut wire = Wire::new();
    wire.client_sends(&req(&["HELLO", "2", "AUTH", "default", "secret", "FOO"]));
    assert_eq!(wire.take_server(), req(&["HELLO", "2", "FOO"]));
    wire.server_sends(b"-ERR Syntax error in HELLO option 'FOO'\r\n");
    let hello = req(&["HELLO", "3", "AUTH", "default", "secret", "SETNAME", "n"]);
    wire.client_sends(&hello);
    assert_eq!(wire.take_server(), req(&["HELLO", "3", "SETNAME", "n"]));
}
