//! The request scanner against Redis's own parsing rules.

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
                rewritten: expected.into_boxed_slice(),
                credentials: ClientCredentials::new(Some(b"u"), b"p"),
                well_formed: true,
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

#[test]
fn edge_numbers_and_bytes_are_judged_as_redis_judges_them() {
    // string2ll accepts LLONG_MIN; a count below one is an empty request.
    assert_eq!(
        steps(b"*-9223372036854775808\r\n"),
        vec![Step::Start {
            len: 23,
            command: Command::Empty
        }]
    );
    assert!(
        RequestScanner::new()
            .step(b"*-9223372036854775809\r\n")
            .is_err()
    );
    // strchr stops at a NUL: the header line has not ended yet.
    assert_eq!(
        RequestScanner::new().step(b"*1\0\r\n").unwrap(),
        Step::NeedMore
    );
    assert_eq!(
        RequestScanner::new().step(b"PING\0\n").unwrap(),
        Step::NeedMore
    );
    assert_eq!(
        RequestScanner::new().step(b"*1\r\n\0\r\n").unwrap(),
        Step::NeedMore,
        "a NUL where the `$` belongs: the line has not ended yet"
    );
}

#[test]
fn inline_words_start_after_any_isspace_blank_but_end_only_at_space_tab_cr_or_lf() {
    assert_eq!(
        split_args(b"\x0bRESET\x0b").unwrap(),
        vec![b"RESET\x0b".to_vec()],
        "a trailing vertical tab is part of the word, as in sdssplitargs"
    );
    assert_eq!(
        split_args(b"\x0cAUTH\x0cfoo").unwrap(),
        vec![b"AUTH\x0cfoo".to_vec()],
        "a form feed inside a word does not split it"
    );
    assert_eq!(
        steps(b"AUTH\x0cfoo\r\n"),
        vec![Step::Start {
            len: 10,
            command: Command::Other
        }]
    );
    assert_eq!(
        split_args(b"GET a\0b c").unwrap(),
        vec![b"GET".to_vec(), b"a".to_vec()],
        "the line ends at a NUL, as a C string"
    );
    assert_eq!(
        split_args(b"GET \"a\0\""),
        None,
        "a NUL inside quotes ends them unclosed"
    );
    assert_eq!(
        steps(b"\x0bRESET\r\n"),
        vec![Step::Start {
            len: 8,
            command: Command::Reset
        }]
    );
}

#[test]
fn client_caching_and_client_reply_are_told_apart() {
    let caching = crate::resp::encode_request(&[b"CLIENT", b"CACHING", b"yes"]);
    assert!(matches!(
        &steps(&caching)[0],
        Step::Start {
            command: Command::ClientCaching,
            ..
        }
    ));
    let off = crate::resp::encode_request(&[b"client", b"reply", b"off"]);
    assert!(matches!(
        &steps(&off)[0],
        Step::Start {
            command: Command::ClientReply(ReplyMode::Off),
            ..
        }
    ));
}

#[test]
fn size_limits_follow_redis_and_do_not_depend_on_how_an_auth_was_read() {
    // An inline line of exactly 64 KiB before its CR LF is taken, as Redis takes it.
    let mut line = vec![b'x'; MAX_INLINE];
    line.extend(b"\r\n");
    assert!(matches!(
        RequestScanner::new().step(&line),
        Ok(Step::Start { .. })
    ));
    line.insert(0, b'y');
    assert_eq!(
        RequestScanner::new().step(&line),
        Err(ProtocolError::TooBigInline)
    );
    // An AUTH over 64 KiB is refused whole as well as in pieces.
    let auth = crate::resp::encode_request(&[b"AUTH", &vec![b'p'; MAX_INSPECTED]]);
    assert_eq!(
        RequestScanner::new().step(&auth),
        Err(ProtocolError::TooBigInspected)
    );
    assert_eq!(
        RequestScanner::new().step(&auth[..auth.len() - 1]),
        Err(ProtocolError::TooBigInspected)
    );
}

#[test]
fn a_command_stays_small_enough_to_return_for_every_request() {
    // Returned by value for every request scanned: growing it slowed the scan by 7%.
    assert!(std::mem::size_of::<Command>() <= 64);
}
