//! Faults and limits: a server that dies or freezes, a process out of file descriptors,
//! too many clients, listeners off loopback, and the insecure TLS switch.

mod common;

use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

/// A server killed mid-stream: the request in flight gets an error saying it may or may not
/// have run; the session waits for the server (a failover's new primary) for
/// --failover-timeout, then closes; once the server is back new connections work without
/// restarting the proxy.
#[test]
fn a_killed_server_closes_its_clients_and_new_ones_work_after_restart() {
    let mut redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let mut flags = flags(&redis, &token);
    flags.failover_timeout = Some("1s".into());
    let proxy = Proxy::start(flags);
    let mut waiting = proxy.raw();
    waiting.command(&["BLPOP", "never", "0"]);
    eventually("BLPOP is blocked", || {
        format!("{:?}", redis.admin(&["INFO", "clients"])).contains("blocked_clients:1")
    });
    redis.kill();
    assert_eq!(
        waiting.read_to_close(),
        "-ERR redis-auth-proxy: the upstream connection was lost before the reply; the command may or may not have run\r\n",
        "the client hears that BLPOP's fate is unknown, then its connection closes"
    );
    let mut refused = proxy.raw();
    refused.command(&["PING"]);
    assert!(
        refused
            .read_to_close()
            .contains("cannot connect to upstream")
    );
    redis.restart();
    let pong: String = redis::cmd("PING").query(&mut proxy.client()).unwrap();
    assert_eq!(pong, "PONG");
}

/// A frozen server (SIGSTOP) makes new connections fail after --connect-timeout with a clear
/// error instead of hanging, and works again once thawed.
#[test]
fn a_frozen_server_times_out_with_a_clear_error() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let mut flags = flags(&redis, &token);
    flags.connect_timeout = Some("300ms".into());
    let proxy = Proxy::start(flags);
    redis.signal("STOP");
    let started = Instant::now();
    let mut raw = proxy.raw();
    raw.command(&["PING"]);
    let text = raw.read_to_close();
    redis.signal("CONT");
    assert!(
        text.starts_with("-ERR redis-auth-proxy: timed out after 300ms in connect and TLS handshake with upstream localhost:"),
        "{text}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let pong: String = redis::cmd("PING").query(&mut proxy.client()).unwrap();
    assert_eq!(pong, "PONG");
}

/// Clients beyond --max-connections get Redis's own error and are closed; a freed slot is
/// used again.
#[test]
fn clients_over_max_connections_get_the_redis_error() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let mut flags = flags(&redis, &token);
    flags.max_connections = Some(2);
    let proxy = Proxy::start(flags);
    let mut first = proxy.raw();
    let mut second = proxy.raw();
    for client in [&mut first, &mut second] {
        client.command(&["PING"]);
        assert_eq!(client.reply(), "PONG");
    }
    let mut third = proxy.raw();
    third.command(&["PING"]);
    assert_eq!(
        third.read_to_close(),
        "-ERR max number of clients reached\r\n"
    );
    drop(first);
    eventually("a slot is free again", || {
        let mut again = proxy.raw();
        again.command(&["PING"]);
        again.read_to_close().starts_with("+PONG")
    });
}

/// With its file descriptors exhausted the proxy backs off instead of spinning on accept,
/// logs why, and serves again once descriptors are free.
#[test]
fn running_out_of_file_descriptors_backs_off_and_recovers() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("proxy.log");
    let mut child = Command::new("prlimit")
        .arg("--nofile=48:48")
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_redis-auth-proxy"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--upstream",
            &redis.tls_addr(),
            "--admin-listen",
            "off",
        ])
        .arg("--tls-ca-file")
        .arg(&certs().ca)
        .arg("--token-file")
        .arg(&token.path)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("prlimit (util-linux) runs the proxy");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    eventually("the proxy listens", || {
        std::net::TcpStream::connect(addr).is_ok()
    });
    let mut held = Vec::new();
    for _ in 0..40 {
        let mut raw = Raw::connect(addr);
        raw.command(&["PING"]);
        held.push(raw);
    }
    eventually("accept errors are logged", || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("Accept failed")
    });
    let cpu = |pid: u32| -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    };
    let before = cpu(child.id());
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu(child.id()) - before;
    assert!(
        used < 30,
        "the proxy used {used} ticks of CPU in 1 s while out of descriptors"
    );
    drop(held);
    eventually("the proxy serves again", || {
        let mut raw = Raw::connect(addr);
        raw.command(&["PING"]);
        raw.read_to_close().starts_with("+PONG")
    });
    let _ = child.kill();
    let _ = child.wait();
}

/// A listener off loopback is a configuration error unless --allow-remote-clients says so.
#[test]
fn a_non_loopback_listener_needs_allow_remote_clients() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_redis-auth-proxy"))
            .env_clear()
            .args([
                "check",
                "--listen",
                "0.0.0.0:0",
                "--upstream",
                &redis.tls_addr(),
            ])
            .arg("--tls-ca-file")
            .arg(&certs().ca)
            .arg("--token-file")
            .arg(&token.path)
            .args(extra)
            .output()
            .unwrap()
    };
    let refused = run(&[]);
    assert_eq!(refused.status.code(), Some(78));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("--listen 0.0.0.0:0 (route default): not a loopback address"),
        "{message}"
    );
    let allowed = run(&["--allow-remote-clients"]);
    assert!(
        allowed.status.success(),
        "{}",
        String::from_utf8_lossy(&allowed.stderr)
    );
}

/// --tls-insecure-skip-verify accepts a certificate for another name, and says so loudly.
#[test]
fn tls_insecure_skip_verify_accepts_any_certificate_and_warns() {
    let redis = RedisServer::start_with(RedisOptions {
        wrong_name_cert: true,
        ..RedisOptions::default()
    });
    let token = TokenFile::new(TOKEN_A);
    let proxy = ProxyProcess::start(
        &redis,
        &[
            "--token-file",
            token.path.to_str().unwrap(),
            "--tls-insecure-skip-verify",
        ],
        &[],
    );
    let pong: String = redis::cmd("PING").query(&mut proxy.client()).unwrap();
    assert_eq!(pong, "PONG");
    assert!(
        proxy.log().contains("TLS certificate verification is OFF"),
        "{}",
        proxy.log()
    );
}

/// An upstream name that cannot be resolved gets a clear error, and the proxy keeps serving. The
/// proxy runs in a network namespace with only loopback, so the resolver fails at once and no
/// DNS query can leave the machine.
#[test]
fn an_unresolvable_upstream_gets_a_clear_error_and_no_query_leaves_the_machine() {
    let token = TokenFile::new(TOKEN_A);
    let script = r#"
        ip link set lo up
        "$BIN" --listen 127.0.0.1:16379 --upstream cache.example.internal:6380 \
            --token-file "$TOKEN" --admin-listen off --log-level error &
        pid=$!
        for _ in $(seq 200); do
            first="$(redis-cli -p 16379 PING 2>/dev/null)" && [ -n "$first" ] && break
            sleep 0.05
        done
        printf 'first: %s\n' "$first"
        printf 'second: %s\n' "$(redis-cli -p 16379 GET k)"
        kill -TERM "$pid"
        wait "$pid"
        printf 'exit: %s\n' "$?"
    "#;
    let output = Command::new("unshare")
        .args(["--user", "--map-root-user", "--net", "sh", "-c", script])
        .env("BIN", env!("CARGO_BIN_EXE_redis-auth-proxy"))
        .env("TOKEN", &token.path)
        .output()
        .expect("unshare (util-linux) runs");
    let text = String::from_utf8_lossy(&output.stdout);
    let error = "ERR redis-auth-proxy: cannot resolve upstream cache.example.internal:6380:";
    for line in ["first: ", "second: "] {
        assert!(
            text.contains(&format!("{line}{error}")),
            "{text}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert!(text.contains("exit: 0"), "{text}");
}
