//! Finds request boundaries in the client's byte stream the way Redis's own parser does
//! (`processMultibulkBuffer` / `processInlineBuffer`), without copying what it passes through.
//!
//! The scanner reads only what it must: the command name of every request, and the whole of the
//! few requests the proxy answers or rewrites (AUTH, HELLO, CLIENT). Everything else is reported
//! as a byte count to forward, and a large argument is streamed: the scanner remembers how many
//! payload bytes are still to come instead of waiting for them.

use super::ProtocolError;
use secrecy::{ExposeSecret, SecretSlice};

/// Redis's `PROTO_INLINE_MAX_SIZE`: the longest inline request, or header line without CR.
pub const MAX_INLINE: usize = 64 * 1024;
/// Redis's default `proto-max-bulk-len`.
const MAX_BULK: i64 = 512 * 1024 * 1024;
/// The largest AUTH / HELLO / CLIENT request the proxy buffers whole to inspect.
pub const MAX_INSPECTED: usize = 64 * 1024;
/// Redis's limits on a multibulk request from a client that has not authenticated.
const UNAUTHENTICATED_MAX_ARGS: i64 = 10;
const UNAUTHENTICATED_MAX_BULK: i64 = 16 * 1024;

/// What a request means to the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Anything the proxy only forwards.
    Other,
    /// `*0`, a negative count or an empty inline line: Redis runs nothing and sends no reply.
    Empty,
    /// `AUTH pass` or `AUTH user pass`: answered by the proxy, never forwarded.
    Auth(ClientCredentials),
    /// `HELLO` without an AUTH clause.
    Hello,
    /// `HELLO ... AUTH u p ...`: forwarded as `rewritten`, without the AUTH clause. The
    /// credentials are `None` when other options are malformed: the server then answers with its
    /// own syntax error, as it checks no credential before parsing every option.
    HelloWithAuth {
        rewritten: Vec<u8>,
        credentials: Option<ClientCredentials>,
    },
    /// `QUIT`: allowed before the client has authenticated, as Redis allows it.
    Quit,
    /// `RESET` (without arguments: with any, the server refuses it and nothing is reset).
    Reset,
    /// `MULTI`: later requests are queued by the server until EXEC or DISCARD.
    Multi,
    /// `EXEC` or `DISCARD` (without arguments, as only then do they end MULTI).
    EndMulti,
    /// A request after which replies no longer answer requests one to one (pub/sub, MONITOR,
    /// CLIENT REPLY).
    Uncountable,
    /// `SYNC` or `PSYNC`: the server answers with a replication stream, which is not RESP.
    Replicate,
}

impl Command {
    /// Whether the request's bytes are forwarded unchanged.
    pub fn passes_through(&self) -> bool {
        !matches!(self, Command::Auth(_) | Command::HelloWithAuth { .. })
    }
}

/// The user and password a client sent with AUTH or HELLO: checked against
/// `--client-password-file`, never forwarded. Redacted in `Debug`, zeroised on drop.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    pub username: Option<Vec<u8>>,
    pub password: SecretSlice<u8>,
}

impl ClientCredentials {
    fn new(username: Option<&[u8]>, password: &[u8]) -> Self {
        ClientCredentials {
            username: username.map(<[u8]>::to_vec),
            password: SecretSlice::from(password.to_vec()),
        }
    }
}

/// Equal when both the user and the password are; for tests of the scanner.
impl PartialEq for ClientCredentials {
    fn eq(&self, other: &Self) -> bool {
        self.username == other.username
            && self.password.expose_secret() == other.password.expose_secret()
    }
}

impl Eq for ClientCredentials {}

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
        if name.is_some_and(needs_whole_request) {
            return self.inspect_multibulk(buf, count as u64);
        }
        let command = name.map_or(Command::Other, |name| classify_by_name(name, count));
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
    if let Header::Bulk = kind
        && first != b'$'
    {
        return Err(ProtocolError::ExpectedDollar(first));
    }
    let window = &buf[pos..buf.len().min(pos + MAX_INLINE)];
    let Some(cr) = memchr(b'\r', window) else {
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
    let mut value: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(i64::from(d - b'0'))?;
    }
    if negative && value == 0 {
        return None;
    }
    Some(if negative { -value } else { value })
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

/// Commands whose arguments decide what the proxy does.
fn needs_whole_request(name: &[u8]) -> bool {
    ["AUTH", "HELLO", "CLIENT"]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n.as_bytes()))
}

/// Classifies a request by its name and number of words (name included).
fn classify_by_name(name: &[u8], count: i64) -> Command {
    let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
    let alone = count == 1;
    if is("RESET") && alone {
        Command::Reset
    } else if is("QUIT") {
        Command::Quit
    } else if is("MULTI") && alone {
        Command::Multi
    } else if (is("EXEC") || is("DISCARD")) && alone {
        Command::EndMulti
    } else if is("SYNC") || is("PSYNC") {
        Command::Replicate
    } else if [
        "SUBSCRIBE",
        "PSUBSCRIBE",
        "SSUBSCRIBE",
        "UNSUBSCRIBE",
        "PUNSUBSCRIBE",
        "SUNSUBSCRIBE",
        "MONITOR",
    ]
    .iter()
    .any(|n| is(n))
    {
        Command::Uncountable
    } else {
        Command::Other
    }
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
    }
}

fn need_more_within_limit(buf: &[u8]) -> Result<Step, ProtocolError> {
    if buf.len() > MAX_INSPECTED {
        Err(ProtocolError::TooBigInspected)
    } else {
        Ok(Step::NeedMore)
    }
}

fn classify_by_args(args: &[&[u8]]) -> Command {
    let Some(name) = args.first() else {
        return Command::Empty;
    };
    let is = |arg: &[u8], n: &str| arg.eq_ignore_ascii_case(n.as_bytes());
    if is(name, "AUTH") {
        // Other arities get the server's own arity or syntax error, with no credential checked.
        match args {
            [_, password] => Command::Auth(ClientCredentials::new(None, password)),
            [_, user, password] => Command::Auth(ClientCredentials::new(Some(user), password)),
            _ => Command::Other,
        }
    } else if is(name, "HELLO") {
        hello_without_auth(args).map_or(Command::Hello, |(rewritten, credentials)| {
            Command::HelloWithAuth {
                rewritten,
                credentials,
            }
        })
    } else if is(name, "CLIENT") && args.get(1).is_some_and(|sub| is(sub, "REPLY")) {
        Command::Uncountable
    } else {
        classify_by_name(name, args.len() as i64)
    }
}

/// Walks HELLO's options as `helloCommand` does; returns the request re-encoded without its
/// `AUTH user pass` clauses, and the credentials when every other option is well formed.
/// `None` when there is no AUTH clause. With malformed options the credentials are dropped
/// unchecked: the server answers with its syntax error and never checks them.
fn hello_without_auth(args: &[&[u8]]) -> Option<(Vec<u8>, Option<ClientCredentials>)> {
    let mut kept: Vec<&[u8]> = args[..args.len().min(2)].to_vec();
    let mut found = None;
    let mut well_formed = true;
    let mut j = 2;
    while j < args.len() {
        let more = args.len() - 1 - j;
        if args[j].eq_ignore_ascii_case(b"AUTH") && more >= 2 {
            found = Some(ClientCredentials::new(Some(args[j + 1]), args[j + 2]));
            j += 3;
        } else if args[j].eq_ignore_ascii_case(b"SETNAME") && more >= 1 {
            kept.extend_from_slice(&args[j..j + 2]);
            j += 2;
        } else {
            well_formed = false;
            kept.push(args[j]);
            j += 1;
        }
    }
    let credentials = found?;
    Some((
        super::encode_request(&kept),
        well_formed.then_some(credentials),
    ))
}

/// An inline request: one line of words, as typed into telnet.
fn start_inline(buf: &[u8]) -> Result<Step, ProtocolError> {
    let window = &buf[..buf.len().min(MAX_INLINE + 1)];
    let Some(newline) = memchr(b'\n', window) else {
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
pub fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
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
                    if is_space(c) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(input: &[u8]) -> Vec<Step> {
        let mut scanner = RequestScanner::new();
        let mut out = Vec::new();
        let mut pos = 0;
        loop {
            match scanner.step(&input[pos..]).unwrap() {
                Step::NeedMore => return out,
                step => {
                    pos += match &step {
                        Step::Start { len, .. } | Step::Continue { len } => *len,
                        Step::NeedMore => unreachable!(),
                    };
                    out.push(step);
                }
            }
        }
    }

    #[test]
    fn a_pipeline_is_split_into_requests_with_their_commands() {
        let input = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*1\r\n$5\r\nmulti\r\n*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n";
        assert_eq!(
            steps(input),
            vec![
                Step::Start {
                    len: 27,
                    command: Command::Other
                },
                Step::Start {
                    len: 15,
                    command: Command::Multi
                },
                Step::Start {
                    len: 22,
                    command: Command::Auth(ClientCredentials::new(None, b"pw"))
                },
            ]
        );
    }

    #[test]
    fn a_large_argument_is_streamed_not_awaited() {
        let mut scanner = RequestScanner::new();
        let head = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10\r\n0123";
        assert_eq!(
            scanner.step(head).unwrap(),
            Step::Start {
                len: head.len(),
                command: Command::Other
            }
        );
        assert_eq!(
            scanner.step(b"456789\r").unwrap(),
            Step::Continue { len: 7 }
        );
        assert!(!scanner.at_boundary());
        assert_eq!(scanner.step(b"\n*1").unwrap(), Step::Continue { len: 1 });
        assert!(scanner.at_boundary());
    }

    #[test]
    fn an_incomplete_auth_is_held_until_whole() {
        let mut scanner = RequestScanner::new();
        assert_eq!(
            scanner.step(b"*2\r\n$4\r\nAUTH\r\n$2\r\np").unwrap(),
            Step::NeedMore
        );
    }

    #[test]
    fn hello_loses_only_its_auth_clause() {
        let input = b"*7\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$4\r\nAUTH\r\n$1\r\nu\r\n$1\r\np\r\n$7\r\nSETNAME\r\n$1\r\nn\r\n";
        let expected = b"*4\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$7\r\nSETNAME\r\n$1\r\nn\r\n".to_vec();
        assert_eq!(
            steps(input),
            vec![Step::Start {
                len: input.len(),
                command: Command::HelloWithAuth {
                    rewritten: expected,
                    credentials: Some(ClientCredentials::new(Some(b"u"), b"p"))
                }
            }]
        );
    }

    #[test]
    fn inline_requests_are_recognised() {
        assert_eq!(
            steps(b"PING\r\nauth \"my pass\"\n\r\n"),
            vec![
                Step::Start {
                    len: 6,
                    command: Command::Other
                },
                Step::Start {
                    len: 15,
                    command: Command::Auth(ClientCredentials::new(None, b"my pass"))
                },
                Step::Start {
                    len: 2,
                    command: Command::Empty
                },
            ]
        );
    }

    #[test]
    fn malformed_requests_get_redis_error_texts() {
        let err = |input: &[u8]| RequestScanner::new().step(input).unwrap_err().to_string();
        assert_eq!(err(b"*x\r\n"), "Protocol error: invalid multibulk length");
        assert_eq!(
            err(b"*1\r\nfoo\r\n"),
            "Protocol error: expected '$', got 'f'"
        );
        assert_eq!(err(b"*1\r\n$-5\r\n"), "Protocol error: invalid bulk length");
        assert_eq!(
            err(b"*1\r\n$999999999999\r\n"),
            "Protocol error: invalid bulk length"
        );
        assert_eq!(
            err(b"set \"a\n"),
            "Protocol error: unbalanced quotes in request"
        );
        assert_eq!(
            err(&vec![b'a'; MAX_INLINE + 1]),
            "Protocol error: too big inline request"
        );
    }

    #[test]
    fn a_client_password_never_shows_in_debug_output() {
        let step = RequestScanner::new()
            .step(b"*3\r\n$4\r\nAUTH\r\n$7\r\ndefault\r\n$11\r\nhunter2-pw!\r\n")
            .unwrap();
        let shown = format!("{step:?}");
        assert!(shown.contains("Auth"), "{shown}");
        assert!(!shown.contains("hunter2-pw!"), "{shown}");
    }

    #[test]
    fn unauthenticated_requests_get_redis_size_limits() {
        let mut scanner = RequestScanner::new();
        scanner.set_unauthenticated(true);
        let many = format!("*11\r\n{}", "$1\r\na\r\n".repeat(11));
        assert_eq!(
            scanner.step(many.as_bytes()).unwrap_err().to_string(),
            "Protocol error: unauthenticated multibulk length"
        );
        let big = b"*2\r\n$3\r\nGET\r\n$16385\r\n";
        assert_eq!(
            scanner.step(big).unwrap_err().to_string(),
            "Protocol error: unauthenticated bulk length"
        );
        let mut scanner = RequestScanner::new();
        scanner.set_unauthenticated(false);
        assert!(scanner.step(many.as_bytes()).is_ok());
    }

    #[test]
    fn split_args_follows_sdssplitargs() {
        let words = split_args(br#"set "a b\x41\n" 'c\'d'"#).unwrap();
        assert_eq!(
            words,
            vec![b"set".to_vec(), b"a bA\n".to_vec(), b"c'd".to_vec()]
        );
        assert!(split_args(br#""a"b"#).is_none());
    }
}
