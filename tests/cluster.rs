//! Cluster mode against a real TLS Redis Cluster (three primaries, three replicas), with real
//! cluster clients that know nothing of TLS or passwords.

mod common;

use common::cluster::{Announce, Cluster};
use common::{ProxyProcess, TOKEN_A, TokenFile, http, sample};
use std::process::{Command, Stdio};

/// Shared by every test: ports taken by another test's listener are skipped, never shared.
const CLUSTER_PORTS: &str = "41000-41999";

fn proxy(cluster: &Cluster, token: &TokenFile, extra: &[&str]) -> ProxyProcess {
    let upstream = format!("127.0.0.1:{}", cluster.ports[0]);
    let token_path = token.path.display().to_string();
    let mut args = vec![
        "--cluster",
        "--cluster-ports",
        CLUSTER_PORTS,
        "--token-file",
        &token_path,
    ];
    args.extend(extra);
    ProxyProcess::start_to(&upstream, &args, &[])
}

/// `redis-cli` to the proxy in plain RESP, with no password.
fn cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// No real node's port appears in `text`.
fn names_no_real_node(cluster: &Cluster, text: &str) {
    for port in &cluster.ports {
        for real in [port.to_string(), (port + 10_000).to_string()] {
            assert!(!text.contains(&real), "a real port {real} leaked:\n{text}");
        }
    }
    assert!(
        !text.contains("localhost"),
        "a real hostname leaked:\n{text}"
    );
}

fn redis_cli_follows_redirects_through_the_proxy(announce: Announce) {
    let cluster = Cluster::start(announce);
    let token = TokenFile::new(TOKEN_A);
    let proxy = proxy(&cluster, &token, &[]);
    for i in 0..200 {
        let key = format!("key-{i}");
        assert_eq!(
            cli(proxy.port, &["-c", "SET", &key, &i.to_string()]).trim(),
            "OK"
        );
        assert_eq!(cli(proxy.port, &["-c", "GET", &key]).trim(), i.to_string());
    }
    // Every key landed on the primary owning its slot, as a direct client would put it.
    let direct: usize = cluster.ports[..3]
        .iter()
        .map(|&p| cluster.cli(p, &["DBSIZE"]).trim().parse::<usize>().unwrap())
        .sum();
    assert_eq!(direct, 200);
    for protocol in ["-2", "-3"] {
        for command in [
            &["CLUSTER", "SLOTS"][..],
            &["CLUSTER", "SHARDS"],
            &["CLUSTER", "NODES"],
        ] {
            let mut args = vec![protocol];
            args.extend(command);
            let out = cli(proxy.port, &args);
            assert!(out.contains("127.0.0.1"), "{command:?}: {out}");
            names_no_real_node(&cluster, &out);
        }
    }
    let moved = cli(proxy.port, &["GET", "key-0"]) + &cli(proxy.port, &["GET", "key-1"]);
    names_no_real_node(&cluster, &moved);
    let exposition = http(proxy.admin_addr(), "GET", "/metrics").1;
    assert!(
        sample(&exposition, "redis_auth_proxy_cluster_nodes", &[]) >= 6.0,
        "{exposition}"
    );
}

#[test]
fn redis_cli_follows_redirects_through_the_proxy_to_nodes_announced_by_ip() {
    redis_cli_follows_redirects_through_the_proxy(Announce::Ip);
}

#[test]
fn redis_cli_follows_redirects_through_the_proxy_to_nodes_announced_by_hostname() {
    redis_cli_follows_redirects_through_the_proxy(Announce::Hostname);
}
