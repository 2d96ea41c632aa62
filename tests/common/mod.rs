//! The shared test harness, by concern: certificates made per run (`certs`), real servers on
//! ephemeral loopback ports (`servers`, `cluster`), token sources (`tokens`, `iam`), the proxy
//! in-process or as a process (`proxy`), clients (`clients`), and a real Prometheus
//! (`prometheus`).
//!
//! A missing `redis-server` fails the test that needs it; nothing is skipped.

#![allow(dead_code)]

mod certs;
mod clients;
pub mod clouds;
pub mod cluster;
pub mod iam;
pub mod increments;
pub mod prometheus;
mod proxy;
pub mod rng;
pub mod sentinel;
mod servers;
mod tokens;

// Each test binary uses some of these; the others would warn there.
#[allow(unused_imports)]
pub use {certs::*, clients::*, proxy::*, servers::*, tokens::*};

use redis_auth_proxy::config::{Config, Flags};
use redis_auth_proxy::listener::ListenAddr;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The token redis-server starts with in most tests (a valid ElastiCache token).
pub const TOKEN_A: &str = "token-A-0123456789abcdef";
pub const TOKEN_B: &str = "token-B-0123456789abcdef";
pub const TOKEN_C: &str = "token-C-0123456789abcdef";
const ADMIN_PASSWORD: &str = "admin-password-for-tests";
pub const PATIENCE: Duration = Duration::from_secs(15);

/// Polls `condition` until it holds or the patience runs out.
pub fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if condition() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out waiting until {what}");
}
