//! The per-request hot path: finding request and reply boundaries and classifying commands.
//! Run with `cargo bench --bench scan`; divan reports time, bytes/s and allocations per run.

use divan::counter::BytesCount;
use divan::{AllocProfiler, Bencher, black_box};
use redis_auth_proxy::resp::encode_request;
use redis_auth_proxy::resp::reply::{ReplyScanner, Scan};
use redis_auth_proxy::resp::request::{RequestScanner, Step};

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

fn main() {
    divan::main();
}

/// 1,000 pipelined `SET key:<n> <value>` requests.
fn set_pipeline(value_len: usize) -> Vec<u8> {
    let value = vec![b'x'; value_len];
    let mut out = Vec::new();
    for i in 0..1000 {
        out.extend(encode_request(&[
            b"SET",
            format!("key:{i}").as_bytes(),
            &value,
        ]));
    }
    out
}

fn scan_requests(input: &[u8]) -> usize {
    let mut scanner = RequestScanner::new();
    let (mut pos, mut requests) = (0, 0);
    loop {
        match scanner.step(&input[pos..]).unwrap() {
            Step::NeedMore => return requests,
            Step::Start { len, .. } => {
                requests += 1;
                pos += len;
            }
            Step::Continue { len } => pos += len,
        }
    }
}

/// Scanning a pipeline of pass-through SETs: no allocation per request.
#[divan::bench(args = [64, 1024, 16384])]
fn requests(bencher: Bencher, value_len: usize) {
    let input = set_pipeline(value_len);
    bencher
        .counter(BytesCount::of_slice(&input))
        .bench(|| assert_eq!(scan_requests(black_box(&input)), 1000));
}

/// Scanning 1,000 GET replies (bulk strings) of the given size.
#[divan::bench(args = [64, 1024, 16384])]
fn replies(bencher: Bencher, value_len: usize) {
    let mut input = Vec::new();
    for _ in 0..1000 {
        input.extend(format!("${value_len}\r\n").as_bytes());
        input.extend(std::iter::repeat_n(b'x', value_len));
        input.extend(b"\r\n");
    }
    bencher.counter(BytesCount::of_slice(&input)).bench(|| {
        let mut scanner = ReplyScanner::new();
        let (mut pos, mut frames) = (0, 0);
        while pos < input.len() {
            if let Scan::End { len, .. } = scanner.scan(black_box(&input[pos..])).unwrap() {
                pos += len;
                frames += 1;
            } else {
                break;
            }
        }
        assert_eq!(frames, 1000);
    });
}

/// A pipeline that holds the commands the proxy intercepts, for comparison.
#[divan::bench]
fn requests_with_auth_and_hello(bencher: Bencher) {
    let mut input = Vec::new();
    for _ in 0..500 {
        input.extend(encode_request(&[b"AUTH", b"user", b"password"]));
        input.extend(encode_request(&[
            b"HELLO", b"3", b"AUTH", b"u", b"p", b"SETNAME", b"n",
        ]));
    }
    bencher
        .counter(BytesCount::of_slice(&input))
        .bench(|| assert_eq!(scan_requests(black_box(&input)), 1000));
}

/// The connection core deciding about 1,000 pass-through SETs and their `+OK` replies, fed in
/// 16 KiB reads as `forward` feeds it: ranges of the input, no copy, no allocation.
#[divan::bench(args = [64, 1024])]
fn connection_core(bencher: Bencher, value_len: usize) {
    core(bencher, value_len, false);
}

/// The same with `--follow-primary`: where each request in flight starts is remembered.
#[divan::bench(args = [64, 1024])]
fn connection_core_following_the_primary(bencher: Bencher, value_len: usize) {
    core(bencher, value_len, true);
}

fn core(bencher: Bencher, value_len: usize, follow_primary: bool) {
    use redis_auth_proxy::connection::{Actions, Connection, Rules};
    use redis_auth_proxy::metrics::RouteMetrics;
    let requests = set_pipeline(value_len);
    let replies = b"+OK\r\n".repeat(1000);
    let metrics = RouteMetrics::new("bench");
    let rules = Rules {
        client_passwords: None,
        username: None,
        metrics: &metrics,
        cluster: None,
        follow_primary,
    };
    let mut actions = Actions::default();
    bencher
        .counter(BytesCount::new(requests.len() + replies.len()))
        .bench_local(|| {
            let mut conn = Connection::new(rules);
            let mut pos = 0;
            while pos < requests.len() {
                // A read ends anywhere; what the core did not take is offered again.
                let end = (pos + 16 * 1024).min(requests.len());
                pos += conn.on_requests(black_box(&requests[pos..end]), &mut actions);
                actions.clear();
            }
            for chunk in replies.chunks(16 * 1024) {
                conn.on_replies(black_box(chunk), &mut actions);
                actions.clear();
            }
        });
}
