//! The real connection fed random request and reply streams split at random points, with IAM
//! renewals slipped in wherever the connection allows one, checked against what a client of a
//! direct connection would see. Seeded: a failure names its seed.

use super::*;
use crate::resp::reply::{FrameKind, ReplyScanner, Scan};

/// xorshift64*: small, fast, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn text(&mut self, max: usize) -> String {
        let len = self.below(max + 1);
        (0..len)
            .map(|_| char::from(b'a' + self.below(26) as u8))
            .collect()
    }
}

/// One client request: its bytes, what the server must receive for it, the server's reply to
/// that (if it gets one), and what the client must see.
struct Exchange {
    request: Vec<u8>,
    forwarded: Vec<u8>,
    reply: Option<Vec<u8>>,
    seen: Option<Vec<u8>>,
}

fn bulk(text: &str) -> Vec<u8> {
    format!("${}\r\n{text}\r\n", text.len()).into_bytes()
}

fn exchange(rng: &mut Rng, i: usize) -> Exchange {
    let plain = |request: Vec<u8>, reply: Vec<u8>| Exchange {
        forwarded: request.clone(),
        request,
        reply: Some(reply.clone()),
        seen: Some(reply),
    };
    match rng.below(10) {
        0 => {
            let value = format!("{i}-{}", rng.text(3000));
            plain(req(&["GET", &format!("k{i}")]), bulk(&value))
        }
        1 => plain(req(&["SET", "k", &rng.text(300)]), b"+OK\r\n".to_vec()),
        2 => plain(b"PING\r\n".to_vec(), b"+PONG\r\n".to_vec()),
        3 => plain(req(&["RESET"]), b"+RESET\r\n".to_vec()),
        4 | 5 => Exchange {
            request: req(&["AUTH", &rng.text(40)]),
            forwarded: Vec::new(),
            reply: None,
            seen: Some(b"+OK\r\n".to_vec()),
        },
        6 => {
            let hello = req(&[
                "HELLO",
                "3",
                "AUTH",
                "default",
                &rng.text(20),
                "SETNAME",
                "n",
            ]);
            let reply = b"%1\r\n$5\r\nproto\r\n:3\r\n".to_vec();
            Exchange {
                request: hello,
                forwarded: req(&["HELLO", "3", "SETNAME", "n"]),
                reply: Some(reply.clone()),
                seen: Some(reply),
            }
        }
        9 => {
            // Another ACL user: the server decides, after every earlier reply.
            let wrongpass = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n";
            plain(req(&["AUTH", "bob", &rng.text(10)]), wrongpass.to_vec())
        }
        7 => Exchange {
            request: b"*0\r\n".to_vec(),
            forwarded: b"*0\r\n".to_vec(),
            reply: None,
            seen: None,
        },
        _ => {
            let reply = cat(&[b"|1\r\n+ttl\r\n:9\r\n", &bulk(&rng.text(20))]);
            plain(req(&["GET", "annotated"]), reply)
        }
    }
}

fn push(rng: &mut Rng) -> Vec<u8> {
    cat(&[b">2\r\n$10\r\ninvalidate\r\n", &bulk(&rng.text(2000))])
}

/// Top-level frames of `stream`, an attribute joined to the reply it annotates.
fn frames(stream: &[u8]) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut scanner = ReplyScanner::new();
    let (mut replies, mut pushes) = (Vec::new(), Vec::new());
    let (mut pos, mut start) = (0, 0);
    while pos < stream.len() {
        match scanner
            .scan(&stream[pos..])
            .expect("the client sees valid RESP")
        {
            Scan::Partial => panic!("the client's stream ends inside a frame"),
            Scan::End { len, kind } => {
                pos += len;
                match kind {
                    FrameKind::Attribute => continue,
                    FrameKind::Push => pushes.push(stream[start..pos].to_vec()),
                    FrameKind::Reply => replies.push(stream[start..pos].to_vec()),
                }
                start = pos;
            }
        }
    }
    (replies, pushes)
}

/// Runs one case; returns how many IAM renewals it slipped in.
fn run_case(seed: u64) -> usize {
    let mut rng = Rng(seed);
    let exchanges: Vec<Exchange> = (0..1 + rng.below(30))
        .map(|i| exchange(&mut rng, i))
        .collect();
    let client_bytes: Vec<u8> = exchanges.iter().flat_map(|e| e.request.clone()).collect();
    // What the server sends, in order: a reply may go once its request has fully arrived.
    let mut script: Vec<(Option<usize>, Vec<u8>)> = Vec::new();
    let mut pushes = Vec::new();
    let mut received_by = 0;
    for e in &exchanges {
        received_by += e.forwarded.len();
        if rng.below(4) == 0 {
            let p = push(&mut rng);
            pushes.push(p.clone());
            script.push((None, p));
        }
        if let Some(reply) = &e.reply {
            script.push((Some(received_by), reply.clone()));
        }
    }

    let mut wire = Wire::new();
    let (mut sent, mut next) = (0, 0);
    let mut out = Vec::new();
    let mut steps = 0;
    // IAM renewals the proxy slipped in: where each AUTH went in the server's stream.
    let mut renewals: Vec<usize> = Vec::new();
    while sent < client_bytes.len() || next < script.len() || !out.is_empty() {
        steps += 1;
        assert!(steps < 100_000, "seed {seed}: no progress");
        if wire.conn.wants().side_trip == Some(SideTrip::Reauthenticate) {
            wire.reauthenticated(Ok(()));
        }
        if rng.below(4) == 0 && wire.renew() {
            renewals.push(wire.server.len() - PROXY_AUTH.len());
            out.extend_from_slice(b"+OK\r\n");
        }
        if let Some(accepted) = wire.conn.take_renewal() {
            assert!(accepted, "seed {seed}: a renewal's answer was not its +OK");
        }
        let extra = renewals.len() * PROXY_AUTH.len();
        while next < script.len()
            && script[next]
                .0
                .is_none_or(|by| wire.server.len() - extra >= by)
        {
            out.extend_from_slice(&script[next].1);
            next += 1;
        }
        if rng.below(2) == 0 && sent < client_bytes.len() {
            let n = 1 + rng.below((client_bytes.len() - sent).min(4000));
            wire.client_sends(&client_bytes[sent..sent + n]);
            sent += n;
        } else if !out.is_empty() {
            let n = 1 + rng.below(out.len().min(4000));
            wire.server_sends(&out[..n]);
            out.drain(..n);
        }
    }
    if wire.conn.wants().side_trip == Some(SideTrip::Reauthenticate) {
        wire.reauthenticated(Ok(()));
    }

    let forwarded: Vec<u8> = exchanges.iter().flat_map(|e| e.forwarded.clone()).collect();
    for at in renewals.iter().rev() {
        assert_eq!(&wire.server[*at..*at + PROXY_AUTH.len()], PROXY_AUTH);
        wire.server.drain(*at..*at + PROXY_AUTH.len());
    }
    assert!(
        wire.server == forwarded,
        "seed {seed}: the server got other bytes"
    );
    let (replies, seen_pushes) = frames(&wire.client);
    let expected: Vec<Vec<u8>> = exchanges.iter().filter_map(|e| e.seen.clone()).collect();
    assert!(
        replies == expected,
        "seed {seed}: the client's replies differ"
    );
    assert!(
        seen_pushes == pushes,
        "seed {seed}: the client's pushes differ"
    );
    assert!(
        wire.conn.wants().idle_closable,
        "seed {seed}: something still owed"
    );
    renewals.len()
}

#[test]
fn random_streams_split_anywhere_reach_each_side_as_on_a_direct_connection() {
    let renewals: usize = (1..=400u64)
        .map(|seed| run_case(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
        .sum();
    assert!(renewals > 100, "only {renewals} renewals were tried");
}
