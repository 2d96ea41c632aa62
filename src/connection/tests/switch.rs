//! A switch the Sentinels announced: the session moves at its next quiet moment with nothing
//! sent again, its new requests waiting meanwhile; a transaction ends first; a subscriber is
//! closed.

use super::*;

fn following() -> Wire {
    Wire::with(Rules {
        follow_primary: true,
        ..rules(None)
    })
}

impl Wire {
    fn switch_announced(&mut self) {
        self.conn.primary_switched();
        self.pump();
    }
}

#[test]
fn an_idle_session_moves_at_once_with_its_settings_and_nothing_sent_again() {
    let mut wire = following();
    let select = req(&["SELECT", "2"]);
    wire.client_sends(&select);
    wire.server_sends(b"+OK\r\n");
    assert_eq!(wire.take_client(), b"+OK\r\n");
    wire.take_server();
    wire.switch_announced();
    wire.follow_primary(Ok(()));
    assert_eq!(wire.take_server(), select, "the database, and nothing else");
    assert!(wire.take_client().is_empty(), "the client sees nothing");
    wire.client_sends(&req(&["GET", "k"]));
    assert_eq!(wire.take_server(), req(&["GET", "k"]));
    wire.server_sends(b"$1\r\nv\r\n");
    assert_eq!(wire.take_client(), b"$1\r\nv\r\n");
}

#[test]
fn requests_in_flight_are_answered_by_the_old_node_while_new_ones_wait_for_the_move() {
    let mut wire = following();
    let (a, b) = (req(&["INCR", "a"]), req(&["INCR", "b"]));
    wire.client_sends(&a);
    wire.switch_announced();
    assert!(!wire.conn.wants().requests, "new requests wait");
    wire.client_sends(&b);
    assert_eq!(wire.take_server(), a, "only what was sent before");
    wire.server_sends(b":1\r\n");
    assert_eq!(wire.take_client(), b":1\r\n");
    wire.follow_primary(Ok(()));
    assert_eq!(
        wire.take_server(),
        b,
        "the waiting request goes to the new primary"
    );
    wire.server_sends(b":7\r\n");
    assert_eq!(wire.take_client(), b":7\r\n");
}

#[test]
fn a_request_half_read_goes_whole_to_one_node_or_the_other() {
    let set = req(&["SET", "k", "value"]);
    for cut in 1..set.len() {
        let mut wire = following();
        wire.client_sends(&set[..cut]);
        wire.switch_announced();
        wire.client_sends(&set[cut..]);
        let to_old = wire.take_server();
        if to_old.is_empty() {
            // Nothing of it was taken yet: it waits, and goes to the new primary.
            wire.follow_primary(Ok(()));
            assert_eq!(wire.take_server(), set, "cut at {cut}");
            wire.server_sends(b"+OK\r\n");
        } else {
            assert_eq!(
                to_old, set,
                "cut at {cut}: begun, so finished on the old node"
            );
            wire.server_sends(b"+OK\r\n");
            wire.follow_primary(Ok(()));
            assert!(wire.take_server().is_empty(), "cut at {cut}: nothing again");
        }
        assert_eq!(wire.take_client(), b"+OK\r\n", "cut at {cut}");
    }
}

#[test]
fn a_transaction_ends_on_the_old_node_before_the_session_moves() {
    let mut wire = following();
    wire.client_sends(&req(&["MULTI"]));
    wire.server_sends(b"+OK\r\n");
    wire.switch_announced();
    wire.client_sends(&cat(&[&req(&["INCR", "a"]), &req(&["EXEC"])]));
    assert_eq!(
        wire.take_server(),
        cat(&[&req(&["MULTI"]), &req(&["INCR", "a"]), &req(&["EXEC"])])
    );
    wire.server_sends(b"+QUEUED\r\n");
    assert_ne!(wire.conn.wants().side_trip, Some(SideTrip::FollowPrimary));
    wire.server_sends(b"*1\r\n:1\r\n");
    wire.follow_primary(Ok(()));
    assert_eq!(wire.take_client(), b"+OK\r\n+QUEUED\r\n*1\r\n:1\r\n");
    assert!(wire.take_server().is_empty());
}

#[test]
fn a_subscriber_is_closed_between_messages() {
    let mut wire = following();
    wire.client_sends(&req(&["SUBSCRIBE", "news"]));
    let subscribed = b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n";
    let message = b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n";
    // The proxy's probe learns that replies are no longer counted.
    wire.server_sends(&cat(&[subscribed, &probe_subscribed()]));
    wire.server_sends(&message[..10]);
    wire.switch_announced();
    assert!(!wire.conn.wants().closing, "not inside a message");
    wire.server_sends(&message[10..]);
    assert!(wire.conn.wants().closing);
    assert_eq!(wire.take_client(), cat(&[subscribed, message]));
    let outcome = wire.conn.take_outcome();
    assert!(
        matches!(outcome, Some(Err(ConnError::PrimarySwitched { .. }))),
        "{outcome:?}"
    );
}

#[test]
fn a_move_that_finds_no_primary_closes_the_connection_without_a_word() {
    let mut wire = following();
    wire.switch_announced();
    wire.follow_primary(Err(ConnError::NoPrimary {
        upstream: "master m via Sentinel".into(),
        after: std::time::Duration::from_secs(30),
        role: "replica",
    }));
    assert!(wire.take_client().is_empty(), "nothing was refused");
    assert!(wire.conn.wants().closing);
}

#[test]
fn without_following_a_switch_changes_nothing() {
    let mut wire = Wire::new();
    wire.switch_announced();
    assert!(wire.conn.wants().requests && wire.conn.wants().side_trip.is_none());
}
