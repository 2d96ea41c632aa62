//! A bounded soak: hundreds of connections with mixed traffic (pipelines, pub/sub, blocking
//! pops, large values, MULTI, client AUTH) while the server is restarted twice and the token
//! goes through an ElastiCache ROTATE and SET. Every reply is checked. Connections may be lost
//! only around a server restart, never because of the rotation; the proxy's RSS must end flat.
//! `SOAK_SECONDS` sets the length (default 60).

mod common;

use common::*;
use redis::Connection;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WORKERS: usize = 12;
const IDLE_CONNECTIONS: usize = 200;
/// How long after a restart finished a lost connection is still blamed on it.
const SETTLE: Duration = Duration::from_secs(3);

/// What went wrong in one scenario.
enum Trouble {
    /// The connection was lost or refused: allowed only around a restart.
    Lost(String),
    /// A reply that does not match what was sent: never allowed.
    Wrong(String),
}

impl From<redis::RedisError> for Trouble {
    fn from(error: redis::RedisError) -> Self {
        Trouble::Lost(error.to_string())
    }
}

macro_rules! expect_eq {
    ($got:expr, $want:expr, $what:expr) => {
        let (got, want) = ($got, $want);
        if got != want {
            return Err(Trouble::Wrong(format!(
                "{}: got {got:?}, want {want:?}",
                $what
            )));
        }
    };
}

/// What every thread shares: the time windows of restarts, counts, and what went wrong.
#[derive(Default)]
struct Soak {
    stop: AtomicBool,
    restarts: Mutex<Vec<(Instant, Option<Instant>)>>,
    checked: AtomicU64,
    lost: AtomicU64,
    failures: Mutex<Vec<String>>,
}

impl Soak {
    fn near_restart(&self, at: Instant) -> bool {
        self.restarts.lock().unwrap().iter().any(|(start, end)| {
            at + Duration::from_millis(200) >= *start && end.is_none_or(|end| at <= end + SETTLE)
        })
    }

    fn record(&self, what: &str, result: Result<(), Trouble>) {
        match result {
            Ok(()) => {
                self.checked.fetch_add(1, Ordering::Relaxed);
            }
            Err(Trouble::Lost(error)) if self.near_restart(Instant::now()) => {
                let _ = error;
                self.lost.fetch_add(1, Ordering::Relaxed);
            }
            Err(Trouble::Lost(error)) => self.failures.lock().unwrap().push(format!(
                "{what}: connection lost away from any restart: {error}"
            )),
            Err(Trouble::Wrong(error)) => self
                .failures
                .lock()
                .unwrap()
                .push(format!("{what}: {error}")),
        }
    }
}

fn open(proxy: &ProxyProcess) -> Result<Connection, Trouble> {
    let client = redis::Client::open(format!("redis://{}/", proxy.addr()))?;
    let con = client.get_connection_with_timeout(Duration::from_secs(5))?;
    con.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(con)
}

fn pipeline(proxy: &ProxyProcess, tag: &str) -> Result<(), Trouble> {
    let mut con = open(proxy)?;
    let mut pipe = redis::pipe();
    for j in 0..16 {
        pipe.set(format!("{tag}:{j}"), format!("value-{tag}-{j}"))
            .ignore();
    }
    for j in 0..16 {
        pipe.get(format!("{tag}:{j}"));
    }
    let got: Vec<String> = pipe.query(&mut con)?;
    let want: Vec<String> = (0..16).map(|j| format!("value-{tag}-{j}")).collect();
    expect_eq!(got, want, "pipelined GETs");
    Ok(())
}

fn large_value(proxy: &ProxyProcess, tag: &str, n: u64) -> Result<(), Trouble> {
    let mut con = open(proxy)?;
    let size = 256 * 1024 + (n as usize % 7) * 131_072;
    let value: Vec<u8> = (0..size).map(|i| (i as u64 ^ n) as u8).collect();
    let _: () = redis::cmd("SET").arg(tag).arg(&value).query(&mut con)?;
    let got: Vec<u8> = redis::cmd("GET").arg(tag).query(&mut con)?;
    expect_eq!(got.len(), value.len(), "large value length");
    expect_eq!(got == value, true, "large value bytes");
    Ok(())
}

fn pubsub(proxy: &ProxyProcess, tag: &str) -> Result<(), Trouble> {
    let mut subscriber = open(proxy)?;
    let mut publisher = open(proxy)?;
    let mut pubsub = subscriber.as_pubsub();
    pubsub.subscribe(tag)?;
    for i in 0..10 {
        let receivers: i64 = redis::cmd("PUBLISH")
            .arg(tag)
            .arg(format!("m{i}"))
            .query(&mut publisher)?;
        expect_eq!(receivers, 1, "PUBLISH receivers");
        let message = pubsub.get_message()?;
        let payload: String = message.get_payload()?;
        expect_eq!(payload, format!("m{i}"), "message order");
    }
    Ok(())
}

fn blocking_pop(proxy: &ProxyProcess, tag: &str) -> Result<(), Trouble> {
    let mut waiter = open(proxy)?;
    let mut pusher = open(proxy)?;
    let key = tag.to_owned();
    let waiting = std::thread::spawn(move || -> Result<Option<(String, String)>, Trouble> {
        Ok(redis::cmd("BLPOP").arg(&key).arg(5).query(&mut waiter)?)
    });
    // The push may land before or after BLPOP blocks; either way BLPOP returns it.
    let _: i64 = redis::cmd("RPUSH").arg(tag).arg("job").query(&mut pusher)?;
    let got = waiting.join().expect("BLPOP thread")?;
    expect_eq!(got, Some((tag.to_owned(), "job".to_owned())), "BLPOP");
    Ok(())
}

fn transaction_with_client_auth(proxy: &ProxyProcess, tag: &str) -> Result<(), Trouble> {
    let mut con = open(proxy)?;
    let ok: String = redis::cmd("AUTH")
        .arg("whatever-the-app-had")
        .query(&mut con)?;
    expect_eq!(ok.as_str(), "OK", "client AUTH");
    let (a, b): (i64, i64) = redis::pipe()
        .atomic()
        .incr(tag, 1)
        .incr(tag, 2)
        .query(&mut con)?;
    expect_eq!((a, b), (1, 3), "MULTI/EXEC");
    Ok(())
}

fn worker(proxy: &ProxyProcess, soak: &Soak, id: usize) {
    let mut n: u64 = 0;
    while !soak.stop.load(Ordering::Relaxed) {
        n += 1;
        let tag = format!("soak:{id}:{n}");
        let (what, result) = match n % 5 {
            0 => ("pipeline", pipeline(proxy, &tag)),
            1 => ("large value", large_value(proxy, &tag, n)),
            2 => ("pub/sub", pubsub(proxy, &tag)),
            3 => ("blocking pop", blocking_pop(proxy, &tag)),
            _ => ("MULTI with AUTH", transaction_with_client_auth(proxy, &tag)),
        };
        soak.record(what, result);
    }
}

/// Keeps `IDLE_CONNECTIONS` connections open and checks each with a PING every second.
fn idle_keeper(proxy: &ProxyProcess, soak: &Soak) {
    let mut idle: Vec<Option<Connection>> = (0..IDLE_CONNECTIONS).map(|_| None).collect();
    while !soak.stop.load(Ordering::Relaxed) {
        for slot in idle.iter_mut() {
            let result = (|| -> Result<(), Trouble> {
                if slot.is_none() {
                    *slot = Some(open(proxy)?);
                }
                let con = slot.as_mut().expect("just opened");
                let pong: String = redis::cmd("PING").query(con)?;
                expect_eq!(pong.as_str(), "PONG", "PING on an idle connection");
                Ok(())
            })();
            if result.is_err() {
                *slot = None;
            }
            soak.record("idle connection", result);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

struct StopOnDrop<'a>(&'a Soak);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::Relaxed);
    }
}

fn wait_until(deadline: Instant, soak: &Soak) {
    while Instant::now() < deadline && soak.failures.lock().unwrap().is_empty() {
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn mixed_traffic_survives_two_restarts_and_a_rotation_with_every_reply_right() {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let length = Duration::from_secs(seconds);
    let mut redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let proxy = ProxyProcess::start(&redis, &["--token-file", token.path.to_str().unwrap()], &[]);
    let soak = Arc::new(Soak::default());
    let started = Instant::now();
    let at = |fraction: f64| started + length.mul_f64(fraction);
    let mut rss = Vec::new();
    std::thread::scope(|scope| {
        for id in 0..WORKERS {
            let (proxy, soak) = (&proxy, &soak);
            scope.spawn(move || worker(proxy, soak, id));
        }
        scope.spawn(|| idle_keeper(&proxy, &soak));
        // Whatever happens here, the workers stop, so a failed step cannot hang the test.
        let _stop = StopOnDrop(&soak);
        for (i, fraction) in [0.2, 0.4].into_iter().enumerate() {
            wait_until(at(fraction), &soak);
            rss.push(proxy.rss_kib());
            let index = soak.restarts.lock().unwrap().len();
            soak.restarts.lock().unwrap().push((Instant::now(), None));
            redis.restart();
            soak.restarts.lock().unwrap()[index].1 = Some(Instant::now());
            eprintln!("restart {} done at {:?}", i + 1, started.elapsed());
        }
        // ElastiCache ROTATE: the server takes B as well as A; the token file names B first.
        wait_until(at(0.55), &soak);
        redis.admin(&["ACL", "SETUSER", "default", &format!(">{TOKEN_B}")]);
        token.rewrite(&format!("{TOKEN_B}\n{TOKEN_A}\n"));
        eventually("the proxy logs the new token", || {
            proxy.log().matches("Token updated").count() >= 1
        });
        // SET: once the proxy uses B, the server drops A.
        wait_until(at(0.75), &soak);
        token.rewrite(TOKEN_B);
        redis.admin(&["ACL", "SETUSER", "default", &format!("<{TOKEN_A}")]);
        wait_until(at(0.8), &soak);
        rss.push(proxy.rss_kib());
        wait_until(at(1.0), &soak);
        rss.push(proxy.rss_kib());
        soak.stop.store(true, Ordering::Relaxed);
    });
    let failures = soak.failures.lock().unwrap();
    let checked = soak.checked.load(Ordering::Relaxed);
    let lost = soak.lost.load(Ordering::Relaxed);
    eprintln!("soak: {checked} scenarios checked, {lost} lost around restarts, RSS KiB {rss:?}");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked > 1000, "only {checked} scenarios ran");
    let (warm, end) = (rss[1], *rss.last().unwrap());
    assert!(
        end <= warm + warm / 5 + 4096,
        "RSS grew from {warm} KiB (after the first restart) to {end} KiB"
    );
}
