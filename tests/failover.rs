//! Following the primary through a failover, against real servers: a primary and its replica
//! share a TLS port on two loopback addresses behind one name, which the test points at either
//! through a hosts file of the proxy's own (`ProxyProcess::start_with_hosts`). The failover is
//! Redis's own `FAILOVER` (writes paused, the replica promoted, the old primary demoted), as a
//! managed service does it, and the name moves after it, as a DNS record does.

mod common;

use common::increments::Load;
use common::*;

const NAME: &str = "redis-primary.test";

struct Pair {
    primary: RedisServer,
    replica: RedisServer,
    hosts: TokenFile,
    port: u16,
}

impl Pair {
    /// A primary on 127.0.0.2 and its replica on 127.0.0.3, the name on the primary.
    fn start() -> Pair {
        let port = free_port();
        let on = |bind| RedisOptions {
            bind,
            tls_port: Some(port),
            ..RedisOptions::default()
        };
        let primary = RedisServer::start_with(on("127.0.0.2"));
        let replica = RedisServer::start_with(on("127.0.0.3"));
        // Either may be the other's replica after a failover.
        for (server, ip) in [(&primary, "127.0.0.2"), (&replica, "127.0.0.3")] {
            server.admin(&["CONFIG", "SET", "replica-announce-ip", ip]);
            server.admin(&["CONFIG", "SET", "repl-diskless-sync-delay", "0"]);
            server.admin(&["CONFIG", "SET", "masterauth", TOKEN_A]);
        }
        replica.admin(&["REPLICAOF", "127.0.0.2", &primary.plain_port.to_string()]);
        eventually("the replica is in sync", || {
            info(&replica, "replication").contains("master_link_status:up")
        });
        let hosts = TokenFile::new(&format!("127.0.0.2 {NAME}\n"));
        Pair {
            primary,
            replica,
            hosts,
            port,
        }
    }

    fn proxy(&self, token: &TokenFile) -> ProxyProcess {
        let token = token.path.to_str().unwrap();
        let args = ["--token-file", token, "--tls-server-name", "localhost"];
        ProxyProcess::start_with_hosts(
            &self.hosts.path,
            &format!("{NAME}:{}", self.port),
            &args,
            &[],
        )
    }

    /// The managed way: writes paused, the replica promoted, the old primary its replica.
    fn fail_over(&self) {
        self.primary.admin(&["FAILOVER"]);
        eventually("the old primary is a replica", || {
            info(&self.primary, "replication").contains("role:slave")
                && info(&self.replica, "replication").contains("role:master")
        });
    }

    /// The new primary holds `acked[i]` for client `i`'s key.
    fn assert_new_primary_holds(&self, acked: &[u64]) {
        for (i, acked) in acked.iter().enumerate() {
            let key = format!("counter-{i}");
            let stored: u64 = redis::from_redis_value(self.replica.admin(&["GET", &key])).unwrap();
            assert_eq!(stored, *acked, "{key} on the new primary");
        }
    }

    /// The name now leads to the new primary.
    fn move_name(&self) {
        self.hosts.rewrite(&format!("127.0.0.3 {NAME}\n"));
    }
}

fn info(server: &RedisServer, section: &str) -> String {
    redis::from_redis_value(server.admin(&["INFO", section])).unwrap()
}

/// Six clients, four on long-lived connections, through a managed failover: none sees an
/// error, every acknowledged increment is on the new primary exactly once, and the sessions
/// that were refused moved (counted).
#[test]
fn a_managed_failover_under_load_costs_the_clients_no_error() {
    let pair = Pair::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = pair.proxy(&token);
    let load = Load::start(&proxy, 6, 4, true);
    load.reach("every client has written", 20);
    pair.fail_over();
    let least = load.acked().iter().max().unwrap() + 50;
    pair.move_name();
    load.reach("every client wrote again after the failover", least);
    let (acked, errors) = load.stop();
    assert!(
        errors.is_empty(),
        "clients saw errors: {:?}",
        &errors[..errors.len().min(10)]
    );
    pair.assert_new_primary_holds(&acked);
    let followed = proxy.metric("redis_auth_proxy_failovers_followed_total", &[]);
    assert!(
        followed >= 1.0,
        "no session followed the primary:\n{}",
        proxy.log()
    );
    let closed = proxy.metric("redis_auth_proxy_failover_sessions_closed_total", &[]);
    assert_eq!(closed, 0.0, "{}", proxy.log());
}

/// A client inside MULTI, or with WATCHed keys, cannot move: it gets the server's refusal, as
/// on a direct connection, then its connection closes; its next connection reaches the new
/// primary.
#[test]
fn a_session_in_multi_or_watch_gets_the_refusal_and_its_next_connection_reaches_the_new_primary() {
    let pair = Pair::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = pair.proxy(&token);
    let mut inside = proxy.raw();
    inside.command(&["MULTI"]);
    assert_eq!(inside.reply(), "OK");
    let mut watching = proxy.raw();
    watching.command(&["WATCH", "watched-key"]);
    assert_eq!(watching.reply(), "OK");
    pair.fail_over();
    for (client, key) in [(&mut inside, "multi-key"), (&mut watching, "watched-key")] {
        client.command(&["SET", key, "v"]);
        let rest = client.read_to_close();
        assert!(rest.starts_with("-READONLY "), "{key}: {rest:?}");
        assert!(
            rest.ends_with("\r\n") && rest.matches("\r\n").count() == 1,
            "{key}: {rest:?}"
        );
    }
    pair.move_name();
    let mut next = proxy.raw();
    next.command(&["SET", "multi-key", "after"]);
    assert_eq!(next.reply(), "OK");
    let stored: String =
        redis::from_redis_value(pair.replica.admin(&["GET", "multi-key"])).unwrap();
    assert_eq!(stored, "after");
    let closed = proxy.metric(
        "redis_auth_proxy_failover_sessions_closed_total",
        &[("reason", "state")],
    );
    assert_eq!(closed, 2.0);
}

/// A client blocked in BLPOP when its primary is demoted gets the server's own error, as on a
/// direct connection (the server unblocks it), and its next write moves the session to the new
/// primary, unseen.
#[test]
fn a_blocked_client_gets_the_servers_unblocking_error_then_its_next_write_follows() {
    let pair = Pair::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = pair.proxy(&token);
    let mut blocked = proxy.raw();
    blocked.command(&["BLPOP", "queue", "0"]);
    eventually("the client is blocked", || {
        info(&pair.primary, "clients").contains("blocked_clients:1")
    });
    pair.fail_over();
    let error = blocked.reply();
    assert!(error.contains("UNBLOCKED"), "{error}");
    pair.move_name();
    blocked.command(&["RPUSH", "queue", "job"]);
    assert_eq!(blocked.reply(), "(integer) 1");
    let stored: i64 = redis::from_redis_value(pair.replica.admin(&["LLEN", "queue"])).unwrap();
    assert_eq!(stored, 1, "written on the new primary");
}

/// What the proxy says of a request in flight on a connection the server closed.
const LOST: &str =
    "the upstream connection was lost before the reply; the command may or may not have run";

/// The abrupt way: the primary is killed, the replica promoted by hand, the name moved. Four
/// clients on long-lived connections: each sees at most the error for the one request it had
/// in flight, saying its fate is unknown, and nothing else; every connection stays open and
/// goes on writing on the new primary, where no increment counts twice.
#[test]
fn an_abrupt_failover_costs_only_the_requests_in_flight() {
    let mut pair = Pair::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = pair.proxy(&token);
    let load = Load::start(&proxy, 4, 4, false);
    load.reach("every client has written", 20);
    let before = load.acked();
    pair.primary.kill();
    pair.replica.admin(&["REPLICAOF", "NO", "ONE"]);
    pair.move_name();
    // Values restart from what the replica had, so progress is counted in new replies.
    load.reach(
        "every client wrote again after the failover",
        before.iter().max().unwrap() + 50,
    );
    let (acked, errors) = load.stop();
    for i in 0..4 {
        let key = format!("counter-{i}: ");
        let mine: Vec<&String> = errors.iter().filter(|e| e.starts_with(&key)).collect();
        assert!(mine.len() <= 1, "more than the request in flight: {mine:?}");
        for error in mine {
            assert!(error.contains(LOST), "{error}");
        }
    }
    // The last increment answered is the one the new primary holds.
    pair.assert_new_primary_holds(&acked);
    let followed = proxy.metric("redis_auth_proxy_failovers_followed_total", &[]);
    assert!(followed >= 4.0, "{followed}:\n{}", proxy.log());
}

/// A script's error that reads like a replica's refusal moves the session once (the proxy
/// cannot tell the two apart), then, answered the same by a node that says it is the primary,
/// passes on in its place: nothing a client sends keeps the proxy reconnecting.
#[test]
fn a_script_returning_readonly_gets_its_error_after_one_move() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = ProxyProcess::start(&redis, &["--token-file", token.path.to_str().unwrap()], &[]);
    let mut raw = proxy.raw();
    let script = "return redis.error_reply('READONLY from a script')";
    for _ in 0..3 {
        raw.command(&["EVAL", script, "0"]);
        assert_eq!(raw.reply(), "(error) READONLY from a script");
    }
    raw.command(&["PING"]);
    assert_eq!(raw.reply(), "PONG");
    let followed = proxy.metric("redis_auth_proxy_failovers_followed_total", &[]);
    assert_eq!(followed, 3.0, "one move per request, none twice");
}
