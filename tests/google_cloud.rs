//! Google Cloud IAM end to end: tokens from a metadata server or a service-account key
//! (`common::clouds::google`) that live seconds, and a front for a real redis-server that
//! accepts only unexpired tokens it issued and throttles bursts of new connections with
//! Memorystore's `ERR_IAM_EXHAUSTED`.

mod common;

use common::clouds::google::GoogleStandIn;
use common::clouds::{Throttle, TokenFront};
use common::{ProxyHandle, ProxyProcess, RedisServer, http, sample};
use std::sync::atomic::Ordering;
use std::time::Duration;

fn proxy(front: &TokenFront, env: &[(&'static str, String)]) -> ProxyProcess {
    let args = ["--google-iam", "--tls-server-name", "localhost"];
    ProxyProcess::start_to(&front.addr.to_string(), &args, env)
}

#[test]
fn bursts_of_new_connections_get_through_iam_throttling_without_one_client_error() {
    let redis = RedisServer::start();
    let google = GoogleStandIn::start(Duration::from_secs(4));
    let throttle = Throttle {
        capacity: 3.0,
        per_second: 20.0,
    };
    let front = TokenFront::start(&redis, google.check(), false, Some(throttle));
    let proxy = proxy(&front, &google.metadata_env());
    let addr = proxy.addr();
    for round in 0..3 {
        let clients: Vec<_> = (0..12)
            .map(|i| {
                std::thread::spawn(move || {
                    let mut client = common::connect(&format!("redis://{addr}"));
                    let key = format!("r{round}-{i}");
                    let _: () = redis::cmd("SET")
                        .arg(&key)
                        .arg(i)
                        .query(&mut client)
                        .unwrap();
                    let back: u32 = redis::cmd("GET").arg(&key).query(&mut client).unwrap();
                    assert_eq!(back, i);
                })
            })
            .collect();
        for client in clients {
            client.join().expect("a client saw an error");
        }
        // The next burst comes with the next token.
        std::thread::sleep(Duration::from_secs(2));
    }
    let throttled = front.ledger.throttled.load(Ordering::SeqCst);
    assert!(
        throttled > 0,
        "the front never throttled: the test proves nothing"
    );
    assert_eq!(front.ledger.refused.load(Ordering::SeqCst), 0);
    assert!(google.ledger.metadata_grants.load(Ordering::SeqCst) >= 2);
    let exposition = http(proxy.admin_addr(), "GET", "/metrics").1;
    let counted = sample(
        &exposition,
        "redis_auth_proxy_upstream_auth_attempts_total",
        &[("result", "throttled")],
    );
    assert_eq!(counted, throttled as f64);
    let log = proxy.log();
    for secret in google.secrets() {
        assert!(!log.contains(&secret), "a secret is in the log");
        assert!(!exposition.contains(&secret), "a secret is in the metrics");
    }
}

#[test]
fn a_service_account_key_gets_tokens_with_an_rs256_assertion_and_the_token_command_prints_one() {
    let redis = RedisServer::start();
    let google = GoogleStandIn::start(Duration::from_secs(3600));
    let front = TokenFront::start(&redis, google.check(), false, None);
    let proxy = proxy(&front, &google.key_file_env());
    let mut client = proxy.client();
    let pong: String = redis::cmd("PING").query(&mut client).unwrap();
    assert_eq!(pong, "PONG");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_redis-auth-proxy"));
    command.env_clear().args(["token", "--google-iam"]);
    for (key, value) in google.key_file_env() {
        command.env(key, value);
    }
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert!(google.check()(&[token]).is_some());
    assert_eq!(google.ledger.key_grants.load(Ordering::SeqCst), 2);
    assert_eq!(google.ledger.metadata_grants.load(Ordering::SeqCst), 0);
    assert!(
        !proxy
            .log()
            .contains(google.private_key.lines().nth(3).unwrap())
    );
}
