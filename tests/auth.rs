//! Credential injection and the client's own AUTH / HELLO / RESET (the two-token fallback is in
//! `fallback.rs`).

mod common;

use common::*;

/// Clients that send their own AUTH (no user, or the proxy's user) get +OK, even with a wrong
/// password, and it never reaches the server (which would reject it).
#[test]
fn a_client_auth_with_any_password_is_answered_ok() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = Proxy::start(flags(&redis, &token));
    let mut raw = proxy.raw();
    raw.command(&["AUTH", "not-the-token"]);
    assert_eq!(raw.reply(), "OK");
    raw.command(&["AUTH", "default", "not-the-token"]);
    assert_eq!(raw.reply(), "OK");
    raw.command(&["PING"]);
    assert_eq!(raw.reply(), "PONG");
}

/// redis-cli -a with a stale password still works: the proxy owns authentication.
#[test]
fn redis_cli_with_a_stale_password_still_works() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = Proxy::start(flags(&redis, &token));
    let port = proxy.port().to_string();
    let out = redis_cli(&[
        "-p",
        &port,
        "-a",
        "old-password",
        "--no-auth-warning",
        "PING",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "PONG");
}

/// A pipelined SET, AUTH, GET, AUTH default pass, INCR gets its replies in order.
#[test]
fn intercepted_auth_replies_keep_their_place_in_a_pipeline() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = Proxy::start(flags(&redis, &token));
    let mut raw = proxy.raw();
    let mut batch = Vec::new();
    for words in [
        &["SET", "n", "41"][..],
        &["AUTH", "x"],
        &["GET", "n"],
        &["AUTH", "default", "p"],
        &["INCR", "n"],
    ] {
        let args: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
        batch.extend(redis_auth_proxy::resp::encode_request(&args));
    }
    raw.send(&batch);
    let replies: Vec<String> = (0..5).map(|_| raw.reply()).collect();
    assert_eq!(replies, ["OK", "OK", r#""41""#, "OK", "(integer) 42"]);
}

/// An AUTH behind a blocked BLPOP is answered after the BLPOP's reply, not before.
#[test]
fn an_auth_behind_a_blocking_command_waits_its_turn() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = Proxy::start(flags(&redis, &token));
    let mut raw = proxy.raw();
    let mut batch = redis_auth_proxy::resp::encode_request(&[b"BLPOP", b"q", b"5"]);
    batch.extend(redis_auth_proxy::resp::encode_request(&[b"AUTH", b"pw"]));
    raw.send(&batch);
    eventually("BLPOP is blocked", || {
        format!("{:?}", redis.admin(&["INFO", "clients"])).contains("blocked_clients:1")
    });
    let mut other = proxy.client();
    let _: i64 = redis::cmd("RPUSH")
        .arg("q")
        .arg("v")
        .query(&mut other)
        .unwrap();
    assert_eq!(raw.reply(), r#"["q", "v"]"#);
    assert_eq!(raw.reply(), "OK");
}

/// HELLO 3 with AUTH negotiates RESP3 and sets the name; the credentials never reach the server.
#[test]
fn hello_with_auth_negotiates_resp3_and_sets_the_name() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = Proxy::start(flags(&redis, &token));
    let mut raw = proxy.raw();
    raw.command(&[
        "HELLO",
        "3",
        "AUTH",
        "default",
        "wrong-password",
        "SETNAME",
        "my-app",
    ]);
    let hello = raw.reply();
    assert!(
        hello.starts_with('{') && hello.contains(r#""proto": (integer) 3"#),
        "{hello}"
    );
    raw.command(&["CLIENT", "GETNAME"]);
    assert_eq!(raw.reply(), r#""my-app""#);
    raw.command(&["HGETALL", "missing"]);
    assert_eq!(raw.reply(), "{}", "RESP3 maps are in use");
}

/// The redis crate in RESP3 mode, with a password in its URL, works through the proxy.
#[test]
fn a_resp3_client_library_with_a_password_works() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = Proxy::start(flags(&redis, &token));
    let mut con = connect(&format!(
        "redis://default:whatever@{}/?protocol=resp3",
        proxy.addr()
    ));
    let _: () = redis::cmd("HSET")
        .arg("h")
        .arg("f")
        .arg("v")
        .query(&mut con)
        .unwrap();
    let map: std::collections::HashMap<String, String> =
        redis::cmd("HGETALL").arg("h").query(&mut con).unwrap();
    assert_eq!(map.get("f").map(String::as_str), Some("v"));
}

/// RESET followed at once by GET, in one write, gets +RESET and the value, not NOAUTH.
#[test]
fn reset_is_followed_by_transparent_reauthentication() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = Proxy::start(flags(&redis, &token));
    let mut raw = proxy.raw();
    raw.command(&["SET", "after-reset", "still-here"]);
    assert_eq!(raw.reply(), "OK");
    let mut batch = redis_auth_proxy::resp::encode_request(&[b"RESET"]);
    batch.extend(redis_auth_proxy::resp::encode_request(&[
        b"GET",
        b"after-reset",
    ]));
    raw.send(&batch);
    assert_eq!(raw.reply(), "RESET");
    assert_eq!(raw.reply(), r#""still-here""#);
}

/// RESET leaves subscribed mode and counting resumes: a later AUTH gets +OK in place.
#[test]
fn auth_in_subscribed_mode_and_after_reset_stays_in_sync() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = Proxy::start(flags(&redis, &token));
    let mut raw = proxy.raw();
    raw.command(&["SUBSCRIBE", "c1", "c2"]);
    assert_eq!(raw.reply(), r#"["subscribe", "c1", (integer) 1]"#);
    assert_eq!(raw.reply(), r#"["subscribe", "c2", (integer) 2]"#);
    raw.command(&["AUTH", "pw"]);
    let in_subscribed = raw.reply();
    assert!(
        in_subscribed.starts_with("(error) ERR Can't execute 'auth'"),
        "{in_subscribed}"
    );
    let mut batch = redis_auth_proxy::resp::encode_request(&[b"RESET"]);
    batch.extend(redis_auth_proxy::resp::encode_request(&[b"AUTH", b"pw"]));
    batch.extend(redis_auth_proxy::resp::encode_request(&[b"PING"]));
    raw.send(&batch);
    assert_eq!(raw.reply(), "RESET");
    assert_eq!(raw.reply(), "OK");
    assert_eq!(raw.reply(), "PONG");
}

/// After CLIENT REPLY OFF replies cannot be counted; AUTH then gets no reply, as on a direct
/// connection, and CLIENT REPLY ON brings replies back in order.
#[test]
fn auth_after_client_reply_off_does_not_desync() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = Proxy::start(flags(&redis, &token));
    let mut raw = proxy.raw();
    let mut batch = Vec::new();
    for words in [
        &["CLIENT", "REPLY", "OFF"][..],
        &["AUTH", "pw"],
        &["SET", "k", "v"],
        &["CLIENT", "REPLY", "ON"],
        &["GET", "k"],
    ] {
        let args: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
        batch.extend(redis_auth_proxy::resp::encode_request(&args));
    }
    raw.send(&batch);
    assert_eq!(raw.reply(), "OK", "CLIENT REPLY ON");
    assert_eq!(raw.reply(), r#""v""#);
}

/// AUTH inside MULTI is queued and answered inside EXEC, as the server would.
#[test]
fn auth_inside_multi_is_queued_like_any_command() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = Proxy::start(flags(&redis, &token));
    let mut raw = proxy.raw();
    for (words, expected) in [
        (&["MULTI"][..], "OK"),
        (&["AUTH", "whatever"], "QUEUED"),
        (&["INCR", "m"], "QUEUED"),
        (&["EXEC"], "[OK, (integer) 1]"),
    ] {
        raw.command(words);
        assert_eq!(raw.reply(), expected, "{words:?}");
    }
}

/// AUTH naming another ACL user goes to the server, which decides: the identity switches and
/// that user's limits apply; a wrong password gets WRONGPASS in its place among pipelined
/// replies and leaves the identity as it was; RESET returns to the proxy's user.
#[test]
fn auth_as_another_acl_user_switches_identity_as_on_a_direct_connection() {
    let redis = RedisServer::start();
    redis.admin(&[
        "ACL",
        "SETUSER",
        "bob",
        "on",
        ">bobs-password",
        "~bob:*",
        "+get",
        "+set",
        "+ping",
        "+acl|whoami",
        "+reset",
    ]);
    let token = TokenFile::new(TOKEN_A);
    let proxy = Proxy::start(flags(&redis, &token));
    let mut raw = proxy.raw();
    raw.command(&["ACL", "WHOAMI"]);
    assert_eq!(raw.reply(), r#""default""#);
    raw.command(&["AUTH", "bob", "bobs-password"]);
    assert_eq!(raw.reply(), "OK");
    raw.command(&["ACL", "WHOAMI"]);
    assert_eq!(raw.reply(), r#""bob""#);
    raw.command(&["SET", "other:key", "v"]);
    assert!(
        raw.reply().starts_with("(error) NOPERM"),
        "bob's key limits apply"
    );
    raw.command(&["FLUSHALL"]);
    assert!(
        raw.reply().starts_with("(error) NOPERM"),
        "bob's command limits apply"
    );

    let mut batch = Vec::new();
    for words in [
        &["SET", "bob:k", "1"][..],
        &["AUTH", "bob", "wrong"],
        &["GET", "bob:k"],
        &["ACL", "WHOAMI"],
    ] {
        let args: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
        batch.extend(redis_auth_proxy::resp::encode_request(&args));
    }
    raw.send(&batch);
    let replies: Vec<String> = (0..4).map(|_| raw.reply()).collect();
    assert_eq!(replies[0], "OK");
    assert!(replies[1].starts_with("(error) WRONGPASS"), "{replies:?}");
    assert_eq!(replies[2..], [r#""1""#, r#""bob""#]);

    raw.command(&["RESET"]);
    assert_eq!(raw.reply(), "RESET");
    raw.command(&["ACL", "WHOAMI"]);
    assert_eq!(
        raw.reply(),
        r#""default""#,
        "RESET returns to the proxy's user"
    );
}

/// The server under test is the one asked for (`REDIS_AUTH_PROXY_TEST_SERVER`): the suite runs
/// against Redis 7.0 and Valkey 8.
#[test]
fn the_server_under_test_is_the_one_asked_for() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = Proxy::start(flags(&redis, &token));
    let mut raw = proxy.raw();
    raw.command(&["INFO", "server"]);
    let info = raw.reply();
    if is_valkey() {
        assert!(info.contains("valkey_version:8."), "{info}");
    } else {
        assert!(info.contains("redis_version:7.0."), "{info}");
    }
}
