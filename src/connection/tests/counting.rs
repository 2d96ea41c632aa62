//! Counting replies again once they answer requests one to one: after UNSUBSCRIBE to zero in
//! RESP2, after SUBSCRIBE in RESP3 (whose answers are pushes), after CLIENT REPLY ON and after
//! the request CLIENT REPLY SKIP skipped. The proxy's `PING <marker>` says where, and whether.

use super::*;

/// Counting holds again: requests pass at once and the connection owes nothing. After pub/sub
/// the server answers the proxy's own AUTH in the client's place (a message it sends first
/// must come first); otherwise the proxy answers AUTH itself.
fn counts_again(wire: &mut Wire) {
    assert!(wire.conn.wants().idle_closable, "replies are counted again");
    let get = req(&["GET", "k"]);
    wire.client_sends(&cat(&[&get, &req(&["AUTH", "pw"])]));
    let server = wire.take_server();
    if wire.conn.stream.pubsub_used {
        assert_eq!(server, cat(&[&get, PROXY_AUTH]));
        wire.server_sends(b"$1\r\nv\r\n+OK\r\n");
    } else {
        assert_eq!(server, get, "AUTH is the proxy's to answer");
        wire.server_sends(b"$1\r\nv\r\n");
    }
    assert_eq!(wire.take_client(), b"$1\r\nv\r\n+OK\r\n");
    assert!(wire.conn.wants().idle_closable);
}

#[test]
fn unsubscribing_from_the_last_channel_in_resp2_counts_replies_again() {
    let mut wire = Wire::new();
    wire.client_sends(&req(&["SUBSCRIBE", "c"]));
    let subscribed = b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n";
    wire.server_sends(&cat(&[subscribed, &probe_subscribed()]));
    assert_eq!(wire.take_client(), subscribed);
    assert!(!wire.conn.wants().idle_closable, "subscribed");
    wire.take_server();
    let unsubscribe = req(&["UNSUBSCRIBE"]);
    wire.client_sends(&cat(&[&unsubscribe, &req(&["PING"])]));
    assert_eq!(
        wire.take_server(),
        cat(&[&unsubscribe, &probe()]),
        "PING waits for the probe's answer"
    );
    let message = b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2\r\nhi\r\n";
    let unsubscribed = b"*3\r\n$11\r\nunsubscribe\r\n$1\r\nc\r\n:0\r\n";
    wire.server_sends(&cat(&[message, unsubscribed, &probe_counted()]));
    assert_eq!(wire.take_client(), cat(&[message, unsubscribed]));
    assert_eq!(wire.take_server(), req(&["PING"]));
    wire.server_sends(b"+PONG\r\n");
    assert_eq!(wire.take_client(), b"+PONG\r\n");
    counts_again(&mut wire);
}

#[test]
fn subscribing_in_resp3_keeps_counting_as_its_answers_are_pushes() {
    let mut wire = Wire::new();
    wire.client_sends(&req(&["SUBSCRIBE", "c"]));
    let pushed = b">3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n";
    wire.server_sends(&cat(&[pushed, &probe_counted()]));
    assert_eq!(wire.take_client(), pushed);
    wire.take_server();
    counts_again(&mut wire);
    let message = b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2\r\nhi\r\n";
    wire.server_sends(message);
    assert_eq!(wire.take_client(), message, "messages pass as pushes");
}

#[test]
fn a_refused_subscribe_is_one_reply_and_counting_goes_on() {
    let mut wire = Wire::new();
    wire.client_sends(&req(&["SSUBSCRIBE", "c"]));
    let moved = b"-MOVED 7365 10.0.0.2:6379\r\n";
    wire.server_sends(&cat(&[moved, &probe_counted()]));
    assert_eq!(wire.take_client(), moved);
    wire.take_server();
    counts_again(&mut wire);
}

#[test]
fn client_reply_on_counts_replies_again_after_its_ok() {
    let mut wire = Wire::new();
    let (off, on) = (
        req(&["CLIENT", "REPLY", "OFF"]),
        req(&["CLIENT", "REPLY", "ON"]),
    );
    wire.client_sends(&cat(&[
        &off,
        &req(&["SET", "k", "v"]),
        &on,
        &req(&["PING"]),
    ]));
    assert_eq!(
        wire.take_server(),
        cat(&[&off, &req(&["SET", "k", "v"]), &on, &probe()])
    );
    wire.server_sends(&cat(&[b"+OK\r\n", &probe_counted()[..]]));
    assert_eq!(wire.take_client(), b"+OK\r\n");
    assert_eq!(wire.take_server(), req(&["PING"]));
    wire.server_sends(b"+PONG\r\n");
    assert_eq!(wire.take_client(), b"+PONG\r\n");
    counts_again(&mut wire);
}

#[test]
fn the_request_after_client_reply_skip_is_followed_by_a_probe() {
    let mut wire = Wire::new();
    let skip = req(&["CLIENT", "REPLY", "SKIP"]);
    wire.client_sends(&cat(&[&skip, &req(&["SET", "k", "v"])]));
    assert_eq!(
        wire.take_server(),
        cat(&[&skip, &req(&["SET", "k", "v"]), &probe()])
    );
    wire.server_sends(&probe_counted());
    assert!(wire.take_client().is_empty(), "SET's reply was skipped");
    counts_again(&mut wire);
}

#[test]
fn no_probe_goes_where_nothing_would_answer_it_or_only_reset_counts_again() {
    for prefix in [
        vec![req(&["MONITOR"])],
        vec![req(&["CLIENT", "REPLY", "OFF"]), req(&["UNSUBSCRIBE"])],
        vec![req(&["MULTI"]), req(&["SUBSCRIBE", "c"]), req(&["EXEC"])],
    ] {
        let mut wire = Wire::new();
        let sent = prefix.concat();
        wire.client_sends(&sent);
        wire.client_sends(&req(&["UNSUBSCRIBE"]));
        let server = wire.take_server();
        assert!(
            !server.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()),
            "{}",
            String::from_utf8_lossy(&server)
        );
    }
}

#[test]
fn more_subscriptions_while_subscribed_in_resp2_need_no_probe() {
    let mut wire = Wire::new();
    wire.client_sends(&req(&["SUBSCRIBE", "a"]));
    wire.server_sends(&cat(&[
        b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n",
        &probe_subscribed(),
    ]));
    wire.take_server();
    let more = cat(&[&req(&["SUBSCRIBE", "b"]), &req(&["PSUBSCRIBE", "c*"])]);
    wire.client_sends(&more);
    assert_eq!(wire.take_server(), more, "both go at once, with no probe");
}

#[test]
fn a_subscribe_that_client_reply_skip_skipped_is_still_probed() {
    let mut wire = Wire::new();
    let sent = cat(&[
        &req(&["CLIENT", "REPLY", "SKIP"]),
        &req(&["SUBSCRIBE", "a"]),
    ]);
    wire.client_sends(&sent);
    assert_eq!(wire.take_server(), cat(&[&sent, &probe()]));
    wire.server_sends(&probe_subscribed());
    assert!(
        wire.take_client().is_empty(),
        "the confirmation was skipped"
    );
    assert!(!wire.conn.wants().idle_closable, "subscribed");
}
