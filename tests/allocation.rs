//! The forwarding hot path allocates nothing for requests and replies it passes through.

use redis_auth_proxy::resp::encode_request;
use redis_auth_proxy::resp::reply::{ReplyScanner, Scan};
use redis_auth_proxy::resp::request::{RequestScanner, Step};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    // Per thread: the test harness's other threads allocate whenever they like.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Scanning 1,000 pass-through requests and 3,000 replies makes no allocation at all.
#[test]
fn scanning_pass_through_traffic_allocates_nothing() {
    let mut requests = Vec::new();
    let mut replies = Vec::new();
    for i in 0..1000 {
        requests.extend(encode_request(&[
            b"SET",
            format!("k{i}").as_bytes(),
            &[b'v'; 100],
        ]));
        replies.extend(b"+OK\r\n$5\r\nhello\r\n*2\r\n:1\r\n$-1\r\n");
    }
    let (requests, replies) = (requests.as_slice(), replies.as_slice());
    // The reply scanner's stack of open arrays grows once per connection, not per reply.
    let mut reply_scanner = ReplyScanner::new();
    assert!(matches!(
        reply_scanner.scan(b"*1\r\n:1\r\n"),
        Ok(Scan::End { .. })
    ));
    let before = allocations();
    let mut scanner = RequestScanner::new();
    let mut pos = 0;
    while let Step::Start { len, .. } | Step::Continue { len } =
        scanner.step(&requests[pos..]).unwrap()
    {
        pos += len;
    }
    let mut at = 0;
    while let Scan::End { len, .. } = reply_scanner.scan(&replies[at..]).unwrap() {
        at += len;
        if at == replies.len() {
            break;
        }
    }
    let allocated = allocations() - before;
    assert_eq!((pos, at), (requests.len(), replies.len()));
    assert_eq!(
        allocated, 0,
        "allocations while scanning pass-through traffic"
    );
}

/// The connection core deciding about 1,000 pass-through requests and their replies, in reads
/// of 4 KiB, allocates nothing once its action lists have grown: it answers with ranges of
/// the bytes it was given.
#[test]
fn the_connection_core_allocates_nothing_for_pass_through_traffic() {
    // Following the primary remembers where each request in flight starts: a queue that
    // grows to the pipeline's depth once, then is reused.
    for follow_primary in [false, true] {
        let allocated = core_allocations(follow_primary);
        assert_eq!(
            allocated, 0,
            "allocations while deciding about pass-through traffic (--follow-primary={follow_primary})"
        );
    }
}

/// Allocations made while the core decides about 1,000 GETs and their replies, fed in 4 KiB
/// reads, after one such round as warm-up.
fn core_allocations(follow_primary: bool) -> usize {
    use redis_auth_proxy::connection::{Actions, Connection, Rules};
    use redis_auth_proxy::metrics::RouteMetrics;
    let mut requests = Vec::new();
    let mut replies = Vec::new();
    for i in 0..1000 {
        requests.extend(encode_request(&[b"GET", format!("k{i:03}").as_bytes()]));
        replies.extend(b"$5\r\nhello\r\n");
    }
    let metrics = RouteMetrics::new("allocation");
    let rules = Rules {
        client_passwords: None,
        username: None,
        metrics: &metrics,
        cluster: None,
        follow_primary,
    };
    let mut conn = Connection::new(rules);
    let mut actions = Actions::default();
    let mut round = |conn: &mut Connection<'_>| {
        let (mut fed_requests, mut fed_replies) = (0, 0);
        while fed_requests < requests.len() {
            let end = (fed_requests + 4096).min(requests.len());
            fed_requests += conn.on_requests(&requests[fed_requests..end], &mut actions);
            actions.clear();
            let end = (fed_replies + 4096).min(replies.len());
            fed_replies += conn.on_replies(&replies[fed_replies..end], &mut actions);
            actions.clear();
        }
        assert_eq!(fed_replies, replies.len());
        assert!(conn.wants().idle_closable);
    };
    // Warm up: the action lists, the reply scanner's stack and the queue of starts grow once.
    round(&mut conn);
    let before = allocations();
    round(&mut conn);
    allocations() - before
}
