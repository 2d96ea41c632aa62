//! Start-up ordering: `redis-auth-proxy wait` for init scripts and classic sidecars, and
//! systemd's `Type=notify` (READY=1 once the proxy serves, STOPPING=1 at the drain), spoken to a
//! real notify socket as systemd would listen on it.

mod common;

use common::*;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};

/// `redis-auth-proxy wait` against the admin endpoint at `admin`.
fn wait(admin: &str, timeout: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_redis-auth-proxy"))
        .env_clear()
        .args(["wait", "--admin-listen", admin, "--wait-timeout", timeout])
        .stdin(Stdio::null())
        .output()
        .expect("run redis-auth-proxy wait")
}

#[test]
fn wait_returns_once_the_proxy_has_started() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let token_path = token.path.display().to_string();
    // Bound, not necessarily started: `wait` asks until it is.
    let proxy = ProxyProcess::spawn(&redis, &["--token-file", &token_path], &[]);
    let out = wait(&proxy.admin_addr().to_string(), "15s");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "started");
    assert_eq!(http(proxy.admin_addr(), "GET", "/startupz").0, 200);
}

#[test]
fn wait_gives_up_with_exit_1_when_nothing_starts() {
    let nobody = format!("127.0.0.1:{}", free_port());
    let out = wait(&nobody, "300ms");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.starts_with("not started within 300ms: cannot reach"),
        "{said}"
    );
}

#[test]
fn wait_with_a_bad_timeout_is_a_configuration_error() {
    let out = wait("127.0.0.1:6479", "soon");
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--wait-timeout"));
}

/// The datagrams a service manager would read from its notify socket.
struct NotifySocket {
    socket: UnixDatagram,
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl NotifySocket {
    fn bind() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(PATIENCE)).unwrap();
        NotifySocket {
            socket,
            path,
            _dir: dir,
        }
    }

    fn next(&self) -> String {
        let mut buf = [0u8; 4096];
        let n = self.socket.recv(&mut buf).expect("a notification in time");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

#[test]
fn systemd_hears_ready_once_the_proxy_serves_and_stopping_at_the_drain() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let token_path = token.path.display().to_string();
    let notify = NotifySocket::bind();
    let env = [("NOTIFY_SOCKET", notify.path.display().to_string())];
    let mut proxy = ProxyProcess::spawn(&redis, &["--token-file", &token_path], &env);
    assert_eq!(notify.next().trim(), "READY=1");
    // Ready means serving: started, and a client gets through.
    assert_eq!(http(proxy.admin_addr(), "GET", "/startupz").0, 200);
    let pong: String = redis::cmd("PING").query(&mut proxy.client()).unwrap();
    assert_eq!(pong, "PONG");
    proxy.signal("TERM");
    assert_eq!(notify.next().trim(), "STOPPING=1");
    let status = proxy.wait_exit(PATIENCE).expect("the proxy exits");
    assert!(status.success(), "{status:?}");
}
