//! Cluster mode when something is wrong: a full `--cluster-ports` range, a node whose topology
//! reply no Redis sends. The client gets a clear error; other connections go on.

mod common;

use common::cluster::{Announce, Cluster, cli, proxy_to};
use common::{ProxyHandle, ProxyProcess, TOKEN_A, TokenFile, http, sample};

fn proxy(cluster: &Cluster, token: &TokenFile, extra: &[&str]) -> ProxyProcess {
    proxy_to(&format!("127.0.0.1:{}", cluster.ports[0]), token, extra)
}

#[test]
fn a_full_port_range_is_answered_with_a_clear_error_and_the_connection_goes_on() {
    let cluster = Cluster::start(Announce::Ip);
    let token = TokenFile::new(TOKEN_A);
    // One port for six nodes (and none at all if something else holds it).
    let proxy = proxy(&cluster, &token, &["--cluster-ports", "24999-24999"]);
    let out = cli(proxy.port, &["CLUSTER", "SLOTS"]);
    assert!(
        out.contains("no local port left for cluster node 127.0.0.1:"),
        "{out}"
    );
    assert!(out.contains("--cluster-ports 24999-24999 is full"), "{out}");
    let mut client = common::Raw::connect(proxy.addr());
    client.command(&["CLUSTER", "SLOTS"]);
    assert!(client.reply().contains("is full"));
    client.command(&["PING"]);
    assert_eq!(client.reply(), "PONG", "the connection goes on");
    let exposition = http(proxy.admin_addr(), "GET", "/metrics").1;
    assert!(
        sample(
            &exposition,
            "redis_auth_proxy_cluster_ports_exhausted_total",
            &[]
        ) >= 1.0
    );
}

/// A TLS server that speaks just enough RESP to be a broken cluster node: `+OK` to AUTH,
/// `+PONG` to PING, and a CLUSTER SLOTS reply no Redis sends.
fn broken_node() -> (std::net::SocketAddr, tokio::runtime::Runtime) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = common::tls_acceptor();
    runtime.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut stream) = acceptor.accept(stream).await else {
                    return;
                };
                let mut buf = bytes::BytesMut::new();
                while stream.read_buf(&mut buf).await.is_ok_and(|n| n > 0) {
                    while let Ok(Some((frame, _, _))) =
                        redis_protocol::resp2::decode::decode_bytes_mut(&mut buf)
                    {
                        let text = format!("{frame:?}").to_ascii_uppercase();
                        let reply: &[u8] = if text.contains("SLOTS") {
                            b"*1\r\n*3\r\n:0\r\n:16383\r\n*2\r\n:6379\r\n$2\r\nno\r\n"
                        } else if text.contains("PING") {
                            b"+PONG\r\n"
                        } else {
                            b"+OK\r\n"
                        };
                        if stream.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, runtime)
}

#[test]
fn a_malformed_topology_reply_closes_only_its_connection_with_a_clear_error() {
    let (node, _runtime) = broken_node();
    let token = TokenFile::new(TOKEN_A);
    let proxy = proxy_to(
        &node.to_string(),
        &token,
        &["--tls-server-name", "localhost"],
    );
    let mut bystander = common::Raw::connect(proxy.addr());
    bystander.command(&["PING"]);
    assert_eq!(bystander.reply(), "PONG");
    let mut asker = common::Raw::connect(proxy.addr());
    asker.command(&["CLUSTER", "SLOTS"]);
    let reply = asker.reply();
    assert!(
        reply.contains("redis-auth-proxy: malformed cluster topology reply from the server"),
        "{reply}"
    );
    assert_eq!(asker.read_to_close(), "", "that connection closes");
    bystander.command(&["PING"]);
    assert_eq!(
        bystander.reply(),
        "PONG",
        "another connection is unaffected"
    );
    assert!(proxy.log().contains("cluster_topology"), "{}", proxy.log());
}
