//! RESP3 under `--multiplex` against a real server: HELLO 3 moves a client to shared
//! connections that speak RESP3 (opened once the first client asks), answered with their HELLO
//! reply; RESP2 and RESP3 clients share connections of their own protocol side by side; RESET
//! and HELLO 2 bring a client back to RESP2; a RESP3 client pinned or lent a connection gets it
//! in RESP3.

mod common;

use common::*;

fn multiplexed(redis: &RedisServer, token: &TokenFile) -> Proxy {
    start_multiplexed(redis, multiplex_flags(redis, token))
}

#[test]
fn resp2_and_resp3_clients_share_connections_of_their_own_protocol() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = multiplexed(&redis, &token);
    let mut resp2 = proxy.raw();
    resp2.command(&["HSET", "h", "f", "v"]);
    assert_eq!(resp2.reply(), "(integer) 1");
    let mut resp3 = proxy.raw();
    resp3.command(&["HELLO", "3", "SETNAME", "three"]);
    let hello = resp3.reply();
    assert!(hello.contains("\"proto\": (integer) 3"), "{hello}");
    resp3.command(&["HGETALL", "h"]);
    assert_eq!(resp3.reply(), "{\"f\": \"v\"}", "a RESP3 map");
    resp3.command(&["CLIENT", "GETNAME"]);
    assert_eq!(resp3.reply(), "\"three\"");
    resp2.command(&["HGETALL", "h"]);
    assert_eq!(resp2.reply(), "[\"f\", \"v\"]", "a RESP2 array");
    // The second RESP3 connection may still be opening: the keeper fills both slots.
    eventually("two shared connections per protocol", || {
        server_connections(&redis) == 4
    });
    let pinned = proxy.metric(
        "redis_auth_proxy_multiplex_pinned_total",
        &[("reason", "protocol")],
    );
    assert_eq!(pinned, 0.0);
    // Back to RESP2, with HELLO 2 and with RESET.
    resp3.command(&["HELLO", "2"]);
    assert!(resp3.reply().contains("proto"));
    resp3.command(&["HGETALL", "h"]);
    assert_eq!(resp3.reply(), "[\"f\", \"v\"]");
    resp3.command(&["HELLO", "3"]);
    assert!(resp3.reply().contains("proto"));
    // RESET and the request after it in one write: the second is answered in RESP2.
    let mut both = redis_auth_proxy::resp::encode_request(&[b"RESET"]);
    both.extend(redis_auth_proxy::resp::encode_request(&[b"HGETALL", b"h"]));
    resp3.send(&both);
    assert_eq!(resp3.reply(), "RESET");
    assert_eq!(resp3.reply(), "[\"f\", \"v\"]");
}

/// Twenty RESP3 clients (the `redis` crate's own RESP3) incrementing their own counters share
/// the two RESP3 connections, each reply its own.
#[test]
fn many_resp3_clients_share_two_connections() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = multiplexed(&redis, &token);
    let url = format!("redis://{}/?protocol=resp3", proxy.addr());
    std::thread::scope(|scope| {
        for i in 0..20 {
            let url = &url;
            scope.spawn(move || {
                let mut con = connect(url);
                let key = format!("counter-{i}");
                for n in 1..=100 {
                    let got: i64 = redis::cmd("INCR").arg(&key).query(&mut con).unwrap();
                    assert_eq!(got, n);
                }
            });
        }
    });
    assert_eq!(server_connections(&redis), 4, "two per protocol");
}

/// A RESP3 client lent a connection (BLPOP) and one pinned (CLIENT TRACKING) get them in RESP3:
/// a map reply and the invalidation push.
#[test]
fn a_resp3_client_lent_or_pinned_a_connection_gets_it_in_resp3() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = multiplexed(&redis, &token);
    let mut worker = proxy.raw();
    worker.command(&["HELLO", "3"]);
    assert!(worker.reply().contains("proto"));
    worker.command(&["MULTI"]);
    assert_eq!(worker.reply(), "OK");
    worker.command(&["CONFIG", "GET", "maxmemory"]);
    assert_eq!(worker.reply(), "QUEUED");
    worker.command(&["EXEC"]);
    assert_eq!(worker.reply(), "[{\"maxmemory\": \"0\"}]", "a RESP3 map");
    let mut tracker = proxy.raw();
    tracker.command(&["HELLO", "3"]);
    assert!(tracker.reply().contains("proto"));
    tracker.command(&["CLIENT", "TRACKING", "on"]);
    assert_eq!(tracker.reply(), "OK");
    tracker.command(&["GET", "watched"]);
    assert_eq!(tracker.reply(), "(nil)");
    let mut writer = proxy.raw();
    writer.command(&["SET", "watched", "1"]);
    assert_eq!(writer.reply(), "OK");
    let push = tracker.reply();
    assert!(
        push.starts_with("push[") && push.contains("invalidate"),
        "{push}"
    );
}
