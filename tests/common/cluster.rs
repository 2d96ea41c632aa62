//! A real Redis Cluster on loopback for the cluster-mode tests: three primaries and three
//! replicas, TLS only (`tls-cluster`, `tls-replication`), `requirepass` and `masterauth`,
//! created with `redis-cli --cluster create`, announced by IP or by hostname (`localhost`).

use super::{PATIENCE, ProxyProcess, TOKEN_A, TokenFile, certs, server_binary};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Where the cluster tests' node listeners go: below the ephemeral range, so that no client
/// socket holds one; a port another test's listener holds is skipped, never shared.
pub const CLUSTER_PORTS: &str = "24000-24899";

/// The proxy in cluster mode toward `upstream`, with `--cluster-ports CLUSTER_PORTS` unless
/// `extra` gives its own.
pub fn proxy_to(upstream: &str, token: &TokenFile, extra: &[&str]) -> ProxyProcess {
    let token_path = token.path.display().to_string();
    let mut args = vec!["--cluster", "--token-file", &token_path];
    if !extra.contains(&"--cluster-ports") {
        args.extend(["--cluster-ports", CLUSTER_PORTS]);
    }
    args.extend(extra);
    ProxyProcess::start_to(upstream, &args, &[])
}

/// `redis-cli` to the proxy in plain RESP, with no password.
pub fn cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// How the nodes tell clients where they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announce {
    Ip,
    /// `cluster-announce-hostname localhost`, `cluster-preferred-endpoint-type hostname`.
    Hostname,
}

pub struct Cluster {
    children: Vec<Child>,
    /// The nodes' TLS ports, primaries first as created.
    pub ports: Vec<u16>,
    _dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Six ports whose bus ports (+10000) are free too, all at most 55535.
fn cluster_ports() -> Vec<u16> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut seed = std::process::id() as u64 * 7919 + u64::from(nanos);
    loop {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // Below Linux's ephemeral range (32768 on), bus ports included.
        let base = 20_000 + (seed >> 33) as u16 % 2_700;
        let ports: Vec<u16> = (0..6).map(|i| base + i * 7).collect();
        let free = ports.iter().all(|&p| {
            TcpListener::bind(("127.0.0.1", p)).is_ok()
                && TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok()
        });
        if free {
            return ports;
        }
    }
}

impl Cluster {
    pub fn start(announce: Announce) -> Self {
        for _ in 0..3 {
            if let Some(cluster) = Self::try_start(announce) {
                return cluster;
            }
        }
        panic!("the cluster did not form after three tries");
    }

    fn try_start(announce: Announce) -> Option<Self> {
        let dir = tempfile::Builder::new()
            .prefix("rap-cluster-")
            .tempdir()
            .unwrap();
        let ports = cluster_ports();
        let children = ports
            .iter()
            .map(|&port| spawn_node(dir.path(), port, announce))
            .collect();
        let cluster = Cluster {
            children,
            ports,
            _dir: dir,
        };
        cluster.wait_until("every node answers", || {
            cluster
                .ports
                .iter()
                .all(|&p| cluster.cli(p, &["PING"]).contains("PONG"))
        });
        // Another test may have taken a port between the check and the bind: every node
        // answering must be one of ours.
        let dir = cluster._dir.path().display().to_string();
        let ours = |p: u16| cluster.cli(p, &["CONFIG", "GET", "dir"]).contains(&dir);
        if !cluster.ports.iter().all(|&p| ours(p)) {
            return None;
        }
        let mut create: Vec<String> = vec!["--cluster".into(), "create".into()];
        create.extend(cluster.ports.iter().map(|p| format!("127.0.0.1:{p}")));
        create.extend(["--cluster-replicas", "1", "--cluster-yes"].map(String::from));
        let create: Vec<&str> = create.iter().map(String::as_str).collect();
        let output = cluster.cli_output(&create);
        if !output.status.success() {
            eprintln!(
                "cluster create failed: {}",
                String::from_utf8_lossy(&output.stdout)
            );
            return None;
        }
        cluster.wait_until("the cluster is healthy", || cluster.healthy());
        Some(cluster)
    }

    /// Every node sees the cluster ok, every primary has its replica online.
    /// No real node's port (client or bus) nor hostname appears in `text`.
    pub fn names_no_real_node(&self, text: &str) {
        for port in &self.ports {
            for real in [port.to_string(), (port + 10_000).to_string()] {
                assert!(!text.contains(&real), "a real port {real} leaked:\n{text}");
            }
        }
        assert!(
            !text.contains("localhost"),
            "a real hostname leaked:\n{text}"
        );
    }

    pub fn healthy(&self) -> bool {
        self.ports.iter().all(|&p| {
            self.cli(p, &["CLUSTER", "INFO"])
                .contains("cluster_state:ok")
        }) && self
            .cli(self.ports[0], &["CLUSTER", "SHARDS"])
            .matches("online")
            .count()
            >= 6
    }

    pub fn wait_until(&self, what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + PATIENCE * 4;
        while !condition() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `redis-cli` to one node over TLS with the password; its stdout.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        let mut all = vec!["-p".to_string(), port.to_string()];
        all.extend(args.iter().map(|a| a.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        String::from_utf8_lossy(&self.cli_output(&all).stdout).into_owned()
    }

    pub fn cli_output(&self, args: &[&str]) -> Output {
        Command::new("redis-cli")
            .args(["--tls", "--cacert"])
            .arg(&certs().ca)
            .args(["-h", "127.0.0.1", "-a", TOKEN_A, "--no-auth-warning"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli")
    }
}

fn spawn_node(dir: &Path, port: u16, announce: Announce) -> Child {
    let certs = certs();
    let node_dir = dir.join(port.to_string());
    std::fs::create_dir_all(&node_dir).unwrap();
    let mut command = Command::new(server_binary());
    command
        .args([
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--tls-port",
            &port.to_string(),
        ])
        .arg("--tls-cert-file")
        .arg(&certs.cert)
        .arg("--tls-key-file")
        .arg(&certs.key)
        .arg("--tls-ca-cert-file")
        .arg(&certs.ca)
        .args([
            "--tls-auth-clients",
            "no",
            "--tls-cluster",
            "yes",
            "--tls-replication",
            "yes",
        ])
        .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "3000"])
        .arg("--cluster-config-file")
        .arg(node_dir.join("nodes.conf"))
        .args(["--requirepass", TOKEN_A, "--masterauth", TOKEN_A])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(&node_dir)
        .arg("--logfile")
        .arg(node_dir.join("log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if announce == Announce::Hostname {
        command.args([
            "--cluster-announce-hostname",
            "localhost",
            "--cluster-preferred-endpoint-type",
            "hostname",
        ]);
    }
    command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {} (is it installed?): {e}", server_binary()))
}
