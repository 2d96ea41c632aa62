//! Authentication and traffic metrics, counted exactly and exported in a form promtool accepts.

mod common;

use common::*;
use redis_auth_proxy::config::{Config, Flags};
use std::process::Command;

/// An in-process proxy whose only route has a name no other test uses, so that its counters
/// are its own even when tests share a process.
fn proxy_named(name: &str, flags: Flags) -> Proxy {
    let mut flags = flags;
    flags.admin_listen = Some("127.0.0.1:0".into());
    let mut config = Config::from_flags(&flags).unwrap();
    config.routes[0].name = name.into();
    Proxy::start_config(config)
}

fn metrics(proxy: &Proxy) -> String {
    let (status, body) = http(proxy.admin.unwrap(), "GET", "/metrics");
    assert_eq!(status, 200);
    body
}

fn ping_fails(proxy: &Proxy) -> String {
    let mut raw = proxy.raw();
    raw.command(&["PING"]);
    raw.read_to_close()
}

/// Both tokens rejected: two rejected attempts, one auth failure, one connect failure at the
/// auth stage, one refused client.
#[test]
fn rejected_tokens_are_counted_exactly() {
    let redis = RedisServer::start();
    let token = TokenFile::new(&format!("{TOKEN_B}\n{TOKEN_C}\n"));
    let route = "metrics-rejected";
    let proxy = proxy_named(route, flags(&redis, &token));
    let before = metrics(&proxy);
    assert!(ping_fails(&proxy).contains("WRONGPASS"));
    let after = metrics(&proxy);
    let delta = |name: &str, labels: &[(&str, &str)]| {
        let mut labels = labels.to_vec();
        labels.push(("route", route));
        sample(&after, name, &labels) - sample(&before, name, &labels)
    };
    assert_eq!(
        delta(
            "redis_auth_proxy_upstream_auth_attempts_total",
            &[("slot", "current"), ("result", "rejected")]
        ),
        1.0
    );
    assert_eq!(
        delta(
            "redis_auth_proxy_upstream_auth_attempts_total",
            &[("slot", "previous"), ("result", "rejected")]
        ),
        1.0
    );
    assert_eq!(
        delta(
            "redis_auth_proxy_auth_failures_total",
            &[("reason", "rejected")]
        ),
        1.0
    );
    assert_eq!(
        delta(
            "redis_auth_proxy_upstream_connect_failures_total",
            &[("stage", "auth")]
        ),
        1.0
    );
    assert_eq!(
        delta(
            "redis_auth_proxy_client_connections_rejected_total",
            &[("stage", "auth")]
        ),
        1.0
    );
    assert_eq!(delta("redis_auth_proxy_token_fallbacks_total", &[]), 0.0);
}

/// A certificate for another name counts as a TLS-stage failure.
#[test]
fn a_tls_name_mismatch_is_counted_at_the_tls_stage() {
    let redis = RedisServer::start_with(RedisOptions {
        wrong_name_cert: true,
        ..RedisOptions::default()
    });
    let token = TokenFile::new(TOKEN_A);
    let route = "metrics-tls";
    let proxy = proxy_named(route, flags(&redis, &token));
    assert!(ping_fails(&proxy).contains("TLS handshake"));
    let after = metrics(&proxy);
    let labels = [("route", route), ("stage", "tls")];
    assert_eq!(
        sample(
            &after,
            "redis_auth_proxy_upstream_connect_failures_total",
            &labels
        ),
        1.0
    );
    assert_eq!(
        sample(
            &after,
            "redis_auth_proxy_upstream_auth_attempts_total",
            &[("route", route)]
        ),
        0.0
    );
}

/// An upstream that refuses TCP counts at the tcp stage.
#[test]
fn an_unreachable_upstream_is_counted_at_the_tcp_stage() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let mut flags = flags(&redis, &token);
    flags.upstream = Some(format!("127.0.0.1:{}", free_port()));
    let route = "metrics-tcp";
    let proxy = proxy_named(route, flags);
    for _ in 0..2 {
        assert!(ping_fails(&proxy).contains("cannot connect"));
    }
    let labels = [("route", route), ("stage", "tcp")];
    assert_eq!(
        sample(
            &metrics(&proxy),
            "redis_auth_proxy_upstream_connect_failures_total",
            &labels
        ),
        2.0
    );
}

/// Falling back to the previous token counts once; the next connection goes straight to it.
#[test]
fn a_fallback_to_the_previous_token_is_counted() {
    let redis = RedisServer::start();
    let token = TokenFile::new(&format!("{TOKEN_B}\n{TOKEN_A}\n"));
    let route = "metrics-fallback";
    let proxy = proxy_named(route, flags(&redis, &token));
    for _ in 0..2 {
        let pong: String = redis::cmd("PING").query(&mut proxy.client()).unwrap();
        assert_eq!(pong, "PONG");
    }
    let after = metrics(&proxy);
    let attempts = |slot: &str, result: &str| {
        sample(
            &after,
            "redis_auth_proxy_upstream_auth_attempts_total",
            &[("route", route), ("slot", slot), ("result", result)],
        )
    };
    assert_eq!(attempts("current", "rejected"), 1.0);
    assert_eq!(attempts("previous", "accepted"), 2.0);
    assert_eq!(
        sample(
            &after,
            "redis_auth_proxy_token_fallbacks_total",
            &[("route", route)]
        ),
        1.0
    );
}

/// Connections, bytes, intercepted commands and the connect-time histogram are exported, and
/// the whole exposition passes `promtool check metrics`.
#[test]
fn traffic_metrics_are_exported_and_pass_promtool() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let route = "metrics-traffic";
    let proxy = proxy_named(route, flags(&redis, &token));
    let mut raw = proxy.raw();
    for (words, _) in [
        (&["AUTH", "x"][..], "OK"),
        (&["HELLO", "2", "AUTH", "default", "p"], ""),
        (&["RESET"], "RESET"),
        (&["SET", "k", "v"], "OK"),
    ] {
        raw.command(words);
        raw.reply();
    }
    drop(raw);
    eventually("the connection is no longer active", || {
        sample(
            &metrics(&proxy),
            "redis_auth_proxy_client_connections_active",
            &[("route", route)],
        ) == 0.0
    });
    let body = metrics(&proxy);
    let get = |name: &str, labels: &[(&str, &str)]| {
        let mut labels = labels.to_vec();
        labels.push(("route", route));
        sample(&body, name, &labels)
    };
    assert_eq!(get("redis_auth_proxy_client_connections_total", &[]), 1.0);
    for command in ["auth", "hello", "reset"] {
        assert_eq!(
            get(
                "redis_auth_proxy_intercepted_commands_total",
                &[("command", command)]
            ),
            1.0,
            "{command}"
        );
    }
    assert!(get("redis_auth_proxy_bytes_total", &[("direction", "upstream")]) > 30.0);
    assert!(
        get(
            "redis_auth_proxy_bytes_total",
            &[("direction", "downstream")]
        ) > 30.0
    );
    assert_eq!(
        get(
            "redis_auth_proxy_upstream_connect_duration_seconds_count",
            &[]
        ),
        1.0
    );
    assert!(
        sample(
            &body,
            "redis_auth_proxy_token_reloads_total",
            &[("source", "file"), ("result", "changed")]
        ) >= 1.0
    );
    assert!(sample(&body, "redis_auth_proxy_build_info", &[]) == 1.0);
    assert!(body.contains("# HELP redis_auth_proxy_auth_failures_total"));
    assert!(!body.contains(TOKEN_A));
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) is installed");
    use std::io::Write;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ready` is 1 while the proxy serves and 0 once it drains, as `/readyz` says.
#[test]
fn the_ready_gauge_follows_readyz_into_the_drain() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let token_path = token.path.display().to_string();
    // A long delay keeps it draining (not ready, still serving) until the test ends.
    let args = ["--token-file", &token_path, "--shutdown-delay", "60s"];
    let proxy = ProxyProcess::start(&redis, &args, &[]);
    let ready = || {
        let exposition = http(proxy.admin_addr(), "GET", "/metrics").1;
        sample(&exposition, "redis_auth_proxy_ready", &[])
    };
    assert_eq!(ready(), 1.0);
    proxy.signal("TERM");
    eventually("/readyz says draining", || {
        http(proxy.admin_addr(), "GET", "/readyz").0 == 503
    });
    assert_eq!(ready(), 0.0);
}
