//! Redis Sentinel as the way the proxy finds the primary (`--sentinel`), against a real
//! primary, its replica and three Sentinels (`common::sentinel`), all over TLS, the Sentinels
//! with a password of their own.

mod common;

use common::increments::Load;
use common::sentinel::{MASTER, SENTINEL_PASSWORD, SentinelSet};
use common::*;

fn proxy(set: &SentinelSet, token: &TokenFile, password: &TokenFile) -> ProxyProcess {
    let sentinels = set.tls_addrs();
    ProxyProcess::start_without_upstream(
        &[
            "--sentinel",
            &sentinels,
            "--sentinel-master",
            MASTER,
            "--sentinel-password-file",
            password.path.to_str().unwrap(),
            "--token-file",
            token.path.to_str().unwrap(),
        ],
        &[],
    )
}

/// The plaintext port of the server a new connection through the proxy reaches.
fn reached_port(proxy: &ProxyProcess) -> u16 {
    let mut con = connect(&format!("redis://{}/", proxy.addr()));
    let info: String = redis::cmd("INFO").arg("server").query(&mut con).unwrap();
    let port = info.lines().find_map(|line| line.strip_prefix("tcp_port:"));
    port.and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no tcp_port in {info:?}"))
}

/// Six clients, four on long-lived connections, through `SENTINEL FAILOVER`: none sees an
/// error; the long-lived sessions move on the Sentinels' announcement (the old primary would
/// take their writes, and lose them, until it is demoted seconds later); what each client
/// wrote last is on the new primary; new connections go there.
#[test]
fn a_sentinel_failover_under_load_costs_the_clients_no_error() {
    let set = SentinelSet::start();
    let (token, password) = (TokenFile::new(TOKEN_A), TokenFile::new(SENTINEL_PASSWORD));
    let proxy = proxy(&set, &token, &password);
    assert_eq!(reached_port(&proxy), set.primary.plain_port);
    let load = Load::start(&proxy, 6, 4, false);
    load.answered_more("every client has written", 20);
    set.fail_over();
    eventually("the long-lived sessions moved on the announcement", || {
        proxy.metric("redis_auth_proxy_failovers_followed_total", &[]) >= 4.0
    });
    load.answered_more("every client wrote again after the failover", 50);
    let (acked, errors) = load.stop();
    assert!(
        errors.is_empty(),
        "clients saw errors: {:?}\n{}",
        &errors[..errors.len().min(10)],
        proxy.log()
    );
    for (i, acked) in acked.iter().enumerate() {
        let key = format!("counter-{i}");
        let stored: u64 = redis::from_redis_value(set.replica.admin(&["GET", &key])).unwrap();
        assert_eq!(stored, *acked, "{key} on the new primary");
    }
    assert_eq!(set.primary_port(), set.replica.tls_port);
    assert_eq!(reached_port(&proxy), set.replica.plain_port);
    let closed = proxy.metric("redis_auth_proxy_failover_sessions_closed_total", &[]);
    assert_eq!(closed, 0.0, "{}", proxy.log());
}

/// A subscribed client cannot move: on the announcement its connection closes (as the old
/// primary closes it when demoted, but at once), and its next connection reaches the new
/// primary. An idle client moves unseen and goes on as if nothing happened.
#[test]
fn on_a_switch_a_subscriber_is_closed_and_an_idle_session_moves_unseen() {
    let set = SentinelSet::start();
    let (token, password) = (TokenFile::new(TOKEN_A), TokenFile::new(SENTINEL_PASSWORD));
    let proxy = proxy(&set, &token, &password);
    let mut subscriber = proxy.raw();
    subscriber.command(&["SUBSCRIBE", "news"]);
    assert!(subscriber.reply().contains("subscribe"));
    let mut idle = proxy.raw();
    idle.command(&["SELECT", "3"]);
    assert_eq!(idle.reply(), "OK");
    idle.command(&["SET", "before", "1"]);
    assert_eq!(idle.reply(), "OK");
    set.fail_over();
    assert_eq!(subscriber.read_to_close(), "", "closed between messages");
    eventually("the idle session moved", || {
        proxy.metric("redis_auth_proxy_failovers_followed_total", &[]) >= 1.0
    });
    // Its database came along: the key written before is there, replicated.
    idle.command(&["GET", "before"]);
    assert_eq!(idle.reply(), "\"1\"");
    idle.command(&["INFO", "server"]);
    let port = format!("tcp_port:{}", set.replica.plain_port);
    assert!(
        idle.reply().contains(&port),
        "the idle session is on the new primary"
    );
    let closed = proxy.metric(
        "redis_auth_proxy_failover_sessions_closed_total",
        &[("reason", "state")],
    );
    assert_eq!(closed, 1.0);
}

/// A Sentinel password that is refused reaches the client as a clear error naming the
/// Sentinel's refusal, never the password; with the right one in the file the next connection
/// works, without a restart.
#[test]
fn a_refused_sentinel_password_is_a_clear_error_until_the_file_is_fixed() {
    let set = SentinelSet::start();
    let token = TokenFile::new(TOKEN_A);
    let wrong = "not-the-sentinel-password";
    let password = TokenFile::new(wrong);
    let proxy = proxy(&set, &token, &password);
    let mut raw = proxy.raw();
    raw.command(&["PING"]);
    let error = raw.reply();
    assert!(
        error.contains("Sentinel lookup of mymaster failed") && error.contains("WRONGPASS"),
        "{error}"
    );
    assert!(!error.contains(wrong) && !proxy.log().contains(wrong));
    password.rewrite(SENTINEL_PASSWORD);
    let mut raw = proxy.raw();
    raw.command(&["PING"]);
    assert_eq!(raw.reply(), "PONG");
}
