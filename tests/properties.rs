//! Property tests of the request and reply scanners, on generated traffic split at random
//! points, and on random bytes. Bounded (a few thousand cases, well under a second) and
//! seeded, so a failure names the seed that reproduces it. What the connection forwards for
//! any split is a property of the real core, tested in `src/connection/tests/model.rs`.

mod common;

use common::rng::Rng;
use redis_auth_proxy::resp::encode_request;
use redis_auth_proxy::resp::reply::{ReplyScanner, Scan};
use redis_auth_proxy::resp::request::{Command, RequestScanner, Step};

/// Scans `input` in the given chunks, keeping what the scanner has not consumed, and returns
/// the bytes it passes through (HELLO's rewritten) and the requests found, or the error.
fn scan_requests(input: &[u8], cuts: &[usize]) -> Result<(Vec<u8>, usize), String> {
    let mut scanner = RequestScanner::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    let mut requests = 0;
    let mut last = 0;
    for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
        buf.extend_from_slice(&input[last..cut]);
        last = cut;
        let mut pos = 0;
        loop {
            match scanner.step(&buf[pos..]).map_err(|e| e.to_string())? {
                Step::NeedMore => break,
                Step::Continue { len } => {
                    out.extend_from_slice(&buf[pos..pos + len]);
                    pos += len;
                }
                Step::Start { len, command } => {
                    requests += 1;
                    match command {
                        Command::Auth(_) => {}
                        Command::HelloWithAuth { rewritten, .. } => {
                            out.extend_from_slice(&rewritten)
                        }
                        _ => out.extend_from_slice(&buf[pos..pos + len]),
                    }
                    pos += len;
                }
            }
        }
        buf.drain(..pos);
    }
    Ok((out, requests))
}

fn cuts(rng: &mut Rng, len: usize) -> Vec<usize> {
    let mut cuts: Vec<usize> = (0..rng.below(8)).map(|_| rng.below(len + 1)).collect();
    cuts.sort_unstable();
    cuts
}

/// Random bytes never panic the request scanner, and the outcome does not depend on splits.
#[test]
fn random_bytes_never_panic_and_splits_do_not_matter() {
    for seed in 1..=3000u64 {
        let mut rng = Rng(seed);
        let mut input = rng.bytes(200);
        if rng.below(2) == 0 {
            // Mostly-valid traffic with one corrupted byte exercises the deeper states.
            input = encode_request(&[b"SET", b"k", &rng.bytes(50)]);
            let at = rng.below(input.len());
            input[at] = rng.next() as u8;
        }
        let whole = scan_requests(&input, &[]);
        let splits = cuts(&mut rng, input.len());
        assert_eq!(
            scan_requests(&input, &splits),
            whole,
            "seed {seed}: splits {splits:?}"
        );
    }
}

/// A generated RESP2/RESP3 reply, nested up to `depth`.
fn reply(rng: &mut Rng, depth: usize, out: &mut Vec<u8>) {
    let kind = if depth == 0 {
        rng.below(7)
    } else {
        rng.below(12)
    };
    match kind {
        0 => out.extend(b"+OK\r\n"),
        1 => out.extend(b"-ERR something\r\n"),
        2 => out.extend(format!(":{}\r\n", rng.next() as i32).as_bytes()),
        3 => {
            let value = rng.bytes(100);
            out.extend(format!("${}\r\n", value.len()).as_bytes());
            out.extend(value);
            out.extend(b"\r\n");
        }
        4 => out.extend(b"$-1\r\n"),
        5 => out.extend(b"_\r\n"),
        6 => out.extend(b",3.14\r\n"),
        7 | 8 => {
            let n = rng.below(4);
            out.extend(format!("*{n}\r\n").as_bytes());
            (0..n).for_each(|_| reply(rng, depth - 1, out));
        }
        9 => {
            let n = rng.below(3);
            out.extend(format!("%{n}\r\n").as_bytes());
            (0..2 * n).for_each(|_| reply(rng, depth - 1, out));
        }
        10 => {
            out.extend(b"|1\r\n+key\r\n");
            reply(rng, depth - 1, out);
            reply(rng, depth - 1, out);
        }
        _ => {
            let n = 1 + rng.below(3);
            out.extend(format!(">{n}\r\n").as_bytes());
            (0..n).for_each(|_| reply(rng, depth - 1, out));
        }
    }
}

fn reply_ends(input: &[u8], cuts: &[usize]) -> Result<Vec<usize>, String> {
    let mut scanner = ReplyScanner::new();
    let mut ends = Vec::new();
    let mut last = 0;
    for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
        let chunk = &input[last..cut];
        let mut pos = 0;
        while pos < chunk.len() {
            match scanner.scan(&chunk[pos..]).map_err(|e| e.to_string())? {
                Scan::End { len, .. } => {
                    pos += len;
                    ends.push(last + pos);
                }
                Scan::Partial => break,
            }
        }
        last = cut;
    }
    Ok(ends)
}

/// Reply boundaries are found at the same offsets however the bytes arrive, and the last one
/// is the end of the input.
#[test]
fn reply_boundaries_do_not_depend_on_splits() {
    for seed in 1..=2000u64 {
        let mut rng = Rng(seed);
        let mut input = Vec::new();
        for _ in 0..1 + rng.below(10) {
            reply(&mut rng, 3, &mut input);
        }
        let whole = reply_ends(&input, &[]).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert_eq!(whole.last(), Some(&input.len()), "seed {seed}");
        let splits = cuts(&mut rng, input.len());
        assert_eq!(
            reply_ends(&input, &splits).unwrap(),
            whole,
            "seed {seed}: splits {splits:?}"
        );
    }
}

/// Random bytes from a misbehaving server never panic the reply scanner.
#[test]
fn random_reply_bytes_never_panic() {
    for seed in 1..=3000u64 {
        let mut rng = Rng(seed);
        let input = rng.bytes(200);
        // Where garbage is detected may differ by a few bytes with the split; that it is, may not.
        let whole = reply_ends(&input, &[]).map_err(|_| ());
        let splits = cuts(&mut rng, input.len());
        let split = reply_ends(&input, &splits).map_err(|_| ());
        match (&whole, &split) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "seed {seed}"),
            (Err(()), Err(())) => {}
            _ => panic!("seed {seed}: {whole:?} unsplit, {split:?} split at {splits:?}"),
        }
    }
}
