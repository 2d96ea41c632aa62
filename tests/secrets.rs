//! The token never leaves the proxy except inside AUTH on the TLS connection.

mod common;

use common::*;
use redis_auth_proxy::config::{Config, Flags};
use std::process::{Command, Stdio};

/// Runs the binary at trace level through every path that handles a token (handshake,
/// fallback to the previous token, client AUTH and HELLO AUTH, RESET, rejection) and searches
/// all of its output for the tokens.
#[test]
fn no_log_line_at_trace_level_contains_a_token() {
    let redis = RedisServer::start();
    let token = TokenFile::new(&format!("{TOKEN_B}\n{TOKEN_A}\n"));
    let port = free_port();
    let log = token.dir().join("proxy.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_redis-auth-proxy"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--upstream",
            &redis.tls_addr(),
            "--log-level",
            "trace",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .arg("--tls-ca-file")
        .arg(&certs().ca)
        .arg("--token-file")
        .arg(&token.path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    eventually("the proxy accepts", || {
        std::net::TcpStream::connect(addr).is_ok()
    });
    let mut raw = Raw::connect(addr);
    for (words, expected) in [
        (&["AUTH", "client-secret-1"][..], "OK"),
        (&["HELLO", "3", "AUTH", "default", "client-secret-2"], ""),
        (&["RESET"], "RESET"),
        (&["PING"], "PONG"),
    ] {
        raw.command(words);
        let reply = raw.reply();
        assert!(reply.starts_with(expected), "{words:?} -> {reply}");
    }
    redis.admin(&["CONFIG", "SET", "requirepass", TOKEN_C]);
    let mut refused = Raw::connect(addr);
    refused.command(&["PING"]);
    assert!(refused.read_to_close().contains("WRONGPASS"));
    let _ = child.kill();
    let _ = child.wait();
    let output = std::fs::read_to_string(&log).unwrap();
    assert!(
        output.contains("TRACE") || output.contains("DEBUG"),
        "trace logging was on:\n{output}"
    );
    for secret in [
        TOKEN_A,
        TOKEN_B,
        TOKEN_C,
        "client-secret-1",
        "client-secret-2",
    ] {
        assert!(
            !output.contains(secret),
            "{secret} leaked into the log:\n{output}"
        );
    }
}

/// Neither the config nor the loaded credentials print a token in Debug.
#[test]
fn debug_output_of_config_and_credentials_holds_no_token() {
    let token = TokenFile::new(&format!("{TOKEN_A}\n{TOKEN_B}\n"));
    let flags = Flags {
        upstream: Some("localhost:6379".into()),
        token_file: Some(token.path.clone()),
        ..Flags::default()
    };
    let config = Config::from_flags(&flags).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (store, _) = runtime
        .block_on(redis_auth_proxy::load_tokens(&config))
        .unwrap();
    let shown = format!("{config:?} {store:?} {:?}", store.credentials());
    assert!(shown.contains("<redacted"), "{shown}");
    assert!(
        !shown.contains(TOKEN_A) && !shown.contains(TOKEN_B),
        "{shown}"
    );
}
