//! IAM authentication end to end: the proxy signs tokens with credentials from a container
//! endpoint (as on ECS or EKS Pod Identity) that hands out new credentials living seconds, and
//! a stand-in for ElastiCache's check (`common::iam`) verifies every token's signature before a
//! real redis-server serves the connection.

mod common;

use common::iam::{self, IamStandIn};
use common::{ProxyHandle, ProxyProcess, RedisServer, eventually, http, sample};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, UNIX_EPOCH};

fn proxy(stand_in: &IamStandIn, extra: &[&str]) -> ProxyProcess {
    let mut args = stand_in.args();
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ProxyProcess::start_to(&stand_in.front.to_string(), &args, &stand_in.env())
}

fn metrics(proxy: &ProxyProcess) -> String {
    http(proxy.admin_addr(), "GET", "/metrics").1
}

#[test]
fn the_stand_in_reads_both_date_formats_alike() {
    let at = UNIX_EPOCH + Duration::from_secs(1_722_600_710);
    assert_eq!(iam::sigv4::rfc3339(at), "2024-08-02T12:11:50Z");
    assert_eq!(iam::sigv4::parse_amz_date("20240802T121150Z"), Some(at));
}

#[test]
fn tokens_from_short_lived_credentials_keep_working_over_several_lifetimes() {
    let redis = RedisServer::start();
    // 10 s by default so that the suite stays fast; IAM_TEST_CREDENTIALS_SECONDS=120 runs it
    // with credentials living two minutes, as ECS and Pod Identity may hand out near expiry.
    let life = Duration::from_secs(
        std::env::var("IAM_TEST_CREDENTIALS_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(10),
    );
    let stand_in = IamStandIn::start(&redis, life, None);
    let proxy = proxy(&stand_in, &["--log-level", "debug"]);
    let mut long_lived = proxy.client();
    let started = Instant::now();
    let mut connections = 0u64;
    let mut count = 0i64;
    // Three and a half lifetimes of traffic: a long-lived connection and a new one each turn.
    while started.elapsed() < life * 7 / 2 {
        count += 1;
        let n: i64 = redis::cmd("INCR")
            .arg("counter")
            .query(&mut long_lived)
            .unwrap();
        assert_eq!(n, count);
        let mut fresh = proxy.client();
        let key = format!("key-{connections}");
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg(connections)
            .query(&mut fresh)
            .unwrap();
        let back: u64 = redis::cmd("GET").arg(&key).query(&mut fresh).unwrap();
        assert_eq!(back, connections);
        connections += 1;
        // Pacing, so the test measures lifetimes rather than the machine's speed.
        std::thread::sleep(Duration::from_millis(50));
    }
    let ledger = &stand_in.ledger;
    assert_eq!(
        ledger.refused.load(Ordering::SeqCst),
        0,
        "a token was refused"
    );
    assert!(ledger.accepted.load(Ordering::SeqCst) > connections);
    let mut keys = ledger.keys_used.lock().unwrap().clone();
    keys.sort();
    keys.dedup();
    assert!(
        keys.len() >= 4,
        "signed with {} credentials over 3.5 lifetimes",
        keys.len()
    );
    let exposition = metrics(&proxy);
    assert!(
        sample(
            &exposition,
            "redis_auth_proxy_iam_signings_total",
            &[("result", "ok")]
        ) >= 4.0
    );
    assert!(
        sample(
            &exposition,
            "redis_auth_proxy_iam_credentials_expiry_timestamp_seconds",
            &[]
        ) > 0.0
    );
    let log = proxy.log();
    for secret in ledger.secrets() {
        assert!(!log.contains(&secret), "a secret is in the log");
        assert!(!exposition.contains(&secret), "a secret is in the metrics");
    }
    assert!(!log.contains("X-Amz-Signature"), "a token is in the log");
}

#[test]
fn live_connections_are_renewed_in_band_and_their_clients_see_nothing() {
    let redis = RedisServer::start();
    let cut = Duration::from_secs(6);
    let stand_in = IamStandIn::start(&redis, Duration::from_secs(3600), Some(cut));
    let proxy = proxy(
        &stand_in,
        &[
            "--iam-reauth-interval",
            "2s",
            "--iam-connection-lifetime",
            "6s",
        ],
    );
    let mut client = proxy.client();
    let started = Instant::now();
    let mut count = 0i64;
    // Past two of the server's cuts, on one connection.
    while started.elapsed() < cut * 2 + Duration::from_secs(1) {
        count += 1;
        let n: i64 = redis::cmd("INCR")
            .arg("renewed")
            .query(&mut client)
            .unwrap();
        assert_eq!(n, count);
        std::thread::sleep(Duration::from_millis(20));
    }
    let ledger = &stand_in.ledger;
    assert_eq!(
        ledger.cuts.load(Ordering::SeqCst),
        0,
        "the server cut a connection"
    );
    let per_connection = ledger.auths_per_connection.lock().unwrap().clone();
    assert_eq!(
        per_connection.len(),
        1,
        "one upstream connection throughout"
    );
    assert!(per_connection[0] >= 5, "AUTHs on it: {}", per_connection[0]);
    let exposition = metrics(&proxy);
    let renewed = sample(
        &exposition,
        "redis_auth_proxy_upstream_reauthentications_total",
        &[("result", "ok")],
    );
    assert_eq!(renewed as u64, per_connection[0] - 1);
}

/// With `--multiplex`, the shared connections are replaced when a connection of a client's
/// own would authenticate again, and their clients move to the new ones between requests:
/// past two of the server's cuts, three clients see every reply right and the server cuts
/// nothing.
#[test]
fn multiplexed_clients_move_to_new_shared_connections_before_the_servers_cut() {
    let redis = RedisServer::start();
    let cut = Duration::from_secs(6);
    let stand_in = IamStandIn::start(&redis, Duration::from_secs(3600), Some(cut));
    let proxy = proxy(
        &stand_in,
        &[
            "--multiplex",
            "--iam-reauth-interval",
            "2s",
            "--iam-connection-lifetime",
            "6s",
        ],
    );
    let addr = proxy.addr();
    let clients: Vec<_> = (0..3)
        .map(|i| {
            std::thread::spawn(move || {
                let mut client = common::connect(&format!("redis://{addr}/"));
                let key = format!("renewed-{i}");
                let started = Instant::now();
                let mut count = 0i64;
                while started.elapsed() < cut * 2 + Duration::from_secs(1) {
                    count += 1;
                    let n: i64 = redis::cmd("INCR").arg(&key).query(&mut client).unwrap();
                    assert_eq!(n, count);
                    // Pacing, so the test measures lifetimes rather than the machine's speed.
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    assert_eq!(
        stand_in.ledger.cuts.load(Ordering::SeqCst),
        0,
        "the server cut a connection"
    );
    let lanes = stand_in.ledger.auths_per_connection.lock().unwrap().len();
    assert!(lanes > 2, "shared connections replaced: {lanes} opened");
}

#[test]
fn a_connection_never_quiet_is_closed_before_the_servers_cut() {
    let redis = RedisServer::start();
    let stand_in = IamStandIn::start(
        &redis,
        Duration::from_secs(3600),
        Some(Duration::from_secs(8)),
    );
    let proxy = proxy(
        &stand_in,
        &[
            "--iam-reauth-interval",
            "2s",
            "--iam-connection-lifetime",
            "8s",
        ],
    );
    let mut blocked = common::Raw::connect(proxy.addr());
    blocked.command(&["BLPOP", "never-pushed", "0"]);
    let mut subscriber = common::Raw::connect(proxy.addr());
    subscriber.command(&["SUBSCRIBE", "news"]);
    assert!(subscriber.reply().contains("subscribe"));
    assert_eq!(blocked.read_to_close(), "", "closed with no reply");
    assert!(!subscriber.read_to_close().contains("ERR"));
    assert_eq!(
        stand_in.ledger.cuts.load(Ordering::SeqCst),
        0,
        "the proxy closed them first"
    );
    let exposition = metrics(&proxy);
    assert_eq!(
        sample(
            &exposition,
            "redis_auth_proxy_upstream_lifetime_closes_total",
            &[]
        ),
        2.0
    );
    // A new connection works as ever.
    let mut client = proxy.client();
    let pong: String = redis::cmd("PING").query(&mut client).unwrap();
    assert_eq!(pong, "PONG");
}

#[test]
fn a_refused_token_is_signed_again_with_fresh_credentials_before_the_client_hears_of_it() {
    let redis = RedisServer::start();
    let stand_in = IamStandIn::start(&redis, Duration::from_secs(3600), None);
    let proxy = proxy(&stand_in, &[]);
    let mut client = proxy.client();
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query(&mut client)
        .unwrap();
    let fetches = stand_in.ledger.fetches.load(Ordering::SeqCst);
    stand_in.ledger.revoke_all();
    let mut client = proxy.client();
    let value: String = redis::cmd("GET").arg("k").query(&mut client).unwrap();
    assert_eq!(value, "v");
    assert!(stand_in.ledger.refused.load(Ordering::SeqCst) >= 1);
    assert!(stand_in.ledger.fetches.load(Ordering::SeqCst) > fetches);
}

#[test]
fn readiness_fails_while_no_credentials_can_be_had_and_returns_with_them() {
    let redis = RedisServer::start();
    let stand_in = IamStandIn::start(&redis, Duration::from_secs(6), None);
    let proxy = proxy(&stand_in, &[]);
    assert_eq!(http(proxy.admin_addr(), "GET", "/readyz").0, 200);
    stand_in.ledger.failing.store(true, Ordering::SeqCst);
    let until = |status: u16, limit: Duration| {
        let deadline = Instant::now() + limit;
        loop {
            let (code, body) = http(proxy.admin_addr(), "GET", "/readyz");
            if code == status {
                return body;
            }
            assert!(Instant::now() < deadline, "/readyz stayed {code}: {body}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let body = until(503, Duration::from_secs(30));
    assert!(body.contains("IAM token expired"), "{body}");
    // Counted while the endpoint still fails: once it answers again, a fetch in flight (the
    // SDK retries on its own) may succeed without ever reporting the failure.
    let failures = || {
        let exposition = metrics(&proxy);
        let labels = [("result", "credentials_error")];
        sample(&exposition, "redis_auth_proxy_iam_signings_total", &labels)
    };
    eventually("a failed credentials fetch is counted", || {
        failures() >= 1.0
    });
    stand_in.ledger.failing.store(false, Ordering::SeqCst);
    // The source retries with doubling delays, at most a minute apart.
    until(200, Duration::from_secs(90));
    let mut client = proxy.client();
    let pong: String = redis::cmd("PING").query(&mut client).unwrap();
    assert_eq!(pong, "PONG");
    assert!(failures() >= 1.0, "the failures stay counted");
}

#[test]
fn iam_token_prints_a_token_the_service_accepts_for_redis_cli() {
    let redis = RedisServer::start();
    let stand_in = IamStandIn::start(&redis, Duration::from_secs(3600), None);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_redis-auth-proxy"))
        .arg("iam-token")
        .args(stand_in.args())
        .env_clear()
        .envs(stand_in.env())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    iam::sigv4::verify(&token, &stand_in.ledger).unwrap();
    // The stand-in is no rubber stamp: a token changed anywhere fails its check.
    let tampered = token.replace("User=iam-user", "User=iam-usex");
    assert!(iam::sigv4::verify(&tampered, &stand_in.ledger).is_err());
    let at = token.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let flipped = if &token[at..=at] == "0" { "1" } else { "0" };
    let forged = format!("{}{flipped}{}", &token[..at], &token[at + 1..]);
    assert_eq!(
        iam::sigv4::verify(&forged, &stand_in.ledger),
        Err("signature".into())
    );
    let port = stand_in.front.port().to_string();
    let ca = common::certs().ca.display().to_string();
    let pong = common::redis_cli(&[
        "--tls",
        "--cacert",
        &ca,
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "--user",
        iam::USER,
        "--pass",
        &token,
        "--no-auth-warning",
        "PING",
    ]);
    assert_eq!(String::from_utf8_lossy(&pong.stdout).trim(), "PONG");
}

#[test]
fn credentials_from_web_identity_through_sts_sign_accepted_tokens() {
    let redis = RedisServer::start();
    let stand_in = IamStandIn::start(&redis, Duration::from_secs(3600), None);
    let moto = common::MotoServer::start();
    let mut identity = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut identity, b"eyJhbGciOiJSUzI1NiJ9.service-account-token")
        .unwrap();
    let env = [
        (
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            identity.path().display().to_string(),
        ),
        (
            "AWS_ROLE_ARN",
            "arn:aws:iam::123456789012:role/my-app-redis-iam".into(),
        ),
        ("AWS_ROLE_SESSION_NAME", "redis-auth-proxy-test".into()),
        ("AWS_ENDPOINT_URL_STS", moto.endpoint()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("AWS_CONFIG_FILE", "/nonexistent".into()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent".into()),
    ];
    let args = stand_in.args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let proxy = ProxyProcess::start_to(&stand_in.front.to_string(), &args, &env);
    // The proxy exchanged the web identity token with STS at start; the stand-in learns what
    // STS handed out, as ElastiCache would from IAM.
    let moto_addr: std::net::SocketAddr = moto
        .endpoint()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let (status, body) = http(moto_addr, "GET", "/moto-api/data.json");
    assert_eq!(status, 200);
    let data: serde_json::Value = serde_json::from_str(&body).unwrap();
    let roles = data["sts"]["AssumedRole"]
        .as_array()
        .expect("an assumed role");
    assert!(!roles.is_empty(), "the proxy asked STS for credentials");
    for role in roles {
        let field = |name: &str| role[name].as_str().unwrap().to_owned();
        stand_in.ledger.learn(
            &field("access_key_id"),
            &field("secret_access_key"),
            &field("session_token"),
        );
    }
    let mut client = proxy.client();
    let pong: String = redis::cmd("PING").query(&mut client).unwrap();
    assert_eq!(pong, "PONG");
    assert_eq!(stand_in.ledger.refused.load(Ordering::SeqCst), 0);
    let used = stand_in.ledger.keys_used.lock().unwrap().clone();
    assert_eq!(used.len(), 1);
    assert!(roles.iter().any(|r| r["access_key_id"] == used[0].as_str()));
}
