//! The first words of one whole request, for the rules: multibulk headers read in place, an
//! inline request split as Redis splits it. Pure.

use super::rules::MAX_WORDS;
use crate::resp::request::{Command, RequestScanner, Step};

/// The largest request sent on a shared connection; a larger one pins its client (a shared
/// connection writes each request whole, so one large value would hold up every client).
pub(crate) const MAX_SHARED_REQUEST: usize = 512 * 1024;

/// A whole request, as the scanner saw it.
pub(crate) struct Whole {
    pub end: usize,
    /// `*0`: Redis answers nothing.
    pub empty: bool,
    /// A request whose reply names cluster nodes.
    pub topology: Option<crate::cluster::Topology>,
}

/// Where the request at `start` of `buf` ends, if it is whole, and what it is; `None` to wait
/// for more bytes. A request that cannot be read (a protocol error) or is still coming past
/// the size limit is judged at once: it goes to a connection of the client's own, where the
/// usual path answers it. `authenticated`: Redis's tighter limits on a request's size apply
/// until the client password.
pub(crate) fn whole_request(buf: &[u8], start: usize, authenticated: bool) -> Option<Whole> {
    let mut scanner = RequestScanner::new();
    scanner.set_unauthenticated(!authenticated);
    let mut pos = start;
    let (mut empty, mut topology) = (false, None);
    let cut = |end| Whole {
        end,
        empty: false,
        topology: None,
    };
    loop {
        match scanner.step(&buf[pos..]) {
            Ok(Step::Start { len, command }) => {
                pos += len;
                empty = command == Command::Empty;
                if let Command::ClusterTopology(kind) = command {
                    topology = Some(kind);
                }
            }
            Ok(Step::Continue { len }) => pos += len,
            Ok(Step::NeedMore) if buf.len() - start > MAX_SHARED_REQUEST => {
                return Some(cut(buf.len()));
            }
            Ok(Step::NeedMore) => return None,
            Err(_) => return Some(cut(buf.len())),
        }
        if scanner.at_boundary() && pos > start {
            return Some(Whole {
                end: pos,
                empty,
                topology,
            });
        }
    }
}

/// The words of a whole request: the first `MAX_WORDS` as ranges of it, and how many there are.
#[derive(Debug, Default)]
pub(crate) struct Words {
    ranges: [(usize, usize); MAX_WORDS],
    pub count: usize,
}

impl Words {
    /// Reads `request` (one whole request, as the scanner delimited it); false if it is not one
    /// a shared connection can take as is (malformed, or inline: an inline request goes to a
    /// connection of its own, where the proxy's usual path answers it).
    pub(crate) fn read(&mut self, request: &[u8]) -> bool {
        self.count = 0;
        if request.first() != Some(&b'*') {
            return false;
        }
        let Some((count, mut pos)) = number(request, 1) else {
            return false;
        };
        if count <= 0 {
            return false;
        }
        self.count = count as usize;
        for i in 0..self.count.min(MAX_WORDS) {
            if request.get(pos) != Some(&b'$') {
                return false;
            }
            let Some((len, start)) = number(request, pos + 1) else {
                return false;
            };
            let end = start + len.max(0) as usize;
            if len < 0 || end + 2 > request.len() {
                return false;
            }
            self.ranges[i] = (start, end);
            pos = end + 2;
        }
        true
    }

    /// The first words, as slices of `request`.
    pub(crate) fn get<'r>(&self, request: &'r [u8]) -> ([&'r [u8]; MAX_WORDS], usize) {
        let mut words: [&[u8]; MAX_WORDS] = [&[]; MAX_WORDS];
        let n = self.count.min(MAX_WORDS);
        for (word, &(start, end)) in words.iter_mut().zip(&self.ranges[..n]) {
            *word = &request[start..end];
        }
        (words, n)
    }
}

/// The decimal number at `pos` and where the line after it starts.
fn number(buf: &[u8], pos: usize) -> Option<(i64, usize)> {
    let line_end = pos + buf.get(pos..)?.iter().position(|&b| b == b'\r')?;
    let text = std::str::from_utf8(&buf[pos..line_end]).ok()?;
    Some((text.parse().ok()?, line_end + 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_words_of_a_multibulk_request_are_read_in_place() {
        let request = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\n";
        let mut words = Words::default();
        assert!(words.read(request));
        let (first, n) = words.get(request);
        assert_eq!(
            (&first[..n], words.count),
            (&[&b"SET"[..], b"k", b"value"][..], 3)
        );
        let many = crate::resp::encode_request(&[&b"DEL"[..]; 12]);
        assert!(words.read(&many));
        assert_eq!((words.get(&many).1, words.count), (MAX_WORDS, 12));
        assert!(!words.read(b"PING\r\n"), "inline");
        assert!(!words.read(b"*0\r\n"));
    }
}
