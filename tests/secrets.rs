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
    let log = token.dir().join("proxy.log");
    let (mut child, addr) = trace_logging_proxy(&redis, &token, &log, &[]);
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
    // The command line names the token's file, never the token.
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", child.id())).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline);
    assert!(cmdline.contains("--token-file"), "{cmdline}");
    for secret in [TOKEN_A, TOKEN_B] {
        assert!(!cmdline.contains(secret), "{cmdline}");
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

/// The same for the client password: right, wrong, through HELLO, and across a change of file.
#[test]
fn no_log_line_at_trace_level_contains_a_client_password() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let passwords = TokenFile::new("client-password-1");
    let log = token.dir().join("proxy.log");
    let args = ["--client-password-file", passwords.path.to_str().unwrap()];
    let (mut child, addr) = trace_logging_proxy(&redis, &token, &log, &args);
    let mut raw = Raw::connect(addr);
    for (words, expected) in [
        (&["AUTH", "guess-number-1"][..], "(error) WRONGPASS"),
        (
            &["HELLO", "3", "AUTH", "default", "guess-number-2"],
            "(error) WRONGPASS",
        ),
        (&["AUTH", "client-password-1"], "OK"),
    ] {
        raw.command(words);
        let reply = raw.reply();
        assert!(reply.starts_with(expected), "{words:?} -> {reply}");
    }
    passwords.rewrite("client-password-2");
    eventually("the new client password works", || {
        let mut raw = Raw::connect(addr);
        raw.command(&["AUTH", "client-password-2"]);
        raw.reply() == "OK"
    });
    let _ = child.kill();
    let _ = child.wait();
    let output = std::fs::read_to_string(&log).unwrap();
    assert!(output.contains("DEBUG"), "debug logging was on:\n{output}");
    for secret in [
        TOKEN_A,
        "client-password-1",
        "client-password-2",
        "guess-number",
    ] {
        assert!(
            !output.contains(secret),
            "{secret} leaked into the log:\n{output}"
        );
    }
}

/// The binary at trace level with its stderr in `log`, once it accepts connections.
fn trace_logging_proxy(
    redis: &RedisServer,
    token: &TokenFile,
    log: &std::path::Path,
    extra: &[&str],
) -> (std::process::Child, std::net::SocketAddr) {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_redis-auth-proxy"))
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
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    eventually("the proxy accepts", || {
        std::net::TcpStream::connect(addr).is_ok()
    });
    (child, addr)
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
