//! Unmodified clients through the proxy to a TLS, password-protected redis-server.

mod common;

use common::*;
use std::time::Duration;

/// A client library with no password reads and writes through the proxy.
#[test]
fn set_and_get_work_without_a_password() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = Proxy::start(flags(&redis, &token));
    let mut con = proxy.client();
    let _: () = redis::cmd("SET")
        .arg("greeting")
        .arg("hello")
        .query(&mut con)
        .unwrap();
    let value: String = redis::cmd("GET").arg("greeting").query(&mut con).unwrap();
    assert_eq!(value, "hello");
}

/// redis-cli with no -a and no --tls talks to the TLS server through the proxy.
#[test]
fn redis_cli_works_with_no_password_and_no_tls() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = Proxy::start(flags(&redis, &token));
    let port = proxy.port().to_string();
    let set = redis_cli(&["-h", "127.0.0.1", "-p", &port, "SET", "k", "from-cli"]);
    assert_eq!(String::from_utf8_lossy(&set.stdout).trim(), "OK");
    let get = redis_cli(&["-h", "127.0.0.1", "-p", &port, "GET", "k"]);
    assert_eq!(String::from_utf8_lossy(&get.stdout).trim(), "from-cli");
}

/// Ten thousand pipelined commands come back complete and in order.
#[test]
fn a_ten_thousand_command_pipeline_gets_every_reply_in_order() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = Proxy::start(flags(&redis, &token));
    let mut con = proxy.client();
    let mut pipe = redis::pipe();
    for i in 0..10_000 {
        pipe.cmd("INCR")
            .arg("counter")
            .cmd("ECHO")
            .arg(format!("echo-{i}"));
    }
    let replies: Vec<redis::Value> = pipe.query(&mut con).unwrap();
    assert_eq!(replies.len(), 20_000);
    for (i, pair) in replies.chunks(2).enumerate() {
        assert_eq!(pair[0], redis::Value::Int(i as i64 + 1));
        assert_eq!(
            pair[1],
            redis::Value::BulkString(format!("echo-{i}").into_bytes())
        );
    }
}

/// A 16 MiB binary value, every byte value included, round-trips unchanged.
#[test]
fn a_sixteen_mebibyte_binary_value_round_trips() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = Proxy::start(flags(&redis, &token));
    let mut con = proxy.client();
    let value: Vec<u8> = (0..16 * 1024 * 1024)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let _: () = redis::cmd("SET")
        .arg("big")
        .arg(&value)
        .query(&mut con)
        .unwrap();
    let back: Vec<u8> = redis::cmd("GET").arg("big").query(&mut con).unwrap();
    assert!(back == value, "value changed in transit");
}

/// MULTI/EXEC runs atomically and returns the queued results.
#[test]
fn multi_exec_transactions_work() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = Proxy::start(flags(&redis, &token));
    let mut con = proxy.client();
    let (a, b): (i64, i64) = redis::pipe()
        .atomic()
        .cmd("INCRBY")
        .arg("tx")
        .arg(5)
        .cmd("INCRBY")
        .arg("tx")
        .arg(7)
        .query(&mut con)
        .unwrap();
    assert_eq!((a, b), (5, 12));
}

/// BLPOP blocks on its own upstream connection and is released by a push from another client.
#[test]
fn blpop_is_released_by_a_push_from_another_connection() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = Proxy::start(flags(&redis, &token));
    let mut waiter = proxy.raw();
    waiter.command(&["BLPOP", "queue", "10"]);
    // The blocked client is visible on the server before the push is sent.
    eventually("BLPOP is blocked on the server", || {
        let info = redis.admin(&["INFO", "clients"]);
        let text = match info {
            redis::Value::VerbatimString { text, .. } => text,
            redis::Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
            other => format!("{other:?}"),
        };
        text.contains("blocked_clients:1")
    });
    let mut pusher = proxy.client();
    let _: i64 = redis::cmd("RPUSH")
        .arg("queue")
        .arg("job-1")
        .query(&mut pusher)
        .unwrap();
    assert_eq!(waiter.reply(), r#"["queue", "job-1"]"#);
}

/// SUBSCRIBE receives what another connection PUBLISHes.
#[test]
fn subscribe_receives_published_messages() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = Proxy::start(flags(&redis, &token));
    let mut subscriber = proxy.raw();
    subscriber.command(&["SUBSCRIBE", "news"]);
    assert_eq!(subscriber.reply(), r#"["subscribe", "news", (integer) 1]"#);
    let mut publisher = proxy.client();
    let receivers: i64 = redis::cmd("PUBLISH")
        .arg("news")
        .arg("extra")
        .query(&mut publisher)
        .unwrap();
    assert_eq!(receivers, 1);
    assert_eq!(subscriber.reply(), r#"["message", "news", "extra"]"#);
}

/// The redis crate's own pub/sub API works through the proxy too.
#[test]
fn a_client_library_pubsub_session_works() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = Proxy::start(flags(&redis, &token));
    let mut con = proxy.client();
    let mut pubsub = con.as_pubsub();
    pubsub.subscribe("lib-channel").unwrap();
    pubsub
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut publisher = proxy.client();
    let _: i64 = redis::cmd("PUBLISH")
        .arg("lib-channel")
        .arg("payload")
        .query(&mut publisher)
        .unwrap();
    let message = pubsub.get_message().unwrap();
    assert_eq!(message.get_payload::<String>().unwrap(), "payload");
}

/// A route with --no-tls reaches the server's plaintext port.
#[test]
fn a_no_tls_route_reaches_a_plaintext_server() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let mut flags = flags(&redis, &token);
    flags.upstream = Some(format!("127.0.0.1:{}", redis.plain_port));
    flags.no_tls = Some(true);
    let proxy = Proxy::start(flags);
    let mut con = proxy.client();
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
}

/// SELECT and other per-connection state stay with the client's own upstream connection.
#[test]
fn each_client_has_its_own_upstream_connection_state() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = Proxy::start(flags(&redis, &token));
    let mut first = proxy.client();
    let mut second = proxy.client();
    let _: () = redis::cmd("SELECT").arg(3).query(&mut first).unwrap();
    let _: () = redis::cmd("SET")
        .arg("where")
        .arg("db3")
        .query(&mut first)
        .unwrap();
    let in_db0: Option<String> = redis::cmd("GET").arg("where").query(&mut second).unwrap();
    assert_eq!(in_db0, None);
    let in_db3: String = redis::cmd("GET").arg("where").query(&mut first).unwrap();
    assert_eq!(in_db3, "db3");
}

/// Inline commands, as typed into telnet, work as Redis accepts them.
#[test]
fn inline_commands_work() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = Proxy::start(flags(&redis, &token));
    let mut raw = proxy.raw();
    raw.send(b"PING\r\nset inline \"a b\"\nget inline\r\n");
    assert_eq!(raw.reply(), "PONG");
    assert_eq!(raw.reply(), "OK");
    assert_eq!(raw.reply(), r#""a b""#);
}

/// Many large values at once fill the TLS socket's send buffer, so the last records of a
/// request can be left in the TLS writer; they must still be sent (a flush per batch).
#[test]
fn concurrent_large_values_are_never_left_in_the_tls_buffer() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = Proxy::start(flags(&redis, &token));
    let addr = proxy.addr();
    let workers: Vec<_> = (0..8)
        .map(|worker| {
            std::thread::spawn(move || {
                let mut con = connect(&format!("redis://{addr}/"));
                for round in 0..3 {
                    let value = vec![(worker * 3 + round) as u8; 4 * 1024 * 1024 + 17 * round];
                    let key = format!("large:{worker}");
                    let _: () = redis::cmd("SET")
                        .arg(&key)
                        .arg(&value)
                        .query(&mut con)
                        .unwrap();
                    let back: Vec<u8> = redis::cmd("GET").arg(&key).query(&mut con).unwrap();
                    assert!(
                        back == value,
                        "worker {worker} round {round}: value changed"
                    );
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("worker finished without error");
    }
}
