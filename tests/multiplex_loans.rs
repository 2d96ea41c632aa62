//! Loans under `--multiplex` against a real server: a transaction or a blocking command
//! borrows a connection of the client's own and gives it back once over, so the client is on
//! its shared connection again; nothing one client leaves on a lent connection reaches the
//! next; a client that leaves while blocked has its connection closed; a transaction that
//! needs the connection for good keeps it.

mod common;

use common::*;
use redis_auth_proxy::config::Flags;

fn multiplexed(redis: &RedisServer, token: &TokenFile, reuse: bool) -> Proxy {
    let flags = Flags {
        upstream_pool_size: reuse.then_some(1),
        upstream_reuse: reuse.then_some(true),
        ..multiplex_flags(redis, token)
    };
    start_multiplexed(redis, flags)
}

fn returned(proxy: &Proxy, outcome: &str) -> f64 {
    proxy.metric(
        "redis_auth_proxy_multiplex_returned_total",
        &[("outcome", outcome)],
    )
}

#[test]
fn a_blocked_clients_connection_goes_back_once_it_is_answered() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = multiplexed(&redis, &token, false);
    let mut worker = proxy.raw();
    worker.command(&["BLPOP", "jobs", "0"]);
    eventually("the worker is blocked", || {
        let info: String = redis::from_redis_value(redis.admin(&["INFO", "clients"])).unwrap();
        info.contains("blocked_clients:1")
    });
    assert_eq!(server_connections(&redis), 3, "two shared, one lent");
    let mut producer = proxy.raw();
    producer.command(&["RPUSH", "jobs", "job-1"]);
    assert_eq!(producer.reply(), "(integer) 1");
    assert_eq!(worker.reply(), "[\"jobs\", \"job-1\"]");
    eventually("the lent connection is closed", || {
        server_connections(&redis) == 2
    });
    assert_eq!(returned(&proxy, "closed"), 1.0);
    worker.command(&["INCR", "done"]);
    assert_eq!(
        worker.reply(),
        "(integer) 1",
        "back on its shared connection"
    );
    assert_eq!(server_connections(&redis), 2);
}

/// With `--upstream-reuse` and a pool of one, the one pooled connection is lent to each
/// transaction in turn: a client that leaves in the middle of MULTI gives it back reset, so
/// the next client's transaction holds none of its commands.
#[test]
fn with_reuse_a_lent_connection_comes_back_reset_and_nothing_of_one_client_reaches_the_next() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = multiplexed(&redis, &token, true);
    eventually("the pool is full", || server_connections(&redis) == 3);
    let mut first = proxy.raw();
    first.command(&["MULTI"]);
    assert_eq!(first.reply(), "OK");
    first.command(&["SET", "leaked", "yes"]);
    assert_eq!(first.reply(), "QUEUED");
    drop(first);
    eventually("the connection is given back", || {
        returned(&proxy, "reset") == 1.0
    });
    let mut second = proxy.raw();
    second.command(&["MULTI"]);
    assert_eq!(second.reply(), "OK");
    second.command(&["EXEC"]);
    assert_eq!(
        second.reply(),
        "[]",
        "nothing of the first client's transaction"
    );
    let leaked: Option<String> = redis::cmd("GET")
        .arg("leaked")
        .query(&mut proxy.client())
        .unwrap();
    assert_eq!(leaked, None);
    eventually("the connection is given back again", || {
        returned(&proxy, "reset") == 2.0
    });
    assert_eq!(
        server_connections(&redis),
        3,
        "two shared, one pooled: no more"
    );
}

#[test]
fn a_client_that_leaves_while_blocked_has_its_lent_connection_closed() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = multiplexed(&redis, &token, true);
    let mut worker = proxy.raw();
    worker.command(&["BLPOP", "jobs", "0"]);
    eventually("the worker is blocked", || {
        let info: String = redis::from_redis_value(redis.admin(&["INFO", "clients"])).unwrap();
        info.contains("blocked_clients:1")
    });
    drop(worker);
    eventually("nobody is blocked on the server", || {
        let info: String = redis::from_redis_value(redis.admin(&["INFO", "clients"])).unwrap();
        info.contains("blocked_clients:0")
    });
    let mut producer = proxy.raw();
    producer.command(&["RPUSH", "jobs", "job-1"]);
    assert_eq!(producer.reply(), "(integer) 1");
    producer.command(&["LLEN", "jobs"]);
    assert_eq!(producer.reply(), "(integer) 1", "no ghost took the job");
    assert_eq!(
        returned(&proxy, "reset"),
        0.0,
        "never reset for another client"
    );
}

/// SELECT queued inside MULTI changes the database of the connection at EXEC: the client keeps
/// the lent connection for good, and stays in that database.
#[test]
fn a_transaction_that_needs_the_connection_for_good_keeps_it() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = multiplexed(&redis, &token, false);
    let mut client = proxy.raw();
    client.command(&["MULTI"]);
    assert_eq!(client.reply(), "OK");
    client.command(&["SELECT", "2"]);
    assert_eq!(client.reply(), "QUEUED");
    client.command(&["SET", "where", "db2"]);
    assert_eq!(client.reply(), "QUEUED");
    client.command(&["EXEC"]);
    assert_eq!(client.reply(), "[OK, OK]");
    client.command(&["GET", "where"]);
    assert_eq!(client.reply(), "\"db2\"");
    assert_eq!(server_connections(&redis), 3, "two shared, one kept");
    let pinned = [("reason", "database")];
    assert_eq!(
        proxy.metric("redis_auth_proxy_multiplex_pinned_total", &pinned),
        1.0
    );
    let shared: Option<String> = redis::cmd("GET")
        .arg("where")
        .query(&mut proxy.client())
        .unwrap();
    assert_eq!(shared, None, "the shared connections are in database 0");
}

/// Twenty clients each run fifty pipelined transactions (MULTI, INCR, EXEC in one write) on
/// one counter: every EXEC holds its own INCR, the counter ends at a thousand, and once they
/// are done the server has only the shared connections and the pooled one.
#[test]
fn many_clients_transactions_each_borrow_and_give_back_with_every_increment_kept() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = multiplexed(&redis, &token, true);
    let addr = proxy.addr();
    std::thread::scope(|scope| {
        for _ in 0..20 {
            scope.spawn(move || {
                let mut con = connect(&format!("redis://{addr}/"));
                let mut last = 0;
                for _ in 0..50 {
                    let (value,): (i64,) = redis::pipe()
                        .atomic()
                        .cmd("INCR")
                        .arg("counter")
                        .query(&mut con)
                        .unwrap();
                    assert!(value > last, "each EXEC holds its own INCR");
                    last = value;
                }
            });
        }
    });
    let total: i64 = redis::cmd("GET")
        .arg("counter")
        .query(&mut proxy.client())
        .unwrap();
    assert_eq!(total, 1000);
    eventually("every lent connection is back", || {
        server_connections(&redis) <= 3
    });
}
