//! Multiplexing (`--multiplex`) against a real server: many clients over two shared
//! connections, each client's replies its own and in order; the clients that need a
//! connection of their own get one (pinning); the faults a shared connection can meet.

mod common;

use common::*;
use redis_auth_proxy::config::Flags;
use std::sync::{Arc, Barrier};

fn multiplexed(redis: &RedisServer, token: &TokenFile) -> Proxy {
    Proxy::start(Flags {
        multiplex: Some(true),
        multiplex_connections: Some(2),
        ..flags(redis, token)
    })
}

/// The proxy's connections on the server (the admin's own excluded).
fn server_connections(redis: &RedisServer) -> usize {
    let list: String = redis::from_redis_value(redis.admin(&["CLIENT", "LIST"])).unwrap();
    list.lines().filter(|l| !l.contains("user=admin")).count()
}

/// Fifty clients, each on its own connection to the proxy, INCRing their own keys in
/// pipelines of various depths: every reply is the client's own and in order, and the server
/// sees two connections.
#[test]
fn fifty_clients_share_two_connections_and_each_gets_its_own_replies_in_order() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = multiplexed(&redis, &token);
    let clients = 50;
    let barrier = Arc::new(Barrier::new(clients + 1));
    let addr = proxy.addr();
    let threads: Vec<_> = (0..clients)
        .map(|i| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let mut con = connect(&format!("redis://{addr}/"));
                barrier.wait();
                let key = format!("mux-{i}");
                let mut expected = 0u64;
                for round in 0..40 {
                    let depth = 1 + (round + i) % 7;
                    let mut pipe = redis::pipe();
                    for _ in 0..depth {
                        pipe.cmd("INCR").arg(&key);
                    }
                    let values: Vec<u64> = pipe.query(&mut con).unwrap();
                    for value in values {
                        expected += 1;
                        assert_eq!(value, expected, "{key}");
                    }
                }
                barrier.wait();
                expected
            })
        })
        .collect();
    barrier.wait();
    barrier.wait();
    assert_eq!(server_connections(&redis), 2, "only the shared connections");
    for (i, thread) in threads.into_iter().enumerate() {
        let acked = thread.join().unwrap();
        let stored: u64 =
            redis::from_redis_value(redis.admin(&["GET", &format!("mux-{i}")])).unwrap();
        assert_eq!(stored, acked);
    }
}

/// CLIENT SETNAME, GETNAME and SETINFO are kept per client, as clients send them on connect;
/// AUTH for the proxy's own user is answered; SELECT 0 and PING share.
#[test]
fn names_are_kept_per_client_without_a_connection_of_their_own() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = multiplexed(&redis, &token);
    let mut a = proxy.raw();
    let mut b = proxy.raw();
    a.command(&["CLIENT", "SETNAME", "alpha"]);
    assert_eq!(a.reply(), "OK");
    b.command(&["CLIENT", "SETINFO", "lib-name", "test"]);
    assert_eq!(b.reply(), "OK");
    a.command(&["CLIENT", "GETNAME"]);
    assert_eq!(a.reply(), "\"alpha\"");
    a.command(&["AUTH", "anything"]);
    assert_eq!(a.reply(), "OK");
    b.command(&["SELECT", "0"]);
    assert_eq!(b.reply(), "OK");
    let mut c = proxy.client();
    let name: Option<String> = redis::cmd("CLIENT").arg("GETNAME").query(&mut c).unwrap();
    assert_eq!(name, None, "a name is the client's own");
    assert_eq!(server_connections(&redis), 2, "nobody pinned");
}
