//! A server's address as configured or as a cluster announces a node: the vocabulary that the
//! upstream connector, the cluster rewrites and the configuration share, with no dependency.

use std::fmt;

/// `host:port` as configured (or as a cluster announces a node); the host is resolved at
/// every connect.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UpstreamAddr {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for UpstreamAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}
