//! Finds where each server reply ends (RESP2 and RESP3) without decoding or copying it.
//!
//! Bulk payloads are skipped by their length, so a 100 MB value costs one header parse. The
//! scanner is resumable at any byte: a reply may arrive split over any number of reads.

/// The server sent something that is not RESP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("upstream sent a malformed reply (type byte {0:#04x})")]
pub struct MalformedReply(pub u8);

/// What kind of top-level frame just ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// A reply that answers a request.
    Reply,
    /// A RESP3 push (`>`): pub/sub message or tracking invalidation; answers nothing.
    Push,
    /// A RESP3 attribute (`|`): metadata that precedes the reply it annotates.
    Attribute,
}

/// The result of one scan call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// A top-level frame ended after `len` bytes of the input.
    End { len: usize, kind: FrameKind },
    /// All of the input belongs to a frame that has not ended yet.
    Partial,
}

/// The longest length header kept while it arrives split (`$` + 20 digits + CRLF fits).
const MAX_HEADER: usize = 32;

#[derive(Debug, Default)]
pub struct ReplyScanner {
    /// Elements still expected by each open aggregate, innermost last; `true` marks an
    /// attribute, whose completion does not count as an element of its parent.
    open: Vec<(u64, bool)>,
    /// Payload bytes still to skip, CRLF included.
    skip: u64,
    /// Inside a simple line (`+ - : , # _ (`): skip to the next LF.
    in_line: bool,
    /// A length header split across reads.
    header: [u8; MAX_HEADER],
    header_len: usize,
    /// First byte of the top-level frame in progress.
    top: u8,
}

impl ReplyScanner {
    pub fn new() -> Self {
        Self::default()
    }

    /// True between top-level frames.
    pub fn at_boundary(&self) -> bool {
        self.open.is_empty() && self.skip == 0 && !self.in_line && self.header_len == 0
    }

    /// Scans `buf` until one top-level frame ends, or to its end.
    pub fn scan(&mut self, buf: &[u8]) -> Result<Scan, MalformedReply> {
        let mut pos = 0;
        loop {
            if self.skip > 0 {
                pos += super::skip_payload(&mut self.skip, buf.len() - pos);
                if self.skip > 0 {
                    return Ok(Scan::Partial);
                }
                if let Some(end) = self.element_done(pos) {
                    return Ok(end);
                }
                continue;
            }
            if self.in_line {
                match buf[pos..].iter().position(|&b| b == b'\n') {
                    None => return Ok(Scan::Partial),
                    Some(lf) => {
                        pos += lf + 1;
                        self.in_line = false;
                        if let Some(end) = self.element_done(pos) {
                            return Ok(end);
                        }
                        continue;
                    }
                }
            }
            if pos == buf.len() {
                return Ok(Scan::Partial);
            }
            if self.header_len == 0 {
                let kind = buf[pos];
                if self.open.is_empty() {
                    self.top = kind;
                }
                if matches!(kind, b'+' | b'-' | b':' | b',' | b'#' | b'_' | b'(') {
                    self.in_line = true;
                    pos += 1;
                    continue;
                }
                if !matches!(kind, b'$' | b'!' | b'=' | b'*' | b'%' | b'~' | b'>' | b'|') {
                    return Err(MalformedReply(kind));
                }
            }
            match self.take_header(&buf[pos..])? {
                None => return Ok(Scan::Partial),
                Some((used, kind, n)) => {
                    pos += used;
                    if let Some(end) = self.open_element(kind, n, pos) {
                        return Ok(end);
                    }
                }
            }
        }
    }

    /// Accumulates a length header; returns bytes used, the type byte and the number.
    fn take_header(&mut self, buf: &[u8]) -> Result<Option<(usize, u8, i64)>, MalformedReply> {
        let lf = buf.iter().position(|&b| b == b'\n');
        let used = lf.map_or(buf.len(), |i| i + 1);
        if self.header_len + used > MAX_HEADER {
            return Err(MalformedReply(self.header[0]));
        }
        self.header[self.header_len..self.header_len + used].copy_from_slice(&buf[..used]);
        self.header_len += used;
        if lf.is_none() {
            return Ok(None);
        }
        let line = &self.header[..self.header_len];
        let kind = line[0];
        let digits = line[1..].strip_suffix(b"\n").unwrap_or(&line[1..]);
        let digits = digits.strip_suffix(b"\r").unwrap_or(digits);
        let n = std::str::from_utf8(digits)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or(MalformedReply(kind))?;
        self.header_len = 0;
        Ok(Some((used, kind, n)))
    }

    /// Starts an element from its header; returns the frame end if it is already complete.
    fn open_element(&mut self, kind: u8, n: i64, pos: usize) -> Option<Scan> {
        match kind {
            b'$' | b'!' | b'=' if n >= 0 => {
                self.skip = n as u64 + 2;
                None
            }
            b'*' | b'~' | b'>' if n > 0 => {
                self.open.push((n as u64, false));
                None
            }
            b'%' if n > 0 => {
                self.open.push((2 * n as u64, false));
                None
            }
            b'|' if n > 0 => {
                self.open.push((2 * n as u64, true));
                None
            }
            // Null bulk, null or empty aggregate: complete already.
            _ => self.element_done(pos),
        }
    }

    /// Marks one element complete and closes finished aggregates; returns the frame end when
    /// the top-level frame is complete.
    fn element_done(&mut self, pos: usize) -> Option<Scan> {
        while let Some((left, attribute)) = self.open.last_mut() {
            if *attribute && *left == 0 {
                // An attribute just closed; the element it annotates is still to come.
                self.open.pop();
                return if self.open.is_empty() {
                    Some(self.end(pos, FrameKind::Attribute))
                } else {
                    None
                };
            }
            *left -= 1;
            if *left > 0 {
                return None;
            }
            if *attribute {
                continue;
            }
            self.open.pop();
        }
        let kind = match self.top {
            b'>' => FrameKind::Push,
            _ => FrameKind::Reply,
        };
        Some(self.end(pos, kind))
    }

    fn end(&mut self, len: usize, kind: FrameKind) -> Scan {
        Scan::End { len, kind }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(input: &[u8]) -> Vec<(usize, FrameKind)> {
        let mut scanner = ReplyScanner::new();
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < input.len() {
            match scanner.scan(&input[pos..]).unwrap() {
                Scan::End { len, kind } => {
                    pos += len;
                    out.push((pos, kind));
                }
                Scan::Partial => break,
            }
        }
        out
    }

    #[test]
    fn resp2_replies_end_where_they_should() {
        let input = b"+OK\r\n$3\r\nfoo\r\n$-1\r\n*2\r\n$1\r\na\r\n*1\r\n:1\r\n*0\r\n-ERR x\r\n";
        let ends: Vec<usize> = frames(input).into_iter().map(|(e, _)| e).collect();
        assert_eq!(ends, vec![5, 14, 19, 38, 42, 50]);
    }

    #[test]
    fn resp3_push_and_attributes_are_told_apart() {
        let input =
            b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n|1\r\n+k\r\n+v\r\n%1\r\n+a\r\n_\r\n";
        let kinds: Vec<FrameKind> = frames(input).into_iter().map(|(_, k)| k).collect();
        assert_eq!(
            kinds,
            vec![FrameKind::Push, FrameKind::Attribute, FrameKind::Reply]
        );
    }

    #[test]
    fn a_reply_split_at_every_byte_is_still_found() {
        let input = b"*2\r\n$5\r\nhello\r\n%1\r\n+k\r\n,1.5\r\n+OK\r\n";
        let whole = frames(input);
        for split in 1..input.len() {
            let mut scanner = ReplyScanner::new();
            let mut ends = Vec::new();
            let mut offset = 0;
            for chunk in [&input[..split], &input[split..]] {
                let mut pos = 0;
                while pos < chunk.len() {
                    match scanner.scan(&chunk[pos..]).unwrap() {
                        Scan::End { len, kind } => {
                            pos += len;
                            ends.push((offset + pos, kind));
                        }
                        Scan::Partial => break,
                    }
                }
                offset += chunk.len();
            }
            assert_eq!(ends, whole, "split at {split}");
        }
    }

    #[test]
    fn garbage_is_refused() {
        assert!(ReplyScanner::new().scan(b"hello\r\n").is_err());
        assert!(ReplyScanner::new().scan(b"$abc\r\n").is_err());
    }
}
