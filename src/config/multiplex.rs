//! `--multiplex-connections`.

use super::validate::Merger;

impl Merger<'_> {
    /// `--multiplex-connections`: between 1 and 64, 2 by default.
    pub(super) fn multiplex_connections(&mut self) -> u32 {
        let n = self.s.multiplex_connections.unwrap_or(2);
        if !(1..=64).contains(&n) {
            self.errors
                .push("--multiplex-connections: between 1 and 64".into());
        }
        n
    }
}
