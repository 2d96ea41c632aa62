//! `--sentinel` and its settings: a route whose primary is found through Redis Sentinel.

use super::file::FileRoute;
use super::validate::Merger;
use super::*;
use crate::sentinel::{DEFAULT_PORT, SentinelSettings};

impl Merger<'_> {
    /// A Sentinel route's `upstream`: the master's name, port 0; `--upstream` is refused, as
    /// the address comes from the Sentinels.
    pub(super) fn sentinel_upstream(
        &mut self,
        table: &FileRoute,
        at: &dyn Fn(&str) -> String,
    ) -> Option<UpstreamAddr> {
        if table.upstream.is_some() {
            self.errors.push(format!(
                "{} and {}: give one; with Sentinel the primary's address comes from the Sentinels",
                at("upstream"),
                at("sentinel")
            ));
        }
        Some(UpstreamAddr {
            host: table.sentinel_master.clone().unwrap_or_default(),
            port: 0,
        })
    }

    /// The route's Sentinels, if it has them; a Sentinel setting without `--sentinel` is an
    /// error, as is Sentinel with `--cluster`.
    pub(super) fn sentinel(
        &mut self,
        table: &FileRoute,
        at: &dyn Fn(&str) -> String,
        cluster: bool,
        no_tls: bool,
        base_tls: &TlsSettings,
    ) -> Option<SentinelSettings> {
        let Some(addrs) = &table.sentinel else {
            let strays = [
                ("sentinel-master", table.sentinel_master.is_some()),
                ("sentinel-username", self.s.sentinel_username.is_some()),
                (
                    "sentinel-password-file",
                    self.s.sentinel_password_file.is_some(),
                ),
                ("sentinel-tls", self.s.sentinel_tls.is_some()),
            ];
            for (key, set) in strays {
                // Shared settings are reported once, with the flag-defined or first route.
                if set && (key == "sentinel-master" || self.routes.is_empty()) {
                    self.errors
                        .push(format!("{}: needs {}", at(key), at("sentinel")));
                }
            }
            return None;
        };
        if cluster {
            self.errors.push(format!(
                "{} and {}: a cluster finds its primaries itself",
                at("cluster"),
                at("sentinel")
            ));
        }
        let mut parsed = Vec::new();
        for text in addrs.iter().map(|a| a.trim()).filter(|a| !a.is_empty()) {
            match parse_host_port(text, DEFAULT_PORT) {
                Ok(addr) => parsed.push(addr),
                Err(e) => self.errors.push(format!("{}: {e}", at("sentinel"))),
            }
        }
        if addrs.iter().all(|a| a.trim().is_empty()) {
            self.errors
                .push(format!("{}: at least one HOST:PORT", at("sentinel")));
        }
        let master = table.sentinel_master.clone().filter(|m| !m.is_empty());
        if master.is_none() {
            self.errors.push(format!(
                "{}: required with {} (the name in `sentinel monitor <name> ...`)",
                at("sentinel-master"),
                at("sentinel")
            ));
        }
        let tls = self.s.sentinel_tls.unwrap_or(!no_tls);
        Some(SentinelSettings {
            addrs: parsed,
            master: master?,
            username: self.s.sentinel_username.clone(),
            password_file: self.s.sentinel_password_file.clone(),
            tls: tls.then(|| base_tls.clone()),
        })
    }
}
