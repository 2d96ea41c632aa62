//! Token sources followed while the proxy runs: file rewrites, renames, Kubernetes secret
//! volume swaps, bad intermediate states, SIGHUP, and AWS Secrets Manager (against moto).

mod common;

use common::*;
use redis_auth_proxy::token::{Credentials, FileSource, Refresher, TokenSource, TokenStore};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// A store fed by a refresher watching `path`, as the proxy runs it.
struct Watched {
    store: Arc<TokenStore>,
    stop: CancellationToken,
}

impl Watched {
    async fn start(path: PathBuf) -> Self {
        let source = TokenSource::File(FileSource::token(path, None));
        let store = Arc::new(TokenStore::new());
        let initial: Credentials = source.load().await.unwrap();
        store.update(initial.clone());
        let stop = CancellationToken::new();
        let polling = source.polling(Duration::from_secs(300));
        let refresher = Refresher::new(store.clone(), source, polling, initial);
        tokio::spawn(refresher.run(stop.clone()));
        Watched { store, stop }
    }

    fn current(&self) -> String {
        self.store
            .credentials()
            .unwrap()
            .current
            .expose()
            .to_owned()
    }

    /// Waits for `token` to become current; returns how long it took.
    async fn picked_up(&self, token: &str, since: Instant) -> Duration {
        while self.current() != token {
            assert!(
                since.elapsed() < Duration::from_secs(5),
                "{} never picked up",
                &token[..7]
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        since.elapsed()
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Rewriting the token file in place is picked up within a second, and the old token is
/// kept as the previous one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_place_rewrite_is_picked_up_within_a_second() {
    let file = TokenFile::new(TOKEN_A);
    let watched = Watched::start(file.path.clone()).await;
    let start = Instant::now();
    file.rewrite(TOKEN_B);
    let took = watched.picked_up(TOKEN_B, start).await;
    assert!(took < Duration::from_secs(1), "took {took:?}");
    let credentials = watched.store.credentials().unwrap();
    assert_eq!(credentials.previous.as_ref().unwrap().expose(), TOKEN_A);
}

/// A new file renamed over the old one is picked up within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_renamed_over_the_token_file_is_picked_up() {
    let file = TokenFile::new(TOKEN_A);
    let watched = Watched::start(file.path.clone()).await;
    let start = Instant::now();
    file.rename_over(TOKEN_B);
    let took = watched.picked_up(TOKEN_B, start).await;
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

/// The kubelet's atomic `..data` symlink swap is picked up within a second, twice in a row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubernetes_secret_volume_update_is_picked_up() {
    let mut secret = KubeSecretDir::new(TOKEN_A);
    let watched = Watched::start(secret.path()).await;
    for token in [TOKEN_B, TOKEN_C] {
        let start = Instant::now();
        secret.update(token);
        let took = watched.picked_up(token, start).await;
        assert!(took < Duration::from_secs(1), "took {took:?}");
    }
}

/// An emptied or deleted token file never replaces the good token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_or_missing_file_keeps_the_last_good_token() {
    let file = TokenFile::new(TOKEN_A);
    let watched = Watched::start(file.path.clone()).await;
    file.rewrite("  \n");
    assert!(
        !watched.store.reload_and_wait(Duration::from_secs(5)).await,
        "an empty file changed the tokens"
    );
    std::fs::remove_file(&file.path).unwrap();
    assert!(
        !watched.store.reload_and_wait(Duration::from_secs(5)).await,
        "a missing file changed the tokens"
    );
    assert_eq!(watched.current(), TOKEN_A);
    file.rewrite(TOKEN_B);
    assert!(watched.store.reload_and_wait(Duration::from_secs(5)).await);
    assert_eq!(watched.current(), TOKEN_B);
}

/// A file caught half-written (a writer that truncates, then writes in two steps) is never
/// taken for a token: a polled change must read the same twice in a row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_written_file_is_never_used() {
    let file = TokenFile::new(TOKEN_A);
    let watched = Watched::start(file.path.clone()).await;
    let half = &TOKEN_B[..10];
    for _ in 0..3 {
        file.rewrite(half);
        tokio::time::sleep(Duration::from_millis(30)).await;
        file.rewrite(TOKEN_A);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            watched.current(),
            TOKEN_A,
            "the half-written token was used"
        );
    }
    let start = Instant::now();
    file.rewrite(TOKEN_B);
    watched.picked_up(TOKEN_B, start).await;
}

/// SIGHUP reloads the token file at once, without waiting for the poll to confirm it.
#[test]
fn sighup_reloads_the_token_source_at_once() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = ProxyProcess::start(&redis, &["--token-file", token.path.to_str().unwrap()], &[]);
    token.rewrite(TOKEN_B);
    proxy.signal("HUP");
    eventually("the proxy reports the new token", || {
        proxy.log().contains("Token updated")
    });
    let log = proxy.log();
    assert!(log.contains("SIGHUP: reloading"), "{log}");
    assert!(
        log.contains("trigger=\"request\""),
        "the signal, not the poll, loaded it:\n{log:?}"
    );
    assert!(!log.contains(TOKEN_A) && !log.contains(TOKEN_B));
}

fn put_secret(
    client: &aws_sdk_secretsmanager::Client,
    id: &str,
    value: &str,
    runtime: &tokio::runtime::Runtime,
) {
    runtime
        .block_on(
            client
                .put_secret_value()
                .secret_id(id)
                .secret_string(value)
                .send(),
        )
        .unwrap();
}

fn create_secret(
    client: &aws_sdk_secretsmanager::Client,
    id: &str,
    value: &str,
    runtime: &tokio::runtime::Runtime,
) {
    runtime
        .block_on(client.create_secret().name(id).secret_string(value).send())
        .unwrap();
}

fn user_secret(user: &str, password: &str) -> String {
    format!(r#"{{"username":"{user}","password":"{password}"}}"#)
}

/// A new AWSCURRENT is picked up within one refresh interval. The two versions name two ACL
/// users, both valid throughout, so `ACL WHOAMI` shows which version the proxy uses without
/// any rejection that would force an early reload.
#[test]
fn a_new_secrets_manager_version_is_picked_up_within_one_refresh_interval() {
    let redis = RedisServer::start();
    redis.admin(&[
        "ACL",
        "SETUSER",
        "app-v1",
        "on",
        &format!(">{TOKEN_A}"),
        "~*",
        "+@all",
    ]);
    redis.admin(&[
        "ACL",
        "SETUSER",
        "app-v2",
        "on",
        &format!(">{TOKEN_B}"),
        "~*",
        "+@all",
    ]);
    let moto = MotoServer::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = moto.client();
    create_secret(
        &client,
        "redis/app",
        &user_secret("app-v1", TOKEN_A),
        &runtime,
    );
    let args = [
        "--token-secret-id",
        "redis/app",
        "--token-json-key",
        "password",
        "--token-refresh-interval",
        "1s",
    ];
    let proxy = ProxyProcess::start(&redis, &args, &moto.proxy_env());
    assert_eq!(proxy.whoami(), "app-v1");
    let start = Instant::now();
    put_secret(
        &client,
        "redis/app",
        &user_secret("app-v2", TOKEN_B),
        &runtime,
    );
    eventually("the new version is used", || proxy.whoami() == "app-v2");
    // One interval (1 s, jittered by up to 10%) plus the time to fetch it.
    assert!(
        start.elapsed() < Duration::from_millis(2500),
        "took {:?}",
        start.elapsed()
    );
    assert!(proxy.log().contains("Token updated"), "{}", proxy.log());
}

/// AWSPREVIOUS is the fallback: a proxy started after the secret moved on, against a server
/// that still only knows the old token, connects.
#[test]
fn the_awsprevious_version_is_tried_when_awscurrent_is_rejected() {
    let redis = RedisServer::start();
    let moto = MotoServer::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = moto.client();
    create_secret(&client, "redis/token", TOKEN_A, &runtime);
    put_secret(&client, "redis/token", TOKEN_B, &runtime);
    let proxy = ProxyProcess::start(
        &redis,
        &["--token-secret-id", "redis/token"],
        &moto.proxy_env(),
    );
    let pong: String = redis::cmd("PING").query(&mut proxy.client()).unwrap();
    assert_eq!(pong, "PONG");
}

/// With Secrets Manager unreachable the proxy keeps its last good token, keeps serving, and
/// says so in its log.
#[test]
fn with_secrets_manager_down_the_last_good_token_stays_in_use() {
    let redis = RedisServer::start();
    let mut moto = MotoServer::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    create_secret(&moto.client(), "redis/token", TOKEN_A, &runtime);
    let args = [
        "--token-secret-id",
        "redis/token",
        "--token-refresh-interval",
        "1s",
    ];
    let proxy = ProxyProcess::start(&redis, &args, &moto.proxy_env());
    moto.kill();
    eventually("the failed reload is logged", || {
        proxy.log().contains("Token reload failed")
    });
    let log = proxy.log();
    assert!(
        log.contains("token.source=\"secretsmanager\"") && log.contains("reason=\"aws\""),
        "{log}"
    );
    for _ in 0..3 {
        let pong: String = redis::cmd("PING").query(&mut proxy.client()).unwrap();
        assert_eq!(pong, "PONG");
    }
}
