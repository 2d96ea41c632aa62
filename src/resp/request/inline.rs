//! Inline requests, one line of words as typed into telnet, split as Redis's `sdssplitargs`
//! splits them.

use super::{MAX_INLINE, Step, classify_by_args, strchr};
use crate::resp::ProtocolError;

/// An inline request: one line of words, as typed into telnet. As in Redis, more than 64 KiB
/// without a newline is refused, and a line of exactly 64 KiB is taken when its CR LF is there.
pub(super) fn start_inline(buf: &[u8]) -> Result<Step, ProtocolError> {
    let window = &buf[..buf.len().min(MAX_INLINE + 2)];
    let Some(newline) = strchr(b'\n', window) else {
        if buf.len() > MAX_INLINE {
            return Err(ProtocolError::TooBigInline);
        }
        return Ok(Step::NeedMore);
    };
    let line = &buf[..newline];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let args = split_args(line).ok_or(ProtocolError::UnbalancedQuotes)?;
    let borrowed: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
    // A rewritten inline HELLO goes out as a multibulk; the server accepts either.
    Ok(Step::Start {
        len: newline + 1,
        command: classify_by_args(&borrowed),
    })
}

/// Redis's `sdssplitargs`: words split on whitespace, with "double" quotes (and \x escapes) and
/// 'single' quotes. `None` for unbalanced quotes or a closing quote not followed by a space.
/// Blanks before a word are C's `isspace`, but a word ends only at a space, tab, CR or LF, so
/// `AUTH\x0cfoo` is one word; the line is a C string there, ending at its first NUL.
pub fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let line = &line[..line.iter().position(|&b| b == 0).unwrap_or(line.len())];
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && is_space(line[i]) {
            i += 1;
        }
        if i >= line.len() {
            return Some(args);
        }
        let mut word = Vec::new();
        let mut quote: Option<u8> = None;
        loop {
            let Some(&c) = line.get(i) else {
                if quote.is_some() {
                    return None;
                }
                break;
            };
            match quote {
                Some(q) => {
                    if q == b'"' && c == b'\\' && line.get(i + 1).is_some() {
                        let (byte, used) = unescape(&line[i + 1..]);
                        word.push(byte);
                        i += 1 + used;
                        continue;
                    }
                    if q == b'\'' && c == b'\\' && line.get(i + 1) == Some(&b'\'') {
                        word.push(b'\'');
                        i += 2;
                        continue;
                    }
                    if c == q {
                        if line.get(i + 1).is_some_and(|&n| !is_space(n)) {
                            return None;
                        }
                        i += 1;
                        break;
                    }
                    word.push(c);
                }
                None => {
                    if matches!(c, b' ' | b'\t' | b'\r' | b'\n') {
                        break;
                    }
                    if c == b'"' || c == b'\'' {
                        quote = Some(c);
                    } else {
                        word.push(c);
                    }
                }
            }
            i += 1;
        }
        args.push(word);
    }
}

/// C's `isspace`, which `sdssplitargs` uses: ASCII whitespace plus vertical tab.
fn is_space(c: u8) -> bool {
    c.is_ascii_whitespace() || c == 0x0b
}

/// One escape after a backslash inside double quotes: returns the byte and bytes used.
fn unescape(rest: &[u8]) -> (u8, usize) {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    if rest[0] == b'x'
        && let (Some(h), Some(l)) = (
            rest.get(1).copied().and_then(hex),
            rest.get(2).copied().and_then(hex),
        )
    {
        return (h * 16 + l, 3);
    }
    let byte = match rest[0] {
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        b'b' => 0x08,
        b'a' => 0x07,
        other => other,
    };
    (byte, 1)
}
