//! Cluster mode in the core: topology replies and redirects rewritten in their place, every
//! other reply untouched, and a malformed topology reply ending only its connection.

use super::*;
use crate::cluster::rewrite::Rewriter;
use crate::cluster::{ClusterError, NodeAddr, NodeMap};
use std::sync::atomic::{AtomicBool, Ordering};

/// Node `host:port` is served on `port + 1000`; `new.example` only once the topology was read
/// again, and `attacker.example` never.
#[derive(Default)]
struct Shifted {
    lists_new: AtomicBool,
}

impl NodeMap for Shifted {
    fn announced(&self, node: &NodeAddr, _id: Option<&[u8]>) -> Result<u16, ClusterError> {
        Ok(node.port + 1000)
    }

    fn known(&self, node: &NodeAddr) -> Option<u16> {
        let listed = match node.host.as_str() {
            "attacker.example" => false,
            "new.example" => self.lists_new.load(Ordering::Relaxed),
            _ => true,
        };
        listed.then_some(node.port + 1000)
    }
}

fn cluster_wire() -> Wire {
    cluster_wire_with(Box::leak(Box::default()))
}

fn cluster_wire_with(nodes: &'static Shifted) -> Wire {
    let this: &'static NodeAddr = Box::leak(Box::new(NodeAddr {
        host: "cfg.example".into(),
        port: 6379,
    }));
    Wire::with(Rules {
        cluster: Some(Rewriter {
            nodes,
            this_node: this,
        }),
        ..rules(None)
    })
}

#[test]
fn a_moved_error_among_other_replies_is_rewritten_in_its_place() {
    let mut wire = cluster_wire();
    let (get, set) = (req(&["GET", "a"]), req(&["SET", "b", "1"]));
    wire.client_sends(&cat(&[&get, &set, &get]));
    wire.server_sends(b"$1\r\nx\r\n-MOVED 3999 10.0.0.7:6380\r\n-WRONGTYPE Operation\r\n");
    assert_eq!(
        wire.take_client(),
        b"$1\r\nx\r\n-MOVED 3999 127.0.0.1:7380\r\n-WRONGTYPE Operation\r\n"
    );
    assert!(wire.conn.wants().idle_closable);
}

#[test]
fn a_topology_reply_split_anywhere_is_rewritten_whole() {
    let reply = b"*1\r\n*3\r\n:0\r\n:16383\r\n*3\r\n$8\r\n10.0.0.1\r\n:6379\r\n$2\r\nid\r\n";
    let expected = b"*1\r\n*3\r\n:0\r\n:16383\r\n*3\r\n$9\r\n127.0.0.1\r\n:7379\r\n$2\r\nid\r\n";
    for cut in 1..reply.len() {
        let mut wire = cluster_wire();
        wire.client_sends(&req(&["cluster", "slots"]));
        wire.server_sends(&reply[..cut]);
        assert!(
            wire.take_client().is_empty(),
            "held until whole (cut {cut})"
        );
        wire.server_sends(&reply[cut..]);
        assert_eq!(wire.take_client(), expected, "cut {cut}");
    }
}

#[test]
fn without_cluster_mode_nothing_is_rewritten() {
    let mut wire = Wire::new();
    wire.client_sends(&req(&["GET", "a"]));
    wire.server_sends(b"-MOVED 3999 10.0.0.7:6380\r\n");
    assert_eq!(wire.take_client(), b"-MOVED 3999 10.0.0.7:6380\r\n");
}

#[test]
fn a_malformed_topology_reply_ends_the_connection_with_a_clear_error() {
    let mut wire = cluster_wire();
    wire.client_sends(&req(&["CLUSTER", "SHARDS"]));
    wire.server_sends(b"*1\r\n:12\r\n");
    let client = String::from_utf8(wire.take_client()).unwrap();
    assert!(
        client.starts_with("-ERR redis-auth-proxy: malformed cluster topology reply"),
        "{client}"
    );
    assert!(matches!(
        wire.conn.take_outcome(),
        Some(Err(ConnError::Cluster(ClusterError::Malformed(_))))
    ));
}

#[test]
fn a_topology_reply_beyond_sixteen_mib_is_refused_with_an_error_not_held() {
    let mut wire = cluster_wire();
    wire.client_sends(&req(&["CLUSTER", "NODES"]));
    let len = 17 << 20;
    wire.server_sends(format!("${len}\r\n").as_bytes());
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..17 {
        wire.server_sends(&chunk);
        if wire.conn.wants().closing {
            break;
        }
    }
    let client = String::from_utf8(wire.take_client()).unwrap();
    assert!(
        client.contains("malformed cluster topology reply"),
        "{client}"
    );
    assert!(
        client.len() < 200,
        "nothing of the reply itself reached the client"
    );
    assert!(matches!(
        wire.conn.take_outcome(),
        Some(Err(ConnError::Cluster(ClusterError::Malformed(_))))
    ));
}

#[test]
fn errors_a_script_words_like_redirects_pass_unchanged_and_the_connection_goes_on() {
    for error in [
        "-MOVED 5 127.0.0.1:16002 extra\r\n",
        "-MOVED 5 h:99999\r\n",
        "-MOVED x\r\n",
        "-ASK 5 h:-1\r\n",
        "-MOVED 5 [::1]:16002\r\n",
    ] {
        let mut wire = cluster_wire();
        let eval = req(&["EVAL", "return redis.error_reply(ARGV[1])", "0", "x"]);
        wire.client_sends(&cat(&[&eval, &req(&["GET", "a"])]));
        wire.server_sends(format!("{error}$1\r\nx\r\n").as_bytes());
        assert_eq!(wire.take_client(), format!("{error}$1\r\nx\r\n").as_bytes());
        assert!(!wire.conn.wants().closing, "{error:?}");
        assert!(wire.conn.wants().idle_closable, "{error:?}");
    }
}

#[test]
fn a_redirect_to_a_host_no_topology_named_waits_for_the_topology_then_passes_unchanged() {
    let mut wire = cluster_wire();
    let eval = req(&[
        "EVAL",
        "return redis.error_reply('MOVED 1 attacker.example:6379')",
        "0",
    ]);
    wire.client_sends(&cat(&[&eval, &req(&["GET", "a"])]));
    wire.server_sends(b"-MOVED 1 attacker.example:6379\r\n$1\r\nx\r\n");
    assert!(wire.take_client().is_empty(), "held, with what follows it");
    assert!(wire.conn.wants().side_trip == Some(SideTrip::RefreshTopology));
    assert!(
        !wire.conn.wants().idle_closable,
        "not reusable nor idle meanwhile"
    );
    wire.topology_refreshed();
    assert_eq!(
        wire.take_client(),
        b"-MOVED 1 attacker.example:6379\r\n$1\r\nx\r\n",
        "passed as the server sent it: no listener names that host"
    );
    assert!(wire.conn.wants().idle_closable);
}

#[test]
fn a_redirect_to_a_node_the_refreshed_topology_lists_is_rewritten_in_its_place() {
    let nodes: &'static Shifted = Box::leak(Box::default());
    let mut wire = cluster_wire_with(nodes);
    wire.client_sends(&cat(&[&req(&["GET", "a"]), &req(&["AUTH", "pw"])]));
    wire.server_sends(b"-MOVED 15495 new.example:6390\r\n");
    assert!(wire.take_client().is_empty());
    nodes.lists_new.store(true, Ordering::Relaxed);
    wire.topology_refreshed();
    assert_eq!(
        wire.take_client(),
        b"-MOVED 15495 127.0.0.1:7390\r\n+OK\r\n",
        "the proxy's own answer to AUTH still comes after it"
    );
}
