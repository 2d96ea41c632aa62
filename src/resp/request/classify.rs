//! What a request means to the proxy: classified by its name, by its subcommand (CLIENT, ACL),
//! or, for the few held whole (AUTH, HELLO, CLIENT REPLY and TRACKING, CLUSTER topology), by
//! all its words; and HELLO's AUTH clause taken out.

use super::{ClientCredentials, Command, ReplyMode};

/// Commands whose arguments decide what the proxy does (a CLUSTER topology request has at
/// most three words; longer ones, as ADDSLOTS with thousands, pass as they stream).
pub(super) fn needs_whole_request(name: &[u8], count: i64) -> bool {
    let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
    is("AUTH") || is("HELLO") || (is("CLUSTER") && count <= 3)
}

/// Commands told apart by their subcommand, read before the rest so that the others (a large
/// `CLIENT SETNAME`, `ACL SETUSER` with many rules) pass whatever their size.
pub(super) fn has_subcommands(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"CLIENT") || name.eq_ignore_ascii_case(b"ACL")
}

/// What `CLIENT <sub>` or `ACL <sub>` is; `None` when the rest of its words decide (CLIENT
/// REPLY, CLIENT TRACKING), so the request is held whole.
pub(super) fn classify_subcommand(name: &[u8], sub: &[u8]) -> Option<Command> {
    let is = |n: &str| sub.eq_ignore_ascii_case(n.as_bytes());
    Some(if name.eq_ignore_ascii_case(b"ACL") {
        if is("LOG") {
            Command::ClientList
        } else {
            Command::Other
        }
    } else if is("REPLY") || is("TRACKING") {
        return None;
    } else if is("SETNAME") {
        Command::ClientSetName
    } else if is("CACHING") {
        Command::ClientCaching
    } else if is("NO-EVICT") || is("NO-TOUCH") || is("SETINFO") {
        Command::ClientSticky
    } else if is("ID") || is("INFO") {
        Command::ClientIdentity
    } else if is("LIST") {
        Command::ClientList
    } else {
        Command::Other
    })
}

/// Classifies a request by its name and number of words (name included).
pub(super) fn classify_by_name(name: &[u8], count: i64) -> Command {
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
    } else if is("SELECT") {
        Command::Select
    } else if is("WATCH") {
        Command::Watch
    } else if is("UNWATCH") {
        Command::Unwatch
    } else if is("SYNC") || is("PSYNC") {
        Command::Replicate
    } else if is("MONITOR") {
        Command::Monitor
    } else if ["SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE"]
        .iter()
        .any(|n| is(n))
    {
        Command::PubSub { leaving: false }
    } else if ["UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE"]
        .iter()
        .any(|n| is(n))
    {
        Command::PubSub { leaving: true }
    } else {
        Command::Other
    }
}

pub(super) fn classify_by_args(args: &[&[u8]]) -> Command {
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
        hello_without_auth(args).map_or(Command::Hello, |(rewritten, credentials, well_formed)| {
            Command::HelloWithAuth {
                rewritten,
                credentials,
                well_formed,
            }
        })
    } else if let Some(sub) = args.get(1).filter(|_| has_subcommands(name))
        && let Some(command) = classify_subcommand(name, sub)
    {
        command
    } else if is(name, "CLIENT")
        && args.get(1).is_some_and(|sub| is(sub, "TRACKING"))
        && args.get(2).is_some_and(|on| is(on, "ON"))
    {
        Command::ClientTracking
    } else if let Some(topology) = cluster_topology(args) {
        Command::ClusterTopology(topology)
    } else if is(name, "CLIENT") && args.get(1).is_some_and(|sub| is(sub, "REPLY")) {
        Command::ClientReply(match args.get(2) {
            Some(mode) if is(mode, "OFF") => ReplyMode::Off,
            Some(mode) if is(mode, "SKIP") => ReplyMode::Skip,
            _ => ReplyMode::On,
        })
    } else {
        classify_by_name(name, args.len() as i64)
    }
}

/// `CLUSTER SLOTS|SHARDS|NODES` and `CLUSTER REPLICAS|SLAVES <id>`, with their exact arity.
fn cluster_topology(args: &[&[u8]]) -> Option<crate::cluster::Topology> {
    use crate::cluster::Topology;
    let is = |arg: &[u8], n: &str| arg.eq_ignore_ascii_case(n.as_bytes());
    match args {
        [name, sub] if is(name, "CLUSTER") => {
            if is(sub, "SLOTS") {
                Some(Topology::Slots)
            } else if is(sub, "SHARDS") {
                Some(Topology::Shards)
            } else if is(sub, "NODES") {
                Some(Topology::Nodes)
            } else {
                None
            }
        }
        [name, sub, _] if is(name, "CLUSTER") && (is(sub, "REPLICAS") || is(sub, "SLAVES")) => {
            Some(Topology::Replicas)
        }
        _ => None,
    }
}

/// Walks HELLO's options as `helloCommand` does; returns the request re-encoded without its
/// `AUTH user pass` clauses, the credentials, and whether every other option is well formed.
/// `None` when there is no AUTH clause.
fn hello_without_auth(args: &[&[u8]]) -> Option<(Box<[u8]>, ClientCredentials, bool)> {
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
    let rewritten = crate::resp::encode_request(&kept).into_boxed_slice();
    Some((rewritten, credentials, well_formed))
}
