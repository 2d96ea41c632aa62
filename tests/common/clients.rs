//! Clients of the proxy: the `redis` crate, a raw RESP socket, redis-cli, and HTTP to the
//! admin endpoint.

use super::*;

/// A `redis` crate connection with generous timeouts.
pub fn connect(url: &str) -> redis::Connection {
    let client = redis::Client::open(url).unwrap();
    let con = client.get_connection_with_timeout(PATIENCE).unwrap();
    con.set_read_timeout(Some(PATIENCE)).unwrap();
    con.set_write_timeout(Some(PATIENCE)).unwrap();
    con
}

/// A plain socket speaking raw RESP, for byte-exact checks.
pub struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream.set_nodelay(true).unwrap();
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Sends a request built from words.
    pub fn command(&mut self, words: &[&str]) {
        let args: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
        self.send(&redis_auth_proxy::resp::encode_request(&args));
    }

    /// Reads one reply and renders it the way redis-cli would (RESP3 aware).
    pub fn reply(&mut self) -> String {
        use redis_protocol::resp3::decode::complete::decode;
        loop {
            if let Some((frame, used)) = decode(&self.buf).unwrap_or_else(|e| {
                panic!(
                    "invalid RESP from the proxy ({e}): {:?}",
                    String::from_utf8_lossy(&self.buf)
                )
            }) {
                self.buf.drain(..used);
                return render(&frame);
            }
            let mut chunk = [0u8; 65536];
            let n = self.stream.read(&mut chunk).expect("read reply");
            assert!(
                n > 0,
                "connection closed while waiting for a reply; had {:?}",
                String::from_utf8_lossy(&self.buf)
            );
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The socket, for tests that drive it themselves.
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }

    /// Reads until the proxy closes the connection; returns what arrived.
    pub fn read_to_close(&mut self) -> String {
        let mut rest = Vec::new();
        let _ = self.stream.read_to_end(&mut rest);
        self.buf.extend_from_slice(&rest);
        String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned()
    }
}

/// A compact text for a RESP3 frame: `OK`, `(error) ...`, `(integer) 1`, `"bulk"`, `[a, b]`.
pub fn render(frame: &redis_protocol::resp3::types::OwnedFrame) -> String {
    use redis_protocol::resp3::types::OwnedFrame as F;
    let list = |items: &mut dyn Iterator<Item = String>| items.collect::<Vec<_>>().join(", ");
    match frame {
        F::SimpleString { data, .. } => String::from_utf8_lossy(data).into_owned(),
        F::SimpleError { data, .. } => format!("(error) {data}"),
        F::BlobError { data, .. } => format!("(error) {}", String::from_utf8_lossy(data)),
        F::Number { data, .. } => format!("(integer) {data}"),
        F::BlobString { data, .. } => format!("{:?}", String::from_utf8_lossy(data)),
        F::VerbatimString { data, .. } => format!("{:?}", String::from_utf8_lossy(data)),
        F::Null => "(nil)".into(),
        F::Boolean { data, .. } => format!("(boolean) {data}"),
        F::Double { data, .. } => format!("(double) {data}"),
        F::Array { data, .. } => format!("[{}]", list(&mut data.iter().map(render))),
        F::Push { data, .. } => format!("push[{}]", list(&mut data.iter().map(render))),
        F::Set { data, .. } => format!("set[{}]", list(&mut data.iter().map(render))),
        F::Map { data, .. } => {
            let mut pairs: Vec<String> = data
                .iter()
                .map(|(k, v)| format!("{}: {}", render(k), render(v)))
                .collect();
            pairs.sort();
            format!("{{{}}}", pairs.join(", "))
        }
        other => format!("{other:?}"),
    }
}

/// Runs redis-cli with `args`; panics if it cannot start.
pub fn redis_cli(args: &[&str]) -> Output {
    Command::new("redis-cli")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run redis-cli (is redis-tools installed?): {e}"))
}

/// Percent-encodes a URL query parameter's value (RFC 3986 unreserved characters as they are).
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A minimal HTTP/1.1 request to the admin endpoint: returns the status code and body.
pub fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("admin endpoint reachable");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    let status = reply.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = reply
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of one sample in a Prometheus exposition: `name` with all of `labels`; 0 if absent.
pub fn sample(exposition: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} "))
        })
        .filter(|line| {
            labels
                .iter()
                .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
