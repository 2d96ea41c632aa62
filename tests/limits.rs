//! `--idle-timeout`: idle clients are closed; clients waiting on the server are not.

mod common;

use common::*;
use std::time::{Duration, Instant};

const IDLE: &str = "300ms";

fn proxy_with_idle_timeout(redis: &RedisServer, token: &TokenFile) -> Proxy {
    let mut flags = flags(redis, token);
    flags.idle_timeout = Some(IDLE.into());
    Proxy::start(flags)
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
    let started = Instant::now();
    // Nothing moves for several idle timeouts; then the server answers.
    while started.elapsed() < Duration::from_millis(1200) {
        std::thread::sleep(Duration::from_millis(100));
    }
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
    let started = Instant::now();
    // Publish only after several idle timeouts have passed.
    while started.elapsed() < Duration::from_millis(1200) {
        std::thread::sleep(Duration::from_millis(100));
    }
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
