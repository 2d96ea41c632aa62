//! What the core tells reuse about the state a client leaves on its connection.

use super::*;

#[test]
fn state_that_reset_keeps_is_noted_for_reuse_to_undo() {
    let mut wire = Wire::new();
    wire.client_sends(&req(&["CLIENT", "SETNAME", "app"]));
    assert!(!wire.conn.left_sticky_state(), "RESET clears the name");
    wire.client_sends(&req(&["CLIENT", "NO-EVICT", "on"]));
    assert!(wire.conn.left_sticky_state());
}

#[test]
fn a_client_that_learns_its_id_or_tracks_keys_leaves_a_connection_no_other_client_gets() {
    let exposing: [&[&str]; 7] = [
        &["CLIENT", "ID"],
        &["client", "info"],
        &["HELLO", "3"],
        &["HELLO", "3", "AUTH", "default", "pw"],
        &["CLIENT", "TRACKING", "on", "BCAST"],
        &["CLIENT", "LIST"],
        &["ACL", "LOG"],
    ];
    for words in exposing {
        let mut wire = Wire::new();
        wire.client_sends(&req(words));
        wire.server_sends(b"+OK\r\n");
        assert_ne!(
            wire.conn.wants().reuse,
            Err("owed"),
            "{words:?}: owes nothing"
        );
        assert_eq!(wire.conn.wants().reuse.err(), Some("identity"), "{words:?}");
    }
    let mut wire = Wire::new();
    wire.client_sends(&req(&["CLIENT", "TRACKING", "off"]));
    wire.server_sends(b"+OK\r\n");
    assert_eq!(wire.conn.wants().reuse.err(), None);
    wire.client_sends(&req(&["CLIENT", "LIST"]));
    assert!(
        wire.conn.take_listed_clients(),
        "every connection's id was asked for"
    );
    assert!(!wire.conn.take_listed_clients(), "said once");
}
