//! Zero-downtime token rotation: the ElastiCache ROTATE/SET cycle on a real server, with the
//! proxy's token source changed before or after the server, under load.

mod common;

use common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

/// Clients hammering the proxy, reconnecting often so that new connections (which are the ones
/// that authenticate) are made throughout; every reply is checked.
struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    threads: Vec<JoinHandle<Vec<String>>>,
}

impl Load {
    fn start(proxy: &Proxy) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let threads = (0..4)
            .map(|worker| {
                let (stop, done, addr) = (stop.clone(), done.clone(), proxy.addr());
                std::thread::spawn(move || {
                    let mut errors = Vec::new();
                    let mut i = 0u64;
                    // Bounded: stops when told, or after 50,000 commands.
                    while !stop.load(Ordering::Relaxed) && i < 50_000 {
                        let client = redis::Client::open(format!("redis://{addr}/")).unwrap();
                        let mut con = match client.get_connection() {
                            Ok(con) => con,
                            Err(e) => {
                                errors.push(format!("connect: {e}"));
                                continue;
                            }
                        };
                        for _ in 0..25 {
                            i += 1;
                            let key = format!("load:{worker}:{}", i % 100);
                            let result: redis::RedisResult<(String, u64)> = redis::pipe()
                                .cmd("SET")
                                .arg(&key)
                                .arg(i)
                                .cmd("GET")
                                .arg(&key)
                                .query(&mut con);
                            match result {
                                Ok((ok, value)) if ok == "OK" && value == i => {}
                                Ok(other) => errors.push(format!("wrong reply {other:?} for {i}")),
                                Err(e) => errors.push(format!("command {i}: {e}")),
                            }
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    errors
                })
            })
            .collect();
        Load {
            stop,
            done,
            threads,
        }
    }

    /// Lets at least `n` more commands complete, so each phase carries load.
    fn run_for(&self, n: u64) {
        let target = self.done.load(Ordering::Relaxed) + n;
        eventually("the load makes progress", || {
            self.done.load(Ordering::Relaxed) >= target
        });
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let errors: Vec<String> = self
            .threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        assert!(
            errors.is_empty(),
            "{} client-visible errors, first: {:?}",
            errors.len(),
            &errors[..errors.len().min(5)]
        );
        self.done.load(Ordering::Relaxed)
    }
}

/// Five new connections in a row must each work.
fn new_connections_work(proxy: &Proxy, phase: &str) {
    for _ in 0..5 {
        let mut con = proxy.client();
        let pong: redis::RedisResult<String> = redis::cmd("PING").query(&mut con);
        assert_eq!(
            pong.as_deref().ok(),
            Some("PONG"),
            "new connection in phase {phase}: {pong:?}"
        );
    }
}

/// ElastiCache's server-side steps, for the default user (AUTH token) or an ACL user (RBAC).
struct Server<'a> {
    redis: &'a RedisServer,
    user: &'a str,
}

impl Server<'_> {
    fn set_only(&self, token: &str) {
        if self.user == "default" {
            self.redis.admin(&["CONFIG", "SET", "requirepass", token]);
        } else {
            self.redis.admin(&[
                "ACL",
                "SETUSER",
                self.user,
                "on",
                "resetpass",
                &format!(">{token}"),
                "~*",
                "&*",
                "+@all",
            ]);
        }
    }

    fn rotate_to(&self, token: &str) {
        self.redis
            .admin(&["ACL", "SETUSER", self.user, &format!(">{token}")]);
    }
}

fn elasticache_cycle(user: &str, source_first: bool) {
    cycle(user, source_first, false);
}

/// The cycle through a proxy that serves `multiplex`ed clients, or one connection each.
fn cycle(user: &str, source_first: bool, multiplex: bool) {
    let redis = RedisServer::start();
    let server = Server {
        redis: &redis,
        user,
    };
    server.set_only(TOKEN_A);
    let token = TokenFile::new(TOKEN_A);
    let mut flags = flags(&redis, &token);
    if user != "default" {
        flags.username = Some(user.into());
    }
    flags.multiplex = Some(multiplex);
    let proxy = Proxy::start(flags);
    let load = Load::start(&proxy);
    load.run_for(500);
    new_connections_work(&proxy, "one token");
    if source_first {
        token.rewrite(TOKEN_B);
        proxy.wait_for_current_token(TOKEN_B);
        load.run_for(500);
        new_connections_work(&proxy, "source updated, server still on the old token");
        server.rotate_to(TOKEN_B);
    } else {
        server.rotate_to(TOKEN_B);
        load.run_for(500);
        new_connections_work(&proxy, "server rotated, source still old");
        token.rewrite(TOKEN_B);
        proxy.wait_for_current_token(TOKEN_B);
    }
    load.run_for(500);
    new_connections_work(&proxy, "ROTATE: both valid");
    server.set_only(TOKEN_B);
    load.run_for(500);
    new_connections_work(&proxy, "SET: only the new token");
    let total = load.finish();
    assert!(total >= 2500, "only {total} commands ran");
}

/// Default user, token source updated before the server's ROTATE.
#[test]
fn the_elasticache_cycle_with_the_source_updated_first_has_no_errors() {
    elasticache_cycle("default", true);
}

/// Default user, server ROTATE first, then the token source, then SET.
#[test]
fn the_elasticache_cycle_with_the_server_rotated_first_has_no_errors() {
    elasticache_cycle("default", false);
}

/// The same under multiplexed load (`--multiplex`): the shared connections keep the
/// authentication they opened with, and new ones (after a loss) use the token that works.
#[test]
fn the_elasticache_cycle_under_multiplexed_load_has_no_errors() {
    cycle("default", false, true);
    cycle("app", true, true);
}

/// An ACL user (RBAC), token source first.
#[test]
fn the_acl_user_cycle_with_the_source_updated_first_has_no_errors() {
    elasticache_cycle("app", true);
}

/// An ACL user (RBAC), server first.
#[test]
fn the_acl_user_cycle_with_the_server_rotated_first_has_no_errors() {
    elasticache_cycle("app", false);
}

/// The operator forgot the ROTATE step and went straight to SET on the server: the first
/// rejected connection makes the proxy re-read its source at once, and the client never sees
/// an error.
#[test]
fn a_rejected_token_makes_the_proxy_reread_its_source_at_once() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = Proxy::start(flags(&redis, &token));
    new_connections_work(&proxy, "before");
    // Changing the file and the server together leaves no time for the 250 ms poll to confirm
    // the file twice; only the reload forced by the rejection can find the new token in time.
    token.rewrite(TOKEN_C);
    redis.admin(&["CONFIG", "SET", "requirepass", TOKEN_C]);
    new_connections_work(&proxy, "after SET without ROTATE");
    assert_eq!(proxy.store.credentials().unwrap().current.expose(), TOKEN_C);
}
