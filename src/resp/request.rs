//! Finds request boundaries in the client's byte stream the way Redis's own parser does
//! (`processMultibulkBuffer` / `processInlineBuffer`), without copying what it passes through.
//!
//! The scanner reads only what it must: the command name of every request, and the whole of the
//! few requests the proxy answers or rewrites (AUTH, HELLO, CLIENT). Everything else is reported
//! as a byte count to forward, and a large argument is streamed: the scanner remembers how many
//! payload bytes are still to come instead of waiting for them.

use super::ProtocolError;
use classify::needs_whole_request;
use classify::{classify_by_args, classify_by_name, classify_subcommand, has_subcommands};
pub use command::{ClientCredentials, Command, ReplyMode};
pub use inline::split_args;
use inline::start_inline;

/// Redis's `PROTO_INLINE_MAX_SIZE`: the longest inline request, or header line without CR.
pub const MAX_INLINE: usize = 64 * 1024;
/// Redis's default `proto-max-bulk-len`.
const MAX_BULK: i64 = 512 * 1024 * 1024;
/// The largest AUTH / HELLO / CLIENT request the proxy buffers whole to inspect.
pub const MAX_INSPECTED: usize = 64 * 1024;
/// Redis's limits on a multibulk request from a client that has not authenticated.
const UNAUTHENTICATED_MAX_ARGS: i64 = 10;
const UNAUTHENTICATED_MAX_BULK: i64 = 16 * 1024;

/// One step of scanning.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// A request starts here; `len` bytes of it are available and, if `command.passes_through()`,
    /// may be forwarded as they are. For intercepted commands the request is complete.
    Start { len: usize, command: Command },
    /// `len` more bytes of the request last started.
    Continue { len: usize },
    /// Nothing can be decided until more bytes arrive; the unscanned bytes must be kept.
    NeedMore,
}

/// A resumable request scanner. One per client connection; it holds no buffer.
#[derive(Debug, Default)]
pub struct RequestScanner {
    /// Arguments of the current pass-through request whose headers are still to come.
    args_left: u64,
    /// Payload bytes (plus the two trailing bytes) of the current argument still to come.
    skip: u64,
    /// Apply Redis's tighter limits for clients that have not authenticated.
    unauthenticated: bool,
}

impl RequestScanner {
    pub fn new() -> Self {
        Self::default()
    }

    /// Until the client authenticates (with `--client-password-file`), a request may have at
    /// most 10 arguments of at most 16 KiB each, as Redis allows an unauthenticated client.
    pub fn set_unauthenticated(&mut self, unauthenticated: bool) {
        self.unauthenticated = unauthenticated;
    }

    pub fn unauthenticated(&self) -> bool {
        self.unauthenticated
    }

    fn check_count(&self, count: i64) -> Result<(), ProtocolError> {
        if self.unauthenticated && count > UNAUTHENTICATED_MAX_ARGS {
            return Err(ProtocolError::UnauthenticatedMultibulkLength);
        }
        Ok(())
    }

    fn check_bulk(&self, len: i64) -> Result<(), ProtocolError> {
        if self.unauthenticated && len > UNAUTHENTICATED_MAX_BULK {
            return Err(ProtocolError::UnauthenticatedBulkLength);
        }
        Ok(())
    }

    /// True between requests.
    pub fn at_boundary(&self) -> bool {
        self.args_left == 0 && self.skip == 0
    }

    /// Scans the start of `buf`, which holds the bytes not yet reported.
    pub fn step(&mut self, buf: &[u8]) -> Result<Step, ProtocolError> {
        if buf.is_empty() {
            return Ok(Step::NeedMore);
        }
        if !self.at_boundary() {
            let len = self.stream(buf)?;
            return Ok(if len == 0 {
                Step::NeedMore
            } else {
                Step::Continue { len }
            });
        }
        if buf[0] == b'*' {
            self.start_multibulk(buf)
        } else {
            start_inline(buf)
        }
    }

    fn start_multibulk(&mut self, buf: &[u8]) -> Result<Step, ProtocolError> {
        let Some((count, mut pos)) = read_header(buf, 0, Header::Multibulk)? else {
            return Ok(Step::NeedMore);
        };
        self.check_count(count)?;
        if count <= 0 {
            return Ok(Step::Start {
                len: pos,
                command: Command::Empty,
            });
        }
        let Some((name_len, name_start)) = read_header(buf, pos, Header::Bulk)? else {
            return Ok(Step::NeedMore);
        };
        self.check_bulk(name_len)?;
        let name = if name_len <= 16 {
            let end = name_start + name_len as usize;
            if buf.len() < end + 2 {
                return Ok(Step::NeedMore);
            }
            Some(&buf[name_start..end])
        } else {
            None
        };
        let command = match name {
            Some(name) if has_subcommands(name) && count >= 2 => {
                let Some(sub) = read_short_arg(buf, name_start + name_len as usize + 2)? else {
                    return Ok(Step::NeedMore);
                };
                match sub.map(|sub| classify_subcommand(name, sub)) {
                    Some(None) => return self.inspect_multibulk(buf, count as u64),
                    Some(Some(command)) => command,
                    None => Command::Other,
                }
            }
            Some(name) if needs_whole_request(name, count) => {
                return self.inspect_multibulk(buf, count as u64);
            }
            Some(name) => classify_by_name(name, count),
            None => Command::Other,
        };
        pos = name_start;
        self.args_left = count as u64 - 1;
        self.skip = name_len as u64 + 2;
        pos += self.stream(&buf[pos..])?;
        Ok(Step::Start { len: pos, command })
    }

    /// Consumes as much of the current pass-through request as `buf` holds.
    fn stream(&mut self, buf: &[u8]) -> Result<usize, ProtocolError> {
        let mut pos = 0;
        loop {
            if self.skip > 0 {
                pos += super::skip_payload(&mut self.skip, buf.len() - pos);
                if self.skip > 0 {
                    return Ok(pos);
                }
            }
            if self.args_left == 0 {
                return Ok(pos);
            }
            match read_header(buf, pos, Header::Bulk)? {
                None => return Ok(pos),
                Some((len, payload)) => {
                    self.check_bulk(len)?;
                    self.args_left -= 1;
                    self.skip = len as u64 + 2;
                    pos = payload;
                }
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Header {
    Multibulk,
    Bulk,
}

/// Reads `*<n>\r\n` or `$<n>\r\n` at `pos`; returns the number and the offset after the line.
/// Like Redis, it looks for the CR and skips one more byte without checking it.
fn read_header(
    buf: &[u8],
    pos: usize,
    kind: Header,
) -> Result<Option<(i64, usize)>, ProtocolError> {
    let Some(&first) = buf.get(pos) else {
        return Ok(None);
    };
    // As in Redis, the line's end is found before its first byte is checked: `\0\r\n` where a
    // `$` belongs waits for more, as `strchr` stops at the NUL.
    let window = &buf[pos..buf.len().min(pos + MAX_INLINE)];
    let Some(cr) = strchr(b'\r', window) else {
        if buf.len() - pos >= MAX_INLINE {
            return Err(match kind {
                Header::Multibulk => ProtocolError::TooBigMultibulkCount,
                Header::Bulk => ProtocolError::TooBigBulkCount,
            });
        }
        return Ok(None);
    };
    if pos + cr + 2 > buf.len() {
        return Ok(None);
    }
    if let Header::Bulk = kind
        && first != b'$'
    {
        return Err(ProtocolError::ExpectedDollar(first));
    }
    let number = parse_i64(&window[1..cr]);
    let value = match (kind, number) {
        (Header::Multibulk, Some(n)) if n <= i64::from(i32::MAX) => n,
        (Header::Multibulk, _) => return Err(ProtocolError::InvalidMultibulkLength),
        (Header::Bulk, Some(n)) if (0..=MAX_BULK).contains(&n) => n,
        (Header::Bulk, _) => return Err(ProtocolError::InvalidBulkLength),
    };
    Ok(Some((value, pos + cr + 2)))
}

/// Redis's `string2ll`: optional minus, no plus, no leading zeros, no spaces.
fn parse_i64(digits: &[u8]) -> Option<i64> {
    let (negative, digits) = match digits.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, digits),
    };
    if digits.is_empty() || digits.len() > 19 || (digits[0] == b'0' && digits.len() > 1) {
        return None;
    }
    let mut value: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    if negative {
        // `-9223372036854775808` is a valid `long long`, and `-0` is not.
        (value != 0)
            .then(|| 0i64.checked_sub_unsigned(value))
            .flatten()
    } else {
        i64::try_from(value).ok()
    }
}

/// C's `strchr`, which Redis uses to find the end of a line: a NUL byte before `needle` ends
/// the search, as it ends the C string.
fn strchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack
        .iter()
        .position(|&b| b == needle || b == 0)
        .filter(|&at| haystack[at] == needle)
}

/// The argument whose `$` header is at `pos`: `Some(None)` when it is longer than any
/// subcommand, `None` until it has arrived whole.
fn read_short_arg(buf: &[u8], pos: usize) -> Result<Option<Option<&[u8]>>, ProtocolError> {
    let Some((len, start)) = read_header(buf, pos, Header::Bulk)? else {
        return Ok(None);
    };
    if len > 16 {
        return Ok(Some(None));
    }
    let end = start + len as usize;
    Ok((buf.len() >= end + 2).then(|| Some(&buf[start..end])))
}

impl RequestScanner {
    /// Buffers a whole AUTH / HELLO / CLIENT request and classifies it by its arguments.
    fn inspect_multibulk(&self, buf: &[u8], count: u64) -> Result<Step, ProtocolError> {
        let Some((_, mut pos)) = read_header(buf, 0, Header::Multibulk)? else {
            return Ok(Step::NeedMore);
        };
        let mut args: Vec<&[u8]> = Vec::with_capacity(count.min(16) as usize);
        for _ in 0..count {
            let Some((len, start)) = read_header(buf, pos, Header::Bulk)? else {
                return need_more_within_limit(buf);
            };
            self.check_bulk(len)?;
            let end = start + len as usize;
            if buf.len() < end + 2 {
                return need_more_within_limit(buf);
            }
            args.push(&buf[start..end]);
            pos = end + 2;
        }
        Ok(Step::Start {
            len: pos,
            command: classify_by_args(&args),
        })
        .and_then(|step| {
            // The same limit whether the request came in one read or in many.
            if pos > MAX_INSPECTED {
                Err(ProtocolError::TooBigInspected)
            } else {
                Ok(step)
            }
        })
    }
}

fn need_more_within_limit(buf: &[u8]) -> Result<Step, ProtocolError> {
    if buf.len() > MAX_INSPECTED {
        Err(ProtocolError::TooBigInspected)
    } else {
        Ok(Step::NeedMore)
    }
}

mod classify;
mod command;
mod inline;
#[cfg(test)]
mod tests;
