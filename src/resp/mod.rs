//! Just enough RESP for a proxy: request and reply boundaries, and the few frames it writes.

pub mod reply;
pub mod request;

/// A malformed client request, worded as Redis words it (`-ERR Protocol error: ...`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    #[error("Protocol error: expected '$', got '{}'", char::from(*.0))]
    ExpectedDollar(u8),
    #[error("Protocol error: too big mbulk count string")]
    TooBigMultibulkCount,
    #[error("Protocol error: too big bulk count string")]
    TooBigBulkCount,
    #[error("Protocol error: too big inline request")]
    TooBigInline,
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    #[error(
        "Protocol error: AUTH, HELLO, CLIENT REPLY, CLIENT TRACKING or CLUSTER request larger than 65536 bytes"
    )]
    TooBigInspected,
    #[error("Protocol error: unauthenticated multibulk length")]
    UnauthenticatedMultibulkLength,
    #[error("Protocol error: unauthenticated bulk length")]
    UnauthenticatedBulkLength,
}

/// Skips up to `*left` payload bytes of the `available` at hand; returns how many it skipped.
/// Both scanners step over bulk payloads this way, by length, never looking at them.
fn skip_payload(left: &mut u64, available: usize) -> usize {
    let take = (*left).min(available as u64);
    *left -= take;
    take as usize
}

/// Encodes a request as a RESP array of bulk strings.
pub fn encode_request(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Encodes an error reply; CR and LF in the text would end the frame early, so they become spaces.
pub fn error_reply(text: &str) -> Vec<u8> {
    let clean: String = text
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect();
    format!("-{clean}\r\n").into_bytes()
}
