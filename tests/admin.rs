//! Probes, graceful drain, `/quitquitquit`, the admin connection cap, JSON logs and the
//! `health` subcommand (the metrics' counts: `tests/metrics.rs`).

mod common;

use common::*;
use redis_auth_proxy::config::Flags;
use std::process::Command;
use std::time::{Duration, Instant};

/// The probes answer as documented once the proxy is serving.
#[test]
fn probes_report_live_started_and_ready() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = Proxy::start(flags(&redis, &token));
    let admin = proxy.admin.unwrap();
    assert_eq!(http(admin, "GET", "/livez"), (200, "ok\n".into()));
    assert_eq!(http(admin, "GET", "/startupz"), (200, "started\n".into()));
    assert_eq!(http(admin, "GET", "/readyz"), (200, "ready\n".into()));
    assert_eq!(http(admin, "GET", "/nope").0, 404);
    assert_eq!(http(admin, "POST", "/readyz").0, 405);
    assert_eq!(http(admin, "GET", "/quitquitquit").0, 405);
}

/// While the token is still loading (Secrets Manager not answering), /readyz and /startupz
/// say so with 503 and /livez is 200.
#[test]
fn readiness_is_503_while_the_token_loads() {
    let redis = RedisServer::start();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let env = vec![
        (
            "AWS_ENDPOINT_URL",
            format!("http://{}", silent.local_addr().unwrap()),
        ),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
    ];
    let proxy = ProxyProcess::spawn(&redis, &["--token-secret-id", "redis/token"], &env);
    let (status, body) = http(proxy.admin_addr(), "GET", "/readyz");
    assert_eq!(status, 503);
    assert!(
        body.contains("loading the token from Secrets Manager secret redis/token"),
        "{body}"
    );
    assert_eq!(http(proxy.admin_addr(), "GET", "/startupz").0, 503);
    assert_eq!(http(proxy.admin_addr(), "GET", "/livez").0, 200);
}

/// SIGTERM: readiness turns false and new connections are refused at once, a client blocked
/// in BLPOP is still answered when released within the grace period, and the process exits 0
/// as soon as that client is done.
#[test]
fn draining_lets_a_blocked_client_finish() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let mut proxy = ProxyProcess::start(
        &redis,
        &[
            "--token-file",
            token.path.to_str().unwrap(),
            "--shutdown-grace",
            "20s",
        ],
        &[],
    );
    let mut waiter = Raw::connect(proxy.addr());
    waiter.command(&["BLPOP", "jobs", "0"]);
    eventually("BLPOP is blocked", || {
        format!("{:?}", redis.admin(&["INFO", "clients"])).contains("blocked_clients:1")
    });
    let signalled = Instant::now();
    proxy.signal("TERM");
    eventually("readiness turns false", || {
        http(proxy.admin_addr(), "GET", "/readyz") == (503, "draining: shutting down\n".into())
    });
    eventually("new connections are refused", || {
        std::net::TcpStream::connect(proxy.addr()).is_err()
    });
    redis.admin(&["RPUSH", "jobs", "job-1"]);
    assert_eq!(waiter.reply(), r#"["jobs", "job-1"]"#);
    drop(waiter);
    let status = proxy
        .wait_exit(Duration::from_secs(15))
        .expect("the proxy exits once the client is done");
    assert_eq!(status.code(), Some(0));
    assert!(
        signalled.elapsed() < Duration::from_secs(20),
        "exited before the grace period ended"
    );
}

/// A client still connected when the grace period ends is closed, and the proxy exits.
#[test]
fn a_client_still_open_at_the_grace_deadline_is_closed() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let args = [
        "--token-file",
        token.path.to_str().unwrap(),
        "--shutdown-grace",
        "500ms",
    ];
    let mut proxy = ProxyProcess::start(&redis, &args, &[]);
    let mut idle = Raw::connect(proxy.addr());
    idle.command(&["PING"]);
    assert_eq!(idle.reply(), "PONG");
    proxy.signal("TERM");
    assert_eq!(
        idle.read_to_close(),
        "",
        "the idle client is closed without a reply"
    );
    let status = proxy
        .wait_exit(Duration::from_secs(10))
        .expect("the proxy exits");
    assert_eq!(status.code(), Some(0));
    assert!(
        proxy
            .log()
            .contains("Connections still open after the shutdown grace period")
    );
}

/// --shutdown-delay keeps accepting (while not ready) before draining.
#[test]
fn the_shutdown_delay_keeps_accepting_new_connections() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let args = [
        "--token-file",
        token.path.to_str().unwrap(),
        "--shutdown-delay",
        "3s",
        "--shutdown-grace",
        "1s",
    ];
    let mut proxy = ProxyProcess::start(&redis, &args, &[]);
    proxy.signal("TERM");
    eventually("readiness turns false", || {
        http(proxy.admin_addr(), "GET", "/readyz").0 == 503
    });
    let pong: String = redis::cmd("PING").query(&mut proxy.client()).unwrap();
    assert_eq!(pong, "PONG", "a new connection during the delay is served");
    let status = proxy
        .wait_exit(Duration::from_secs(15))
        .expect("the proxy exits after delay and grace");
    assert_eq!(status.code(), Some(0));
}

/// POST /quitquitquit from loopback stops the proxy as SIGTERM does.
#[test]
fn quitquitquit_from_loopback_stops_the_proxy() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let mut proxy =
        ProxyProcess::start(&redis, &["--token-file", token.path.to_str().unwrap()], &[]);
    assert_eq!(
        http(proxy.admin_addr(), "POST", "/quitquitquit"),
        (200, "shutting down\n".into())
    );
    let status = proxy
        .wait_exit(Duration::from_secs(10))
        .expect("the proxy exits");
    assert_eq!(status.code(), Some(0));
}

/// With --log-format json every line is a JSON object with a level, a message and the
/// connection's span fields.
#[test]
fn json_logs_are_one_json_object_per_line() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let args = [
        "--token-file",
        token.path.to_str().unwrap(),
        "--log-format",
        "json",
        "--log-level",
        "debug",
    ];
    let proxy = ProxyProcess::start(&redis, &args, &[]);
    let pong: String = redis::cmd("PING").query(&mut proxy.client()).unwrap();
    assert_eq!(pong, "PONG");
    eventually("the connection's close is logged", || {
        proxy.log().contains("\"Closed\"")
    });
    let log = proxy.log();
    for line in log.lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            value.get("level").is_some() && value.get("message").is_some(),
            "{line}"
        );
    }
    let closed = log.lines().find(|l| l.contains("\"Closed\"")).unwrap();
    let value: serde_json::Value = serde_json::from_str(closed).unwrap();
    assert_eq!(value["span"]["route"], "default", "{closed}");
    assert!(
        value["span"]["client.addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{closed}"
    );
}

/// `redis-auth-proxy health` exits 0 while the proxy is ready and 1 when it is not reachable.
#[test]
fn the_health_subcommand_reflects_readiness() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let mut proxy =
        ProxyProcess::start(&redis, &["--token-file", token.path.to_str().unwrap()], &[]);
    let admin = proxy.admin_addr().to_string();
    let health = || {
        Command::new(env!("CARGO_BIN_EXE_redis-auth-proxy"))
            .env_clear()
            .args(["health", "--admin-listen", &admin])
            .output()
            .unwrap()
    };
    let ready = health();
    assert_eq!(ready.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&ready.stdout).trim(), "ready");
    proxy.signal("TERM");
    proxy
        .wait_exit(Duration::from_secs(10))
        .expect("the proxy exits");
    let gone = health();
    assert_eq!(gone.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&gone.stdout).contains("cannot reach"));
}

/// --ready-requires-upstream makes /readyz check the server itself and report the failure.
#[test]
fn readiness_can_require_a_working_upstream() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let mut flags = flags(&redis, &token);
    flags.ready_requires_upstream = Some(true);
    let proxy = Proxy::start(flags);
    let admin = proxy.admin.unwrap();
    assert_eq!(http(admin, "GET", "/readyz"), (200, "ready\n".into()));
    redis.admin(&["CONFIG", "SET", "requirepass", TOKEN_C]);
    // The successful check above is fresh for 30 s; a fresh proxy has no such memory.
    let proxy = Proxy::start(self::flags_requiring_upstream(&redis, &token));
    let (status, body) = http(proxy.admin.unwrap(), "GET", "/readyz");
    assert_eq!(status, 503);
    assert!(
        body.starts_with("route default: upstream localhost:") && body.contains("WRONGPASS"),
        "{body}"
    );
}

fn flags_requiring_upstream(redis: &RedisServer, token: &TokenFile) -> Flags {
    let mut flags = flags(redis, token);
    flags.ready_requires_upstream = Some(true);
    flags
}

/// A flood of admin connections that send nothing neither takes the proxy's file descriptors
/// (at most `MAX_ADMIN_CONNECTIONS` stay open) nor keeps probes from being answered: the oldest
/// of them gives its place to each newcomer.
#[test]
fn probes_are_answered_while_idle_admin_connections_fill_the_cap() {
    use redis_auth_proxy::admin::MAX_ADMIN_CONNECTIONS;
    use std::io::Read;
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = Proxy::start(flags(&redis, &token));
    let admin = proxy.admin.unwrap();
    let mut idle: Vec<std::net::TcpStream> = (0..2 * MAX_ADMIN_CONNECTIONS)
        .map(|_| std::net::TcpStream::connect(admin).unwrap())
        .collect();
    for probe in ["/livez", "/readyz", "/startupz"] {
        assert_eq!(http_status(admin, probe), Some(200), "{probe}");
    }
    // The first ones were closed to make room; the newest still hold their places.
    let mut byte = [0u8; 1];
    idle[0].set_read_timeout(Some(PATIENCE)).unwrap();
    assert_eq!(idle[0].read(&mut byte).unwrap(), 0, "the oldest was closed");
    let mut raw = proxy.raw();
    raw.command(&["PING"]);
    assert_eq!(raw.reply(), "PONG");
    idle.clear();
}

/// A web page open in a browser on the same host can POST to loopback, but cannot do it
/// without an Origin header (or with a JSON body without asking first): such requests are
/// refused and the proxy keeps running.
#[test]
fn quitquitquit_refuses_what_a_web_page_could_send() {
    use std::io::{Read, Write};
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = Proxy::start(flags(&redis, &token));
    let admin = proxy.admin.unwrap();
    for headers in [
        "Origin: http://evil.example\r\n",
        "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 0\r\n",
        "Content-Type: Multipart/Form-Data; boundary=x\r\nContent-Length: 0\r\n",
        "Content-Type: text/plain;charset=UTF-8\r\nContent-Length: 0\r\n",
        "Sec-Fetch-Site: cross-site\r\n",
    ] {
        let mut stream = std::net::TcpStream::connect(admin).unwrap();
        write!(
            stream,
            "POST /quitquitquit HTTP/1.1\r\nHost: localhost\r\n{headers}Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 403"), "{headers:?}: {reply}");
        assert!(reply.contains("a web page could have sent this"), "{reply}");
    }
    assert_eq!(http_status(admin, "/readyz"), Some(200), "still running");
}

fn http_status(addr: std::net::SocketAddr, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    reply.get(9..12)?.parse().ok()
}
