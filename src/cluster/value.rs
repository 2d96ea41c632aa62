//! A whole RESP2 or RESP3 value, decoded and encoded again, for the few replies the proxy
//! rewrites (cluster topology). Everything else passes as ranges of the bytes read and is never
//! decoded. Types the rewrites do not look into keep their bytes as they came.

use super::ClusterError;

/// Nesting deeper than this is refused rather than followed.
const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    /// `+text`
    Simple(Vec<u8>),
    /// `$len` (`None`: `$-1`)
    Bulk(Option<Vec<u8>>),
    /// `=len` with its three-letter format, RESP3
    Verbatim { format: Vec<u8>, text: Vec<u8> },
    /// `:n`
    Integer(i64),
    /// `*n` (`None`: `*-1`); `~n` and `>n` keep their type byte
    Array(u8, Option<Vec<Value>>),
    /// `%n`: key, value pairs
    Map(Vec<(Value, Value)>),
    /// Any other one-line type (`-`, `_`, `#`, `,`, `(`): its whole line, CRLF excluded.
    Line(Vec<u8>),
}

impl Value {
    pub(crate) fn text(&self) -> Option<&[u8]> {
        match self {
            Value::Simple(t) | Value::Bulk(Some(t)) => Some(t),
            Value::Verbatim { text, .. } => Some(text),
            _ => None,
        }
    }

    /// A string of the same kind as `self` (simple or bulk) holding `text`.
    pub(crate) fn same_kind(&self, text: &[u8]) -> Value {
        match self {
            Value::Simple(_) => Value::Simple(text.to_vec()),
            _ => Value::Bulk(Some(text.to_vec())),
        }
    }
}

/// Decodes one whole value that fills `bytes` exactly.
pub(crate) fn decode(bytes: &[u8]) -> Result<Value, ClusterError> {
    let (value, used) = decode_at(bytes, 0, 0)?;
    if used != bytes.len() {
        return Err(malformed("bytes after the reply"));
    }
    Ok(value)
}

/// The error for a reply that is not what Redis sends.
pub(crate) fn malformed(what: &str) -> ClusterError {
    ClusterError::Malformed(what.to_owned())
}

fn line(bytes: &[u8], at: usize) -> Result<(&[u8], usize), ClusterError> {
    let rest = bytes.get(at..).ok_or_else(|| malformed("truncated"))?;
    let end = rest
        .windows(2)
        .position(|w| w == b"\r\n")
        .ok_or_else(|| malformed("a line without CRLF"))?;
    Ok((&rest[..end], at + end + 2))
}

fn number(text: &[u8]) -> Result<i64, ClusterError> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| malformed("a bad number"))
}

fn decode_at(bytes: &[u8], at: usize, depth: usize) -> Result<(Value, usize), ClusterError> {
    if depth > MAX_DEPTH {
        return Err(malformed("nested too deeply"));
    }
    let (head, next) = line(bytes, at)?;
    let (&kind, body) = head
        .split_first()
        .ok_or_else(|| malformed("an empty line"))?;
    match kind {
        b'+' => Ok((Value::Simple(body.to_vec()), next)),
        b':' => Ok((Value::Integer(number(body)?), next)),
        b'$' | b'=' => {
            let len = number(body)?;
            if len < 0 {
                return Ok((Value::Bulk(None), next));
            }
            let end = next + len as usize;
            let data = bytes
                .get(next..end)
                .filter(|_| bytes.get(end..end + 2) == Some(b"\r\n"))
                .ok_or_else(|| malformed("a truncated string"))?;
            let value = match (kind, data.get(3)) {
                (b'=', Some(b':')) => Value::Verbatim {
                    format: data[..3].to_vec(),
                    text: data[4..].to_vec(),
                },
                (b'=', _) => return Err(malformed("a verbatim string without format")),
                _ => Value::Bulk(Some(data.to_vec())),
            };
            Ok((value, end + 2))
        }
        b'*' | b'~' | b'>' | b'%' => {
            let count = number(body)?;
            if count < 0 {
                return Ok((Value::Array(kind, None), next));
            }
            let items = if kind == b'%' { count * 2 } else { count };
            let mut values = Vec::with_capacity(items.min(1024) as usize);
            let mut pos = next;
            for _ in 0..items {
                let (value, after) = decode_at(bytes, pos, depth + 1)?;
                values.push(value);
                pos = after;
            }
            let value = if kind == b'%' {
                let mut pairs = Vec::with_capacity(values.len() / 2);
                let mut values = values.into_iter();
                while let (Some(k), Some(v)) = (values.next(), values.next()) {
                    pairs.push((k, v));
                }
                Value::Map(pairs)
            } else {
                Value::Array(kind, Some(values))
            };
            Ok((value, pos))
        }
        b'-' | b'_' | b'#' | b',' | b'(' => Ok((Value::Line(head.to_vec()), next)),
        _ => Err(malformed("an unknown type")),
    }
}

/// Encodes `value` as RESP onto `out`.
pub(crate) fn encode(value: &Value, out: &mut Vec<u8>) {
    let header = |kind: u8, n: i64, out: &mut Vec<u8>| {
        out.push(kind);
        out.extend_from_slice(n.to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    };
    match value {
        Value::Simple(text) => {
            out.push(b'+');
            out.extend_from_slice(text);
            out.extend_from_slice(b"\r\n");
        }
        Value::Bulk(None) => out.extend_from_slice(b"$-1\r\n"),
        Value::Bulk(Some(data)) => {
            header(b'$', data.len() as i64, out);
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        }
        Value::Verbatim { format, text } => {
            header(b'=', (text.len() + 4) as i64, out);
            out.extend_from_slice(format);
            out.push(b':');
            out.extend_from_slice(text);
            out.extend_from_slice(b"\r\n");
        }
        Value::Integer(n) => header(b':', *n, out),
        Value::Array(kind, None) => header(*kind, -1, out),
        Value::Array(kind, Some(items)) => {
            header(*kind, items.len() as i64, out);
            for item in items {
                encode(item, out);
            }
        }
        Value::Map(pairs) => {
            header(b'%', pairs.len() as i64, out);
            for (key, value) in pairs {
                encode(key, out);
                encode(value, out);
            }
        }
        Value::Line(line) => {
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_decodes_and_encodes_back_to_the_same_bytes() {
        let samples: &[&[u8]] = &[
            b"+OK\r\n",
            b"$5\r\nhello\r\n",
            b"$-1\r\n",
            b"*-1\r\n",
            b"=15\r\ntxt:Some string\r\n",
            b":-42\r\n",
            b"*3\r\n:1\r\n$1\r\na\r\n*1\r\n_\r\n",
            b"%2\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n+k\r\n#t\r\n",
            b"~1\r\n,3.14\r\n",
            b">2\r\n$7\r\nmessage\r\n(12345678901234567890\r\n",
            b"-ERR nope\r\n",
        ];
        for sample in samples {
            let value = decode(sample).unwrap();
            let mut out = Vec::new();
            encode(&value, &mut out);
            assert_eq!(&out, sample, "{}", String::from_utf8_lossy(sample));
        }
    }

    #[test]
    fn truncated_or_trailing_bytes_are_malformed() {
        for bad in [
            &b"*2\r\n:1\r\n"[..],
            b"$5\r\nhel\r\n",
            b"+OK\r\n+OK\r\n",
            b"?what\r\n",
            b"=3\r\ntxt\r\n",
        ] {
            assert!(decode(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn nesting_beyond_the_limit_is_refused() {
        let deep = "*1\r\n".repeat(MAX_DEPTH + 2) + ":1\r\n";
        assert!(decode(deep.as_bytes()).is_err());
    }
}
