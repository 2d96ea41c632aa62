//! Renewing an IAM connection in band: an AUTH of the proxy's own at a quiet moment, its
//! answer kept from the client.

use super::*;

impl Wire {
    pub(super) fn renew(&mut self) -> bool {
        let sent = self.conn.renew(&mut self.actions);
        self.apply(&[]);
        self.pump();
        sent
    }
}

#[test]
fn a_quiet_connection_is_renewed_and_the_client_sees_nothing_of_it() {
    let mut wire = Wire::new();
    let get = req(&["GET", "k"]);
    wire.client_sends(&get);
    wire.server_sends(b"$1\r\nv\r\n");
    assert_eq!(wire.take_server(), get);
    assert_eq!(wire.take_client(), b"$1\r\nv\r\n");

    assert!(wire.renew());
    assert_eq!(wire.take_server(), PROXY_AUTH);
    // The client's next request waits for the AUTH's answer.
    let set = req(&["SET", "k", "w"]);
    wire.client_sends(&set);
    assert!(wire.take_server().is_empty());
    wire.server_sends(b"+OK\r\n");
    assert_eq!(wire.conn.take_renewal(), Some(true));
    assert_eq!(wire.take_server(), set);
    wire.server_sends(b"+OK\r\n");
    assert_eq!(
        wire.take_client(),
        b"+OK\r\n",
        "only SET's answer reaches the client"
    );
    assert!(wire.conn.wants().idle_closable);
}

#[test]
fn a_rejected_renewal_is_reported_and_kept_from_the_client() {
    let mut wire = Wire::new();
    assert!(wire.renew());
    wire.server_sends(b"-WRONGPASS invalid username-password pair or user is disabled.\r\n");
    assert_eq!(wire.conn.take_renewal(), Some(false));
    assert!(wire.take_client().is_empty());
    let ping = req(&["PING"]);
    wire.client_sends(&ping);
    assert_eq!(wire.take_server(), [PROXY_AUTH, &ping].concat());
}

#[test]
fn a_push_before_the_auth_answer_still_reaches_the_client() {
    let mut wire = Wire::new();
    assert!(wire.renew());
    let push = b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n";
    wire.server_sends(&cat(&[push, b"+OK\r\n"]));
    assert_eq!(wire.take_client(), push);
    assert_eq!(wire.conn.take_renewal(), Some(true));
}

#[test]
fn a_connection_owed_a_reply_in_multi_subscribed_or_after_client_caching_is_not_quiet() {
    let not_quiet: [&[&[&str]]; 4] = [
        &[&["BLPOP", "list", "0"]],
        &[&["MULTI"]],
        &[&["SUBSCRIBE", "channel"]],
        &[&["CLIENT", "CACHING", "yes"]],
    ];
    let answers: [&[u8]; 4] = [
        b"",
        b"+OK\r\n",
        b"*3\r\n$9\r\nsubscribe\r\n$7\r\nchannel\r\n:1\r\n",
        b"+OK\r\n",
    ];
    for (requests, answer) in not_quiet.iter().zip(answers) {
        let mut wire = Wire::new();
        for request in *requests {
            wire.client_sends(&req(request));
        }
        wire.server_sends(answer);
        wire.take_server();
        assert!(!wire.renew(), "{requests:?}");
        assert!(wire.take_server().is_empty(), "{requests:?}");
    }
}

#[test]
fn a_request_half_sent_holds_the_renewal_back() {
    let mut wire = Wire::new();
    let set = req(&["SET", "key", "value"]);
    let cut = set.len() - 3;
    wire.client_sends(&set[..cut]);
    assert!(!wire.take_server().is_empty(), "the start of SET went on");
    assert!(!wire.renew());
    wire.client_sends(&set[cut..]);
    wire.server_sends(b"+OK\r\n");
    assert!(wire.renew());
}
