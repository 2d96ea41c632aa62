//! The client's view through the proxy, byte for byte against a direct connection: generated
//! sequences of commands (ordinary, intercepted, control commands in every mode, RESP3 pushes
//! of all sizes, malformed input), written in pieces split at random points, sent to the proxy
//! (TLS and a token upstream) and to a plain redis-server whose default user takes any password
//! (`nopass`, as the proxy does for its own user), and compared after normalising client ids.
//! Every connection must be released when its client leaves.
//!
//! Seeded and reproducible: `DIFFERENTIAL_SEEDS=N` runs more (CI runs 24); a failure names its
//! seed, and with `DIFFERENTIAL_DUMP=DIR` leaves the requests and both views there.

mod common;

use common::rng::Rng;
use common::*;
use redis_auth_proxy::resp::encode_request;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

/// The password clients send; both the proxy (for its own user) and the direct server (the
/// default user is `nopass`) accept any. Through the proxy a RESET leaves the connection
/// authenticated, as `nopass` does directly; a direct server with `requirepass` would instead
/// close a client that RESET logs out with more than 1 KiB of replies unsent.
const PASSWORD: &str = "any-password";

fn req(words: &[&str]) -> Vec<u8> {
    let args: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
    encode_request(&args)
}

/// Where the generated connection stands, so that each next command is one a real client
/// could send there.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Normal,
    Multi,
    /// RESP3 and subscribed: commands still work, messages arrive as pushes.
    Resp3Subscribed,
    /// RESP2 and subscribed: only (UN)SUBSCRIBE, PING, QUIT, RESET.
    Resp2Subscribed,
    ReplyOff,
}

/// One generated conversation: the bytes a client sends, ending with a marker it waits for.
fn conversation(rng: &mut Rng, key: &str) -> Vec<u8> {
    // A channel of the conversation's own, so that conversations may run at once.
    let chan = format!("{key}:chan");
    let chan = chan.as_str();
    let mut out = req(&["AUTH", "default", PASSWORD]);
    let mut mode = Mode::Normal;
    let mut resp3 = false;
    for _ in 0..(5 + rng.below(30)) {
        let size = if rng.below(8) == 0 { 70_000 } else { 40 };
        let value = rng.text(size);
        let step: Vec<Vec<u8>> = match (mode, rng.below(14)) {
            (Mode::Resp2Subscribed, 0..=3) => vec![req(&["PING", "in-subscribed"])],
            (Mode::Resp2Subscribed, 4..=5) => vec![req(&["AUTH", "default", PASSWORD])],
            (Mode::Resp2Subscribed, 10..=11) => {
                // Back to counted replies once the last channel is left.
                mode = Mode::Normal;
                vec![req(&["UNSUBSCRIBE"]), req(&["AUTH", "default", PASSWORD])]
            }
            (Mode::Resp2Subscribed, _) => {
                mode = Mode::Normal;
                resp3 = false;
                vec![req(&["RESET"]), req(&["AUTH", "default", PASSWORD])]
            }
            (Mode::ReplyOff, 0..=4) => vec![req(&["SET", key, &value])],
            (Mode::ReplyOff, 5..=6) => vec![req(&["AUTH", "default", PASSWORD])],
            (Mode::ReplyOff, 7..=9) => {
                mode = Mode::Normal;
                vec![req(&["CLIENT", "REPLY", "ON"])]
            }
            (Mode::ReplyOff, _) => {
                mode = Mode::Normal;
                resp3 = false;
                vec![req(&["RESET"]), req(&["AUTH", "default", PASSWORD])]
            }
            (Mode::Multi, 0..=5) => vec![req(&["INCR", key])],
            (Mode::Multi, 6..=7) => vec![req(&["AUTH", "default", PASSWORD])],
            (Mode::Multi, _) => {
                mode = Mode::Normal;
                vec![req(&[if rng.below(3) == 0 { "DISCARD" } else { "EXEC" }])]
            }
            (Mode::Resp3Subscribed, 0..=4) => {
                vec![req(&["PUBLISH", chan, &value])]
            }
            (Mode::Resp3Subscribed, 5..=6) => vec![req(&["GET", key])],
            (Mode::Resp3Subscribed, 7..=8) => vec![req(&["AUTH", "default", PASSWORD])],
            (Mode::Resp3Subscribed, 9..=10) => {
                mode = Mode::Normal;
                vec![req(&["UNSUBSCRIBE", chan]), req(&["GET", key])]
            }
            (Mode::Resp3Subscribed, _) => {
                mode = Mode::Normal;
                resp3 = false;
                vec![req(&["RESET"]), req(&["AUTH", "default", PASSWORD])]
            }
            (Mode::Normal, 0..=2) => vec![req(&["SET", key, &value])],
            (Mode::Normal, 3..=4) => vec![req(&["GET", key])],
            (Mode::Normal, 5) => vec![req(&["AUTH", "default", PASSWORD]), req(&["PING"])],
            (Mode::Normal, 6) => vec![format!("PING {}\r\n", rng.text(10)).into_bytes()],
            (Mode::Normal, 7) => {
                mode = Mode::Multi;
                vec![req(&["MULTI"])]
            }
            (Mode::Normal, 8) => {
                resp3 = true;
                vec![req(&[
                    "HELLO", "3", "AUTH", "default", PASSWORD, "SETNAME", "gen",
                ])]
            }
            (Mode::Normal, 9) => {
                mode = if resp3 {
                    Mode::Resp3Subscribed
                } else {
                    Mode::Resp2Subscribed
                };
                vec![req(&["SUBSCRIBE", chan])]
            }
            (Mode::Normal, 10) => {
                mode = Mode::ReplyOff;
                vec![req(&["CLIENT", "REPLY", "OFF"])]
            }
            (Mode::Normal, 11) => vec![req(&["CLIENT", "REPLY", "SKIP"]), req(&["INCR", key])],
            (Mode::Normal, 12) => {
                resp3 = false;
                vec![req(&["RESET"]), req(&["AUTH", "default", PASSWORD])]
            }
            (Mode::Normal, 13) if resp3 => {
                // An invalidation push for this client's own write, among counted replies (not
                // BCAST, whose pushes go out when the server's event loop sleeps: where they land
                // depends on how requests were batched, directly as through the proxy).
                vec![
                    req(&["CLIENT", "TRACKING", "ON"]),
                    req(&["GET", key]),
                    req(&["SET", key, &value]),
                    req(&["AUTH", "default", PASSWORD]),
                ]
            }
            (Mode::Normal, _) => vec![req(&["RESET", "extra"]), req(&["DISCARD", "x"])],
        };
        out.extend(step.concat());
    }
    let subscribed = matches!(mode, Mode::Resp2Subscribed | Mode::Resp3Subscribed);
    if subscribed && rng.below(3) == 0 {
        // Malformed input while replies are not counted: every reply owed, then the error.
        out.extend(b"*1\r\n$-5\r\n");
        return out;
    }
    // Back to a known state, then the marker the reader waits for.
    out.extend(req(&["RESET"]));
    out.extend(req(&["AUTH", "default", PASSWORD]));
    if rng.below(6) == 0 {
        // Malformed input: the error after every reply owed, then the connection closes.
        out.extend(b"*1\r\n$-5\r\n");
    } else {
        out.extend(req(&["ECHO", "end-of-conversation"]));
    }
    out
}

/// Sends `bytes` in pieces of at most `most` bytes cut at random points (1: byte by byte),
/// reading as it goes, and returns everything the server sent until the end marker (or until
/// it closed the connection).
fn converse(addr: SocketAddr, bytes: &[u8], rng: &mut Rng, most: usize) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_nodelay(true).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.set_write_timeout(Some(PATIENCE)).unwrap();
    let reader = {
        let mut stream = stream.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut chunk = [0u8; 65536];
            let end = b"end-of-conversation\r\n";
            while !got.ends_with(end) {
                match stream.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => got.extend_from_slice(&chunk[..n]),
                    Err(e) => panic!("no end of conversation: {e}; had {} bytes", got.len()),
                }
            }
            got
        })
    };
    let mut pos = 0;
    while pos < bytes.len() {
        let n = 1 + rng.below((bytes.len() - pos).min(most));
        if stream.write_all(&bytes[pos..pos + n]).is_err() {
            break; // the server closed after a protocol error
        }
        pos += n;
    }
    let got = reader.join().unwrap();
    drop(stream);
    got
}

/// Replaces what legitimately differs between two connections: the client id in HELLO's reply.
fn normalise(reply: &[u8]) -> String {
    let text = String::from_utf8_lossy(reply).into_owned();
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find("$2\r\nid\r\n:") {
        out.push_str(&rest[..at + 9]);
        rest = &rest[at + 9..];
        let digits = rest.find('\r').unwrap_or(0);
        out.push('N');
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

/// A plain redis-server whose default user takes any password, and the proxy in front of a
/// TLS one with a token: the two sides a conversation is compared on.
struct Sides {
    direct: RedisServer,
    redis: RedisServer,
    proxy: Proxy,
    _token: TokenFile,
}

impl Sides {
    fn start() -> Sides {
        Sides::start_with(false)
    }

    /// With `multiplex`, the proxy serves its clients over two shared connections.
    fn start_with(multiplex: bool) -> Sides {
        let direct = RedisServer::start_with(RedisOptions {
            password: None,
            ..RedisOptions::default()
        });
        let redis = RedisServer::start();
        let token = TokenFile::new(TOKEN_A);
        let proxy = Proxy::start(redis_auth_proxy::config::Flags {
            multiplex: Some(multiplex),
            ..flags(&redis, &token)
        });
        Sides {
            direct,
            redis,
            proxy,
            _token: token,
        }
    }

    fn direct_addr(&self) -> SocketAddr {
        format!("127.0.0.1:{}", self.direct.plain_port)
            .parse()
            .unwrap()
    }
}

fn connected_clients(redis: &RedisServer) -> i64 {
    let info = match redis.admin(&["INFO", "clients"]) {
        redis::Value::BulkString(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        redis::Value::VerbatimString { text, .. } => text,
        other => panic!("{other:?}"),
    };
    info.lines()
        .find_map(|l| l.strip_prefix("connected_clients:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("connected_clients")
}

fn seeds() -> u64 {
    std::env::var("DIFFERENTIAL_SEEDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(24)
}

/// Runs conversation `seed` through the proxy and directly; panics naming the seed if the
/// client's views differ.
fn compare(sides: &Sides, seed: u64) {
    let key = format!("diff:{seed}");
    let bytes = conversation(&mut Rng(seed * 7919), &key);
    // Every eighth conversation goes to the proxy one byte at a time.
    let most = if seed.is_multiple_of(8) { 1 } else { 9000 };
    let through_proxy = converse(sides.proxy.addr(), &bytes, &mut Rng(seed), most);
    let directly = converse(
        sides.direct_addr(),
        &bytes,
        &mut Rng(seed + 1_000_000),
        9000,
    );
    let (through_proxy, directly) = (normalise(&through_proxy), normalise(&directly));
    if through_proxy != directly {
        if let Ok(dir) = std::env::var("DIFFERENTIAL_DUMP") {
            let _ = std::fs::write(format!("{dir}/requests-{seed}"), &bytes);
            let _ = std::fs::write(format!("{dir}/proxy-{seed}"), &through_proxy);
            let _ = std::fs::write(format!("{dir}/direct-{seed}"), &directly);
        }
        let at = through_proxy
            .bytes()
            .zip(directly.bytes())
            .position(|(a, b)| a != b)
            .unwrap_or(through_proxy.len().min(directly.len()));
        let from = at.saturating_sub(200);
        panic!(
            "seed {seed}: the views differ at byte {at}\n  proxy:  {:?}\n  direct: {:?}",
            &through_proxy[from..(at + 200).min(through_proxy.len())],
            &directly[from..(at + 200).min(directly.len())]
        );
    }
}

#[test]
fn generated_conversations_look_the_same_through_the_proxy_as_directly() {
    let sides = Sides::start();
    for seed in 1..=seeds() {
        compare(&sides, seed);
    }
    // Every client left: the proxy let go of every upstream connection (the admin's own is
    // the one left).
    eventually("every upstream connection is released", || {
        connected_clients(&sides.redis) == 1
    });
}

/// The same conversations through `--multiplex`, eight at once over two shared connections:
/// each client's view is still byte for byte its direct one: HELLO 3 moves a client to RESP3
/// shared connections, MULTI borrows a connection, SUBSCRIBE and CLIENT REPLY pin.
#[test]
fn generated_conversations_look_the_same_through_multiplexing_as_directly() {
    let sides = Sides::start_with(true);
    let seeds = seeds();
    std::thread::scope(|scope| {
        for lane in 0..8 {
            let sides = &sides;
            scope.spawn(move || {
                for seed in (1..=seeds).filter(|s| s % 8 == lane) {
                    compare(sides, seed);
                }
            });
        }
    });
    // Only the shared connections stay (two for RESP2, and two for RESP3 once a conversation
    // sent HELLO 3), and the admin's own.
    eventually("every pinned connection is released", || {
        connected_clients(&sides.redis) <= 5
    });
}

/// A client that writes its whole pipeline before reading anything (large GETs, RESET, a large
/// SET) is answered, as Redis answers it directly: the proxy keeps reading the server while
/// the client's requests wait for RESET's reply.
#[test]
fn a_client_that_writes_everything_before_reading_is_answered() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = Proxy::start(flags(&redis, &token));
    let big = "x".repeat(4 * 1024 * 1024);
    let mut setup = Raw::connect(proxy.addr());
    setup.command(&["SET", "big", &big]);
    assert_eq!(setup.reply(), "OK");
    let mut batch = Vec::new();
    for _ in 0..6 {
        batch.extend(req(&["GET", "big"]));
    }
    batch.extend(req(&["RESET"]));
    batch.extend(req(&["SET", "big2", &big]));
    batch.extend(req(&["ECHO", "end-of-conversation"]));
    let mut stream = TcpStream::connect(proxy.addr()).unwrap();
    stream.set_write_timeout(Some(PATIENCE)).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
        .write_all(&batch)
        .expect("the proxy takes the whole pipeline before the client reads");
    let mut got = Vec::new();
    let mut chunk = vec![0u8; 1 << 20];
    while !got.ends_with(b"end-of-conversation\r\n") {
        let n = stream.read(&mut chunk).expect("replies");
        assert!(n > 0, "closed early");
        got.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(got.len(), 6 * (big.len() + 12) + 8 + 5 + 26);
}

/// `CLIENT REPLY SKIP` then `RESET`: the server sends no `+RESET`; the connection still goes on
/// (and is released when the client leaves).
#[test]
fn reset_after_client_reply_skip_does_not_hang() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = Proxy::start(flags(&redis, &token));
    let mut raw = proxy.raw();
    let mut batch = req(&["CLIENT", "REPLY", "SKIP"]);
    batch.extend(req(&["RESET"]));
    batch.extend(req(&["PING"]));
    raw.send(&batch);
    assert_eq!(raw.reply(), "PONG");
    drop(raw);
    eventually("the upstream connection is released", || {
        connected_clients(&redis) == 1
    });
}

/// A malformed header of a later argument, sent in a later write, gets Redis's error and the
/// connection closes; it is not left waiting for the rest of a request that will never come
/// (the split into two reads is pinned down in memory, `src/connection/tests.rs`).
#[test]
fn a_malformed_header_in_a_later_read_is_answered_and_closes() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = Proxy::start(flags(&redis, &token));
    let mut raw = proxy.raw();
    raw.send(b"*2\r\n$3\r\nGET\r\n");
    raw.send(b"$-5\r\n");
    assert_eq!(
        raw.read_to_close(),
        "-ERR Protocol error: invalid bulk length\r\n"
    );
    eventually("the upstream connection is released", || {
        connected_clients(&redis) == 1
    });
}

/// Corners found by hand, each compared byte for byte with a direct connection: HELLO naming
/// another user with a bad option (7.0 checks the AUTH clause first), a form feed inside an
/// inline word, a `CLIENT SETNAME` larger than what the proxy holds whole to inspect, and
/// script errors worded like cluster redirects.
#[test]
fn corners_found_by_hand_look_the_same_through_the_proxy_as_directly() {
    let sides = Sides::start();
    let (proxy, direct_addr) = (&sides.proxy, sides.direct_addr());
    let long_name = "n".repeat(70_000);
    let script = "return redis.error_reply(ARGV[1])";
    let conversations: Vec<Vec<u8>> = vec![
        req(&["HELLO", "2", "AUTH", "someone-else", "pw", "FOO"]),
        b"AUTH\x0cfoo\r\nPING\r\n".to_vec(),
        [
            req(&["CLIENT", "SETNAME", &long_name]),
            req(&["CLIENT", "GETNAME"]),
        ]
        .concat(),
        req(&["EVAL", script, "0", "MOVED 5 127.0.0.1:16002 extra"]),
        req(&["EVAL", script, "0", "MOVED 5 [::1]:16002"]),
    ];
    for (n, mut bytes) in conversations.into_iter().enumerate() {
        bytes.extend(req(&["ECHO", "end-of-conversation"]));
        let through_proxy = converse(proxy.addr(), &bytes, &mut Rng(n as u64), 9000);
        let directly = converse(direct_addr, &bytes, &mut Rng(n as u64), 9000);
        assert_eq!(
            String::from_utf8_lossy(&through_proxy),
            String::from_utf8_lossy(&directly),
            "conversation {n}"
        );
    }
}
