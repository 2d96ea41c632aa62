//! Multiplexing (`--multiplex`) against a real server: many clients over two shared
//! connections, each client's replies its own and in order; the clients that need a
//! connection of their own get one (pinning); the faults a shared connection can meet.

mod common;

use common::*;
use redis_auth_proxy::config::Flags;
use std::sync::{Arc, Barrier};

fn multiplexed(redis: &RedisServer, token: &TokenFile) -> Proxy {
    start_multiplexed(redis, multiplex_flags(redis, token))
}

/// Fifty clients, each on its own connection to the proxy, INCRing their own keys in
/// pipelines of various depths: every reply is the client's own and in order, and the server
/// sees two connections.
#[test]
fn fifty_clients_share_two_connections_and_each_gets_its_own_replies_in_order() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = multiplexed(&redis, &token);
    let clients = 50;
    let barrier = Arc::new(Barrier::new(clients + 1));
    let addr = proxy.addr();
    let threads: Vec<_> = (0..clients)
        .map(|i| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let mut con = connect(&format!("redis://{addr}/"));
                barrier.wait();
                let key = format!("mux-{i}");
                let mut expected = 0u64;
                for round in 0..40 {
                    let depth = 1 + (round + i) % 7;
                    let mut pipe = redis::pipe();
                    for _ in 0..depth {
                        pipe.cmd("INCR").arg(&key);
                    }
                    let values: Vec<u64> = pipe.query(&mut con).unwrap();
                    for value in values {
                        expected += 1;
                        assert_eq!(value, expected, "{key}");
                    }
                }
                barrier.wait();
                expected
            })
        })
        .collect();
    barrier.wait();
    barrier.wait();
    assert_eq!(server_connections(&redis), 2, "only the shared connections");
    for (i, thread) in threads.into_iter().enumerate() {
        let acked = thread.join().unwrap();
        let stored: u64 =
            redis::from_redis_value(redis.admin(&["GET", &format!("mux-{i}")])).unwrap();
        assert_eq!(stored, acked);
    }
}

/// CLIENT SETNAME, GETNAME and SETINFO are kept per client, as clients send them on connect;
/// AUTH for the proxy's own user is answered; SELECT 0 and PING share.
#[test]
fn names_are_kept_per_client_without_a_connection_of_their_own() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = multiplexed(&redis, &token);
    let mut a = proxy.raw();
    let mut b = proxy.raw();
    a.command(&["CLIENT", "SETNAME", "alpha"]);
    assert_eq!(a.reply(), "OK");
    b.command(&["CLIENT", "SETINFO", "lib-name", "test"]);
    assert_eq!(b.reply(), "OK");
    a.command(&["CLIENT", "GETNAME"]);
    assert_eq!(a.reply(), "\"alpha\"");
    a.command(&["AUTH", "anything"]);
    assert_eq!(a.reply(), "OK");
    b.command(&["SELECT", "0"]);
    assert_eq!(b.reply(), "OK");
    let mut c = proxy.client();
    let name: Option<String> = redis::cmd("CLIENT").arg("GETNAME").query(&mut c).unwrap();
    assert_eq!(name, None, "a name is the client's own");
    assert_eq!(server_connections(&redis), 2, "nobody pinned");
}

/// A transaction borrows a connection: another client's write to a WATCHed key, through the
/// shared connections, makes EXEC fail as it would directly; the name set before is still the
/// client's; after EXEC the connection goes back (closed, with no pool) and the client is on
/// its shared connection again.
#[test]
fn watch_and_multi_borrow_a_connection_until_exec() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = multiplexed(&redis, &token);
    let mut watcher = proxy.client();
    let mut run = |words: &[&str]| -> redis::Value {
        let mut cmd = redis::cmd(words[0]);
        for word in &words[1..] {
            cmd.arg(*word);
        }
        cmd.query(&mut watcher).unwrap()
    };
    assert_eq!(run(&["CLIENT", "SETNAME", "watcher"]), redis::Value::Okay);
    assert_eq!(run(&["WATCH", "balance"]), redis::Value::Okay);
    let name = run(&["CLIENT", "GETNAME"]);
    assert_eq!(name, redis::Value::BulkString(b"watcher".to_vec()));
    assert_eq!(server_connections(&redis), 3, "two shared, one lent");
    let mut other = proxy.raw();
    other.command(&["SET", "balance", "10"]);
    assert_eq!(other.reply(), "OK");
    assert_eq!(run(&["MULTI"]), redis::Value::Okay);
    let queued = run(&["SET", "balance", "99"]);
    assert_eq!(queued, redis::Value::SimpleString("QUEUED".into()));
    assert_eq!(run(&["EXEC"]), redis::Value::Nil, "the WATCHed key changed");
    eventually("the lent connection is given back", || {
        server_connections(&redis) == 2
    });
    let balance = run(&["GET", "balance"]);
    assert_eq!(balance, redis::Value::BulkString(b"10".to_vec()));
    let pinned = [("reason", "transaction")];
    assert_eq!(
        proxy.metric("redis_auth_proxy_multiplex_pinned_total", &pinned),
        1.0
    );
    let closed = [("outcome", "closed")];
    assert_eq!(
        proxy.metric("redis_auth_proxy_multiplex_returned_total", &closed),
        1.0
    );
}

/// A client blocked in BLPOP has a connection of its own, so the others are answered
/// meanwhile; the push that unblocks it comes through a shared connection.
#[test]
fn a_blocked_client_never_holds_up_the_others() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = multiplexed(&redis, &token);
    let mut blocked = proxy.raw();
    blocked.command(&["BLPOP", "jobs", "0"]);
    eventually("the client is blocked", || {
        let info: String = redis::from_redis_value(redis.admin(&["INFO", "clients"])).unwrap();
        info.contains("blocked_clients:1")
    });
    let mut others: Vec<Raw> = (0..4).map(|_| proxy.raw()).collect();
    for (i, other) in others.iter_mut().enumerate() {
        other.command(&["SET", &format!("k{i}"), "v"]);
        assert_eq!(other.reply(), "OK");
    }
    others[0].command(&["RPUSH", "jobs", "job-1"]);
    assert_eq!(others[0].reply(), "(integer) 1");
    assert_eq!(blocked.reply(), "[\"jobs\", \"job-1\"]");
}

/// Pub/sub, another database and RESP3 each pin their client, and nothing of theirs reaches
/// the clients on the shared connections.
#[test]
fn subscribers_other_databases_and_resp3_are_pinned_and_kept_apart() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = multiplexed(&redis, &token);
    let mut subscriber = proxy.raw();
    subscriber.command(&["SUBSCRIBE", "news"]);
    assert_eq!(subscriber.reply(), "[\"subscribe\", \"news\", (integer) 1]");
    let mut elsewhere = proxy.raw();
    elsewhere.command(&["SELECT", "2"]);
    assert_eq!(elsewhere.reply(), "OK");
    elsewhere.command(&["SET", "where", "db2"]);
    assert_eq!(elsewhere.reply(), "OK");
    let mut resp3 = proxy.raw();
    resp3.command(&["HELLO", "3"]);
    assert!(resp3.reply().contains("proto"));
    resp3.command(&["CLIENT", "TRACKING", "on"]);
    assert_eq!(resp3.reply(), "OK");
    resp3.command(&["GET", "tracked"]);
    assert_eq!(resp3.reply(), "(nil)");
    let found: Option<String> = redis::cmd("GET")
        .arg("where")
        .query(&mut proxy.client())
        .unwrap();
    assert_eq!(found, None, "database 0");
    let mut shared = proxy.raw();
    shared.command(&["PUBLISH", "news", "hello"]);
    assert_eq!(shared.reply(), "(integer) 1");
    assert_eq!(subscriber.reply(), "[\"message\", \"news\", \"hello\"]");
    shared.command(&["SET", "tracked", "1"]);
    assert_eq!(shared.reply(), "OK");
    assert!(
        resp3.reply().contains("invalidate"),
        "the invalidation reaches its client"
    );
    shared.command(&["PING"]);
    assert_eq!(
        shared.reply(),
        "PONG",
        "and nothing else reached the shared clients"
    );
}

/// What the proxy says of a request whose shared connection was lost before its reply.
const LOST: &str = "the shared upstream connection was lost before the reply";

/// The shared connections killed on the server under load: a client with replies owed gets
/// one error per reply saying its fate is unknown, then its connection closes; a client owing
/// nothing at that moment goes on, unharmed, over a new shared connection.
#[test]
fn a_shared_connection_killed_under_load_fails_only_the_replies_owed_on_it() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = multiplexed(&redis, &token);
    let mut idle = proxy.raw();
    idle.command(&["SET", "idle", "1"]);
    assert_eq!(idle.reply(), "OK");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let addr = proxy.addr();
    let workers: Vec<_> = (0..8)
        .map(|i| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let (mut ok, mut errors) = (0u64, Vec::new());
                let mut con = connect(&format!("redis://{addr}/"));
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match redis::cmd("INCR")
                        .arg(format!("w{i}"))
                        .query::<u64>(&mut con)
                    {
                        Ok(_) => ok += 1,
                        Err(error) => {
                            errors.push(error.to_string());
                            con = connect(&format!("redis://{addr}/"));
                        }
                    }
                }
                (ok, errors)
            })
        })
        .collect();
    eventually("the workers are writing", || {
        redis.admin(&["GET", "w7"]) != redis::Value::Nil
    });
    // Both shared connections open (not one still authenticating), so the kill takes both.
    eventually("both shared connections are open", || {
        proxy.metric("redis_auth_proxy_multiplex_shared_connections", &[]) == 2.0
    });
    redis.admin(&["CLIENT", "KILL", "USER", "default"]);
    eventually("new shared connections are open", || {
        server_connections(&redis) == 2
    });
    let before: u64 = redis::from_redis_value(redis.admin(&["GET", "w0"])).unwrap();
    eventually("the workers write again", || {
        let now: u64 = redis::from_redis_value(redis.admin(&["GET", "w0"])).unwrap();
        now > before + 20
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for worker in workers {
        let (ok, errors) = worker.join().unwrap();
        assert!(ok > 0);
        for error in &errors {
            // The error in its place, or the connection closed after it.
            assert!(
                error.contains(LOST)
                    || error.contains("broken pipe")
                    || error.contains("closed")
                    || error.contains("reset"),
                "{error}"
            );
        }
        assert!(errors.len() <= 2, "one request in flight each: {errors:?}");
    }
    idle.command(&["GET", "idle"]);
    assert_eq!(
        idle.reply(),
        "\"1\"",
        "a client owing nothing moved unharmed"
    );
    assert!(
        proxy.metric(
            "redis_auth_proxy_multiplex_shared_connections_lost_total",
            &[]
        ) >= 2.0
    );
}

/// Clients that leave with replies in flight, in every state: their replies are read and
/// dropped, and the others' stay theirs.
#[test]
fn clients_leaving_with_replies_in_flight_leave_the_others_theirs() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = multiplexed(&redis, &token);
    let big = "x".repeat(300_000);
    let mut setter = proxy.raw();
    setter.command(&["SET", "big", &big]);
    assert_eq!(setter.reply(), "OK");
    for round in 0..20 {
        let mut leaver = proxy.raw();
        let mut pipeline = Vec::new();
        for _ in 0..(1 + round % 5) {
            pipeline.extend(redis_auth_proxy::resp::encode_request(&[b"GET", b"big"]));
        }
        leaver.send(&pipeline);
        drop(leaver);
        let mut stayer = proxy.raw();
        stayer.command(&["ECHO", &format!("mine-{round}")]);
        assert_eq!(stayer.reply(), format!("\"mine-{round}\""));
    }
    assert_eq!(server_connections(&redis), 2);
}

/// A script that keeps the server busy holds up its lane, but SCRIPT KILL gets a connection
/// of its own, so it reaches the server and ends the script; the lane goes on.
#[test]
fn script_kill_reaches_a_server_kept_busy_by_a_script_on_a_lane() {
    let redis = RedisServer::start();
    redis.admin(&["CONFIG", "SET", "busy-reply-threshold", "50"]);
    let token = TokenFile::new(TOKEN_A);
    let proxy = multiplexed(&redis, &token);
    let mut busy = proxy.raw();
    busy.command(&["EVAL", "while true do end", "0"]);
    let mut killer = proxy.raw();
    let killed = loop {
        killer.command(&["SCRIPT", "KILL"]);
        let reply = killer.reply();
        // Before the script runs, there is nothing to kill yet.
        if !reply.contains("NOTBUSY") {
            break reply;
        }
    };
    assert_eq!(killed, "OK");
    assert!(busy.reply().contains("Script killed"));
    busy.command(&["PING"]);
    assert_eq!(busy.reply(), "PONG", "the lane goes on");
}

/// `--idle-timeout` closes a multiplexed client that owes nothing and sends nothing, silently,
/// as Redis's `timeout` does; its lane stays for the others.
#[test]
fn an_idle_multiplexed_client_is_closed_after_the_idle_timeout() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = Proxy::start(Flags {
        multiplex: Some(true),
        idle_timeout: Some("300ms".into()),
        ..flags(&redis, &token)
    });
    let mut idle = proxy.raw();
    idle.command(&["PING"]);
    assert_eq!(idle.reply(), "PONG");
    assert_eq!(idle.read_to_close(), "", "closed without a word");
    let mut next = proxy.raw();
    next.command(&["PING"]);
    assert_eq!(next.reply(), "PONG");
    assert_eq!(server_connections(&redis), 2);
}

/// With a client password, a multiplexed client is refused until it gives it, as without
/// `--multiplex`; once it has, it shares, and a connection it is pinned to later treats it as
/// authenticated; HELLO with AUTH before it goes the usual way; RESET logs it out again.
#[test]
fn the_client_password_is_asked_for_before_anything_shares() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let password = TokenFile::new("client-secret-0123456789");
    let proxy = Proxy::start(Flags {
        multiplex: Some(true),
        client_password_file: Some(password.path.clone()),
        ..flags(&redis, &token)
    });
    let mut client = proxy.raw();
    client.command(&["GET", "k"]);
    assert_eq!(client.reply(), "(error) NOAUTH Authentication required.");
    client.command(&["AUTH", "wrong"]);
    assert!(client.reply().contains("WRONGPASS"));
    client.command(&["AUTH", "client-secret-0123456789"]);
    assert_eq!(client.reply(), "OK");
    client.command(&["SET", "k", "v"]);
    assert_eq!(client.reply(), "OK");
    client.command(&["MULTI"]);
    assert_eq!(client.reply(), "OK", "pinned, and still authenticated");
    client.command(&["GET", "k"]);
    assert_eq!(client.reply(), "QUEUED");
    client.command(&["EXEC"]);
    assert_eq!(client.reply(), "[\"v\"]");
    let mut hello = proxy.raw();
    hello.command(&["HELLO", "3", "AUTH", "default", "client-secret-0123456789"]);
    assert!(hello.reply().contains("proto"));
    let mut reset = proxy.raw();
    reset.command(&["AUTH", "client-secret-0123456789"]);
    assert_eq!(reset.reply(), "OK");
    reset.command(&["RESET"]);
    assert_eq!(reset.reply(), "RESET");
    reset.command(&["GET", "k"]);
    assert_eq!(reset.reply(), "(error) NOAUTH Authentication required.");
}

/// A client that asks for more than the output limit (64 MiB) without reading is cut off,
/// alone: the others on its lane go on.
#[test]
fn a_client_that_never_reads_is_cut_off_at_the_output_limit_and_only_it() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = Proxy::start(Flags {
        multiplex_connections: Some(1),
        ..Flags {
            multiplex: Some(true),
            ..flags(&redis, &token)
        }
    });
    let mut setter = proxy.raw();
    // Under the size a shared connection takes whole: the setter stays on the lane.
    setter.command(&["SET", "big", &"x".repeat(400_000)]);
    assert_eq!(setter.reply(), "OK");
    let mut greedy = proxy.raw();
    let get = redis_auth_proxy::resp::encode_request(&[b"GET", b"big"]);
    greedy.send(&get.repeat(200));
    eventually("the greedy client is cut off", || {
        proxy.metric("redis_auth_proxy_multiplex_output_limit_closed_total", &[]) == 1.0
    });
    setter.command(&["PING"]);
    assert_eq!(setter.reply(), "PONG", "the lane goes on for the others");
    assert_eq!(
        server_connections(&redis),
        1,
        "one shared connection, not cut"
    );
}
