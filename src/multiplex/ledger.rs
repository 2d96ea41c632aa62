//! The order of a client's replies on a shared connection: what it is owed, in the order it
//! asked. Replies from the shared connection answer the oldest shared requests; the proxy's own
//! answers (CLIENT GETNAME, AUTH) wait until every reply before them has gone. Pure.

use bytes::Bytes;
use std::collections::VecDeque;

#[derive(Debug)]
enum Owed {
    /// Replies still to come from the shared connection.
    Shared(u64),
    /// An answer of the proxy's own.
    Own(Bytes),
}

/// What a client is owed, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    owed: VecDeque<Owed>,
    /// Replies owed by the shared connection, over every entry.
    shared: u64,
}

impl Ledger {
    /// `n` requests went to the shared connection.
    pub(crate) fn shared(&mut self, n: u64) {
        if n == 0 {
            return;
        }
        self.shared += n;
        match self.owed.back_mut() {
            Some(Owed::Shared(m)) => *m += n,
            _ => self.owed.push_back(Owed::Shared(n)),
        }
    }

    /// An answer of the proxy's own, in its place: returned at once if nothing is owed before
    /// it.
    pub(crate) fn own(&mut self, answer: Bytes) -> Option<Bytes> {
        if self.owed.is_empty() {
            return Some(answer);
        }
        self.owed.push_back(Owed::Own(answer));
        None
    }

    /// `n` replies from the shared connection have been passed on whole: the proxy's answers
    /// now due, in order.
    pub(crate) fn answered(&mut self, mut n: u64, due: &mut Vec<Bytes>) {
        assert!(n <= self.shared, "more replies than requests");
        self.shared -= n;
        while let Some(front) = self.owed.front_mut() {
            match front {
                Owed::Shared(_) if n == 0 => break,
                Owed::Shared(m) => {
                    let taken = n.min(*m);
                    *m -= taken;
                    n -= taken;
                    if *m > 0 {
                        break;
                    }
                    self.owed.pop_front();
                }
                Owed::Own(_) => {
                    if let Some(Owed::Own(answer)) = self.owed.pop_front() {
                        due.push(answer);
                    }
                }
            }
        }
    }

    /// The last `n` requests counted as shared were never sent: each is owed `answer` instead,
    /// in its place.
    pub(crate) fn withdraw(&mut self, n: u64, answer: &Bytes) {
        match self.owed.back_mut() {
            Some(Owed::Shared(m)) if *m >= n => {
                *m -= n;
                if *m == 0 {
                    self.owed.pop_back();
                }
            }
            _ => panic!("withdrawing requests that were not counted"),
        }
        self.shared -= n;
        for _ in 0..n {
            self.owed.push_back(Owed::Own(answer.clone()));
        }
    }

    /// Replies still owed by the shared connection.
    pub(crate) fn owed_by_server(&self) -> u64 {
        self.shared
    }

    /// Nothing is owed at all.
    pub(crate) fn settled(&self) -> bool {
        self.owed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(text: &'static str) -> Bytes {
        Bytes::from_static(text.as_bytes())
    }

    #[test]
    fn own_answers_wait_for_the_replies_before_them_and_go_in_order() {
        let mut ledger = Ledger::default();
        assert_eq!(ledger.own(answer("+first\r\n")), Some(answer("+first\r\n")));
        ledger.shared(2);
        assert_eq!(ledger.own(answer("+a\r\n")), None);
        ledger.shared(1);
        assert_eq!(ledger.own(answer("+b\r\n")), None);
        assert_eq!(ledger.own(answer("+c\r\n")), None);
        let mut due = Vec::new();
        ledger.answered(1, &mut due);
        assert!(due.is_empty());
        ledger.answered(1, &mut due);
        assert_eq!(due, [answer("+a\r\n")]);
        due.clear();
        assert_eq!(ledger.owed_by_server(), 1);
        ledger.answered(1, &mut due);
        assert_eq!(due, [answer("+b\r\n"), answer("+c\r\n")]);
        assert!(ledger.settled() && ledger.owed_by_server() == 0);
    }

    #[test]
    fn requests_never_sent_are_answered_in_their_place_after_the_replies_before_them() {
        let mut ledger = Ledger::default();
        ledger.shared(1);
        ledger.shared(2);
        ledger.withdraw(2, &answer("-ERR lost\r\n"));
        assert_eq!(ledger.owed_by_server(), 1);
        let mut due = Vec::new();
        ledger.answered(1, &mut due);
        assert_eq!(due, [answer("-ERR lost\r\n"), answer("-ERR lost\r\n")]);
        assert!(ledger.settled());
    }

    #[test]
    fn replies_answering_several_entries_at_once_release_what_lies_between() {
        let mut ledger = Ledger::default();
        ledger.shared(1);
        ledger.own(answer("+x\r\n"));
        ledger.shared(2);
        let mut due = Vec::new();
        ledger.answered(3, &mut due);
        assert_eq!(due, [answer("+x\r\n")]);
        assert!(ledger.settled());
    }
}
