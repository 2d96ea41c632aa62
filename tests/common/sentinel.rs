//! Redis Sentinel for the tests: a primary and its replica replicating over TLS, watched by
//! three Sentinels (Debian's `redis-sentinel`, or `valkey-server --sentinel` for Valkey) that
//! take clients over TLS with a password of their own, killed on drop.

use super::*;

/// The name the Sentinels watch the primary under.
pub const MASTER: &str = "mymaster";
/// The Sentinels' own password (their `requirepass`).
pub const SENTINEL_PASSWORD: &str = "sentinel-password-for-tests";

/// A primary, its replica and three Sentinels watching them.
pub struct SentinelSet {
    pub primary: RedisServer,
    pub replica: RedisServer,
    sentinels: Vec<(Child, u16, u16, tempfile::TempDir)>,
}

impl SentinelSet {
    pub fn start() -> Self {
        let primary = RedisServer::start();
        let replica = RedisServer::start();
        for server in [&primary, &replica] {
            server.admin(&["CONFIG", "SET", "tls-replication", "yes"]);
            server.admin(&["CONFIG", "SET", "masterauth", TOKEN_A]);
            server.admin(&["CONFIG", "SET", "repl-diskless-sync-delay", "0"]);
        }
        replica.admin(&["REPLICAOF", "127.0.0.1", &primary.tls_port.to_string()]);
        eventually("the replica is in sync", || {
            info(&replica, "replication").contains("master_link_status:up")
        });
        let sentinels = (0..3).map(|_| spawn_sentinel(primary.tls_port)).collect();
        let set = SentinelSet {
            primary,
            replica,
            sentinels,
        };
        eventually("every Sentinel knows the replica and the others", || {
            set.ports().iter().all(|&port| {
                let replicas = sentinel_query(port, &["SENTINEL", "REPLICAS", MASTER]);
                let others = sentinel_query(port, &["SENTINEL", "SENTINELS", MASTER]);
                matches!(replicas, Ok(redis::Value::Array(r)) if r.len() == 1)
                    && matches!(others, Ok(redis::Value::Array(s)) if s.len() == 2)
            })
        });
        set
    }

    /// The Sentinels' plaintext ports, for the tests' own questions.
    fn ports(&self) -> Vec<u16> {
        self.sentinels.iter().map(|s| s.1).collect()
    }

    /// `--sentinel` for the proxy: the Sentinels' TLS ports.
    pub fn tls_addrs(&self) -> String {
        let addrs: Vec<String> = (self.sentinels.iter())
            .map(|s| format!("127.0.0.1:{}", s.2))
            .collect();
        addrs.join(",")
    }

    /// The TLS port of the server the Sentinels name as the primary.
    pub fn primary_port(&self) -> u16 {
        let reply = sentinel_query(
            self.ports()[0],
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER],
        );
        let (_host, port): (String, u16) = redis::from_redis_value(reply.unwrap()).unwrap();
        port
    }

    /// `SENTINEL FAILOVER`, then waits until every Sentinel names the replica. A Sentinel that
    /// has not yet judged the replica fit (`-NOGOODSLAVE`) is asked again.
    pub fn fail_over(&self) {
        eventually("a Sentinel accepts the failover", || {
            sentinel_query(self.ports()[0], &["SENTINEL", "FAILOVER", MASTER]).is_ok()
        });
        let new = self.replica.tls_port;
        eventually("the Sentinels name the new primary", || {
            self.ports().iter().all(|&port| {
                let reply = sentinel_query(port, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER]);
                let addr = reply.ok().map(redis::from_redis_value::<(String, u16)>);
                matches!(addr, Some(Ok((_, p))) if p == new)
            })
        });
    }

    pub fn logs(&self) -> String {
        let logs = self.sentinels.iter().map(|(_, port, _, dir)| {
            let log = std::fs::read_to_string(dir.path().join("sentinel.log"));
            format!("--- Sentinel {port} ---\n{}", log.unwrap_or_default())
        });
        logs.collect()
    }
}

impl Drop for SentinelSet {
    fn drop(&mut self) {
        for (child, ..) in &mut self.sentinels {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

pub fn info(server: &RedisServer, section: &str) -> String {
    redis::from_redis_value(server.admin(&["INFO", section])).unwrap()
}

/// One command to the Sentinel on plaintext `port`, with its password.
fn sentinel_query(port: u16, args: &[&str]) -> redis::RedisResult<redis::Value> {
    let url = format!("redis://:{SENTINEL_PASSWORD}@127.0.0.1:{port}/");
    let mut con = redis::Client::open(url)?.get_connection_with_timeout(Duration::from_secs(2))?;
    con.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query(&mut con)
}

/// A Sentinel with a plaintext port (the tests' questions, the Sentinels' gossip) and a TLS
/// port (the proxy's), watching the primary on `primary_port` over TLS.
fn spawn_sentinel(primary_port: u16) -> (Child, u16, u16, tempfile::TempDir) {
    let certs = certs();
    let dir = tempfile::Builder::new()
        .prefix("rap-sentinel-")
        .tempdir()
        .unwrap();
    let (port, tls_port) = (free_port(), free_port());
    let config = format!(
        "bind 127.0.0.1\nport {port}\ntls-port {tls_port}\n\
         tls-cert-file {cert}\ntls-key-file {key}\ntls-ca-cert-file {ca}\n\
         tls-auth-clients no\ntls-replication yes\n\
         requirepass {SENTINEL_PASSWORD}\nsentinel sentinel-pass {SENTINEL_PASSWORD}\n\
         sentinel monitor {MASTER} 127.0.0.1 {primary_port} 2\n\
         sentinel auth-pass {MASTER} {TOKEN_A}\n\
         sentinel down-after-milliseconds {MASTER} 2000\n\
         sentinel failover-timeout {MASTER} 10000\n\
         dir {dir}\nlogfile {dir}/sentinel.log\n",
        cert = certs.cert.display(),
        key = certs.key.display(),
        ca = certs.ca.display(),
        dir = dir.path().display(),
    );
    let path = dir.path().join("sentinel.conf");
    std::fs::write(&path, config).unwrap();
    let mut command = if is_valkey() {
        let mut command = Command::new(server_binary());
        command.arg(&path).arg("--sentinel");
        command
    } else {
        let mut command = Command::new("redis-sentinel");
        command.arg(&path);
        command
    };
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis-sentinel (is it installed?)");
    eventually("the Sentinel answers", || {
        sentinel_query(port, &["PING"]).is_ok()
    });
    (child, port, tls_port, dir)
}
