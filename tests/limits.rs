//! Limits on what a client can make the proxy hold: `--idle-timeout` (idle clients are closed,
//! clients waiting on the server are not), and memory under large values.

mod common;

use common::*;
use std::time::{Duration, Instant};

const IDLE: &str = "300ms";

fn proxy_with_idle_timeout(redis: &RedisServer, token: &TokenFile) -> Proxy {
    let mut flags = flags(redis, token);
    flags.idle_timeout = Some(IDLE.into());
    Proxy::start(flags)
}

/// Lets several idle timeouts pass with nothing moving: the wait is what is being tested.
fn outlast_the_idle_timeout() {
    std::thread::sleep(Duration::from_millis(1200));
}

#[test]
fn an_idle_client_is_closed_after_the_idle_timeout() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = proxy_with_idle_timeout(&redis, &token);
    let mut raw = proxy.raw();
    raw.command(&["PING"]);
    assert_eq!(raw.reply(), "PONG");
    let idle_since = Instant::now();
    assert_eq!(
        raw.read_to_close(),
        "",
        "closed silently, as Redis's timeout does"
    );
    assert!(idle_since.elapsed() >= Duration::from_millis(300));
}

#[test]
fn a_client_blocked_on_the_server_is_not_idle() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = proxy_with_idle_timeout(&redis, &token);
    let mut blocked = proxy.raw();
    blocked.command(&["BLPOP", "idle-queue", "0"]);
    outlast_the_idle_timeout();
    redis.admin(&["RPUSH", "idle-queue", "job"]);
    assert_eq!(blocked.reply(), "[\"idle-queue\", \"job\"]");
    blocked.command(&["PING"]);
    assert_eq!(blocked.reply(), "PONG");
}

#[test]
fn a_subscriber_is_not_idle() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = proxy_with_idle_timeout(&redis, &token);
    let mut subscriber = proxy.raw();
    subscriber.command(&["SUBSCRIBE", "idle-channel"]);
    assert_eq!(
        subscriber.reply(),
        "[\"subscribe\", \"idle-channel\", (integer) 1]"
    );
    outlast_the_idle_timeout();
    let mut publisher = proxy.client();
    let receivers: i64 = redis::cmd("PUBLISH")
        .arg("idle-channel")
        .arg("still here")
        .query(&mut publisher)
        .unwrap();
    assert_eq!(receivers, 1);
    assert_eq!(
        subscriber.reply(),
        "[\"message\", \"idle-channel\", \"still here\"]"
    );
}

/// 100 clients each start a 64 MiB SET while the server is frozen: the proxy forwards what the
/// server's socket takes and then stops reading, so the data in flight stays in the clients and
/// the kernel, not in the proxy. Once the clients go and the server thaws, the proxy serves on.
#[test]
fn a_hundred_clients_sending_64_mib_values_do_not_grow_the_proxy() {
    const CLIENTS: usize = 100;
    const VALUE: usize = 64 << 20;
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = ProxyProcess::start(&redis, &["--token-file", token.path.to_str().unwrap()], &[]);
    let mut clients: Vec<std::net::TcpStream> = (0..CLIENTS)
        .map(|_| {
            let mut raw = Raw::connect(proxy.addr());
            raw.command(&["PING"]);
            assert_eq!(raw.reply(), "PONG");
            raw.into_stream()
        })
        .collect();
    let before = proxy.rss_kib();
    redis.signal("STOP");
    let chunk = vec![b'v'; 1 << 20];
    let written: Vec<usize> = std::thread::scope(|scope| {
        let handles: Vec<_> = clients
            .iter_mut()
            .enumerate()
            .map(|(i, stream)| {
                let chunk = &chunk;
                scope.spawn(move || {
                    use std::io::Write;
                    stream
                        .set_write_timeout(Some(Duration::from_millis(500)))
                        .unwrap();
                    let head = format!("*3\r\n$3\r\nSET\r\n$6\r\nbig{i:03}\r\n${VALUE}\r\n");
                    stream.write_all(head.as_bytes()).unwrap();
                    let mut sent = 0;
                    // Until the proxy stops taking bytes: the write times out.
                    while sent < VALUE {
                        match stream.write(chunk) {
                            Ok(n) => sent += n,
                            Err(_) => break,
                        }
                    }
                    sent
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let during = proxy.rss_kib();
    let total: usize = written.iter().sum();
    assert!(
        written.iter().all(|&n| n < VALUE),
        "no client could send its whole value to a frozen server: {written:?}"
    );
    assert!(total > CLIENTS << 20, "bytes did flow in: {total}");
    let grown = during.saturating_sub(before);
    assert!(
        grown < 64 << 10,
        "the proxy grew by {grown} KiB while {} MiB were in flight",
        total >> 20
    );
    drop(clients);
    redis.signal("CONT");
    let mut con = proxy.client();
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
    eprintln!(
        "RSS {before} KiB before, {during} KiB with {} MiB in flight from {CLIENTS} clients",
        total >> 20
    );
}
