//! `--cluster-ports`: the loopback ports cluster nodes' listeners are given.

use super::validate::Merger;
use std::ops::RangeInclusive;

/// Clear of Redis's 6379-6380 and the admin port 6479; room for a hundred nodes.
const DEFAULT_CLUSTER_PORTS: RangeInclusive<u16> = 7001..=7100;

impl Merger<'_> {
    pub(super) fn cluster_ports(&mut self) -> RangeInclusive<u16> {
        let Some(text) = self.s.cluster_ports.clone() else {
            return DEFAULT_CLUSTER_PORTS;
        };
        let parsed = text.split_once('-').and_then(|(low, high)| {
            let (low, high) = (
                low.trim().parse::<u16>().ok()?,
                high.trim().parse::<u16>().ok()?,
            );
            (low >= 1 && low <= high).then_some(low..=high)
        });
        parsed.unwrap_or_else(|| {
            self.errors.push(format!(
                "--cluster-ports: expected LOW-HIGH with 1 <= LOW <= HIGH <= 65535, got {text:?}"
            ));
            DEFAULT_CLUSTER_PORTS
        })
    }
}
