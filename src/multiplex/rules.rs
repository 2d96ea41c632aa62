//! What a client's whole request means on a shared connection (`--multiplex`): sent on the
//! shared connection, answered by the proxy, or a reason to give the client a connection of its
//! own (pinning). Pure: the words of one request in, a verdict out.
//!
//! A request shares only when its effect ends with its reply. Everything whose effect outlives
//! it on the connection pins, taken from Redis's command table: blocking commands (a blocked
//! client would stall the others) and transactions (for which `front` lends a connection until
//! they are over, `borrow.rs`), pub/sub, MONITOR, replication, SELECT to another database, HELLO
//! for a protocol the lanes do not speak (HELLO 2 and 3 move the client to the lanes of that
//! protocol), AUTH as another ACL user, READONLY/READWRITE, and every CLIENT subcommand that
//! sets or reveals state of the connection (ID, INFO, KILL, PAUSE, REPLY, TRACKING, CACHING,
//! NO-EVICT, NO-TOUCH, UNBLOCK, GETREDIR, TRACKINGINFO). CLIENT SETNAME, GETNAME and SETINFO are
//! answered by the proxy, per client, as clients send them on connect; AUTH for the proxy's own
//! user too, as on any connection.

use crate::client_auth::{ClientPasswords, NOAUTH, WRONGPASS};
#[cfg(test)]
use crate::metrics::multiplex::PIN_REASONS;
use crate::resp::request::ClientCredentials;
use bytes::Bytes;
use secrecy::SecretSlice;

/// What to do with one whole request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Sent on the client's shared connection.
    Share,
    /// Answered by the proxy with these bytes, in its place among the replies.
    Answer(Bytes),
    /// `QUIT`: answered `+OK` in its place, then the connection closes.
    Quit,
    /// The client needs a connection of its own from this request on; the reason is the
    /// metric label.
    Pin(&'static str),
    /// HELLO for this protocol (2 or 3): answered with the HELLO reply of that protocol's
    /// lanes, in its place, once the client is on one of them.
    Hello(u8),
}

/// What the proxy keeps per client on a shared connection.
#[derive(Debug, Default)]
pub(crate) struct ClientState {
    /// CLIENT SETNAME's name, told to a pinned connection if the client is pinned later.
    pub name: Option<Bytes>,
    /// With `--client-password-file`: whether the client has authenticated to the proxy.
    pub authenticated: bool,
    /// What the last request did to the client's authentication, for the metric.
    pub auth_event: Option<&'static str>,
    /// The protocol the client speaks (HELLO): 2 until it asks for 3, and again after RESET.
    pub protocol: u8,
}

impl ClientState {
    pub(crate) fn new(rules: &Rules<'_>) -> Self {
        ClientState {
            authenticated: rules.passwords.is_none(),
            protocol: 2,
            ..ClientState::default()
        }
    }
}

/// What the rules need of the route.
pub(crate) struct Rules<'a> {
    /// The ACL user the proxy authenticates as (`None`: `default`).
    pub own_user: Option<&'a str>,
    /// `--client-password-file`: clients must authenticate to the proxy first.
    pub passwords: Option<&'a ClientPasswords>,
}

/// The most words of a request the rules look at.
pub(crate) const MAX_WORDS: usize = 8;

/// Judges one whole request of `count` words, `args` its first ones (up to `MAX_WORDS`),
/// `args[0]` its command name.
pub(crate) fn judge(
    args: &[&[u8]],
    count: usize,
    state: &mut ClientState,
    rules: &Rules<'_>,
) -> Verdict {
    let Some(name) = args.first() else {
        return Verdict::Pin("malformed");
    };
    // No command that pins has a longer name: the common ones are told apart in one match.
    if name.len() > 12 {
        if !state.authenticated {
            state.auth_event = Some("noauth");
            return Verdict::Answer(Bytes::from_static(NOAUTH));
        }
        return Verdict::Share;
    }
    let mut upper = [0u8; 12];
    upper[..name.len()].copy_from_slice(name);
    upper.make_ascii_uppercase();
    if !state.authenticated {
        // Before the client password, only what Redis allows an unauthenticated client.
        return match &upper[..name.len()] {
            b"AUTH" => auth(args, count, state, rules),
            b"QUIT" => Verdict::Quit,
            b"RESET" if count == 1 => Verdict::Answer(Bytes::from_static(b"+RESET\r\n")),
            // HELLO may carry AUTH: the usual path checks it.
            b"HELLO" => Verdict::Pin("protocol"),
            _ => {
                state.auth_event = Some("noauth");
                Verdict::Answer(Bytes::from_static(NOAUTH))
            }
        };
    }
    match &upper[..name.len()] {
        b"BLPOP" | b"BRPOP" | b"BRPOPLPUSH" | b"BLMOVE" | b"BLMPOP" | b"BZPOPMIN" | b"BZPOPMAX"
        | b"BZMPOP" | b"WAIT" | b"WAITAOF" => Verdict::Pin("blocking"),
        b"XREAD" | b"XREADGROUP" if has_block(args) => Verdict::Pin("blocking"),
        b"MULTI" | b"EXEC" | b"DISCARD" | b"WATCH" | b"UNWATCH" => Verdict::Pin("transaction"),
        b"SUBSCRIBE" | b"PSUBSCRIBE" | b"SSUBSCRIBE" | b"UNSUBSCRIBE" | b"PUNSUBSCRIBE"
        | b"SUNSUBSCRIBE" => Verdict::Pin("pubsub"),
        b"MONITOR" => Verdict::Pin("monitor"),
        b"SYNC" | b"PSYNC" | b"REPLCONF" => Verdict::Pin("replication"),
        b"SELECT" if count == 2 && args[1] == b"0" => Verdict::Share,
        b"SELECT" => Verdict::Pin("database"),
        b"HELLO" => hello(args, count, state, rules),
        b"READONLY" | b"READWRITE" | b"ASKING" => Verdict::Pin("client_state"),
        // Run by the server while a script keeps it busy: queued behind that script on a lane
        // they would never reach it.
        b"SCRIPT" | b"FUNCTION" if count == 2 && args[1].eq_ignore_ascii_case(b"KILL") => {
            Verdict::Pin("busy_server")
        }
        b"SHUTDOWN" => Verdict::Pin("busy_server"),
        b"AUTH" => auth(args, count, state, rules),
        b"CLIENT" => client(args, count, state),
        b"QUIT" => Verdict::Quit,
        b"RESET" if count == 1 => {
            // As on a server: the name forgotten, and with a client password, logged out.
            *state = ClientState::new(rules);
            Verdict::Answer(Bytes::from_static(b"+RESET\r\n"))
        }
        _ => Verdict::Share,
    }
}

/// `HELLO [protover [AUTH user pass] [SETNAME name]]`, once authenticated: the client moves to
/// the lanes of the protocol it asks for, keeping its name; AUTH is answered as `AUTH` is.
/// Anything else HELLO may carry (a protocol the lanes do not speak, another user, an option
/// the proxy does not know, a malformed one) pins, and the server answers it.
fn hello(args: &[&[u8]], count: usize, state: &mut ClientState, rules: &Rules<'_>) -> Verdict {
    if count == 1 {
        return Verdict::Hello(state.protocol);
    }
    let protocol = match args[1] {
        b"2" => 2,
        b"3" => 3,
        _ => return Verdict::Pin("protocol"),
    };
    if count > MAX_WORDS {
        return Verdict::Pin("protocol");
    }
    let (mut credentials, mut name) = (None, None);
    let mut i = 2;
    while i < count {
        let option = args[i];
        if option.eq_ignore_ascii_case(b"AUTH") && i + 2 < count {
            credentials = Some([option, args[i + 1], args[i + 2]]);
            i += 3;
        } else if option.eq_ignore_ascii_case(b"SETNAME") && i + 1 < count {
            name = Some(args[i + 1]);
            i += 2;
        } else {
            return Verdict::Pin("protocol");
        }
    }
    if name.is_some_and(|n| n.iter().any(|&b| !(b'!'..=b'~').contains(&b))) {
        return Verdict::Pin("protocol");
    }
    if let Some(words) = credentials {
        match auth(&words, 3, state, rules) {
            Verdict::Answer(ok) if ok.starts_with(b"+OK") => {}
            refused => return refused,
        }
    }
    if let Some(name) = name {
        state.name = (!name.is_empty()).then(|| Bytes::copy_from_slice(name));
    }
    Verdict::Hello(protocol)
}

/// `XREAD`/`XREADGROUP ... BLOCK ms ...` before `STREAMS`.
fn has_block(args: &[&[u8]]) -> bool {
    args.iter()
        .take_while(|a| !a.eq_ignore_ascii_case(b"STREAMS"))
        .any(|a| a.eq_ignore_ascii_case(b"BLOCK"))
}

/// `AUTH pass` or `AUTH user pass`, answered in place as on a connection of the client's own:
/// without a client password any is accepted (the server's password is the proxy's business);
/// with one, it is checked. AUTH naming another ACL user, once authenticated, goes to the
/// server on a connection of the client's own, which the server then decides.
fn auth(args: &[&[u8]], count: usize, state: &mut ClientState, rules: &Rules<'_>) -> Verdict {
    let (user, password) = match count {
        2 => (None, args[1]),
        3 => (Some(args[1]), args[2]),
        _ => {
            return Verdict::Answer(Bytes::from_static(
                b"-ERR wrong number of arguments for 'auth' command\r\n",
            ));
        }
    };
    let own = rules.own_user.unwrap_or("default").as_bytes();
    if state.authenticated && user.is_some_and(|user| user != own) {
        return Verdict::Pin("auth");
    }
    let Some(passwords) = rules.passwords else {
        return Verdict::Answer(Bytes::from_static(b"+OK\r\n"));
    };
    let sent = ClientCredentials {
        username: user.map(<[u8]>::to_vec),
        password: SecretSlice::from(password.to_vec()),
    };
    if passwords.check(&sent) {
        state.authenticated = true;
        state.auth_event = Some("accepted");
        Verdict::Answer(Bytes::from_static(b"+OK\r\n"))
    } else {
        state.auth_event = Some("wrongpass");
        Verdict::Answer(Bytes::from_static(WRONGPASS))
    }
}

/// CLIENT SETNAME, GETNAME and SETINFO are kept per client; LIST shares (it shows the shared
/// connections); every other subcommand sets or reveals state of the connection.
fn client(args: &[&[u8]], count: usize, state: &mut ClientState) -> Verdict {
    let sub = |n: &str| {
        args.get(1)
            .is_some_and(|a| a.eq_ignore_ascii_case(n.as_bytes()))
    };
    if sub("SETNAME") && count == 3 {
        let name = args[2];
        if name.iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
            return Verdict::Answer(Bytes::from_static(
                b"-ERR Client names cannot contain spaces, newlines or special characters.\r\n",
            ));
        }
        state.name = (!name.is_empty()).then(|| Bytes::copy_from_slice(name));
        Verdict::Answer(Bytes::from_static(b"+OK\r\n"))
    } else if sub("GETNAME") && count == 2 {
        Verdict::Answer(match &state.name {
            Some(name) => {
                let mut reply = format!("${}\r\n", name.len()).into_bytes();
                reply.extend_from_slice(name);
                reply.extend_from_slice(b"\r\n");
                Bytes::from(reply)
            }
            None => Bytes::from_static(b"$-1\r\n"),
        })
    } else if sub("SETINFO") && count == 4 {
        Verdict::Answer(Bytes::from_static(b"+OK\r\n"))
    } else if sub("LIST") {
        Verdict::Share
    } else {
        Verdict::Pin("client_state")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(words: &str) -> Verdict {
        let args: Vec<&[u8]> = words.split(' ').map(str::as_bytes).collect();
        let rules = Rules {
            own_user: Some("app"),
            passwords: None,
        };
        judge(&args, args.len(), &mut ClientState::new(&rules), &rules)
    }

    #[test]
    fn commands_whose_effect_ends_with_their_reply_share() {
        for words in [
            "GET k",
            "set k v",
            "MGET a b",
            "EVAL x 0",
            "PING",
            "SELECT 0",
            "CLIENT LIST",
            "XREAD STREAMS s 0",
            "INFO",
        ] {
            assert_eq!(judged(words), Verdict::Share, "{words}");
        }
    }

    #[test]
    fn state_that_outlives_a_request_pins_with_its_reason() {
        let cases = [
            ("BLPOP q 0", "blocking"),
            ("xread BLOCK 0 STREAMS s $", "blocking"),
            ("WAIT 1 0", "blocking"),
            ("MULTI", "transaction"),
            ("WATCH k", "transaction"),
            ("SUBSCRIBE c", "pubsub"),
            ("MONITOR", "monitor"),
            ("PSYNC ? -1", "replication"),
            ("SELECT 2", "database"),
            ("HELLO 4", "protocol"),
            ("HELLO 3 SETNAME a b", "protocol"),
            ("HELLO 3 AUTH other secret", "auth"),
            ("READONLY", "client_state"),
            ("CLIENT ID", "client_state"),
            ("CLIENT TRACKING on", "client_state"),
            ("CLIENT REPLY OFF", "client_state"),
            ("AUTH other secret", "auth"),
            ("SCRIPT KILL", "busy_server"),
            ("function kill", "busy_server"),
        ];
        for (words, reason) in cases {
            assert_eq!(judged(words), Verdict::Pin(reason), "{words}");
            assert!(PIN_REASONS.contains(&reason));
        }
    }

    #[test]
    fn names_and_the_proxys_own_auth_are_answered_per_client() {
        let rules = Rules {
            own_user: None,
            passwords: None,
        };
        let mut state = ClientState::new(&rules);
        let mut judge_words = |words: &str| {
            let args: Vec<&[u8]> = words.split(' ').map(str::as_bytes).collect();
            judge(&args, args.len(), &mut state, &rules)
        };
        let answer = |bytes: &'static [u8]| Verdict::Answer(Bytes::from_static(bytes));
        assert_eq!(judge_words("CLIENT GETNAME"), answer(b"$-1\r\n"));
        assert_eq!(judge_words("CLIENT SETNAME worker-1"), answer(b"+OK\r\n"));
        assert_eq!(judge_words("client getname"), answer(b"$8\r\nworker-1\r\n"));
        assert!(
            matches!(judge_words("CLIENT SETNAME a\nb"), Verdict::Answer(b) if b.starts_with(b"-ERR Client names"))
        );
        assert_eq!(
            judge_words("CLIENT SETINFO lib-name redis-py"),
            answer(b"+OK\r\n")
        );
        assert_eq!(judge_words("AUTH anything"), answer(b"+OK\r\n"));
        assert_eq!(judge_words("AUTH default anything"), answer(b"+OK\r\n"));
        assert_eq!(judge_words("RESET"), answer(b"+RESET\r\n"));
        assert_eq!(
            judge_words("CLIENT GETNAME"),
            answer(b"$-1\r\n"),
            "RESET forgets the name"
        );
        assert_eq!(judge_words("QUIT"), Verdict::Quit);
    }

    #[test]
    fn hello_moves_the_client_to_the_lanes_of_its_protocol_and_keeps_its_name() {
        let rules = Rules {
            own_user: Some("app"),
            passwords: None,
        };
        let mut state = ClientState::new(&rules);
        let judged = |words: &str, state: &mut ClientState| {
            let args: Vec<&[u8]> = words.split(' ').map(str::as_bytes).collect();
            judge(&args, args.len(), state, &rules)
        };
        assert_eq!(judged("HELLO", &mut state), Verdict::Hello(2));
        assert_eq!(judged("hello 3", &mut state), Verdict::Hello(3));
        assert_eq!(
            judged("HELLO 3 AUTH app x SETNAME w1", &mut state),
            Verdict::Hello(3)
        );
        assert_eq!(state.name.as_deref(), Some(&b"w1"[..]));
        assert_eq!(judged("HELLO 2 setname w2", &mut state), Verdict::Hello(2));
        assert_eq!(state.name.as_deref(), Some(&b"w2"[..]));
    }

    #[test]
    fn with_a_client_password_only_auth_quit_reset_and_hello_come_before_it() {
        let passwords = ClientPasswords::fixed("s3cret-s3cret-s3cret");
        let rules = Rules {
            own_user: None,
            passwords: Some(&passwords),
        };
        let mut state = ClientState::new(&rules);
        let mut judged = |words: &str| {
            let args: Vec<&[u8]> = words.split(' ').map(str::as_bytes).collect();
            judge(&args, args.len(), &mut state, &rules)
        };
        let answer = |bytes: &'static [u8]| Verdict::Answer(Bytes::from_static(bytes));
        assert_eq!(judged("GET k"), answer(NOAUTH));
        assert_eq!(judged("A-VERY-LONG-COMMAND-NAME"), answer(NOAUTH));
        assert_eq!(judged("HELLO 3 AUTH default x"), Verdict::Pin("protocol"));
        assert_eq!(judged("AUTH wrong"), answer(WRONGPASS));
        assert_eq!(judged("AUTH other s3cret-s3cret-s3cret"), answer(WRONGPASS));
        assert_eq!(
            judged("AUTH default s3cret-s3cret-s3cret"),
            answer(b"+OK\r\n")
        );
        assert_eq!(judged("GET k"), Verdict::Share);
        assert_eq!(judged("AUTH other anything"), Verdict::Pin("auth"));
        assert_eq!(judged("RESET"), answer(b"+RESET\r\n"));
        assert_eq!(judged("GET k"), answer(NOAUTH), "RESET logs out");
    }
}
