//! Cluster mode as an attacker on the same host would try it, against a real TLS Redis
//! Cluster: an error a script words like a redirect never makes the proxy listen for, dial or
//! authenticate to a host that no topology reply announced, and never uses up
//! `--cluster-ports`; a real redirect is still rewritten, even before any client asked for
//! the topology.

mod common;

use common::cluster::{Announce, Cluster};
use common::{ProxyHandle, ProxyProcess, Raw, TOKEN_A, TokenFile, http, sample};

fn proxy(cluster: &Cluster, token: &TokenFile, ports: &str) -> ProxyProcess {
    let token_path = token.path.display().to_string();
    let upstream = format!("127.0.0.1:{}", cluster.ports[0]);
    let args = [
        "--cluster",
        "--token-file",
        &token_path,
        "--cluster-ports",
        ports,
    ];
    ProxyProcess::start_to(&upstream, &args, &[])
}

/// A loopback port standing in for the attacker's host: a connection to it stays queued,
/// accepted by nobody, so that the test can tell afterwards whether one ever came.
struct FakeNode(std::net::TcpListener);

impl FakeNode {
    fn start() -> FakeNode {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        FakeNode(listener)
    }

    fn port(&self) -> u16 {
        self.0.local_addr().unwrap().port()
    }

    fn was_contacted(&self) -> bool {
        self.0.accept().is_ok()
    }
}

fn script_error(text: &str) -> [&str; 4] {
    ["EVAL", "return redis.error_reply(ARGV[1])", "0", text]
}

#[test]
fn a_script_that_words_a_redirect_to_another_host_never_makes_the_proxy_reach_it() {
    let cluster = Cluster::start(Announce::Ip);
    let token = TokenFile::new(TOKEN_A);
    // Each test its own range, below the ephemeral ports and above the test clusters' ports.
    let proxy = proxy(&cluster, &token, "23000-23019");
    let fake = FakeNode::start();
    let port = fake.port();
    let mut client = Raw::connect(proxy.addr());
    for redirect in [
        format!("MOVED 1 127.0.0.1:{port}"),
        format!("ASK 1 127.0.0.1:{port}"),
        format!("REDIRECT 127.0.0.1:{port}"),
        format!("MOVED 1 :{port}"),
        format!("MOVED 1 127.0.0.1:{port} extra"),
        "MOVED 5 h:99999".to_owned(),
        "ASK 5 h:-1".to_owned(),
        "MOVED x".to_owned(),
    ] {
        client.command(&script_error(&redirect));
        assert_eq!(
            client.reply(),
            format!("(error) {redirect}"),
            "passed as the script wrote it"
        );
    }
    client.command(&["PING"]);
    assert_eq!(client.reply(), "PONG", "the connection goes on");
    let mut follower = Raw::connect(([127, 0, 0, 1], port).into());
    drop(follower.into_stream());
    assert!(
        fake.was_contacted(),
        "the fake node sees a connection made to it"
    );
    assert!(
        !fake.was_contacted(),
        "and none but that: the proxy never dialled it"
    );
    let exposition = http(proxy.admin_addr(), "GET", "/metrics").1;
    let unknown = "redis_auth_proxy_cluster_redirects_unknown_total";
    assert_eq!(sample(&exposition, unknown, &[]), 4.0, "{exposition}");
    assert!(
        sample(&exposition, "redis_auth_proxy_cluster_nodes", &[]) <= 6.0,
        "only real nodes were given listeners"
    );
    follower = Raw::connect(proxy.addr());
    follower.command(&["CLUSTER", "SLOTS"]);
    cluster.names_no_real_node(&follower.reply());
}

#[test]
fn a_hundred_fake_redirects_leave_every_client_s_topology_intact() {
    let cluster = Cluster::start(Announce::Ip);
    let token = TokenFile::new(TOKEN_A);
    // Room for the five nodes besides the configured one (which the route's own port serves),
    // and half as many ports as fake redirects. Below Linux's ephemeral range and above the
    // test clusters' ports, so no other test's connection holds one.
    let proxy = proxy(&cluster, &token, "23100-23149");
    let mut attacker = Raw::connect(proxy.addr());
    let count = 100;
    for i in 0..count {
        let redirect = format!("MOVED {i} 127.0.0.2:{}", 30_000 + i);
        attacker.command(&script_error(&redirect));
    }
    for i in 0..count {
        assert!(
            attacker
                .reply()
                .contains(&format!("127.0.0.2:{}", 30_000 + i))
        );
    }
    for topology in ["SLOTS", "SHARDS", "NODES"] {
        let mut client = Raw::connect(proxy.addr());
        client.command(&["CLUSTER", topology]);
        let reply = client.reply();
        assert!(!reply.contains("no local port left"), "{reply}");
        assert!(reply.contains("127.0.0.1"), "{reply}");
        cluster.names_no_real_node(&reply);
    }
    let exposition = http(proxy.admin_addr(), "GET", "/metrics").1;
    assert_eq!(
        sample(&exposition, "redis_auth_proxy_cluster_nodes", &[]),
        6.0,
        "the six real nodes, no more"
    );
    assert_eq!(
        sample(
            &exposition,
            "redis_auth_proxy_cluster_ports_exhausted_total",
            &[]
        ),
        0.0
    );
}

#[test]
fn a_real_redirect_before_any_topology_reply_names_a_local_listener() {
    let cluster = Cluster::start(Announce::Ip);
    let token = TokenFile::new(TOKEN_A);
    let proxy = proxy(&cluster, &token, "23200-23219");
    let mut client = Raw::connect(proxy.addr());
    // The first key the configured node does not own; no client has asked for the topology.
    let moved = (0..)
        .find_map(|i| {
            client.command(&["GET", &format!("elsewhere-{i}")]);
            Some(client.reply()).filter(|reply| reply.contains("MOVED"))
        })
        .unwrap();
    assert!(moved.contains(" 127.0.0.1:232"), "{moved}");
    cluster.names_no_real_node(&moved);
    let local: u16 = moved.rsplit(':').next().unwrap().trim().parse().unwrap();
    let mut owner = Raw::connect(([127, 0, 0, 1], local).into());
    owner.command(&["PING"]);
    assert_eq!(owner.reply(), "PONG", "its listener serves the node");
}

/// After pub/sub, MONITOR-free CLIENT REPLY games and RESP3 subscriptions, a topology reply is
/// rewritten again as soon as replies answer requests one to one: a cluster client refreshing
/// its topology on such a connection is never sent to a real node's TLS port.
#[test]
fn topology_replies_are_rewritten_once_replies_are_counted_again() {
    let cluster = Cluster::start(Announce::Ip);
    let token = TokenFile::new(TOKEN_A);
    let proxy = proxy(&cluster, &token, "23300-23319");
    // Each request, and how many replies the server sends it.
    let detours: [&[(&[&str], usize)]; 4] = [
        &[(&["SUBSCRIBE", "c"], 1), (&["UNSUBSCRIBE"], 1)],
        &[(&["HELLO", "3"], 1), (&["SUBSCRIBE", "c"], 1)],
        &[
            (&["CLIENT", "REPLY", "OFF"], 0),
            (&["PING"], 0),
            (&["CLIENT", "REPLY", "ON"], 1),
        ],
        &[(&["CLIENT", "REPLY", "SKIP"], 0), (&["PING"], 0)],
    ];
    for detour in detours {
        let mut client = Raw::connect(proxy.addr());
        for (words, replies) in detour {
            client.command(words);
            for _ in 0..*replies {
                client.reply();
            }
        }
        for topology in ["SLOTS", "SHARDS", "NODES"] {
            client.command(&["CLUSTER", topology]);
            let reply = client.reply();
            assert!(
                reply.contains("127.0.0.1"),
                "{detour:?} {topology}: {reply}"
            );
            cluster.names_no_real_node(&reply);
        }
    }
}
