//! Rewrites against replies shaped as Redis 7.0 and Valkey 8 send them, with a node table in
//! memory.

use super::*;
use std::collections::HashMap;
use std::sync::Mutex;

/// Hands out 7001, 7002, ... in order of first sight; refuses past `limit`.
#[derive(Default)]
struct Nodes {
    given: Mutex<HashMap<NodeAddr, u16>>,
    ids: Mutex<HashMap<Vec<u8>, u16>>,
    limit: usize,
}

impl NodeMap for Nodes {
    fn known(&self, node: &NodeAddr) -> Option<u16> {
        self.given.lock().unwrap().get(node).copied()
    }

    fn announced(&self, node: &NodeAddr, id: Option<&[u8]>) -> Result<u16, ClusterError> {
        if let Some(port) = id.and_then(|id| self.ids.lock().unwrap().get(id).copied()) {
            return Ok(port);
        }
        let mut given = self.given.lock().unwrap();
        let next = 7001 + given.len() as u16;
        if !given.contains_key(node) && given.len() >= self.limit {
            return Err(ClusterError::Exhausted {
                node: node.to_string(),
                range: "7001-7002".into(),
            });
        }
        let port = *given.entry(node.clone()).or_insert(next);
        if let Some(id) = id {
            self.ids.lock().unwrap().insert(id.to_vec(), port);
        }
        Ok(port)
    }
}

fn nodes() -> Nodes {
    Nodes {
        limit: 100,
        ..Nodes::default()
    }
}

fn this() -> NodeAddr {
    NodeAddr {
        host: "cfg.example.cache.amazonaws.com".into(),
        port: 6379,
    }
}

fn rewrite(kind: Topology, reply: &str, nodes: &Nodes) -> Result<String, ClusterError> {
    let this = this();
    let rewriter = Rewriter {
        nodes,
        this_node: &this,
    };
    rewriter
        .topology(kind, reply.as_bytes())
        .map(|out| String::from_utf8(out).unwrap())
}

fn bulk(s: &str) -> String {
    format!("${}\r\n{s}\r\n", s.len())
}

#[test]
fn cluster_slots_by_hostname_in_resp2_names_only_local_listeners() {
    let node = |host: &str, port: u16, id: &str| {
        format!(
            "*4\r\n{}:{port}\r\n{}*4\r\n{}{}{}{}",
            bulk(host),
            bulk(id),
            bulk("ip"),
            bulk("10.0.0.1"),
            bulk("hostname"),
            bulk(host)
        )
    };
    let reply = format!(
        "*1\r\n*4\r\n:0\r\n:16383\r\n{}{}",
        node("node-1.example", 6379, "id1"),
        node("node-2.example", 6380, "id2")
    );
    let out = rewrite(Topology::Slots, &reply, &nodes()).unwrap();
    let expected = format!(
        "*1\r\n*4\r\n:0\r\n:16383\r\n*4\r\n{}:7001\r\n{}*0\r\n*4\r\n{}:7002\r\n{}*0\r\n",
        bulk("127.0.0.1"),
        bulk("id1"),
        bulk("127.0.0.1"),
        bulk("id2")
    );
    assert_eq!(out, expected);
}

#[test]
fn cluster_slots_in_resp3_keeps_its_map_and_an_unknown_endpoint_is_this_node() {
    let reply = format!(
        "*1\r\n*3\r\n:0\r\n:100\r\n*4\r\n$-1\r\n:6380\r\n{}%1\r\n{}{}",
        bulk("id9"),
        bulk("ip"),
        bulk("10.1.2.3")
    );
    let table = nodes();
    let out = rewrite(Topology::Slots, &reply, &table).unwrap();
    assert_eq!(
        out,
        format!(
            "*1\r\n*3\r\n:0\r\n:100\r\n*4\r\n{}:7001\r\n{}%0\r\n",
            bulk("127.0.0.1"),
            bulk("id9")
        )
    );
    let given = table.given.lock().unwrap();
    assert_eq!(
        given.keys().next().unwrap(),
        &NodeAddr {
            host: this().host,
            port: 6380
        }
    );
}

#[test]
fn a_question_mark_endpoint_uses_the_ip_or_stays_unusable() {
    let with_ip = format!(
        "*1\r\n*3\r\n:0\r\n:1\r\n*4\r\n{}:6379\r\n{}*2\r\n{}{}",
        bulk("?"),
        bulk("a"),
        bulk("ip"),
        bulk("10.0.0.5")
    );
    let out = rewrite(Topology::Slots, &with_ip, &nodes()).unwrap();
    assert!(
        out.contains(&format!("{}:7001", bulk("127.0.0.1"))),
        "{out}"
    );
    let without = format!(
        "*1\r\n*3\r\n:0\r\n:1\r\n*3\r\n{}:6379\r\n{}",
        bulk("?"),
        bulk("a")
    );
    let out = rewrite(Topology::Slots, &without, &nodes()).unwrap();
    assert!(out.contains(&format!("{}:0\r\n", bulk("?"))), "{out}");
    assert!(!out.contains("6379"), "{out}");
}

#[test]
fn cluster_shards_loses_hostnames_and_tls_ports_in_both_protocols() {
    let node = format!(
        "{}{}{}:21002\r\n{}{}{}{}{}{}",
        bulk("id"),
        bulk("abc"),
        bulk("tls-port"),
        bulk("ip"),
        bulk("10.0.0.2"),
        bulk("endpoint"),
        bulk("node-2.example"),
        bulk("hostname"),
        bulk("node-2.example"),
    );
    let resp2 = format!(
        "*1\r\n*4\r\n{}*2\r\n:0\r\n:5\r\n{}*1\r\n*10\r\n{node}",
        bulk("slots"),
        bulk("nodes")
    );
    let out = rewrite(Topology::Shards, &resp2, &nodes()).unwrap();
    assert!(!out.contains("example") && !out.contains("10.0.0.2") && !out.contains("21002"));
    assert!(out.contains(&format!("{}:7001\r\n", bulk("port"))), "{out}");
    assert!(
        out.contains(&format!("*8\r\n{}{}", bulk("id"), bulk("abc"))),
        "{out}"
    );
    let resp3 = format!(
        "*1\r\n%2\r\n{}*2\r\n:0\r\n:5\r\n{}*1\r\n%5\r\n{node}",
        bulk("slots"),
        bulk("nodes")
    );
    let out = rewrite(Topology::Shards, &resp3, &nodes()).unwrap();
    assert!(out.contains("%4\r\n"), "{out}");
    assert!(!out.contains("example") && !out.contains("21002"), "{out}");
}

#[test]
fn cluster_nodes_lines_name_local_ports_with_no_bus_port_or_hostname() {
    let text = "e7d1 10.0.0.1:6379@16379,node-1.example myself,master - 0 0 1 connected 0-5460\n\
                a1b2 10.0.0.2:6380@16380 slave e7d1 0 1796140452014 1 connected\n\
                c3d4 :0@0 handshake - 0 0 0 disconnected\n";
    let out = rewrite(Topology::Nodes, &bulk(text), &nodes()).unwrap();
    let expected = "e7d1 127.0.0.1:7001@0 myself,master - 0 0 1 connected 0-5460\n\
                    a1b2 127.0.0.1:7002@0 slave e7d1 0 1796140452014 1 connected\n\
                    c3d4 :0@0 handshake - 0 0 0 disconnected\n";
    assert_eq!(out, bulk(expected));
    let verbatim = format!("={}\r\ntxt:{text}\r\n", text.len() + 4);
    let out = rewrite(Topology::Nodes, &verbatim, &nodes()).unwrap();
    assert_eq!(
        out,
        format!("={}\r\ntxt:{expected}\r\n", expected.len() + 4)
    );
}

#[test]
fn a_node_known_by_its_id_keeps_its_port_whatever_it_is_called() {
    let table = nodes();
    rewrite(
        Topology::Nodes,
        &bulk("e7d1 10.0.0.1:6379@16379,node-1.example master - 0 0 1 connected\n"),
        &table,
    )
    .unwrap();
    let replicas = format!(
        "*1\r\n{}",
        bulk("e7d1 10.0.0.1:6379@16379 master - 0 0 1 connected")
    );
    let out = rewrite(Topology::Replicas, &replicas, &table).unwrap();
    assert!(out.contains("127.0.0.1:7001@0"), "{out}");
}

#[test]
fn redirects_to_announced_nodes_name_their_listener_and_other_errors_are_not_touched() {
    let table = nodes();
    for (host, port) in [
        ("node-1.example", 6381),
        ("::1", 6382),
        (&this().host[..], 6379),
    ] {
        let node = NodeAddr {
            host: host.into(),
            port,
        };
        table.announced(&node, None).unwrap();
    }
    let this = this();
    let rewriter = Rewriter {
        nodes: &table,
        this_node: &this,
    };
    let out = |frame: &str| match rewriter.redirect(frame.as_bytes()) {
        Redirect::Local(bytes) => Some(String::from_utf8(bytes).unwrap()),
        _ => None,
    };
    assert_eq!(
        out("-MOVED 3999 node-1.example:6381\r\n").as_deref(),
        Some("-MOVED 3999 127.0.0.1:7001\r\n")
    );
    assert_eq!(
        out("-ASK 3999 node-1.example:6381\r\n").as_deref(),
        Some("-ASK 3999 127.0.0.1:7001\r\n")
    );
    assert_eq!(
        out("-MOVED 12 ::1:6382\r\n").as_deref(),
        Some("-MOVED 12 127.0.0.1:7002\r\n"),
        "Redis writes IPv6 without brackets"
    );
    assert_eq!(
        out("-REDIRECT :6379\r\n").as_deref(),
        Some("-REDIRECT 127.0.0.1:7003\r\n"),
        "an empty host is this connection's node"
    );
    assert_eq!(out("-ERR MOVED is not a command\r\n"), None);
    assert_eq!(out("-WRONGTYPE Operation\r\n"), None);
}

#[test]
fn a_redirect_naming_a_host_no_topology_announced_gets_no_port() {
    let table = nodes();
    let this = this();
    let rewriter = Rewriter {
        nodes: &table,
        this_node: &this,
    };
    let unknown = NodeAddr {
        host: "attacker.example".into(),
        port: 6379,
    };
    assert_eq!(
        rewriter.redirect(b"-MOVED 1 attacker.example:6379\r\n"),
        Redirect::Unknown(unknown)
    );
    assert_eq!(
        rewriter.redirect(b"-MOVED 1 :6390\r\n"),
        Redirect::Unknown(NodeAddr {
            host: this.host.clone(),
            port: 6390
        }),
        "another port of this node is another node"
    );
    assert!(table.given.lock().unwrap().is_empty(), "no port was given");
}

#[test]
fn errors_that_only_look_like_redirects_are_not_redirects() {
    let table = nodes();
    let this = this();
    let rewriter = Rewriter {
        nodes: &table,
        this_node: &this,
    };
    for frame in [
        "-MOVED 5 127.0.0.1:16002 extra\r\n",
        "-MOVED 5 h:99999\r\n",
        "-MOVED 5 h:0\r\n",
        "-MOVED 5 h:06379\r\n",
        "-MOVED x\r\n",
        "-MOVED 16384 h:6379\r\n",
        "-MOVED -1 h:6379\r\n",
        "-MOVED 5  h:6379\r\n",
        "-ASK 5 h:-1\r\n",
        "-ASK 5 h\r\n",
        "-MOVED 5 [::1]:16002\r\n",
        "-REDIRECT a b:1\r\n",
        "-MOVEDX 5 h:1\r\n",
    ] {
        assert_eq!(
            rewriter.redirect(frame.as_bytes()),
            Redirect::NotRedirect,
            "{frame:?}"
        );
    }
}

#[test]
fn a_full_range_is_a_clear_error_and_a_malformed_reply_another() {
    let table = Nodes {
        limit: 0,
        ..Nodes::default()
    };
    let reply = format!("*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n{}:6379\r\n", bulk("n1"));
    let error = rewrite(Topology::Slots, &reply, &table).unwrap_err();
    assert!(matches!(error, ClusterError::Exhausted { .. }), "{error}");
    assert!(error.to_string().contains("n1:6379"), "{error}");
    for bad in [
        "*1\r\n:5\r\n",
        "+OK\r\n",
        "*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n:1\r\n:2\r\n",
    ] {
        let error = rewrite(Topology::Slots, bad, &nodes()).unwrap_err();
        assert!(
            matches!(error, ClusterError::Malformed(_)),
            "{bad:?}: {error}"
        );
    }
    assert_eq!(
        rewrite(
            Topology::Slots,
            "-ERR This instance has cluster support disabled\r\n",
            &nodes()
        )
        .unwrap(),
        "-ERR This instance has cluster support disabled\r\n"
    );
}
