//! TLS toward the server: verification on by default, names checked, clear errors.

mod common;

use common::*;

/// A server whose certificate is for another host name is refused, with the reason.
#[test]
fn a_certificate_for_another_host_name_is_refused() {
    let redis = RedisServer::start_with(RedisOptions {
        wrong_name_cert: true,
        ..RedisOptions::default()
    });
    let token = TokenFile::new(TOKEN_A);
    let proxy = Proxy::start(flags(&redis, &token));
    let mut raw = proxy.raw();
    raw.command(&["PING"]);
    let text = raw.read_to_close();
    assert!(
        text.starts_with("-ERR redis-auth-proxy: TLS handshake with upstream localhost:"),
        "{text}"
    );
    assert!(
        text.contains("certificate not valid for name \"localhost\""),
        "{text}"
    );
}

/// --tls-server-name makes the same certificate acceptable when it names the server.
#[test]
fn tls_server_name_selects_the_name_to_verify() {
    let redis = RedisServer::start_with(RedisOptions {
        wrong_name_cert: true,
        ..RedisOptions::default()
    });
    let token = TokenFile::new(TOKEN_A);
    let mut flags = flags(&redis, &token);
    flags.tls_server_name = Some("other.example".into());
    let proxy = Proxy::start(flags);
    let mut con = proxy.client();
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
}

/// Without --tls-ca-file the public roots are used, so a private CA is not trusted.
#[test]
fn a_private_ca_is_not_trusted_without_tls_ca_file() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let mut flags = flags(&redis, &token);
    flags.tls_ca_file = None;
    let proxy = Proxy::start(flags);
    let mut raw = proxy.raw();
    raw.command(&["PING"]);
    let text = raw.read_to_close();
    assert!(
        text.contains("TLS handshake") && text.contains("UnknownIssuer"),
        "{text}"
    );
}

/// An upstream that refuses TCP gives an error naming it, and the proxy keeps serving.
#[test]
fn an_unreachable_upstream_is_named_in_the_error() {
    let token = TokenFile::new(TOKEN_A);
    let port = free_port();
    let flags = redis_auth_proxy::config::Flags {
        listen: Some("127.0.0.1:0".into()),
        upstream: Some(format!("127.0.0.1:{port}")),
        token_file: Some(token.path.clone()),
        ..Default::default()
    };
    let proxy = Proxy::start(flags);
    for _ in 0..2 {
        let mut raw = proxy.raw();
        raw.command(&["PING"]);
        let text = raw.read_to_close();
        assert!(
            text.starts_with(&format!("-ERR redis-auth-proxy: cannot connect to upstream 127.0.0.1:{port}: Connection refused")),
            "{text}"
        );
    }
}

/// A server that accepts TCP but never answers AUTH is given up on after --auth-timeout.
#[test]
fn a_server_that_never_answers_auth_times_out() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let token = TokenFile::new(TOKEN_A);
    let flags = redis_auth_proxy::config::Flags {
        listen: Some("127.0.0.1:0".into()),
        upstream: Some(silent.local_addr().unwrap().to_string()),
        no_tls: Some(true),
        token_file: Some(token.path.clone()),
        auth_timeout: Some("300ms".into()),
        ..Default::default()
    };
    let proxy = Proxy::start(flags);
    let mut raw = proxy.raw();
    raw.command(&["PING"]);
    let text = raw.read_to_close();
    assert!(
        text.starts_with("-ERR redis-auth-proxy: timed out after 300ms in AUTH with upstream"),
        "{text}"
    );
    drop(silent);
}

/// --tls-min-version 1.3 refuses a server that only speaks TLS 1.2, saying why.
#[test]
fn tls_min_version_refuses_an_older_server() {
    let redis = RedisServer::start_with(RedisOptions {
        tls_protocols: Some("TLSv1.2"),
        ..RedisOptions::default()
    });
    let token = TokenFile::new(TOKEN_A);
    let mut flags = flags(&redis, &token);
    flags.tls_min_version = Some("1.3".into());
    let proxy = Proxy::start(flags);
    let mut raw = proxy.raw();
    raw.command(&["PING"]);
    let text = raw.read_to_close();
    assert!(text.contains("TLS handshake with upstream"), "{text}");
    // The same server is fine with the default range.
    let proxy = Proxy::start(common::flags(&redis, &token));
    let mut raw = proxy.raw();
    raw.command(&["PING"]);
    assert_eq!(raw.reply(), "PONG");
}

/// Connections after the first resume the TLS session, with TLS 1.3 and with
/// --tls-max-version 1.2; the metric tells the two kinds apart.
#[test]
fn later_connections_resume_the_tls_session() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    for max in [None, Some("1.2")] {
        let mut flags = flags(&redis, &token);
        flags.tls_max_version = max.map(Into::into);
        let proxy = Proxy::start(flags);
        // The registry is shared by every proxy in this process: count from here.
        let handshakes = |kind| handshakes(&proxy, kind);
        let (full, resumed) = (handshakes("full"), handshakes("resumed"));
        for _ in 0..3 {
            let mut raw = proxy.raw();
            raw.command(&["PING"]);
            assert_eq!(raw.reply(), "PONG");
        }
        assert_eq!(handshakes("full") - full, 1.0, "{max:?}");
        assert_eq!(handshakes("resumed") - resumed, 2.0, "{max:?}");
    }
}

/// Connections opened together resume too: the proxy keeps enough TLS 1.3 tickets for a wave
/// of parallel connections (rustls's default store keeps eight, and the rest would each cost
/// the server a full handshake).
#[test]
fn a_wave_of_parallel_connections_resumes_every_session() {
    const WAVE: usize = 40;
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = Proxy::start(flags(&redis, &token));
    let handshakes = |kind| handshakes(&proxy, kind);
    let wave = || {
        let mut open: Vec<Raw> = (0..WAVE)
            .map(|_| {
                let mut raw = proxy.raw();
                raw.command(&["PING"]);
                raw
            })
            .collect();
        for raw in &mut open {
            assert_eq!(raw.reply(), "PONG");
        }
    };
    wave();
    let (full, resumed) = (handshakes("full"), handshakes("resumed"));
    wave();
    wave();
    assert_eq!(
        handshakes("full"),
        full,
        "no full handshakes after the first wave"
    );
    assert_eq!(handshakes("resumed") - resumed, (2 * WAVE) as f64);
}

/// `upstream_tls_handshakes_total` of the default route, for `kind` `full` or `resumed`.
fn handshakes(proxy: &Proxy, kind: &str) -> f64 {
    let (_, metrics) = http(proxy.admin.unwrap(), "GET", "/metrics");
    sample(
        &metrics,
        "redis_auth_proxy_upstream_tls_handshakes_total",
        &[("route", "default"), ("kind", kind)],
    )
}
