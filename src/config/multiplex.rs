//! `--multiplex` and `--multiplex-connections`, and what multiplexing does not combine with yet.

use super::validate::Merger;
use super::*;

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

    /// A multiplexed route cannot yet be a cluster route: refused by name rather than half
    /// done.
    pub(super) fn check_multiplex(&mut self, routes: &[Route]) {
        if let Some(route) = routes.iter().find(|r| r.multiplex && r.cluster) {
            self.errors.push(format!(
                "--multiplex with --cluster (route {}): not yet supported; see docs/multiplexing.md",
                route.name
            ));
        }
    }
}
