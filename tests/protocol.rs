//! Malformed client input: a Redis-worded error in its place, then the connection closes, and
//! nothing else is affected.

mod common;

use common::*;

fn proxy_and_server() -> (RedisServer, TokenFile, Proxy) {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = Proxy::start(flags(&redis, &token));
    (redis, token, proxy)
}

/// Each malformed request gets Redis's own error text, after the replies owed to the valid
/// requests before it, and then the connection closes.
#[test]
fn malformed_requests_get_redis_protocol_errors_in_order() {
    let (_redis, _token, proxy) = proxy_and_server();
    let cases: [(&[u8], &str); 5] = [
        (
            b"*1\r\n$4\r\nPING\r\n*x\r\n",
            "-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*1\r\n$4\r\nPING\r\n*1\r\nfoo\r\n",
            "-ERR Protocol error: expected '$', got 'f'\r\n",
        ),
        (
            b"*1\r\n$4\r\nPING\r\n*1\r\n$-3\r\n",
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*1\r\n$4\r\nPING\r\n*1\r\n$9999999999\r\n",
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*1\r\n$4\r\nPING\r\nset \"a b\n",
            "-ERR Protocol error: unbalanced quotes in request\r\n",
        ),
    ];
    for (input, error) in cases {
        let mut raw = proxy.raw();
        raw.send(input);
        assert_eq!(
            raw.read_to_close(),
            format!("+PONG\r\n{error}"),
            "input {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

/// An inline line longer than Redis allows is refused without buffering it all.
#[test]
fn an_oversized_inline_request_is_refused() {
    let (_redis, _token, proxy) = proxy_and_server();
    let mut raw = proxy.raw();
    let line = vec![b'a'; 200 * 1024];
    raw.send(&line);
    assert_eq!(
        raw.read_to_close(),
        "-ERR Protocol error: too big inline request\r\n"
    );
}

/// A client that dies mid-request and binary junk on one connection leave the others working.
#[test]
fn bad_clients_do_not_disturb_good_ones() {
    let (_redis, _token, proxy) = proxy_and_server();
    let mut good = proxy.client();
    let mut half = proxy.raw();
    half.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100\r\nonly-part");
    drop(half);
    let mut junk = proxy.raw();
    junk.send(b"\xff\xfe\x80\r\n*\xfe\x01\r\n");
    let answered = junk.read_to_close();
    assert!(
        answered.starts_with("-ERR unknown command"),
        "binary junk is an inline command to Redis: {answered}"
    );
    assert!(
        answered.ends_with("-ERR Protocol error: invalid multibulk length\r\n"),
        "{answered}"
    );
    let pong: String = redis::cmd("PING").query(&mut good).unwrap();
    assert_eq!(pong, "PONG");
    let value: Option<String> = redis::cmd("GET").arg("k").query(&mut good).unwrap();
    assert_eq!(value, None, "the half-sent SET never ran");
}

/// Empty requests (`*0`, a blank line) are ignored as Redis ignores them.
#[test]
fn empty_requests_are_ignored() {
    let (_redis, _token, proxy) = proxy_and_server();
    let mut raw = proxy.raw();
    raw.send(b"*0\r\n\r\n*-1\r\n*1\r\n$4\r\nPING\r\n");
    assert_eq!(raw.reply(), "PONG");
}

/// An AUTH split over many writes, one byte at a time, is still intercepted.
#[test]
fn an_auth_split_into_single_bytes_is_still_intercepted() {
    let (_redis, _token, proxy) = proxy_and_server();
    let mut raw = proxy.raw();
    let request = redis_auth_proxy::resp::encode_request(&[b"AUTH", b"default", b"client-pass"]);
    for byte in request {
        raw.send(&[byte]);
    }
    raw.command(&["PING"]);
    assert_eq!(raw.reply(), "OK");
    assert_eq!(raw.reply(), "PONG");
}
