//! Downstream access control: Unix sockets with their mode, and the client password
//! (`--client-password-file`) checked the way a server with `requirepass` checks it.

mod common;

use common::*;
use redis_auth_proxy::listener::ListenAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;

const CLIENT_PASSWORD: &str = "app-side-password-1";
const NEWER_PASSWORD: &str = "app-side-password-2";

/// A server, the proxy's token, the client password file and the proxy using all three.
struct Guarded {
    _redis: RedisServer,
    _token: TokenFile,
    passwords: TokenFile,
    proxy: Proxy,
}

fn guarded() -> Guarded {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let passwords = TokenFile::new(CLIENT_PASSWORD);
    let mut flags = flags(&redis, &token);
    flags.client_password_file = Some(passwords.path.clone());
    let proxy = Proxy::start(flags);
    Guarded {
        _redis: redis,
        _token: token,
        passwords,
        proxy,
    }
}

/// A raw connection that has sent the client password.
fn authenticated(proxy: &Proxy) -> Raw {
    let mut raw = proxy.raw();
    raw.command(&["AUTH", CLIENT_PASSWORD]);
    assert_eq!(raw.reply(), "OK");
    raw
}

#[test]
fn commands_before_the_client_password_get_noauth_and_never_reach_the_server() {
    let guarded = guarded();
    let proxy = &guarded.proxy;
    let mut raw = proxy.raw();
    raw.command(&["SET", "gate-key", "written-before-auth"]);
    assert_eq!(raw.reply(), "(error) NOAUTH Authentication required.");
    // A request that arrives in pieces is dropped piece by piece.
    let value = "v".repeat(10_000);
    let set = redis_auth_proxy::resp::encode_request(&[b"SET", b"gate-key", value.as_bytes()]);
    raw.send(&set[..5_000]);
    raw.send(&set[5_000..]);
    assert_eq!(raw.reply(), "(error) NOAUTH Authentication required.");
    raw.command(&["HELLO", "3"]);
    assert!(
        raw.reply()
            .starts_with("(error) NOAUTH HELLO must be called")
    );
    raw.command(&["AUTH", "not-the-password"]);
    assert_eq!(
        raw.reply(),
        "(error) WRONGPASS invalid username-password pair or user is disabled."
    );
    raw.command(&["AUTH", "someone", CLIENT_PASSWORD]);
    assert!(
        raw.reply().starts_with("(error) WRONGPASS"),
        "only the default user"
    );
    raw.command(&["AUTH", CLIENT_PASSWORD]);
    assert_eq!(raw.reply(), "OK");
    raw.command(&["EXISTS", "gate-key"]);
    assert_eq!(
        raw.reply(),
        "(integer) 0",
        "the SET sent before AUTH was dropped"
    );
}

#[test]
fn a_pipeline_across_the_client_auth_gets_every_reply_in_order() {
    let guarded = guarded();
    let proxy = &guarded.proxy;
    let mut raw = proxy.raw();
    let mut pipeline = Vec::new();
    for words in [
        &["PING"][..],
        &["AUTH", "wrong"],
        &["AUTH", "default", CLIENT_PASSWORD],
        &["SET", "pipelined", "1"],
        &["AUTH", "wrong-again"],
        &["GET", "pipelined"],
    ] {
        let args: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
        pipeline.extend(redis_auth_proxy::resp::encode_request(&args));
    }
    // Inline commands are checked the same way.
    pipeline.extend_from_slice(b"PING\r\n");
    raw.send(&pipeline);
    let replies: Vec<String> = (0..7).map(|_| raw.reply()).collect();
    assert_eq!(
        replies,
        [
            "(error) NOAUTH Authentication required.",
            "(error) WRONGPASS invalid username-password pair or user is disabled.",
            "OK",
            "OK",
            // As on Redis 6+, a failed AUTH keeps the connection authenticated.
            "(error) WRONGPASS invalid username-password pair or user is disabled.",
            "\"1\"",
            "PONG",
        ]
    );
}

#[test]
fn real_clients_authenticate_with_auth_and_hello() {
    let guarded = guarded();
    let proxy = &guarded.proxy;
    // The redis crate sends HELLO 3 AUTH default <password> for RESP3.
    let url = format!(
        "redis://default:{CLIENT_PASSWORD}@{}/?protocol=resp3",
        proxy.addr()
    );
    let mut con = connect(&url);
    let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut con).unwrap();
    let got: String = redis::cmd("GET").arg("k").query(&mut con).unwrap();
    assert_eq!(got, "v");
    let port = proxy.port().to_string();
    let cli = redis_cli(&[
        "-p",
        &port,
        "--no-auth-warning",
        "-a",
        CLIENT_PASSWORD,
        "GET",
        "k",
    ]);
    assert_eq!(String::from_utf8_lossy(&cli.stdout).trim(), "v");
    let cli = redis_cli(&["-p", &port, "--no-auth-warning", "-a", "wrong", "GET", "k"]);
    let out =
        String::from_utf8_lossy(&cli.stdout).into_owned() + &String::from_utf8_lossy(&cli.stderr);
    assert!(out.contains("WRONGPASS") || out.contains("NOAUTH"), "{out}");
}

#[test]
fn reset_logs_the_client_out_as_a_server_does() {
    let guarded = guarded();
    let proxy = &guarded.proxy;
    let mut raw = authenticated(proxy);
    raw.command(&["RESET"]);
    assert_eq!(raw.reply(), "RESET");
    raw.command(&["PING"]);
    assert_eq!(raw.reply(), "(error) NOAUTH Authentication required.");
    raw.command(&["AUTH", CLIENT_PASSWORD]);
    assert_eq!(raw.reply(), "OK");
    raw.command(&["PING"]);
    assert_eq!(raw.reply(), "PONG");
}

#[test]
fn an_unauthenticated_client_gets_redis_size_limits() {
    let guarded = guarded();
    let proxy = &guarded.proxy;
    let mut raw = proxy.raw();
    let big = "x".repeat(20_000);
    raw.command(&["SET", "k", &big]);
    assert_eq!(
        raw.read_to_close(),
        "-ERR Protocol error: unauthenticated bulk length\r\n"
    );
    let mut raw = authenticated(proxy);
    raw.command(&["SET", "k", &big]);
    assert_eq!(raw.reply(), "OK", "the limits end with authentication");
}

#[test]
fn the_client_password_rotates_without_a_restart() {
    let guarded = guarded();
    let proxy = &guarded.proxy;
    let auth = |password: &str| {
        let mut raw = proxy.raw();
        raw.command(&["AUTH", password]);
        raw.reply()
    };
    let passwords = &guarded.passwords;
    passwords.rewrite(&format!("{NEWER_PASSWORD}\n{CLIENT_PASSWORD}\n"));
    eventually("the newer password works", || auth(NEWER_PASSWORD) == "OK");
    assert_eq!(auth(CLIENT_PASSWORD), "OK", "the older one still works");
    passwords.rewrite(NEWER_PASSWORD);
    eventually("the older password stops working", || {
        auth(CLIENT_PASSWORD).starts_with("(error) WRONGPASS")
    });
    assert_eq!(auth(NEWER_PASSWORD), "OK");
}

#[test]
fn a_wrong_client_password_inside_multi_closes_the_connection() {
    let guarded = guarded();
    let proxy = &guarded.proxy;
    let mut raw = authenticated(proxy);
    raw.command(&["MULTI"]);
    assert_eq!(raw.reply(), "OK");
    raw.command(&["AUTH", "wrong"]);
    assert_eq!(
        raw.read_to_close(),
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
}

#[test]
fn a_unix_socket_listener_is_private_by_default_and_serves_real_clients() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("redis.sock");
    let mut flags = flags(&redis, &token);
    flags.listen = Some(format!("unix:{}", path.display()));
    let proxy = Proxy::start(flags);
    assert_eq!(proxy.addrs[0], ListenAddr::Unix(path.clone()));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let out = redis_cli(&["-s", path.to_str().unwrap(), "SET", "over-unix", "yes"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "OK");
    let mut con = connect(&format!("redis+unix://{}", path.display()));
    let got: String = redis::cmd("GET").arg("over-unix").query(&mut con).unwrap();
    assert_eq!(got, "yes");
    drop(con);
    drop(proxy);
    assert!(!path.exists(), "the socket file is removed at shutdown");
}

#[test]
fn unix_socket_mode_sets_the_permissions_and_a_stale_socket_is_replaced() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("redis.sock");
    // Left behind by a crashed process: a socket file nobody listens on.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let mut flags = flags(&redis, &token);
    flags.listen = Some(format!("unix:{}", path.display()));
    flags.unix_socket_mode = Some("0660".into());
    let proxy = Proxy::start(flags.clone());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    let mut stream = UnixStream::connect(&path).unwrap();
    std::io::Write::write_all(&mut stream, b"PING\r\n").unwrap();
    let mut reply = [0u8; 7];
    std::io::Read::read_exact(&mut stream, &mut reply).unwrap();
    assert_eq!(&reply, b"+PONG\r\n");
    drop(stream);
    // A second proxy on the same live socket is refused rather than stealing it.
    let config = redis_auth_proxy::config::Config::from_flags(&flags).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let error = runtime
        .block_on(redis_auth_proxy::bind(&config))
        .err()
        .expect("the live socket is not replaced");
    assert!(
        error.to_string().contains("another process is listening"),
        "{error}"
    );
    drop(proxy);
}
