//! A stand-in for ElastiCache's IAM check, and a container-credentials endpoint feeding it.
//!
//! `Credentials` hands out AWS credentials over HTTP as ECS and EKS Pod Identity do
//! (`AWS_CONTAINER_CREDENTIALS_FULL_URI`), new at every fetch and living a set time.
//! `IamFront` is a TLS front that checks every AUTH token with its own SigV4 verifier (not the
//! proxy's signing code) against the secret of the access key it names, refuses expired or
//! wrong tokens with the server's WRONGPASS, relays everything else to a real redis-server,
//! and, like ElastiCache, cuts a connection a set time after its last AUTH.

pub mod sigv4;

use super::RedisServer;
use redis_protocol::resp2::types::BytesFrame;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The password of the ACL user the front logs in as once a token checks out.
const REAL_PASSWORD: &str = "iam-user-real-password-0123";
pub const REGION: &str = "eu-west-1";
pub const CACHE: &str = "test-cache";
pub const USER: &str = "iam-user";

/// Credentials issued, by access key.
#[derive(Clone)]
pub(super) struct Issued {
    pub(super) secret: String,
    pub(super) session_token: String,
    pub(super) expires: SystemTime,
}

#[derive(Default)]
pub struct Ledger {
    pub(super) issued: Mutex<HashMap<String, Issued>>,
    pub fetches: AtomicU64,
    /// The endpoint answers 500 while set.
    pub failing: AtomicBool,
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
    /// Access keys whose tokens were accepted.
    pub keys_used: Mutex<Vec<String>>,
    /// Connections the front cut for having gone too long without AUTH.
    pub cuts: AtomicU64,
    /// Per front connection, the AUTHs it accepted.
    pub auths_per_connection: Mutex<Vec<u64>>,
}

impl Ledger {
    /// Every secret the endpoint handed out: secret keys and session tokens.
    pub fn secrets(&self) -> Vec<String> {
        let issued = self.issued.lock().unwrap();
        issued
            .values()
            .flat_map(|i| [i.secret.clone(), i.session_token.clone()])
            .collect()
    }

    /// Accepts tokens signed with credentials another issuer handed out (moto's STS).
    pub fn learn(&self, key: &str, secret: &str, session_token: &str) {
        let issued = Issued {
            secret: secret.to_owned(),
            session_token: session_token.to_owned(),
            expires: SystemTime::now() + Duration::from_secs(3600),
        };
        self.issued.lock().unwrap().insert(key.to_owned(), issued);
    }

    /// Makes every credential issued so far invalid, as a revoked role session is.
    pub fn revoke_all(&self) {
        let mut issued = self.issued.lock().unwrap();
        for credentials in issued.values_mut() {
            credentials.expires = UNIX_EPOCH;
        }
    }
}

/// The endpoint and the front, on their own runtime.
pub struct IamStandIn {
    pub ledger: Arc<Ledger>,
    pub front: SocketAddr,
    pub credentials_url: String,
    pub authorization_file: tempfile::NamedTempFile,
    _runtime: tokio::runtime::Runtime,
}

impl IamStandIn {
    /// Credentials living `credentials_life`; the front cuts connections `cut_after` their
    /// last AUTH (`None`: never).
    pub fn start(
        redis: &RedisServer,
        credentials_life: Duration,
        cut_after: Option<Duration>,
    ) -> Self {
        redis.admin(&[
            "ACL",
            "SETUSER",
            USER,
            "on",
            &format!(">{REAL_PASSWORD}"),
            "~*",
            "&*",
            "+@all",
        ]);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let ledger = Arc::new(Ledger::default());
        let authorization = format!("pod-identity-token-{}", super::free_port());
        let mut authorization_file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut authorization_file, authorization.as_bytes()).unwrap();
        let http = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let credentials_url = format!("http://{}/v1/credentials", http.local_addr().unwrap());
        runtime.spawn(serve_credentials(
            http,
            Arc::clone(&ledger),
            credentials_life,
            authorization,
        ));
        let front = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let front_addr = front.local_addr().unwrap();
        let upstream = SocketAddr::from(([127, 0, 0, 1], redis.plain_port));
        runtime.spawn(serve_front(front, upstream, Arc::clone(&ledger), cut_after));
        IamStandIn {
            ledger,
            front: front_addr,
            credentials_url,
            authorization_file,
            _runtime: runtime,
        }
    }

    /// The proxy's environment: credentials from the container endpoint, nothing else.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                self.credentials_url.clone(),
            ),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                self.authorization_file.path().display().to_string(),
            ),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("AWS_CONFIG_FILE", "/nonexistent".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent".into()),
        ]
    }

    /// The proxy's IAM flags for this stand-in.
    pub fn args(&self) -> Vec<String> {
        [
            "--iam-service",
            "elasticache",
            "--iam-cache-name",
            CACHE,
            "--username",
            USER,
            "--iam-region",
            REGION,
            "--tls-server-name",
            "localhost",
        ]
        .map(str::to_owned)
        .to_vec()
    }
}

async fn serve_credentials(
    listener: tokio::net::TcpListener,
    ledger: Arc<Ledger>,
    life: Duration,
    authorization: String,
) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        let ledger = Arc::clone(&ledger);
        let authorization = authorization.clone();
        tokio::spawn(async move {
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let request = String::from_utf8_lossy(&request).to_ascii_lowercase();
            let authorised = request.contains(&format!(
                "authorization: {}",
                authorization.to_ascii_lowercase()
            ));
            let (status, body) = if ledger.failing.load(Ordering::SeqCst) {
                ("500 Internal Server Error", "{}".to_owned())
            } else if !authorised {
                ("403 Forbidden", "{}".to_owned())
            } else {
                ("200 OK", issue(&ledger, life))
            };
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}

fn issue(ledger: &Ledger, life: Duration) -> String {
    let n = ledger.fetches.fetch_add(1, Ordering::SeqCst);
    let mut rng = super::rng::Rng((n ^ u64::from(std::process::id()) ^ nanos()) | 1);
    let mut word = |len: usize| -> String {
        (0..len)
            .map(|_| char::from(b'A' + (rng.below(26) as u8)))
            .collect()
    };
    let key = format!("ASIA{n:04}{}", word(12));
    let issued = Issued {
        secret: word(40),
        session_token: format!("{}/{}+{}=", word(30), word(30), word(20)),
        expires: SystemTime::now() + life,
    };
    let body = serde_json::json!({
        "AccessKeyId": key,
        "SecretAccessKey": issued.secret,
        "Token": issued.session_token,
        "Expiration": sigv4::rfc3339(issued.expires),
        "RoleArn": "arn:aws:iam::123456789012:role/test",
    });
    ledger.issued.lock().unwrap().insert(key, issued);
    body.to_string()
}

fn nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        .into()
}

async fn serve_front(
    listener: tokio::net::TcpListener,
    upstream: SocketAddr,
    ledger: Arc<Ledger>,
    cut_after: Option<Duration>,
) {
    let acceptor = super::tls_acceptor();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let acceptor = acceptor.clone();
        let ledger = Arc::clone(&ledger);
        tokio::spawn(async move {
            let Ok(client) = acceptor.accept(stream).await else {
                return;
            };
            let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                return;
            };
            front_connection(client, server, ledger, cut_after).await;
        });
    }
}

async fn front_connection(
    client: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    server: tokio::net::TcpStream,
    ledger: Arc<Ledger>,
    cut_after: Option<Duration>,
) {
    let index = {
        let mut per = ledger.auths_per_connection.lock().unwrap();
        per.push(0);
        per.len() - 1
    };
    let (mut client_r, mut client_w) = tokio::io::split(client);
    let (mut server_r, mut server_w) = server.into_split();
    let replies = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_r, &mut client_w).await;
        let _ = client_w.shutdown().await;
    });
    let mut buf = bytes::BytesMut::new();
    let mut last_auth = tokio::time::Instant::now();
    let far = Duration::from_secs(100 * 365 * 86_400);
    loop {
        let cut = tokio::time::sleep_until(last_auth + cut_after.unwrap_or(far));
        let read = tokio::select! {
            read = client_r.read_buf(&mut buf) => read,
            () = cut => {
                ledger.cuts.fetch_add(1, Ordering::SeqCst);
                break;
            }
        };
        match read {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        while let Ok(Some((frame, _, raw))) =
            redis_protocol::resp2::decode::decode_bytes_mut(&mut buf)
        {
            let out = match check_auth(&frame, &ledger) {
                Some(true) => {
                    last_auth = tokio::time::Instant::now();
                    ledger.auths_per_connection.lock().unwrap()[index] += 1;
                    auth(USER, REAL_PASSWORD)
                }
                Some(false) => auth(USER, "not-the-password"),
                None => raw.to_vec(),
            };
            if server_w.write_all(&out).await.is_err() {
                break;
            }
        }
    }
    replies.abort();
}

/// `AUTH user password`, encoded; the fronts send it to the real server.
pub(super) fn auth(user: &str, password: &str) -> Vec<u8> {
    format!(
        "*3\r\n$4\r\nAUTH\r\n${}\r\n{user}\r\n${}\r\n{password}\r\n",
        user.len(),
        password.len()
    )
    .into_bytes()
}

/// `Some(valid)` for `AUTH user token`; `None` for anything else.
fn check_auth(frame: &BytesFrame, ledger: &Ledger) -> Option<bool> {
    let BytesFrame::Array(parts) = frame else {
        return None;
    };
    let word = |i: usize| match parts.get(i) {
        Some(BytesFrame::BulkString(b)) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    };
    if !word(0)?.eq_ignore_ascii_case("auth") || parts.len() != 3 {
        return None;
    }
    let valid = word(1)? == USER && sigv4::verify(&word(2)?, ledger).is_ok();
    let counter = if valid {
        &ledger.accepted
    } else {
        &ledger.refused
    };
    counter.fetch_add(1, Ordering::SeqCst);
    Some(valid)
}
