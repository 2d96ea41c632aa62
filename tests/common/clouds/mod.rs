//! Stand-ins for what only Azure and Google Cloud have, written here, never the proxy's code:
//!
//! - `entra`: an Entra ID token endpoint (TLS, the test CA) for the workload-identity and
//!   client-secret grants, and App Service- and IMDS-style managed identity endpoints, all
//!   issuing HS256 JWTs with an `oid` and a lifetime of seconds;
//! - `google`: a metadata server and a service-account token endpoint that verifies each
//!   assertion's RS256 signature with the key's public half;
//! - `TokenFront` (here): a TLS front for a real redis-server that checks every AUTH with the
//!   stand-in's own check, closes a connection the moment the token that last authenticated it
//!   expires (as Entra ID does), and can throttle new connections with Memorystore's
//!   `ERR_IAM_EXHAUSTED`.

pub mod entra;
pub mod google;
mod http;

use super::RedisServer;
use redis_protocol::resp2::types::BytesFrame;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The ACL user the front logs in as once a token checks out.
const FRONT_USER: &str = "cloud-user";
const FRONT_PASSWORD: &str = "cloud-user-real-password-0123";

/// What a stand-in says of the words after AUTH: `Some(expiry)` if they check out.
pub type Check = dyn Fn(&[String]) -> Option<SystemTime> + Send + Sync;

/// What the front saw.
#[derive(Default)]
pub struct FrontLedger {
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
    /// Connections closed because the token that last authenticated them expired.
    pub expired_closes: AtomicU64,
    /// AUTHs answered `ERR_IAM_EXHAUSTED`.
    pub throttled: AtomicU64,
    /// Per front connection, the AUTHs it accepted.
    pub auths_per_connection: Mutex<Vec<u64>>,
}

/// A bucket of first AUTHs: `capacity`, refilled at `per_second`.
#[derive(Clone, Copy)]
pub struct Throttle {
    pub capacity: f64,
    pub per_second: f64,
}

struct Bucket {
    throttle: Throttle,
    level: f64,
    at: Instant,
}

impl Bucket {
    fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * self.throttle.per_second;
        self.level = (self.level + refill).min(self.throttle.capacity);
        self.at = now;
        if self.level >= 1.0 {
            self.level -= 1.0;
            true
        } else {
            false
        }
    }
}

pub struct TokenFront {
    pub addr: SocketAddr,
    pub ledger: Arc<FrontLedger>,
    _runtime: tokio::runtime::Runtime,
}

impl TokenFront {
    /// A front for `redis` checking AUTHs with `check`; `close_at_expiry` as Entra ID does;
    /// `throttle` the first AUTH of new connections as Memorystore does.
    pub fn start(
        redis: &RedisServer,
        check: Arc<Check>,
        close_at_expiry: bool,
        throttle: Option<Throttle>,
    ) -> Self {
        redis.admin(&[
            "ACL",
            "SETUSER",
            FRONT_USER,
            "on",
            &format!(">{FRONT_PASSWORD}"),
            "~*",
            "&*",
            "+@all",
        ]);
        let runtime = runtime(2);
        let listener = bind(&runtime);
        let addr = listener.local_addr().unwrap();
        let ledger = Arc::new(FrontLedger::default());
        let upstream = SocketAddr::from(([127, 0, 0, 1], redis.plain_port));
        let bucket = throttle.map(|throttle| {
            Arc::new(Mutex::new(Bucket {
                throttle,
                level: throttle.capacity,
                at: Instant::now(),
            }))
        });
        let shared = Arc::new(Shared {
            check,
            ledger: Arc::clone(&ledger),
            close_at_expiry,
            bucket,
        });
        runtime.spawn(accept(listener, upstream, shared));
        TokenFront {
            addr,
            ledger,
            _runtime: runtime,
        }
    }
}

struct Shared {
    check: Arc<Check>,
    ledger: Arc<FrontLedger>,
    close_at_expiry: bool,
    bucket: Option<Arc<Mutex<Bucket>>>,
}

async fn accept(listener: tokio::net::TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    let acceptor = super::tls_acceptor();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let (acceptor, shared) = (acceptor.clone(), Arc::clone(&shared));
        tokio::spawn(async move {
            let Ok(client) = acceptor.accept(stream).await else {
                return;
            };
            let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                return;
            };
            connection(client, server, &shared).await;
        });
    }
}

type Client = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;

/// The AUTH in a frame: its words after the command name.
fn auth_words(frame: &BytesFrame) -> Option<Vec<String>> {
    let BytesFrame::Array(parts) = frame else {
        return None;
    };
    let words: Vec<String> = parts
        .iter()
        .map(|p| match p {
            BytesFrame::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            _ => String::new(),
        })
        .collect();
    words
        .first()
        .filter(|w| w.eq_ignore_ascii_case("auth"))
        .map(|_| words[1..].to_vec())
}

/// Answers throttled first AUTHs itself (the proxy sends its first AUTH alone), then relays.
async fn connection(client: Client, server: tokio::net::TcpStream, shared: &Shared) {
    let (mut client_r, mut client_w) = tokio::io::split(client);
    let mut buf = bytes::BytesMut::new();
    if let Some(bucket) = &shared.bucket {
        loop {
            let frame = loop {
                if let Ok(Some((frame, _, _))) =
                    redis_protocol::resp2::decode::decode_bytes_mut(&mut buf.clone())
                {
                    break frame;
                }
                match client_r.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            };
            if auth_words(&frame).is_none() || bucket.lock().unwrap().take() {
                break;
            }
            let _ = redis_protocol::resp2::decode::decode_bytes_mut(&mut buf);
            shared.ledger.throttled.fetch_add(1, Ordering::SeqCst);
            let reply =
                b"-ERR (ERR_IAM_EXHAUSTED) Memorystore IAM authentication backend quota exceeded.\r\n";
            if client_w.write_all(reply).await.is_err() {
                return;
            }
        }
    }
    relay(client_r, client_w, buf, server, shared).await;
}

async fn relay(
    mut client_r: tokio::io::ReadHalf<Client>,
    mut client_w: tokio::io::WriteHalf<Client>,
    mut buf: bytes::BytesMut,
    server: tokio::net::TcpStream,
    shared: &Shared,
) {
    let ledger = &shared.ledger;
    let index = {
        let mut per = ledger.auths_per_connection.lock().unwrap();
        per.push(0);
        per.len() - 1
    };
    let (mut server_r, mut server_w) = server.into_split();
    let replies = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_r, &mut client_w).await;
        let _ = client_w.shutdown().await;
    });
    let far = tokio::time::Instant::now() + Duration::from_secs(100 * 365 * 86_400);
    let mut deadline = far;
    loop {
        while let Ok(Some((frame, _, raw))) =
            redis_protocol::resp2::decode::decode_bytes_mut(&mut buf)
        {
            let out = match auth_words(&frame).map(|words| (shared.check)(&words)) {
                Some(Some(expires)) => {
                    ledger.accepted.fetch_add(1, Ordering::SeqCst);
                    ledger.auths_per_connection.lock().unwrap()[index] += 1;
                    if shared.close_at_expiry {
                        let left = expires
                            .duration_since(SystemTime::now())
                            .unwrap_or_default();
                        deadline = tokio::time::Instant::now() + left;
                    }
                    super::iam::auth(FRONT_USER, FRONT_PASSWORD)
                }
                Some(None) => {
                    ledger.refused.fetch_add(1, Ordering::SeqCst);
                    super::iam::auth(FRONT_USER, "not-the-password")
                }
                None => raw.to_vec(),
            };
            if server_w.write_all(&out).await.is_err() {
                replies.abort();
                return;
            }
        }
        let read = tokio::select! {
            read = client_r.read_buf(&mut buf) => read,
            () = tokio::time::sleep_until(deadline) => {
                ledger.expired_closes.fetch_add(1, Ordering::SeqCst);
                break;
            }
        };
        if matches!(read, Ok(0) | Err(_)) {
            break;
        }
    }
    replies.abort();
}

/// A stand-in's own runtime, so that it serves while the test blocks.
fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap()
}

/// A listener on an ephemeral loopback port, bound on `runtime`.
fn bind(runtime: &tokio::runtime::Runtime) -> tokio::net::TcpListener {
    runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap()
}

/// A random word for tokens, secrets and ids.
pub fn word(len: usize) -> String {
    let seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut rng = super::rng::Rng((seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1);
    (0..len)
        .map(|_| char::from(b'a' + rng.below(26) as u8))
        .collect()
}
