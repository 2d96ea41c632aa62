//! `--upstream-reuse`: a connection its client left owing nothing is reset and handed to the
//! next client, which starts exactly as on a new connection.

mod common;

use common::*;

fn reuse_flags(redis: &RedisServer, token: &TokenFile) -> redis_auth_proxy::config::Flags {
    redis_auth_proxy::config::Flags {
        upstream_pool_size: Some(1),
        upstream_reuse: Some(true),
        ..flags(redis, token)
    }
}

/// The sum of a metric's series with `label` in them, from the proxy's /metrics.
fn metric(proxy: &Proxy, name: &str, label: &str) -> f64 {
    let (_, body) = http(proxy.admin.unwrap(), "GET", "/metrics");
    body.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// CLIENT LIST as the server gives it to a direct client, not through the proxy.
fn server_clients(redis: &RedisServer) -> String {
    let redis::Value::BulkString(list) = redis.admin(&["CLIENT", "LIST"]) else {
        panic!("CLIENT LIST is a bulk string");
    };
    String::from_utf8(list).unwrap()
}

/// The id of the connection named `name`, as the server lists it to a direct client.
fn server_id(redis: &RedisServer, name: &str) -> String {
    let list = server_clients(redis);
    let line = list
        .lines()
        .find(|line| line.contains(&format!(" name={name} ")))
        .unwrap_or_else(|| panic!("no connection named {name} in {list}"));
    line.split(' ')
        .next()
        .unwrap()
        .trim_start_matches("id=")
        .to_owned()
}

fn not_reused(proxy: &Proxy, reason: &str) -> f64 {
    let label = format!(r#"reason="{reason}""#);
    metric(proxy, "redis_auth_proxy_upstream_not_reused_total", &label)
}

fn reused(proxy: &Proxy) -> f64 {
    metric(
        proxy,
        "redis_auth_proxy_upstream_reuses_total",
        r#"result="reused""#,
    )
}

/// Every kind of state a client can leave on its connection is gone for the next client,
/// which gets the same server connection (same CLIENT ID).
#[test]
fn the_next_client_gets_the_same_connection_with_none_of_the_last_ones_state() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = Proxy::start(reuse_flags(&redis, &token));
    // The client takes the pooled connection, so that the one it gives back has a place.
    eventually("the pool is filled", || {
        metric(&proxy, "redis_auth_proxy_upstream_pool_ready", "") == 1.0
    });
    let mut first = proxy.raw();
    // Found from the server's side: a client that asks for its own id is not reused.
    first.command(&["CLIENT", "SETNAME", "reuse-first"]);
    assert_eq!(first.reply(), "OK");
    let id = server_id(&redis, "reuse-first");
    if is_valkey() {
        // Kept by RESET on servers that have it (Redis 7.2 and later, Valkey).
        first.command(&["CLIENT", "SETINFO", "LIB-NAME", "left-behind-lib"]);
        assert_eq!(first.reply(), "OK");
    }

    for words in [
        &["SELECT", "3"][..],
        &["SET", "in-db-3", "v"],
        &["CLIENT", "SETNAME", "left-behind"],
        &["CLIENT", "NO-EVICT", "on"],
        &["WATCH", "watched"],
        &["SUBSCRIBE", "left-behind"],
        &["UNSUBSCRIBE"],
        &["MULTI"],
        &["SET", "queued", "never"],
    ] {
        first.command(words);
        let reply = first.reply();
        assert!(!reply.starts_with("(error)"), "{words:?}: {reply}");
    }
    drop(first);
    eventually("the connection is reset and pooled", || {
        reused(&proxy) >= 1.0
    });

    let mut next = proxy.raw();
    next.command(&["CLIENT", "SETNAME", "reuse-next"]);
    assert_eq!(next.reply(), "OK");
    assert_eq!(
        server_id(&redis, "reuse-next"),
        id,
        "the same server connection"
    );
    next.command(&["CLIENT", "INFO"]);
    let info = next.reply();
    // Rendered as redis-cli shows it: quoted, the final newline as `\n`.
    let plain = info.trim_matches('"').replace("\\n", " ");
    let fields: Vec<&str> = plain.split_whitespace().collect();
    // flags=N: no tracking (t), no NO-EVICT (e), not subscribed or in MULTI.
    for expected in [
        "name=reuse-next",
        "db=0",
        "flags=N",
        "multi=-1",
        "sub=0",
        "psub=0",
        "resp=2",
        "user=default",
    ] {
        assert!(fields.contains(&expected), "{expected:?} not in {info}");
    }
    assert!(!info.contains("left-behind-lib"), "{info}");
    next.command(&["EXISTS", "in-db-3"]);
    assert_eq!(next.reply(), "(integer) 0", "database 0 again");
    next.command(&["EXEC"]);
    assert!(next.reply().starts_with("(error) ERR EXEC without MULTI"));
    next.command(&["EXISTS", "queued"]);
    assert_eq!(next.reply(), "(integer) 0", "the open MULTI was discarded");
}

/// A client that leaves while BLPOP waits does not get its connection reused: the server frees
/// the blocked client, and an element pushed later stays in the list.
#[test]
fn a_client_that_leaves_during_blpop_is_not_reused_and_nothing_is_popped_for_it() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = Proxy::start(reuse_flags(&redis, &token));
    let mut blocked = proxy.raw();
    blocked.command(&["BLPOP", "reuse-list", "0"]);
    let before_owed = metric(
        &proxy,
        "redis_auth_proxy_upstream_not_reused_total",
        r#"reason="owed""#,
    );
    drop(blocked);
    eventually("the connection is closed, not reused", || {
        metric(
            &proxy,
            "redis_auth_proxy_upstream_not_reused_total",
            r#"reason="owed""#,
        ) > before_owed
    });
    let mut pusher = proxy.raw();
    // The server frees the blocked client once the proxy closes its connection.
    eventually("the blocked client is gone from the server", || {
        pusher.command(&["CLIENT", "LIST"]);
        !pusher.reply().contains("cmd=blpop")
    });
    pusher.command(&["LPUSH", "reuse-list", "kept"]);
    assert_eq!(pusher.reply(), "(integer) 1");
    pusher.command(&["LRANGE", "reuse-list", "0", "-1"]);
    assert_eq!(pusher.reply(), r#"["kept"]"#);
    assert_eq!(reused(&proxy), 0.0);
}

/// Many short connections while the token rotates the ElastiCache way (ROTATE, then SET): no
/// client error, and connections keep being reused.
#[test]
fn short_connections_through_a_rotation_see_no_error() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = Proxy::start(reuse_flags(&redis, &token));
    let request = |n: usize| {
        let mut raw = proxy.raw();
        raw.command(&["INCR", "reuse-counter"]);
        let reply = raw.reply();
        assert_eq!(reply, format!("(integer) {n}"), "request {n}");
    };
    let mut n = 0;
    for _ in 0..100 {
        n += 1;
        request(n);
    }
    // ROTATE: the server takes both tokens, the file names both.
    redis.admin(&["ACL", "SETUSER", "default", &format!(">{TOKEN_B}")]);
    token.rename_over(&format!("{TOKEN_B}\n{TOKEN_A}\n"));
    proxy.wait_for_current_token(TOKEN_B);
    for _ in 0..100 {
        n += 1;
        request(n);
    }
    // SET: only the new token.
    redis.admin(&["ACL", "SETUSER", "default", &format!("<{TOKEN_A}")]);
    token.rename_over(&format!("{TOKEN_B}\n"));
    for _ in 0..100 {
        n += 1;
        request(n);
    }
    assert!(reused(&proxy) >= 100.0, "connections were reused");
}

/// What RESET cannot undo: an id the client (or another) may still name, keys the server's
/// tracking table remembers. Such a connection is closed when its client leaves.
#[test]
fn a_connection_whose_id_was_learned_or_that_tracked_keys_is_never_handed_on() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = Proxy::start(reuse_flags(&redis, &token));
    let cases: [&[&str]; 5] = [
        &["CLIENT", "ID"],
        &["CLIENT", "INFO"],
        &["HELLO", "3"],
        &["CLIENT", "TRACKING", "on"],
        &["client", "list"],
    ];
    for (n, words) in cases.iter().enumerate() {
        let mut client = proxy.raw();
        client.command(words);
        assert!(!client.reply().starts_with("(error)"), "{words:?}");
        drop(client);
        eventually("the connection is closed, not reused", || {
            not_reused(&proxy, "identity") == (n + 1) as f64
        });
    }
    assert_eq!(reused(&proxy), 0.0);
}

/// The issue's repro: an id learned by the client before it left reaches nobody afterwards, as
/// on a direct connection: CLIENT UNBLOCK and CLIENT KILL of it answer 0, and the keys it read
/// under tracking are never named to the next client.
#[test]
fn the_previous_client_s_id_and_tracked_keys_never_reach_the_next_client() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = Proxy::start(reuse_flags(&redis, &token));
    let mut other = proxy.raw();
    other.command(&["SET", "secret:user42:session", "v"]);
    assert_eq!(other.reply(), "OK");
    let mut first = proxy.raw();
    first.command(&["CLIENT", "ID"]);
    let old_id = first.reply().trim_start_matches("(integer) ").to_owned();
    first.command(&["CLIENT", "TRACKING", "on"]);
    assert_eq!(first.reply(), "OK");
    first.command(&["GET", "secret:user42:session"]);
    assert_eq!(first.reply(), r#""v""#);
    drop(first);
    eventually("the first connection is closed", || {
        not_reused(&proxy, "identity") == 1.0
    });

    let mut next = proxy.raw();
    next.command(&["HELLO", "3"]);
    assert!(next.reply().contains("server"));
    next.command(&["CLIENT", "TRACKING", "on"]);
    assert_eq!(next.reply(), "OK");
    other.command(&["SET", "secret:user42:session", "changed"]);
    assert_eq!(other.reply(), "OK");
    next.command(&["PING"]);
    assert_eq!(
        next.reply(),
        "PONG",
        "no invalidation of a key it never read"
    );
    next.command(&["BLPOP", "reuse-unblock", "0"]);
    eventually("the next client is blocked", || {
        server_clients(&redis).contains("cmd=blpop")
    });
    other.command(&["CLIENT", "UNBLOCK", &old_id]);
    assert_eq!(other.reply(), "(integer) 0");
    other.command(&["CLIENT", "KILL", "ID", &old_id]);
    assert_eq!(other.reply(), "(integer) 0", "as for a closed connection");
    other.command(&["LPUSH", "reuse-unblock", "v"]);
    assert_eq!(other.reply(), "(integer) 1");
    assert_eq!(
        next.reply(),
        r#"["reuse-unblock", "v"]"#,
        "still blocked until then"
    );
}
