//! AUTH and HELLO AUTH naming ACL users: the proxy's own is answered in place, any other goes
//! to the server, which decides.

use super::*;

#[test]
fn auth_for_another_user_goes_to_the_server_alone_and_in_its_place() {
    let mut wire = Wire::new();
    let (get, bob, ping) = (
        req(&["GET", "k"]),
        req(&["AUTH", "bob", "bobs-password"]),
        req(&["PING"]),
    );
    wire.client_sends(&cat(&[
        &get,
        &req(&["AUTH", "default", "old"]),
        &bob,
        &ping,
    ]));
    assert_eq!(wire.take_server(), get, "bob's AUTH waits for GET's reply");
    assert!(wire.conn.wants().replies_first);
    wire.server_sends(b"$1\r\nv\r\n");
    assert_eq!(wire.take_client(), b"$1\r\nv\r\n+OK\r\n");
    assert_eq!(
        wire.take_server(),
        cat(&[&bob, &ping]),
        "then it goes, as sent"
    );
    wire.server_sends(
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n+PONG\r\n",
    );
    assert_eq!(
        wire.take_client(),
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n+PONG\r\n"
    );
    assert!(wire.conn.wants().idle_closable);
}

#[test]
fn auth_for_the_proxys_own_user_is_answered_by_the_proxy() {
    let mut wire = Wire::with(Rules {
        username: Some("app"),
        ..rules(None)
    });
    wire.client_sends(&req(&["AUTH", "app", "stale"]));
    assert_eq!(wire.take_client(), b"+OK\r\n");
    wire.client_sends(&req(&["AUTH", "default", "pw"]));
    assert_eq!(
        wire.take_server(),
        req(&["AUTH", "default", "pw"]),
        "default is another user here"
    );
}

#[test]
fn hello_auth_for_another_user_goes_to_the_server_whole() {
    let mut wire = Wire::new();
    let hello = req(&["HELLO", "3", "AUTH", "bob", "pw"]);
    wire.client_sends(&hello);
    assert_eq!(wire.take_server(), hello);
}

#[test]
fn with_a_client_password_another_users_auth_needs_the_proxys_password_first() {
    let passwords = Box::leak(Box::new(ClientPasswords::fixed("app-pw")));
    let mut wire = Wire::with(rules(Some(passwords)));
    wire.client_sends(&req(&["AUTH", "bob", "pw"]));
    assert_eq!(wire.take_client(), WRONGPASS);
    assert!(wire.take_server().is_empty());
    wire.client_sends(&cat(&[
        &req(&["AUTH", "app-pw"]),
        &req(&["AUTH", "bob", "pw"]),
    ]));
    assert_eq!(wire.take_client(), b"+OK\r\n");
    assert_eq!(wire.take_server(), req(&["AUTH", "bob", "pw"]));
}
