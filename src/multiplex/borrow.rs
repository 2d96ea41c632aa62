//! A client on a connection lent to it for a transaction or a blocking command (`--multiplex`,
//! as pgbouncer's transaction pooling lends a server connection): what each of its requests
//! does meanwhile, and when the transaction is over so that the connection can go back and the
//! client back to its lane. Pure: a request's name and verdict in, a step out.
//!
//! A transaction is over when no MULTI is open and no key is watched; a blocking command is
//! over once answered. Requests are tracked as sent, as a server applies them: MULTI inside
//! MULTI, WATCH inside MULTI and EXEC without MULTI change nothing there, so they change nothing
//! here. A request that needs the connection for the rest of the session (pub/sub, SELECT to
//! another database, HELLO, ...) ends the loan: the client keeps the connection for good.

use super::rules::Verdict;
use std::fmt;

/// What to do with one request while the client holds a lent connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Sent on the lent connection.
    Send,
    /// As judged for a lane: answered by the proxy in its place, or QUIT.
    AsJudged,
    /// RESET, answered by the proxy: the loan ends (the connection is reset on its way back),
    /// and no later request may reach the connection before that.
    Reset,
    /// The client needs the connection for good (the pin's reason).
    Keep(&'static str),
}

/// Where a lent connection's transaction stands.
#[derive(Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Loan {
    /// MULTI was sent and no EXEC or DISCARD since.
    pub in_multi: bool,
    /// WATCH was sent and no EXEC, DISCARD or UNWATCH since.
    pub watching: bool,
    /// CLIENT SETINFO was sent (inside MULTI): state RESET leaves, undone on the way back.
    pub sticky: bool,
}

impl fmt::Debug for Loan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Loan(multi {}, watching {})",
            self.in_multi, self.watching
        )
    }
}

impl Loan {
    /// Whether nothing of the client's is left on the connection but what RESET clears.
    pub(crate) fn over(&self) -> bool {
        !self.in_multi && !self.watching
    }

    /// The step for a request judged `verdict` (as on a lane); `args` its first words.
    pub(crate) fn step(&mut self, args: &[&[u8]], verdict: &Verdict) -> Step {
        let name = args.first().copied().unwrap_or_default();
        let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
        match verdict {
            Verdict::Share | Verdict::Pin("blocking" | "transaction") => {
                self.track(name, args.len());
                Step::Send
            }
            Verdict::Answer(_) if is(b"RESET") => {
                *self = Loan::default();
                Step::Reset
            }
            // Queued inside MULTI, the server answers +QUEUED and runs them at EXEC, whose
            // reply then holds theirs: answering them at once would shift EXEC's array.
            Verdict::Answer(_) if self.in_multi && is(b"CLIENT") => {
                let sub = args.get(1).copied().unwrap_or_default();
                self.sticky |= sub.eq_ignore_ascii_case(b"SETINFO");
                Step::Send
            }
            // AUTH inside MULTI: the usual path sends the proxy's own AUTH in its place, for
            // the server to queue and answer in EXEC's reply.
            Verdict::Answer(_) if self.in_multi => Step::Keep("transaction"),
            Verdict::Answer(_) | Verdict::Quit => Step::AsJudged,
            Verdict::Pin(reason) => Step::Keep(reason),
            Verdict::Hello(_) => Step::Keep("protocol"),
        }
    }

    fn track(&mut self, name: &[u8], count: usize) {
        let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
        if is(b"MULTI") {
            self.in_multi = true;
        } else if (is(b"EXEC") || is(b"DISCARD")) && count == 1 {
            if self.in_multi {
                self.in_multi = false;
                self.watching = false;
            }
        } else if is(b"WATCH") && !self.in_multi {
            self.watching = true;
        } else if is(b"UNWATCH") && !self.in_multi {
            self.watching = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::multiplex::rules::{ClientState, Rules, judge};

    /// Each request judged as on a lane, then stepped; the steps and whether the loan is over
    /// after each.
    fn run(requests: &[&str]) -> Vec<(Step, bool)> {
        let rules = Rules {
            own_user: None,
            passwords: None,
        };
        let mut state = ClientState::new(&rules);
        let mut loan = Loan::default();
        (requests.iter())
            .map(|words| {
                let args: Vec<&[u8]> = words.split(' ').map(str::as_bytes).collect();
                let verdict = judge(&args, args.len(), &mut state, &rules);
                (loan.step(&args, &verdict), loan.over())
            })
            .collect()
    }

    #[test]
    fn a_blocking_command_is_over_once_sent_and_answered() {
        assert_eq!(run(&["BLPOP q 0"]), [(Step::Send, true)]);
    }

    #[test]
    fn a_transaction_is_over_at_exec_or_discard_and_watched_keys_until_then() {
        let steps = run(&["WATCH k", "GET k", "MULTI", "SET k v", "EXEC", "GET k"]);
        let over: Vec<bool> = steps.iter().map(|s| s.1).collect();
        assert_eq!(over, [false, false, false, false, true, true]);
        assert!(steps.iter().all(|s| s.0 == Step::Send));
        let over: Vec<bool> = run(&["MULTI", "DISCARD"]).iter().map(|s| s.1).collect();
        assert_eq!(over, [false, true]);
        let over: Vec<bool> = run(&["WATCH a", "UNWATCH"]).iter().map(|s| s.1).collect();
        assert_eq!(over, [false, true]);
    }

    #[test]
    fn what_a_server_refuses_inside_multi_changes_nothing() {
        // WATCH inside MULTI is refused; UNWATCH is queued: the watch stands until EXEC.
        let over: Vec<bool> = run(&["WATCH a", "MULTI", "UNWATCH", "WATCH b", "MULTI", "EXEC"])
            .iter()
            .map(|s| s.1)
            .collect();
        assert_eq!(over, [false, false, false, false, false, true]);
        // EXEC without MULTI leaves the watch.
        assert_eq!(run(&["WATCH a", "EXEC"])[1], (Step::Send, false));
        // EXEC with arguments is a syntax error, not an EXEC.
        assert_eq!(run(&["MULTI", "EXEC now"])[1], (Step::Send, false));
    }

    #[test]
    fn reset_ends_the_loan_and_state_for_good_keeps_the_connection() {
        assert_eq!(run(&["MULTI", "RESET"])[1], (Step::Reset, true));
        assert_eq!(run(&["MULTI", "SUBSCRIBE c"])[1].0, Step::Keep("pubsub"));
        assert_eq!(run(&["BLPOP q 0", "SELECT 3"])[1].0, Step::Keep("database"));
        assert_eq!(run(&["QUIT"])[0].0, Step::AsJudged);
    }

    #[test]
    fn names_inside_multi_are_queued_by_the_server_and_answered_by_the_proxy_outside() {
        let steps = run(&["CLIENT SETNAME a", "MULTI", "CLIENT SETNAME b", "AUTH x"]);
        let steps: Vec<Step> = steps.into_iter().map(|s| s.0).collect();
        let keep = Step::Keep("transaction");
        assert_eq!(steps, [Step::AsJudged, Step::Send, Step::Send, keep]);
        assert_eq!(run(&["AUTH x"])[0].0, Step::AsJudged);
    }
}
