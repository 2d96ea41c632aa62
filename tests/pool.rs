//! The upstream connection pool (`--upstream-pool-size`): ready connections for new clients,
//! replaced when the token changes, never handed out once the server closed them.

mod common;

use common::*;
use redis_auth_proxy::config::{Config, Flags};

fn pooled_proxy(route: &str, flags: Flags, size: u32) -> Proxy {
    let mut flags = flags;
    flags.upstream_pool_size = Some(size);
    flags.admin_listen = Some("127.0.0.1:0".into());
    let mut config = Config::from_flags(&flags).unwrap();
    config.routes[0].name = route.into();
    Proxy::start_config(config)
}

fn metric(proxy: &Proxy, name: &str, route: &str, labels: &[(&str, &str)]) -> f64 {
    let (_, body) = http(proxy.admin.unwrap(), "GET", "/metrics");
    let mut labels = labels.to_vec();
    labels.push(("route", route));
    sample(&body, name, &labels)
}

fn wait_for_pool(proxy: &Proxy, route: &str, size: f64) {
    eventually("the pool is full", || {
        metric(proxy, "redis_auth_proxy_upstream_pool_ready", route, &[]) == size
    });
}

fn ping(proxy: &Proxy) {
    let pong: String = redis::cmd("PING").query(&mut proxy.client()).unwrap();
    assert_eq!(pong, "PONG");
}

/// A new client gets a ready connection from the pool, and the pool fills up again.
#[test]
fn a_new_client_is_served_from_the_pool() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let route = "pool-hit";
    let proxy = pooled_proxy(route, flags(&redis, &token), 2);
    wait_for_pool(&proxy, route, 2.0);
    ping(&proxy);
    assert_eq!(
        metric(
            &proxy,
            "redis_auth_proxy_upstream_pool_takes_total",
            route,
            &[("result", "hit")]
        ),
        1.0
    );
    wait_for_pool(&proxy, route, 2.0);
}

/// Pooled connections made with the old token are not handed out after the token changes.
#[test]
fn pooled_connections_are_replaced_when_the_token_changes() {
    let redis = RedisServer::start();
    redis.admin(&["ACL", "SETUSER", "default", &format!(">{TOKEN_B}")]);
    let token = TokenFile::new(TOKEN_A);
    let route = "pool-token";
    let proxy = pooled_proxy(route, flags(&redis, &token), 1);
    wait_for_pool(&proxy, route, 1.0);
    token.rewrite(TOKEN_B);
    proxy.wait_for_current_token(TOKEN_B);
    ping(&proxy);
    let stale = metric(
        &proxy,
        "redis_auth_proxy_upstream_pool_evictions_total",
        route,
        &[("reason", "stale")],
    );
    assert!(
        stale >= 1.0,
        "the connection made with the old token was evicted ({stale})"
    );
}

/// A pooled connection the server has closed is thrown away, not handed to a client.
#[test]
fn a_pooled_connection_the_server_closed_is_not_handed_out() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let route = "pool-closed";
    let proxy = pooled_proxy(route, flags(&redis, &token), 1);
    wait_for_pool(&proxy, route, 1.0);
    // The admin connection is a normal client too, but CLIENT KILL skips the caller.
    redis.admin(&["CLIENT", "KILL", "TYPE", "normal"]);
    ping(&proxy);
    let closed = metric(
        &proxy,
        "redis_auth_proxy_upstream_pool_evictions_total",
        route,
        &[("reason", "closed")],
    );
    assert_eq!(closed, 1.0);
    assert_eq!(
        metric(
            &proxy,
            "redis_auth_proxy_upstream_pool_takes_total",
            route,
            &[("result", "miss")]
        ),
        1.0
    );
}
