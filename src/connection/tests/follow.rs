//! Following the primary: a replica's refusal in a pipeline, the replies held and sent again
//! in order, the settings told to the new connection, and the states that cannot move.

use super::*;

const READONLY: &[u8] = b"-READONLY You can't write against a read only replica.\r\n";
const LOADING: &[u8] = b"-LOADING Redis is loading the dataset in memory\r\n";

fn following() -> Wire {
    Wire::with(Rules {
        follow_primary: true,
        ..rules(None)
    })
}

#[test]
fn a_refused_write_in_a_pipeline_is_sent_again_with_every_later_request() {
    let mut wire = following();
    let (a, b, c) = (
        req(&["SET", "a", "1"]),
        req(&["INCR", "b"]),
        req(&["GET", "c"]),
    );
    wire.client_sends(&cat(&[&a, &b, &c]));
    assert_eq!(wire.take_server(), cat(&[&a, &b, &c]));
    // The old node answered SET before it was demoted; then it refuses INCR and answers GET
    // from what may be stale data.
    wire.server_sends(&cat(&[b"+OK\r\n", READONLY, b"$3\r\nold\r\n"]));
    assert_eq!(
        wire.take_client(),
        b"+OK\r\n",
        "the refusal and later replies are held"
    );
    assert!(!wire.conn.wants().requests, "requests wait for the move");
    wire.follow_primary(Ok(()));
    assert_eq!(
        wire.take_server(),
        cat(&[&b, &c]),
        "from the refused one on"
    );
    wire.server_sends(b":1\r\n$3\r\nnew\r\n");
    assert_eq!(wire.take_client(), b":1\r\n$3\r\nnew\r\n");
    assert!(wire.conn.wants().idle_closable);
    // The session goes on, counted from the new connection.
    wire.client_sends(&req(&["GET", "a"]));
    wire.server_sends(b"$1\r\n1\r\n");
    assert_eq!(wire.take_client(), b"$1\r\n1\r\n");
}

#[test]
fn a_refusal_split_anywhere_is_followed_the_same() {
    let set = req(&["SET", "k", "v"]);
    let replies = cat(&[LOADING, b"+OK\r\n"]);
    for cut in 0..=replies.len() {
        let mut wire = following();
        wire.client_sends(&cat(&[&set, &set]));
        wire.take_server();
        wire.server_sends(&replies[..cut]);
        wire.server_sends(&replies[cut..]);
        assert!(wire.take_client().is_empty(), "cut at {cut}");
        wire.follow_primary(Ok(()));
        assert_eq!(wire.take_server(), cat(&[&set, &set]), "cut at {cut}");
        wire.server_sends(b"+OK\r\n+OK\r\n");
        assert_eq!(wire.take_client(), b"+OK\r\n+OK\r\n", "cut at {cut}");
    }
}

#[test]
fn a_request_half_sent_when_the_refusal_comes_is_sent_again_and_finished() {
    let (first, second) = (req(&["SET", "a", "1"]), req(&["SET", "b", "value"]));
    for cut in 1..second.len() {
        let mut wire = following();
        wire.client_sends(&cat(&[&first, &second[..cut]]));
        let before = wire.take_server();
        wire.server_sends(READONLY);
        wire.follow_primary(Ok(()));
        assert_eq!(
            wire.take_server(),
            before,
            "cut at {cut}: what the old node got"
        );
        wire.client_sends(&second[cut..]);
        let mut after = before;
        after.extend(wire.take_server());
        assert_eq!(after, cat(&[&first, &second]), "cut at {cut}");
        wire.server_sends(b"+OK\r\n+OK\r\n");
        assert_eq!(wire.take_client(), b"+OK\r\n+OK\r\n", "cut at {cut}");
    }
}

#[test]
fn the_new_connection_is_told_the_protocol_database_and_name_in_the_order_sent() {
    let mut wire = following();
    let (hello, name, select) = (
        req(&["HELLO", "3"]),
        req(&["CLIENT", "SETNAME", "worker"]),
        req(&["SELECT", "2"]),
    );
    wire.client_sends(&cat(&[&hello, &name, &select, &req(&["SELECT", "3"])]));
    wire.server_sends(b"%1\r\n+proto\r\n:3\r\n+OK\r\n+OK\r\n+OK\r\n");
    wire.take_client();
    let set = req(&["SET", "k", "v"]);
    wire.client_sends(&set);
    wire.server_sends(READONLY);
    wire.take_server();
    wire.follow_primary(Ok(()));
    assert_eq!(
        wire.take_server(),
        cat(&[&hello, &name, &req(&["SELECT", "3"]), &set]),
        "the latest of each setting, then the refused request"
    );
}

#[test]
fn an_auth_answered_in_place_before_the_refused_request_does_not_stop_the_move() {
    let mut wire = following();
    let set = req(&["SET", "k", "v"]);
    wire.client_sends(&req(&["AUTH", "default", "pw"]));
    assert_eq!(wire.take_client(), b"+OK\r\n");
    wire.client_sends(&set);
    wire.server_sends(READONLY);
    wire.follow_primary(Ok(()));
    assert_eq!(wire.take_server(), set);
}

#[test]
fn an_auth_answered_in_place_among_the_requests_to_send_again_closes_after_the_refusal() {
    let mut wire = following();
    let set = req(&["SET", "k", "v"]);
    wire.client_sends(&cat(&[&set, &req(&["AUTH", "x"]), &set]));
    wire.server_sends(READONLY);
    assert_eq!(wire.take_client(), READONLY);
    assert!(wire.conn.wants().closing);
    assert!(matches!(
        wire.conn.take_outcome(),
        Some(Err(ConnError::LeftReplica { .. }))
    ));
}

#[test]
fn a_session_in_multi_or_watching_gets_the_refusal_and_is_closed() {
    for setup in [vec![req(&["MULTI"])], vec![req(&["WATCH", "k"])]] {
        let mut wire = following();
        wire.client_sends(&setup.concat());
        wire.server_sends(b"+OK\r\n");
        wire.take_client();
        wire.client_sends(&req(&["SET", "k", "v"]));
        wire.server_sends(READONLY);
        assert_eq!(wire.take_client(), READONLY);
        assert!(wire.conn.wants().closing, "{setup:?}");
    }
}

#[test]
fn after_exec_the_session_can_move_again() {
    let mut wire = following();
    wire.client_sends(&cat(&[
        &req(&["WATCH", "k"]),
        &req(&["MULTI"]),
        &req(&["EXEC"]),
    ]));
    wire.server_sends(b"+OK\r\n+OK\r\n*0\r\n");
    wire.take_client();
    wire.client_sends(&req(&["SET", "k", "v"]));
    wire.server_sends(READONLY);
    assert!(wire.take_client().is_empty());
    wire.follow_primary(Ok(()));
    assert_eq!(wire.take_server(), req(&["SET", "k", "v"]));
}

#[test]
fn when_no_primary_answers_the_client_gets_the_refusal_and_the_connection_closes() {
    let mut wire = following();
    wire.client_sends(&cat(&[&req(&["SET", "a", "1"]), &req(&["GET", "a"])]));
    wire.server_sends(&cat(&[READONLY, b"$1\r\n1\r\n"]));
    wire.follow_primary(Err(ConnError::NoPrimary {
        upstream: "primary.example:6379".into(),
        after: std::time::Duration::from_secs(30),
        role: "replica",
    }));
    assert_eq!(wire.take_client(), READONLY);
    assert!(wire.conn.wants().closing);
}

#[test]
fn other_errors_pass_in_their_place_and_nothing_moves_when_not_following() {
    let mut wire = following();
    wire.client_sends(&cat(&[&req(&["INCR", "s"]), &req(&["GET", "s"])]));
    let wrongtype = b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";
    wire.server_sends(&cat(&[wrongtype, b"$1\r\nx\r\n"]));
    assert_eq!(wire.take_client(), cat(&[wrongtype, b"$1\r\nx\r\n"]));
    let mut plain = Wire::new();
    plain.client_sends(&req(&["SET", "k", "v"]));
    plain.server_sends(READONLY);
    assert_eq!(plain.take_client(), READONLY);
    assert!(!plain.conn.wants().closing && plain.conn.resend_window().is_none());
}

#[test]
fn an_idle_session_whose_server_closed_moves_unharmed() {
    let mut wire = following();
    wire.client_sends(&req(&["SELECT", "1"]));
    wire.server_sends(b"+OK\r\n");
    wire.take_client();
    wire.conn.server_closed(false, &mut wire.actions);
    wire.apply(&[]);
    assert!(wire.take_client().is_empty() && !wire.conn.wants().closing);
    wire.follow_primary(Ok(()));
    assert_eq!(
        wire.take_server(),
        req(&["SELECT", "1"]),
        "only the settings"
    );
    wire.client_sends(&req(&["GET", "k"]));
    wire.server_sends(b"$-1\r\n");
    assert_eq!(wire.take_client(), b"$-1\r\n");
}

#[test]
fn requests_in_flight_when_the_server_closed_each_get_an_error_then_the_session_moves() {
    let mut wire = following();
    wire.client_sends(&cat(&[&req(&["INCR", "a"]), &req(&["BLPOP", "q", "0"])]));
    wire.conn.server_closed(false, &mut wire.actions);
    wire.apply(&[]);
    let errors = wire.take_client();
    assert_eq!(
        errors,
        cat(&[super::super::follow::LOST, super::super::follow::LOST])
    );
    wire.follow_primary(Ok(()));
    assert!(wire.take_server().is_empty(), "nothing is sent again");
    wire.client_sends(&req(&["PING"]));
    wire.server_sends(b"+PONG\r\n");
    assert_eq!(wire.take_client(), b"+PONG\r\n");
}

#[test]
fn a_lost_server_closes_a_session_that_cannot_move_or_is_half_through_a_reply() {
    let mut multi = following();
    multi.client_sends(&req(&["MULTI"]));
    multi.conn.server_closed(false, &mut multi.actions);
    assert!(multi.conn.wants().closing);
    let mut half = following();
    half.client_sends(&req(&["GET", "k"]));
    half.server_sends(b"$10\r\nhal");
    half.conn.server_closed(false, &mut half.actions);
    assert!(half.conn.wants().closing);
    let mut plain = Wire::new();
    plain.conn.server_closed(false, &mut plain.actions);
    assert!(plain.conn.wants().closing);
    let mut left = following();
    left.conn.server_closed(true, &mut left.actions);
    assert!(
        left.conn.wants().closing,
        "the client left: nothing to move"
    );
}

#[test]
fn a_name_that_came_in_pieces_is_not_told_and_an_older_one_is_forgotten() {
    let mut wire = following();
    wire.client_sends(&req(&["CLIENT", "SETNAME", "first"]));
    let long = "n".repeat(100);
    let second = req(&["CLIENT", "SETNAME", &long]);
    wire.client_sends(&second[..40]);
    wire.client_sends(&second[40..]);
    wire.server_sends(b"+OK\r\n+OK\r\n");
    wire.take_client();
    assert!(wire.conn.settings_to_replay().is_empty());
}

#[test]
fn a_transaction_in_flight_when_the_server_closed_gets_no_invented_error() {
    let mut wire = following();
    wire.client_sends(&cat(&[
        &req(&["MULTI"]),
        &req(&["SET", "k", "v"]),
        &req(&["EXEC"]),
    ]));
    wire.conn.server_closed(false, &mut wire.actions);
    wire.apply(&[]);
    assert!(wire.take_client().is_empty());
    assert!(wire.conn.wants().closing);
    // Once answered, a transaction no longer stops a move.
    let mut after = following();
    after.client_sends(&cat(&[&req(&["MULTI"]), &req(&["EXEC"])]));
    after.server_sends(b"+OK\r\n*0\r\n");
    after.take_client();
    after.conn.server_closed(false, &mut after.actions);
    assert!(!after.conn.wants().closing);
}

#[test]
fn a_refusal_of_a_request_already_sent_again_passes_on_so_a_script_cannot_loop_the_proxy() {
    let mut wire = following();
    // A script may return any error, READONLY too; the new primary answers it the same.
    let eval = req(&["EVAL", "return redis.error_reply('READONLY fake')", "0"]);
    let fake = b"-READONLY fake\r\n";
    wire.client_sends(&cat(&[&eval, &req(&["GET", "k"])]));
    wire.server_sends(fake);
    wire.follow_primary(Ok(()));
    assert_eq!(wire.take_server(), cat(&[&eval, &req(&["GET", "k"])]));
    wire.server_sends(&cat(&[fake, b"$-1\r\n"]));
    assert_eq!(wire.take_client(), cat(&[fake, b"$-1\r\n"]));
    assert!(wire.conn.wants().side_trip.is_none() && !wire.conn.wants().closing);
    // A later request is new: a refusal of it is followed again, once.
    wire.client_sends(&eval);
    wire.server_sends(fake);
    assert_eq!(wire.conn.wants().side_trip, Some(SideTrip::FollowPrimary));
}

#[test]
fn a_session_carried_from_a_shared_connection_tells_a_new_primary_what_the_proxy_told_its_own() {
    let mut wire = following();
    let (hello, name) = (req(&["HELLO", "3"]), req(&["CLIENT", "SETNAME", "w"]));
    wire.conn.carried(&Carried {
        authenticated: true,
        hello: Some(Bytes::from(hello.clone())),
        name: Some(Bytes::from(name.clone())),
        ..Carried::default()
    });
    let set = req(&["SET", "k", "v"]);
    wire.client_sends(&set);
    wire.server_sends(READONLY);
    wire.take_server();
    wire.follow_primary(Ok(()));
    assert_eq!(wire.take_server(), cat(&[&hello, &name, &set]));
}

#[test]
fn a_session_carried_in_the_middle_of_a_transaction_cannot_move() {
    let mut wire = following();
    wire.conn.carried(&Carried {
        in_multi: true,
        ..Carried::default()
    });
    wire.client_sends(&req(&["SET", "k", "v"]));
    wire.server_sends(READONLY);
    assert_eq!(wire.take_client(), READONLY);
    assert!(wire.conn.wants().closing);
}
