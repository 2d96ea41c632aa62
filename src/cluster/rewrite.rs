//! The replies that name cluster nodes, rewritten so that every node is `127.0.0.1` and the
//! port of its local listener: `CLUSTER SLOTS`, `SHARDS`, `NODES`, `REPLICAS` / `SLAVES`, and
//! the `-MOVED`, `-ASK` and `-REDIRECT` errors. Pure: the node table is asked for ports through
//! `NodeMap`, and opens a listener before it answers.
//!
//! A node is the host it is announced by (the preferred endpoint: a hostname or an IP) and its
//! client port (the TLS port, as TLS clients are told). Hostnames, IPs, TLS ports and bus
//! ports of real nodes never reach the client. An unknown endpoint (a null `endpoint`, or an
//! empty host in a redirect) means "the node this connection is to", as Redis documents; `?`
//! (no hostname set) falls back to the node's IP when the reply gives one, else stays `?` with
//! port 0.

use super::value::{self, Value, malformed};
use super::{ClusterError, NodeAddr, NodeMap, Topology};

/// The local address every node is given.
const LOOPBACK: &[u8] = b"127.0.0.1";

/// An error reply, as cluster mode sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redirect {
    /// Not a redirect as Redis words one: passed unchanged.
    NotRedirect,
    /// A redirect to a node served locally, rewritten to name its listener.
    Local(Vec<u8>),
    /// A redirect to a node no topology reply announced: not believed until a fresh topology
    /// from the route's endpoint names it.
    Unknown(NodeAddr),
}

/// What a rewrite needs to know.
#[derive(Clone, Copy)]
pub struct Rewriter<'a> {
    pub nodes: &'a dyn NodeMap,
    /// The node the connection is to, for endpoints the reply leaves unnamed.
    pub this_node: &'a NodeAddr,
}

impl Rewriter<'_> {
    /// The whole reply to a topology command, rewritten; an error reply passes unchanged.
    pub fn topology(&self, kind: Topology, frame: &[u8]) -> Result<Vec<u8>, ClusterError> {
        let mut reply = value::decode(frame)?;
        if matches!(&reply, Value::Line(line) if line.starts_with(b"-")) {
            return Ok(frame.to_vec());
        }
        match kind {
            Topology::Slots => self.slots(&mut reply)?,
            Topology::Shards => self.shards(&mut reply)?,
            Topology::Nodes => self.node_lines(&mut reply)?,
            Topology::Replicas => match &mut reply {
                Value::Array(_, Some(lines)) => {
                    for line in lines {
                        self.node_lines(line)?;
                    }
                }
                _ => return Err(malformed("CLUSTER REPLICAS is not an array")),
            },
        }
        if kind != Topology::Replicas {
            self.nodes.topology_listed();
        }
        let mut out = Vec::with_capacity(frame.len());
        value::encode(&reply, &mut out);
        Ok(out)
    }

    /// What an error reply is to cluster mode: only Redis's own `-MOVED slot host:port`,
    /// `-ASK slot host:port` and `-REDIRECT host:port` are redirects, and only one naming a
    /// node that a topology reply announced is rewritten. A script can return any error text,
    /// so an error that merely looks like a redirect never makes the proxy serve a host.
    pub fn redirect(&self, frame: &[u8]) -> Redirect {
        let Some((prefix, node)) = parse_redirect(frame, self.this_node) else {
            return Redirect::NotRedirect;
        };
        match self.nodes.known(&node) {
            Some(port) => {
                let mut out = prefix.to_vec();
                out.extend_from_slice(LOOPBACK);
                out.extend_from_slice(format!(":{port}\r\n").as_bytes());
                Redirect::Local(out)
            }
            None => Redirect::Unknown(node),
        }
    }

    /// `[[start, end, [endpoint, port, id, meta], ...], ...]`
    fn slots(&self, reply: &mut Value) -> Result<(), ClusterError> {
        let Value::Array(_, Some(ranges)) = reply else {
            return Err(malformed("CLUSTER SLOTS is not an array"));
        };
        for range in ranges {
            let Value::Array(_, Some(items)) = range else {
                return Err(malformed("a CLUSTER SLOTS range is not an array"));
            };
            for node in items.iter_mut().skip(2) {
                let Value::Array(_, Some(fields)) = node else {
                    return Err(malformed("a CLUSTER SLOTS node is not an array"));
                };
                self.slots_node(fields)?;
            }
        }
        Ok(())
    }

    fn slots_node(&self, fields: &mut [Value]) -> Result<(), ClusterError> {
        let [endpoint, port_field, rest @ ..] = fields else {
            return Err(malformed("a CLUSTER SLOTS node without endpoint and port"));
        };
        let Value::Integer(real_port) = port_field else {
            return Err(malformed("a CLUSTER SLOTS port is not an integer"));
        };
        let real_port = u16::try_from(*real_port).map_err(|_| malformed("a port out of range"))?;
        let id = rest.first().and_then(Value::text).map(<[u8]>::to_vec);
        let meta_ip = rest.get(1).and_then(|meta| entry(meta, b"ip"));
        let host = match &*endpoint {
            Value::Bulk(None) => Some(self.this_node.host.clone()),
            other => match other.text() {
                Some(b"?") => meta_ip.map(|ip| text(&ip)).transpose()?,
                Some(b"") => Some(self.this_node.host.clone()),
                Some(host) => Some(text(host)?),
                None => return Err(malformed("a CLUSTER SLOTS endpoint is not a string")),
            },
        };
        match host {
            Some(host) => {
                let local = self.nodes.announced(
                    &NodeAddr {
                        host,
                        port: real_port,
                    },
                    id.as_deref(),
                )?;
                *endpoint = endpoint.same_kind(LOOPBACK);
                *port_field = Value::Integer(i64::from(local));
            }
            None => *port_field = Value::Integer(0),
        }
        if let Some(meta) = rest.get_mut(1) {
            remove_entries(meta, &[b"ip", b"hostname"]);
        }
        Ok(())
    }

    /// `[shard, ...]`, a shard being `slots`, `nodes` pairs (a map, or a flat array in RESP2).
    fn shards(&self, reply: &mut Value) -> Result<(), ClusterError> {
        let Value::Array(_, Some(shards)) = reply else {
            return Err(malformed("CLUSTER SHARDS is not an array"));
        };
        for shard in shards {
            let nodes = entry_mut(shard, b"nodes")
                .ok_or_else(|| malformed("a CLUSTER SHARDS shard without nodes"))?;
            let Value::Array(_, Some(nodes)) = nodes else {
                return Err(malformed("CLUSTER SHARDS nodes is not an array"));
            };
            for node in nodes {
                self.shards_node(node)?;
            }
        }
        Ok(())
    }

    fn shards_node(&self, node: &mut Value) -> Result<(), ClusterError> {
        let field = |name: &[u8]| entry(node, name);
        let real_port = field(b"tls-port")
            .or_else(|| field(b"port"))
            .ok_or_else(|| malformed("a CLUSTER SHARDS node without a port"))?;
        let real_port = port(&real_port)?;
        let host = match field(b"endpoint").as_deref() {
            None | Some(b"?") => field(b"ip").map(|ip| text(&ip)).transpose()?,
            Some(b"") => Some(self.this_node.host.clone()),
            Some(endpoint) => Some(text(endpoint)?),
        };
        let id = field(b"id");
        let local = match host {
            Some(host) => self.nodes.announced(
                &NodeAddr {
                    host,
                    port: real_port,
                },
                id.as_deref(),
            )?,
            None => 0,
        };
        remove_entries(node, &[b"hostname", b"tls-port", b"port"]);
        for name in [&b"ip"[..], b"endpoint"] {
            if let Some(value) = entry_mut(node, name) {
                *value = value.same_kind(LOOPBACK);
            }
        }
        push_entry(node, b"port", Value::Integer(i64::from(local)));
        Ok(())
    }

    /// A `CLUSTER NODES` text (or one `REPLICAS` line): `id ip:port@cport[,hostname] ...`.
    fn node_lines(&self, reply: &mut Value) -> Result<(), ClusterError> {
        let text = match reply {
            Value::Bulk(Some(text)) | Value::Verbatim { text, .. } | Value::Simple(text) => text,
            _ => return Err(malformed("CLUSTER NODES is not a string")),
        };
        let mut out = Vec::with_capacity(text.len());
        for line in text.split_inclusive(|&b| b == b'\n') {
            out.extend_from_slice(&self.node_line(line)?);
        }
        *text = out;
        Ok(())
    }

    fn node_line(&self, line: &[u8]) -> Result<Vec<u8>, ClusterError> {
        let mut fields = line.splitn(3, |&b| b == b' ');
        let (Some(id), Some(address)) = (fields.next(), fields.next()) else {
            return Ok(line.to_vec());
        };
        let rest = fields.next();
        let (client, after_at) = match address.iter().position(|&b| b == b'@') {
            Some(at) => (&address[..at], Some(&address[at + 1..])),
            None => (address, None),
        };
        let hostname = after_at.and_then(|a| {
            let comma = a.iter().position(|&b| b == b',')?;
            Some(&a[comma + 1..]).filter(|h| !h.is_empty())
        });
        let colon = client
            .iter()
            .rposition(|&b| b == b':')
            .ok_or_else(|| malformed("a CLUSTER NODES address without a port"))?;
        let (ip, real_port) = (&client[..colon], port(&client[colon + 1..])?);
        if ip.is_empty() || real_port == 0 {
            // A node still in the handshake, with no address yet.
            return Ok(line.to_vec());
        }
        let host = text(hostname.unwrap_or(ip))?;
        let local = self.nodes.announced(
            &NodeAddr {
                host,
                port: real_port,
            },
            Some(id),
        )?;
        let mut out = id.to_vec();
        out.extend_from_slice(format!(" 127.0.0.1:{local}@0").as_bytes());
        if let Some(rest) = rest {
            out.push(b' ');
            out.extend_from_slice(rest);
        } else if line.ends_with(b"\n") {
            out.push(b'\n');
        }
        Ok(out)
    }
}

/// Splits Redis's own redirect into the part kept (`-MOVED 3999 `) and the node it names; `None`
/// for anything else. Redis writes `%s:%d` with the node's preferred endpoint: no brackets
/// around an IPv6 address, the port after the last colon, an empty host for "this node".
fn parse_redirect<'f>(frame: &'f [u8], this_node: &NodeAddr) -> Option<(&'f [u8], NodeAddr)> {
    let line = frame.strip_suffix(b"\r\n")?;
    let (prefix_len, target) = if let Some(rest) = line
        .strip_prefix(b"-MOVED ")
        .or_else(|| line.strip_prefix(b"-ASK "))
    {
        let space = rest.iter().position(|&b| b == b' ')?;
        let slot = std::str::from_utf8(&rest[..space]).ok()?;
        if !canonical_number(slot) || slot.parse::<u16>().ok()? > 16383 {
            return None;
        }
        (line.len() - rest.len() + space + 1, &rest[space + 1..])
    } else {
        let rest = line.strip_prefix(b"-REDIRECT ")?;
        (line.len() - rest.len(), rest)
    };
    let colon = target.iter().rposition(|&b| b == b':')?;
    let (host, port) = (
        &target[..colon],
        std::str::from_utf8(&target[colon + 1..]).ok()?,
    );
    if !canonical_number(port) || host.iter().any(|&b| !b.is_ascii_graphic() || b == b'[') {
        return None;
    }
    let port = port.parse::<u16>().ok().filter(|&p| p != 0)?;
    let host = match host {
        b"" => this_node.host.clone(),
        host => String::from_utf8(host.to_vec()).ok()?,
    };
    Some((&frame[..prefix_len], NodeAddr { host, port }))
}

/// Digits as C's `%d` prints them: no sign, no leading zero.
fn canonical_number(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 5
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'))
}

fn text(bytes: &[u8]) -> Result<String, ClusterError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| malformed("a host that is not UTF-8"))
}

fn port(bytes: &[u8]) -> Result<u16, ClusterError> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| malformed("a port that is not a number"))
}

/// The value under `name` in a map or a flat `[key, value, ...]` array, as text.
fn entry(pairs: &Value, name: &[u8]) -> Option<Vec<u8>> {
    let found = match pairs {
        Value::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| k.text() == Some(name))
            .map(|(_, v)| v),
        Value::Array(_, Some(flat)) => flat
            .chunks(2)
            .find(|kv| kv[0].text() == Some(name))
            .and_then(|kv| kv.get(1)),
        _ => None,
    }?;
    match found {
        Value::Integer(n) => Some(n.to_string().into_bytes()),
        other => other.text().map(<[u8]>::to_vec),
    }
}

fn entry_mut<'v>(pairs: &'v mut Value, name: &[u8]) -> Option<&'v mut Value> {
    match pairs {
        Value::Map(pairs) => pairs
            .iter_mut()
            .find(|(k, _)| k.text() == Some(name))
            .map(|(_, v)| v),
        Value::Array(_, Some(flat)) => {
            let at = flat.chunks(2).position(|kv| kv[0].text() == Some(name))?;
            flat.get_mut(at * 2 + 1)
        }
        _ => None,
    }
}

fn remove_entries(pairs: &mut Value, names: &[&[u8]]) {
    let gone = |key: &Value| key.text().is_some_and(|k| names.contains(&k));
    match pairs {
        Value::Map(pairs) => pairs.retain(|(k, _)| !gone(k)),
        Value::Array(_, Some(flat)) => {
            let mut kept = Vec::with_capacity(flat.len());
            let mut items = std::mem::take(flat).into_iter();
            while let (Some(k), Some(v)) = (items.next(), items.next()) {
                if !gone(&k) {
                    kept.push(k);
                    kept.push(v);
                }
            }
            *flat = kept;
        }
        _ => {}
    }
}

fn push_entry(pairs: &mut Value, name: &[u8], value: Value) {
    let key = Value::Bulk(Some(name.to_vec()));
    match pairs {
        Value::Map(pairs) => pairs.push((key, value)),
        Value::Array(_, Some(flat)) => {
            flat.push(key);
            flat.push(value);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests;
