//! Entra ID end to end: the proxy gets tokens from a stand-in for Entra ID
//! (`common::clouds::entra`) that live seconds, and a front for a real redis-server checks
//! every `AUTH <oid> <token>` and closes a connection the moment the token that last
//! authenticated it expires, as Azure's Redis does.

mod common;

use common::clouds::TokenFront;
use common::clouds::entra::EntraStandIn;
use common::{ProxyHandle, ProxyProcess, RedisServer, http, sample};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn proxy(front: &TokenFront, env: &[(&'static str, String)], extra: &[&str]) -> ProxyProcess {
    let mut args = vec!["--entra-id", "--tls-server-name", "localhost"];
    args.extend_from_slice(extra);
    ProxyProcess::start_to(&front.addr.to_string(), &args, env)
}

fn token_command(env: &[(&'static str, String)]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_redis-auth-proxy"));
    command
        .env_clear()
        .args(["token", "--entra-id"])
        .stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

#[test]
fn long_lived_and_new_connections_work_over_several_token_lifetimes_with_no_close_by_the_server() {
    let redis = RedisServer::start();
    let life = Duration::from_secs(8);
    let entra = EntraStandIn::start(life);
    let front = TokenFront::start(&redis, entra.check(), true, None);
    let proxy = proxy(&front, &entra.workload_identity_env(), &[]);
    let mut long_lived = proxy.client();
    let started = Instant::now();
    let (mut count, mut connections) = (0i64, 0u64);
    let mut rotated = false;
    while started.elapsed() < life * 3 {
        if !rotated && started.elapsed() > life {
            // The kubelet rotates the projected token: the next grant must send the new one.
            std::fs::write(
                entra.federated_token_file.path(),
                "federated-rotated-0123456789",
            )
            .unwrap();
            rotated = true;
        }
        count += 1;
        let n: i64 = redis::cmd("INCR").arg("c").query(&mut long_lived).unwrap();
        assert_eq!(n, count);
        let mut fresh = proxy.client();
        let _: () = redis::cmd("SET")
            .arg(format!("k{connections}"))
            .arg(connections)
            .query(&mut fresh)
            .unwrap();
        connections += 1;
        // Pacing, so the test measures token lifetimes rather than the machine's speed.
        std::thread::sleep(Duration::from_millis(50));
    }
    let ledger = &front.ledger;
    assert_eq!(
        ledger.expired_closes.load(Ordering::SeqCst),
        0,
        "the server closed one"
    );
    assert_eq!(
        ledger.refused.load(Ordering::SeqCst),
        0,
        "a token was refused"
    );
    assert_eq!(
        entra.ledger.refused.load(Ordering::SeqCst),
        0,
        "a grant was refused"
    );
    assert!(entra.ledger.assertion_grants.load(Ordering::SeqCst) >= 3);
    let long_lived_auths = ledger.auths_per_connection.lock().unwrap()[0];
    assert!(
        long_lived_auths >= 3,
        "the long-lived connection authenticated {long_lived_auths} times in three lifetimes"
    );
    let exposition = http(proxy.admin_addr(), "GET", "/metrics").1;
    let renewed = sample(
        &exposition,
        "redis_auth_proxy_upstream_reauthentications_total",
        &[("result", "ok")],
    );
    assert!(renewed >= 2.0, "{renewed} renewals");
    assert!(
        sample(
            &exposition,
            "redis_auth_proxy_token_expiry_timestamp_seconds",
            &[]
        ) > 0.0
    );
    let log = proxy.log();
    for secret in entra.secrets() {
        assert!(!log.contains(secret.trim()), "a secret is in the log");
        assert!(
            !exposition.contains(secret.trim()),
            "a secret is in the metrics"
        );
    }
}

#[test]
fn a_resp2_subscriber_is_closed_cleanly_before_its_token_expires_and_counted() {
    let redis = RedisServer::start();
    let entra = EntraStandIn::start(Duration::from_secs(6));
    let front = TokenFront::start(&redis, entra.check(), true, None);
    let proxy = proxy(&front, &entra.client_secret_env(), &[]);
    let mut subscriber = common::Raw::connect(proxy.addr());
    subscriber.command(&["SUBSCRIBE", "news"]);
    assert!(subscriber.reply().contains("subscribe"));
    assert!(!subscriber.read_to_close().contains("ERR"));
    assert_eq!(
        front.ledger.expired_closes.load(Ordering::SeqCst),
        0,
        "the proxy closed it first"
    );
    assert!(entra.ledger.secret_grants.load(Ordering::SeqCst) >= 1);
    let exposition = http(proxy.admin_addr(), "GET", "/metrics").1;
    assert_eq!(
        sample(
            &exposition,
            "redis_auth_proxy_upstream_lifetime_closes_total",
            &[]
        ),
        1.0
    );
    let mut client = proxy.client();
    let pong: String = redis::cmd("PING").query(&mut client).unwrap();
    assert_eq!(pong, "PONG");
}

#[test]
fn app_service_and_vm_managed_identities_give_tokens_the_server_accepts_as_the_object_id() {
    let entra = EntraStandIn::start(Duration::from_secs(3600));
    let check = entra.check();
    for env in [entra.app_service_env(), entra.imds_env()] {
        let output = token_command(&env);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let token = String::from_utf8(output.stdout).unwrap().trim().to_owned();
        assert!(check(&[entra.oid.clone(), token]).is_some());
    }
    assert_eq!(entra.ledger.app_service_grants.load(Ordering::SeqCst), 1);
    assert_eq!(entra.ledger.imds_grants.load(Ordering::SeqCst), 1);
}

#[test]
fn a_refused_client_secret_is_a_clear_error_that_quotes_no_secret() {
    let entra = EntraStandIn::start(Duration::from_secs(3600));
    let mut env = entra.client_secret_env();
    let wrong = "wrong~secret-value-0123456789".to_owned();
    env.retain(|(key, _)| *key != "AZURE_CLIENT_SECRET");
    env.push(("AZURE_CLIENT_SECRET", wrong.clone()));
    let output = token_command(&env);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("HTTP 401: invalid_client"), "{stderr}");
    assert!(!stderr.contains(&wrong) && !stderr.contains(&entra.client_secret));
}
