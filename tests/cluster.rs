//! Cluster mode against a real TLS Redis Cluster (three primaries, three replicas), with real
//! cluster clients that know nothing of TLS or passwords.

mod common;

use common::cluster::{Announce, Cluster, cli, proxy_to};
use common::{ProxyHandle, ProxyProcess, TOKEN_A, TokenFile, http, sample};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn proxy(cluster: &Cluster, token: &TokenFile, extra: &[&str]) -> ProxyProcess {
    proxy_to(&format!("127.0.0.1:{}", cluster.ports[0]), token, extra)
}

fn redis_cli_follows_redirects_through_the_proxy(
    announce: Announce,
    extra: &[&str],
) -> (Cluster, ProxyProcess) {
    let cluster = Cluster::start(announce);
    let token = TokenFile::new(TOKEN_A);
    // The configured endpoint as the cluster announces it: that node is the route's own
    // listener (ElastiCache Serverless names its endpoint in CLUSTER SLOTS).
    let host = match announce {
        Announce::Ip => "127.0.0.1",
        Announce::Hostname => "localhost",
    };
    let proxy = proxy_to(&format!("{host}:{}", cluster.ports[0]), &token, extra);
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
            cluster.names_no_real_node(&out);
        }
    }
    let slots = cli(proxy.port, &["CLUSTER", "SLOTS"]);
    assert!(
        slots.lines().any(|line| line == proxy.port.to_string()),
        "the configured endpoint is the route's own port {}:\n{slots}",
        proxy.port
    );
    let moved = cli(proxy.port, &["GET", "key-0"]) + &cli(proxy.port, &["GET", "key-1"]);
    cluster.names_no_real_node(&moved);
    let exposition = http(proxy.admin_addr(), "GET", "/metrics").1;
    assert!(
        sample(&exposition, "redis_auth_proxy_cluster_nodes", &[]) >= 6.0,
        "{exposition}"
    );
    (cluster, proxy)
}

#[test]
fn redis_cli_follows_redirects_through_the_proxy_to_nodes_announced_by_ip() {
    redis_cli_follows_redirects_through_the_proxy(Announce::Ip, &[]);
}

#[test]
fn redis_cli_follows_redirects_through_the_proxy_to_nodes_announced_by_hostname() {
    redis_cli_follows_redirects_through_the_proxy(Announce::Hostname, &[]);
}

/// The same through `--multiplex`; then two hundred more redis-cli calls (each a client
/// connection, and one more for each redirect it follows) reach the nodes as no new connection:
/// they all go over the node listeners' shared connections.
#[test]
fn redis_cli_follows_redirects_through_multiplexed_node_listeners() {
    let flags = ["--multiplex", "--multiplex-connections", "2"];
    let (cluster, proxy) =
        redis_cli_follows_redirects_through_the_proxy(Announce::Hostname, &flags);
    let received = || -> usize {
        (cluster.ports.iter())
            .map(|&port| {
                let stats = cluster.cli(port, &["INFO", "stats"]);
                let line = (stats.lines())
                    .find_map(|l| l.strip_prefix("total_connections_received:"))
                    .expect("INFO stats");
                line.trim().parse::<usize>().unwrap()
            })
            .sum()
    };
    let before = received();
    for i in 0..200 {
        let key = format!("key-{i}");
        assert_eq!(cli(proxy.port, &["-c", "GET", &key]).trim(), i.to_string());
    }
    // Each node counts the connection that asks it, once per reading.
    let new = received() - before - cluster.ports.len();
    // A replica reconnecting to its primary would count too; without --multiplex it is 200.
    assert!(
        new <= 3,
        "{new} connections reached the nodes for 200 clients"
    );
}

fn redis_py(args: &[&str]) -> Command {
    let mut command = Command::new("python3");
    command
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/cluster/redis_py.py"
        ))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

#[test]
fn redis_py_blocks_subscribes_and_runs_transactions_through_the_proxy() {
    redis_py_features(&[]);
}

#[test]
fn redis_py_blocks_subscribes_and_runs_transactions_through_multiplexed_node_listeners() {
    redis_py_features(&["--multiplex"]);
}

fn redis_py_features(extra: &[&str]) {
    let cluster = Cluster::start(Announce::Ip);
    let token = TokenFile::new(TOKEN_A);
    let proxy = proxy(&cluster, &token, extra);
    let output = redis_py(&["features", "127.0.0.1", &proxy.port.to_string()])
        .output()
        .expect("python3 with redis-py (scripts/install-deps.sh --with-clients)");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "ok",
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The id of the node on `port`.
fn node_id(cluster: &Cluster, port: u16) -> String {
    cluster.cli(port, &["CLUSTER", "MYID"]).trim().to_owned()
}

/// A redis-py load process, killed if the test ends before its result is read.
struct Load(Option<std::process::Child>);

impl Load {
    fn spawn(args: &[&str]) -> Load {
        Load(Some(redis_py(args).spawn().unwrap()))
    }

    fn result(mut self) -> LoadResult {
        let output = self.0.take().unwrap().wait_with_output().unwrap();
        serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&output.stderr)))
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[derive(serde::Deserialize, Debug)]
struct LoadResult {
    ops: u64,
    errors: u64,
    /// Shown when the test fails.
    #[allow(dead_code)]
    first_errors: Vec<String>,
}

#[test]
fn a_live_reshard_and_a_failover_cost_redis_py_no_more_errors_than_direct() {
    reshard_and_failover_under_load(&[]);
}

#[test]
fn a_live_reshard_and_a_failover_cost_redis_py_no_more_errors_through_multiplexing() {
    reshard_and_failover_under_load(&["--multiplex"]);
}

fn reshard_and_failover_under_load(extra: &[&str]) {
    let cluster = Cluster::start(Announce::Ip);
    let token = TokenFile::new(TOKEN_A);
    let proxy = proxy(&cluster, &token, extra);
    let stop = tempfile::tempdir().unwrap();
    let stop_file = stop.path().join("stop").display().to_string();
    let seed = cluster.ports[0].to_string();
    let ca = common::certs().ca.display().to_string();
    let through = Load::spawn(&["load", "127.0.0.1", &proxy.port.to_string(), &stop_file]);
    let direct = Load::spawn(&[
        "load",
        "127.0.0.1",
        &seed,
        &stop_file,
        "--tls",
        &ca,
        "--password",
        TOKEN_A,
    ]);

    common::eventually("both clients are writing", || {
        let key = format!("load:{}:50", proxy.port);
        cli(proxy.port, &["-c", "GET", &key]).trim() == "50"
            && cluster
                .cli_output(&["-c", "-p", &seed, "DBSIZE"])
                .status
                .success()
    });
    // Move 300 slots from the first primary to the second while both clients write.
    let (from, to) = (
        node_id(&cluster, cluster.ports[0]),
        node_id(&cluster, cluster.ports[1]),
    );
    let reshard = cluster.cli_output(&[
        "--cluster",
        "reshard",
        &format!("127.0.0.1:{seed}"),
        "--cluster-from",
        &from,
        "--cluster-to",
        &to,
        "--cluster-slots",
        "300",
        "--cluster-yes",
    ]);
    assert!(
        reshard.status.success(),
        "{}",
        String::from_utf8_lossy(&reshard.stdout)
    );
    // Then the third primary's replica takes over.
    let third = node_id(&cluster, cluster.ports[2]);
    let replica_of_third = || -> Option<u16> {
        let nodes = cluster.cli(cluster.ports[0], &["CLUSTER", "NODES"]);
        nodes
            .lines()
            .find(|line| line.contains(&format!("slave {third}")))
            .and_then(|line| line.split(' ').nth(1))
            .and_then(|addr| addr.split(['@', ':']).nth(1))
            .and_then(|port| port.parse().ok())
    };
    cluster.wait_until("the third primary has a replica", || {
        replica_of_third().is_some()
    });
    let replica_port = replica_of_third().unwrap();
    // A manual failover the primary does not complete within its own 5 s limit is dropped by
    // Redis; ask again until the replica has taken over.
    let mut asked: Option<Instant> = None;
    cluster.wait_until("the replica has taken over", || {
        if cluster.cli(replica_port, &["ROLE"]).starts_with("master") {
            return true;
        }
        if asked.is_none_or(|at| at.elapsed() > Duration::from_secs(6)) {
            assert_eq!(
                cluster.cli(replica_port, &["CLUSTER", "FAILOVER"]).trim(),
                "OK"
            );
            asked = Some(Instant::now());
        }
        false
    });
    cluster.wait_until("the cluster is healthy again", || cluster.healthy());

    std::fs::write(&stop_file, "").unwrap();
    let (through, direct) = (through.result(), direct.result());
    eprintln!("through the proxy: {through:?}\ndirect: {direct:?}");
    assert!(
        through.ops > 200 && direct.ops > 200,
        "{through:?} {direct:?}"
    );
    assert!(
        through.errors <= direct.errors,
        "through the proxy {through:?}, direct {direct:?}"
    );
    let exposition = http(proxy.admin_addr(), "GET", "/metrics").1;
    let redirects = sample(
        &exposition,
        "redis_auth_proxy_cluster_redirects_rewritten_total",
        &[],
    );
    assert!(
        redirects >= 1.0,
        "the reshard and failover sent redirects through the proxy"
    );
}

#[test]
fn ioredis_cluster_writes_and_reads_through_the_proxy() {
    ioredis_writes_and_reads(&[]);
}

#[test]
fn ioredis_cluster_writes_and_reads_through_multiplexed_node_listeners() {
    ioredis_writes_and_reads(&["--multiplex"]);
}

fn ioredis_writes_and_reads(extra: &[&str]) {
    let cluster = Cluster::start(Announce::Hostname);
    let token = TokenFile::new(TOKEN_A);
    let proxy = proxy(&cluster, &token, extra);
    let output = Command::new("node")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/cluster/ioredis.js"
        ))
        .args(["127.0.0.1", &proxy.port.to_string()])
        .stdin(Stdio::null())
        .output()
        .expect("node with ioredis (scripts/install-deps.sh --with-clients)");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "ok",
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The local port a `-MOVED slot 127.0.0.1:port` reply names.
fn moved_port(reply: &str) -> u16 {
    assert!(reply.contains("MOVED"), "{reply}");
    assert!(reply.contains(" 127.0.0.1:"), "{reply}");
    reply.trim().rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn redirects_inside_multi_and_to_a_blocked_client_name_local_listeners() {
    let cluster = Cluster::start(Announce::Ip);
    let token = TokenFile::new(TOKEN_A);
    let proxy = proxy(&cluster, &token, &[]);
    // A key the seed node does not own.
    let key = (0..)
        .map(|i| format!("elsewhere-{i}"))
        .find(|key| cli(proxy.port, &["GET", key]).contains("MOVED"))
        .unwrap();
    let mut client = common::Raw::connect(proxy.addr());
    client.command(&["MULTI"]);
    assert_eq!(client.reply(), "OK");
    client.command(&["SET", &key, "v"]);
    let moved = client.reply();
    let owner = moved_port(&moved);
    cluster.names_no_real_node(&moved);
    client.command(&["EXEC"]);
    assert!(client.reply().contains("EXECABORT"));

    // A client blocked on the owner's listener, then the key's slot moves to another primary.
    let slot = cli(proxy.port, &["CLUSTER", "KEYSLOT", &key])
        .trim()
        .to_owned();
    let mut blocked = common::Raw::connect(([127, 0, 0, 1], owner).into());
    blocked.command(&["BLPOP", &key, "0"]);
    let owner_port = cluster.ports[..3]
        .iter()
        .copied()
        .find(|&p| !cluster.cli(p, &["GET", &key]).contains("MOVED"))
        .expect("the owning primary");
    let target = cluster.ports[..3]
        .iter()
        .copied()
        .find(|&p| p != owner_port)
        .unwrap();
    let target_id = cluster.cli(target, &["CLUSTER", "MYID"]).trim().to_owned();
    common::eventually("the blocked client is blocked", || {
        cluster
            .cli(owner_port, &["CLIENT", "LIST"])
            .contains("cmd=blpop")
    });
    for &port in &cluster.ports[..3] {
        cluster.cli(port, &["CLUSTER", "SETSLOT", &slot, "NODE", &target_id]);
    }
    let moved = blocked.reply();
    assert_ne!(moved_port(&moved), owner, "{moved}");
    cluster.names_no_real_node(&moved);
}
