//! The two tokens: the previous one when the current is rejected, an ACL user from two
//! passwords to one, the user a JSON token names, and a clear error when both are rejected.

mod common;

use common::*;

/// With the current token wrong and the previous one right, connections fall back and work.
#[test]
fn the_previous_token_is_used_when_the_current_one_is_rejected() {
    let redis = RedisServer::start();
    let token = TokenFile::new(&format!("{TOKEN_B}\n{TOKEN_A}\n"));
    let proxy = Proxy::start(flags(&redis, &token));
    for _ in 0..3 {
        let mut con = proxy.client();
        let pong: String = redis::cmd("PING").query(&mut con).unwrap();
        assert_eq!(pong, "PONG");
    }
}

/// An ACL user with two passwords (ROTATE), then one (SET): new connections work throughout.
#[test]
fn an_acl_user_keeps_working_from_two_passwords_to_one() {
    let redis = RedisServer::start();
    redis.admin(&[
        "ACL",
        "SETUSER",
        "app",
        "on",
        &format!(">{TOKEN_A}"),
        &format!(">{TOKEN_B}"),
        "~*",
        "&*",
        "+@all",
    ]);
    let token = TokenFile::new(&format!("{TOKEN_B}\n{TOKEN_A}\n"));
    let mut flags = flags(&redis, &token);
    flags.username = Some("app".into());
    let proxy = Proxy::start(flags);
    let whoami = |proxy: &Proxy| -> String {
        let mut con = proxy.client();
        redis::cmd("ACL").arg("WHOAMI").query(&mut con).unwrap()
    };
    assert_eq!(whoami(&proxy), "app");
    redis.admin(&["ACL", "SETUSER", "app", "resetpass", &format!(">{TOKEN_A}")]);
    assert_eq!(whoami(&proxy), "app", "falls back to the previous token");
    assert_eq!(whoami(&proxy), "app", "and keeps using it");
}

/// A JSON token source gives both the password and the ACL user.
#[test]
fn a_json_token_supplies_the_username() {
    let redis = RedisServer::start();
    redis.admin(&[
        "ACL",
        "SETUSER",
        "json-user",
        "on",
        &format!(">{TOKEN_C}"),
        "~*",
        "+@all",
    ]);
    let token = TokenFile::new(&format!(
        r#"{{"username":"json-user","password":"{TOKEN_C}"}}"#
    ));
    let mut flags = flags(&redis, &token);
    flags.token_json_key = Some("password".into());
    let proxy = Proxy::start(flags);
    let mut con = proxy.client();
    let user: String = redis::cmd("ACL").arg("WHOAMI").query(&mut con).unwrap();
    assert_eq!(user, "json-user");
}

/// When the server rejects both tokens, the first command gets a clear error and the
/// connection closes; the token does not appear in it.
#[test]
fn both_tokens_rejected_gives_a_clear_error() {
    let redis = RedisServer::start();
    let token = TokenFile::new(&format!("{TOKEN_B}\n{TOKEN_C}\n"));
    let proxy = Proxy::start(flags(&redis, &token));
    let mut raw = proxy.raw();
    raw.command(&["PING"]);
    let text = raw.read_to_close();
    assert!(
        text.starts_with("-ERR redis-auth-proxy: upstream localhost:")
            && text.contains("rejected the current and the previous token (WRONGPASS)"),
        "{text}"
    );
    assert!(!text.contains(TOKEN_B) && !text.contains(TOKEN_C));
    let port = proxy.port().to_string();
    let cli = redis_cli(&["-p", &port, "GET", "x"]);
    let shown = String::from_utf8_lossy(&cli.stdout);
    assert!(
        shown.contains("rejected the current and the previous token"),
        "redis-cli shows: {shown}"
    );
}

/// A failing connection does not disturb an established one.
#[test]
fn a_refused_connection_leaves_others_working() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = Proxy::start(flags(&redis, &token));
    let mut healthy = proxy.client();
    redis.admin(&["CONFIG", "SET", "requirepass", TOKEN_C]);
    let mut refused = proxy.raw();
    refused.command(&["PING"]);
    assert!(refused.read_to_close().contains("WRONGPASS"));
    let pong: String = redis::cmd("PING").query(&mut healthy).unwrap();
    assert_eq!(pong, "PONG");
}
