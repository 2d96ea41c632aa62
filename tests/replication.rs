//! Replication streams through the proxy: after SYNC or PSYNC the server sends an RDB payload
//! and then its command stream, which is not RESP; the proxy copies it unscanned.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// A server that starts a replication transfer at once rather than waiting 5 s for more
/// replicas to join it (`repl-diskless-sync-delay`).
fn replicating_server() -> RedisServer {
    let redis = RedisServer::start();
    redis.admin(&["CONFIG", "SET", "repl-diskless-sync-delay", "0"]);
    redis
}

/// `redis-cli --rdb` through the proxy saves a snapshot that holds what was written.
#[test]
fn redis_cli_rdb_downloads_a_snapshot_through_the_proxy() {
    let redis = replicating_server();
    let token = TokenFile::new(TOKEN_A);
    let proxy = Proxy::start(flags(&redis, &token));
    let mut client = proxy.client();
    let _: () = redis::cmd("SET")
        .arg("snapshot-key")
        .arg("snapshot-value")
        .query(&mut client)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dump.rdb");
    let port = proxy.port().to_string();
    let out = redis_cli(&["-p", &port, "--rdb", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rdb = std::fs::read(&file).unwrap();
    assert!(rdb.starts_with(b"REDIS"), "not an RDB file");
    assert!(
        rdb.windows(b"snapshot-value".len())
            .any(|w| w == b"snapshot-value"),
        "the snapshot lacks the value written"
    );
    // The proxy's connection kept working for others.
    let value: String = redis::cmd("GET")
        .arg("snapshot-key")
        .query(&mut client)
        .unwrap();
    assert_eq!(value, "snapshot-value");
}

/// `redis-cli --functions-rdb` through the proxy saves the functions-only snapshot.
#[test]
fn redis_cli_functions_rdb_downloads_through_the_proxy() {
    let redis = replicating_server();
    let token = TokenFile::new(TOKEN_A);
    let proxy = Proxy::start(flags(&redis, &token));
    let mut client = proxy.client();
    let library =
        "#!lua name=proxylib\nredis.register_function('proxyfn', function() return 1 end)";
    let _: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg(library)
        .query(&mut client)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("functions.rdb");
    let port = proxy.port().to_string();
    let out = redis_cli(&["-p", &port, "--functions-rdb", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rdb = std::fs::read(&file).unwrap();
    assert!(rdb.windows(b"proxylib".len()).any(|w| w == b"proxylib"));
}

/// `redis-cli --replica` through the proxy prints the commands written after it attached.
#[test]
fn redis_cli_replica_streams_writes_through_the_proxy() {
    let redis = replicating_server();
    let token = TokenFile::new(TOKEN_A);
    let proxy = Proxy::start(flags(&redis, &token));
    let port = proxy.port().to_string();
    let mut replica = Command::new("redis-cli")
        .args(["-p", &port, "--replica"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-cli");
    let lines = BufReader::new(replica.stdout.take().unwrap()).lines();
    let pid = replica.id().to_string();
    let found = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Writes until the stream shows one (the replica attaches at some point after it starts),
    // then ends redis-cli so that its output ends; bounded either way.
    let writer = {
        let found = std::sync::Arc::clone(&found);
        let mut client = proxy.client();
        std::thread::spawn(move || {
            for _ in 0..300 {
                if found.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let _: () = redis::cmd("SET")
                    .arg("streamed-key")
                    .arg("streamed-value")
                    .query(&mut client)
                    .unwrap();
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            let _ = Command::new("kill").arg(&pid).status();
        })
    };
    let mut seen = Vec::new();
    for line in lines.map_while(Result::ok) {
        if line.contains("streamed-value") {
            found.store(true, std::sync::atomic::Ordering::Relaxed);
            break;
        }
        seen.push(line);
    }
    writer.join().unwrap();
    let _ = replica.kill();
    let _ = replica.wait();
    assert!(
        found.load(std::sync::atomic::Ordering::Relaxed),
        "the writes never reached the replica stream; saw {seen:?}"
    );
}
